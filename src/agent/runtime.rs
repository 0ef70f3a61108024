//! The one trait every container runtime implements (`process`, `docker`).
//!
//! Owns the contract between the agent's executor and a runtime: start a fully
//! resolved container, wait for it, stop it with a grace period, run a
//! command in it, and clean up after a crash of the node. Runtimes do no
//! scheduling and keep no pod state of their own.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::logs::LogSink;
use crate::model::pods::RuntimeKind;
use crate::model::status::PortMapping;

/// A volume to mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub name: String,
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Everything a runtime needs to start one container, already resolved.
/// `Debug` shows variable names only: values may come from Secrets.
#[derive(Clone)]
pub struct Launch {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Node generation that starts it (labels Docker containers).
    pub generation: u64,
    pub template_hash: String,
    pub image: Option<String>,
    pub pull_policy: Option<String>,
    /// Full command line for processes; entrypoint override for images.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub pod_dir: PathBuf,
    pub ports: Vec<PortMapping>,
    pub mounts: Vec<Mount>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub node_ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub log: LogSink,
    /// A fenced pod's lease (`agent::lease`): it runs only while renewed.
    pub lease: Option<LeaseSpec>,
}

/// A fenced pod's lease: `ttl`, renewed while this node may run fenced
/// pods: before the instant `until` holds (it has a majority and heard from
/// one lately; see `membership::detector::Detector::majority_until`).
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    pub ttl: std::time::Duration,
    pub until: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
}

impl LeaseSpec {
    /// Whether the lease may be renewed now.
    pub fn renewable(&self) -> bool {
        self.until.borrow().is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// Whether a fenced pod may start now: only while its lease may be
    /// renewed, since its watchdog grants one `ttl` at start, and that must
    /// not be a `ttl` this node had no right to. Checked at the moment of
    /// starting, without waiting: a start that waited for the right could
    /// complete after this node's agent had decided to stop the pod, or
    /// after its new owner started it. A refused start is retried with
    /// the restart back-off.
    pub fn may_start(&self) -> Result<(), RuntimeError> {
        if self.renewable() {
            return Ok(());
        }
        Err(RuntimeError::new(
            "Fenced",
            "this node is not in touch with a majority of the cluster both ways (cut off, or just started): a fenced pod starts only where its lease can be renewed; it is retried",
        ))
    }
}

/// The names of `env`, for `Debug` (values may come from Secrets).
pub fn env_names(env: &[(String, String)]) -> Vec<&str> {
    env.iter().map(|(k, _)| k.as_str()).collect()
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("pod", &format_args!("{}/{}", self.namespace, self.pod))
            .field("container", &self.container)
            .field("image", &self.image)
            .field("env", &env_names(&self.env))
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Kubernetes-style reason: Completed, Error, OOMKilled...
    pub reason: String,
}

impl Exit {
    pub fn from_code(code: i32, signal: Option<i32>) -> Exit {
        let reason = if code == 0 && signal.is_none() { "Completed" } else { "Error" };
        Exit { code, signal, oom_killed: false, reason: reason.into() }
    }
}

/// Why a runtime could not do something; `reason` is the pod status reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct RuntimeError {
    /// Kubernetes-style reason (`ErrImagePull`, `CreateContainerError`...).
    pub reason: String,
    pub message: String,
}

impl RuntimeError {
    pub fn new(reason: &str, message: impl Into<String>) -> RuntimeError {
        RuntimeError { reason: reason.to_string(), message: message.into() }
    }
}

/// Where to run an exec probe.
#[derive(Clone)]
pub struct ExecTarget {
    pub container_id: String,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
}

impl std::fmt::Debug for ExecTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecTarget")
            .field("container_id", &self.container_id)
            .field("env", &env_names(&self.env))
            .field("workdir", &self.workdir)
            .finish()
    }
}

/// A started container.
#[async_trait]
pub trait Running: Send {
    /// Runtime id (pid, Docker id).
    fn id(&self) -> String;
    /// Waits for the container to end. Cancel-safe: may be dropped and called again.
    async fn wait(&mut self) -> Exit;
    /// Asks the container to stop (SIGTERM), kills it after `grace`, and
    /// returns how it ended.
    async fn stop(&mut self, grace: Duration) -> Exit;
}

/// A container already running when the node started (Docker adoption).
pub struct Adopted {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub template_hash: String,
    pub running: Box<dyn Running>,
    pub ports: Vec<PortMapping>,
    pub started_at: u64,
    /// Starts copying its output into the pod's log file.
    pub follow: Option<Box<dyn FnOnce(LogSink) + Send>>,
}

/// Says whether this node still owns `(namespace, pod, template_hash)`.
pub type Keep = dyn for<'a> Fn(&'a str, &'a str, &'a str) -> bool + Send + Sync;

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    fn kind(&self) -> RuntimeKind;
    /// Whether it can start containers right now.
    async fn available(&self) -> bool;
    async fn start(&self, launch: Launch) -> Result<Box<dyn Running>, RuntimeError>;
    /// Runs `cmd` in the container's context; returns the exit code.
    async fn exec(&self, target: &ExecTarget, cmd: &[String], timeout: Duration) -> Result<i32, RuntimeError>;
    /// Starts an interactive command in the container (`kubectl exec`).
    async fn attach(
        &self,
        target: &ExecTarget,
        req: super::attach::AttachRequest,
    ) -> Result<super::attach::Session, RuntimeError>;
    /// Called once at node start: takes over what a previous run of this node
    /// left behind. `keep(namespace, pod, template_hash)` says which pods this
    /// node still owns; the runtime returns those it adopted and removes the
    /// rest. Runtimes that cannot adopt remove everything.
    async fn recover(&self, keep: &Keep) -> Result<Vec<Adopted>, RuntimeError>;
}
