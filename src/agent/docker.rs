//! The `docker` runtime: a container is a Docker (or Podman) container,
//! driven through the Engine API with bollard.
//!
//! Shoal, not Docker, restarts containers (restart policy `no`); the agent's
//! back-off applies as for processes. Every container carries labels naming
//! the node that manages it (`shoal.managed`), its pod, namespace, container,
//! template hash and the node generation that started it, so that after a
//! crash of the node it can adopt the containers of pods it still owns and
//! remove the rest, never touching containers of other tools. Logs are
//! followed from the engine into the same files as process logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use tokio_stream::StreamExt;

use super::logs::LogSink;
use super::runtime::{Adopted, ExecTarget, Exit, Keep, Launch, Running, Runtime, RuntimeError};
use crate::model::pods::RuntimeKind;
use crate::model::status::PortMapping;
use crate::model::types::Protocol;
use crate::util::unix_secs as unix_now;

/// Label keys on Shoal-managed containers.
pub mod labels {
    pub const MANAGED: &str = "shoal.managed";
    pub const NAMESPACE: &str = "shoal.namespace";
    pub const POD: &str = "shoal.pod";
    pub const CONTAINER: &str = "shoal.container";
    pub const TEMPLATE: &str = "shoal.template-hash";
    pub const GENERATION: &str = "shoal.node-generation";
}

/// How long one Engine API call may take.
const API_TIMEOUT_SECS: u64 = 60;

pub struct DockerRuntime {
    socket: String,
    /// Identifies this node's containers (the data dir's id).
    marker: String,
    client: Mutex<Option<Docker>>,
}

fn engine_err(reason: &str, e: bollard::errors::Error) -> RuntimeError {
    let msg = match &e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    RuntimeError::new(reason, msg)
}

/// The socket to use: the configured one, else `$DOCKER_HOST`, else the default.
pub fn socket_path(configured: Option<&str>) -> String {
    configured
        .map(String::from)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| h.starts_with("unix://")))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

impl DockerRuntime {
    pub fn new(socket: String, marker: String) -> DockerRuntime {
        DockerRuntime { socket, marker, client: Mutex::new(None) }
    }

    /// A connected client, reconnecting (and negotiating the API version)
    /// when the engine was away.
    async fn docker(&self) -> Result<Docker, RuntimeError> {
        if let Some(d) = self.client.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(d);
        }
        let d = Docker::connect_with_unix(&self.socket, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| engine_err("RuntimeUnavailable", e))?;
        let d = tokio::time::timeout(Duration::from_secs(5), d.negotiate_version())
            .await
            .map_err(|_| RuntimeError::new("RuntimeUnavailable", format!("{}: no answer", self.socket)))?
            .map_err(|e| engine_err("RuntimeUnavailable", e))?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
        Ok(d)
    }

    fn forget_client(&self) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn ensure_image(&self, d: &Docker, image: &str, policy: Option<&str>) -> Result<(), RuntimeError> {
        let tagless = !image.rsplit('/').next().unwrap_or(image).contains(':') && !image.contains('@');
        let policy = policy.unwrap_or(if tagless || image.ends_with(":latest") { "Always" } else { "IfNotPresent" });
        let present = d.inspect_image(image).await.is_ok();
        match policy {
            "Never" if !present => {
                return Err(RuntimeError::new(
                    "ErrImageNeverPull",
                    format!("image {image:?} is not present on this node and imagePullPolicy is Never"),
                ));
            }
            "Never" => return Ok(()),
            "IfNotPresent" if present => return Ok(()),
            _ => {}
        }
        let opts = CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
        let mut stream = d.create_image(Some(opts), None, None);
        while let Some(r) = stream.next().await {
            if let Err(e) = r {
                if present {
                    // Always, but the registry is unreachable: run what we have.
                    tracing::warn!(image, error = %e, "pull failed; using the local image");
                    return Ok(());
                }
                return Err(engine_err("ErrImagePull", e));
            }
        }
        Ok(())
    }

    fn follow_logs(d: Docker, id: String, sink: LogSink, since: i32) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let opts = LogsOptions { follow: true, stdout: true, stderr: true, since, ..Default::default() };
            let mut s = d.logs(&id, Some(opts));
            while let Some(Ok(out)) = s.next().await {
                sink.write(&out.into_bytes());
            }
        })
    }

    /// Removes containers of `(namespace, pod, container)` left from earlier attempts.
    async fn remove_previous(&self, d: &Docker, l: &Launch) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}={}", labels::MANAGED, self.marker),
                format!("{}={}", labels::NAMESPACE, l.namespace),
                format!("{}={}", labels::POD, l.pod),
                format!("{}={}", labels::CONTAINER, l.container),
            ],
        )]);
        if let Ok(list) = d
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
        {
            for c in list {
                if let Some(id) = c.id {
                    let _ = d
                        .remove_container(
                            &id,
                            Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }),
                        )
                        .await;
                }
            }
        }
    }
}

struct Container {
    d: Docker,
    id: String,
    exited: Option<Exit>,
    /// The task copying its logs (for a container this node started): an
    /// exit is reported once it has written what the engine had, so that a
    /// finished pod's log is whole when its status says it ended.
    logs: Option<tokio::task::JoinHandle<()>>,
    /// A fenced container's lease; dropped when the container ended (its
    /// renewal stops).
    lease_done: Option<LeaseGuard>,
}

/// The lease watchdog of a fenced container, from this node's side.
struct LeaseGuard {
    /// Dropping it stops the renewals: the watchdog kills the container.
    renew: Option<tokio::sync::oneshot::Sender<()>>,
    /// Resolves when the watchdog process has exited.
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// How long to wait for a watchdog to kill its container and exit.
const WATCHDOG_EXIT: Duration = Duration::from_secs(5);

impl LeaseGuard {
    /// Ends the lease now and waits until the watchdog has killed the
    /// container and exited. For a container this node can no longer watch
    /// (its engine went away): it must not vouch for a copy it cannot see,
    /// so the copy ends before its pod is reported ended and may start
    /// elsewhere.
    async fn end(&mut self) {
        self.renew.take();
        if let Some(rx) = self.ended.take() {
            let _ = tokio::time::timeout(WATCHDOG_EXIT, rx).await;
        }
    }
}

/// Starts the lease watchdog of a fenced container (`agent::lease`): a
/// process of its own that outlives the node and kills the container's
/// first process when the lease ends. Returns what stops the renewal.
async fn guard(d: &Docker, id: &str, lease: super::runtime::LeaseSpec) -> Result<LeaseGuard, RuntimeError> {
    let info =
        d.inspect_container(id, None::<InspectContainerOptions>).await.map_err(|e| engine_err("StartError", e))?;
    let pid = info.state.and_then(|s| s.pid).filter(|p| *p > 0).ok_or_else(|| {
        RuntimeError::new("StartError", "the engine reports no process for the fenced container".to_string())
    })? as i32;
    if !super::lease::is_container_process(pid, id) {
        return Err(RuntimeError::new(
            "StartError",
            format!(
                "the fenced container's process ({pid}) is not visible here (is the engine in another PID namespace?): its lease cannot be enforced"
            ),
        ));
    }
    let exe = std::env::current_exe().map_err(|e| {
        RuntimeError::new("StartError", format!("cannot find the shoal binary for the lease watchdog: {e}"))
    })?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "lease-watchdog",
        "--ttl-ms",
        &lease.ttl.as_millis().to_string(),
        "--pid",
        &pid.to_string(),
        "--container",
        id,
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .process_group(0)
    .kill_on_drop(false);
    let mut child =
        cmd.spawn().map_err(|e| RuntimeError::new("StartError", format!("cannot start the lease watchdog: {e}")))?;
    let stdin = child.stdin.take().ok_or_else(|| RuntimeError::new("StartError", "the lease watchdog has no stdin"))?;
    // Reap it when it ends (it ends with the container, or kills it).
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = child.wait().await;
        let _ = ended_tx.send(());
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(super::lease::renew(lease, stdin, rx));
    Ok(LeaseGuard { renew: Some(tx), ended: Some(ended) })
}

/// Longest wait for the log follower after the container ended.
const LOG_DRAIN: Duration = Duration::from_secs(2);

async fn final_exit(d: &Docker, id: &str, fallback: i64) -> Exit {
    match d.inspect_container(id, None::<InspectContainerOptions>).await {
        Ok(info) => {
            let st = info.state.unwrap_or_default();
            let code = st.exit_code.unwrap_or(fallback) as i32;
            let mut e = Exit::from_code(code, None);
            if st.oom_killed == Some(true) {
                e.oom_killed = true;
                e.reason = "OOMKilled".into();
            }
            e
        }
        Err(_) => Exit::from_code(fallback as i32, None),
    }
}

#[async_trait]
impl Running for Container {
    fn id(&self) -> String {
        format!("docker://{}", &self.id[..12.min(self.id.len())])
    }

    async fn wait(&mut self) -> Exit {
        if let Some(e) = &self.exited {
            return e.clone();
        }
        let mut s = self.d.wait_container(&self.id, Some(WaitContainerOptions { condition: "not-running".into() }));
        let code = match s.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            // The engine went away (or the container vanished): report it,
            // but do not forget the container, so a later stop can still
            // remove it once the engine answers again. A fenced one is
            // killed by its watchdog first (see `LeaseGuard::end`).
            _ => {
                if let Some(g) = &mut self.lease_done {
                    g.end().await;
                }
                return Exit { code: -1, signal: None, oom_killed: false, reason: "RuntimeUnavailable".into() };
            }
        };
        let e = final_exit(&self.d, &self.id, code).await;
        if let Some(h) = self.logs.take() {
            let _ = tokio::time::timeout(LOG_DRAIN, h).await;
        }
        let _ = self
            .d
            .remove_container(&self.id, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }))
            .await;
        self.exited = Some(e.clone());
        self.lease_done = None;
        e
    }

    async fn stop(&mut self, grace: Duration) -> Exit {
        if let Some(e) = &self.exited {
            return e.clone();
        }
        if self.d.ping().await.is_err() {
            // Left for the next start of this pod's container or the node's
            // recovery, which remove it by its labels (a fenced one is
            // killed by its watchdog first).
            if let Some(g) = &mut self.lease_done {
                g.end().await;
            }
            return Exit { code: -1, signal: None, oom_killed: false, reason: "RuntimeUnavailable".into() };
        }
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let _ = self.d.stop_container(&self.id, Some(StopContainerOptions { t: Some(t), signal: None })).await;
        let e = tokio::time::timeout(grace + Duration::from_secs(10), self.wait()).await.unwrap_or_else(|_| Exit {
            code: -1,
            signal: None,
            oom_killed: false,
            reason: "Killed".into(),
        });
        let _ = self
            .d
            .remove_container(&self.id, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }))
            .await;
        e
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    async fn available(&self) -> bool {
        let ok = match self.docker().await {
            Ok(d) => tokio::time::timeout(Duration::from_secs(3), d.ping()).await.is_ok_and(|r| r.is_ok()),
            Err(_) => false,
        };
        if !ok {
            self.forget_client();
        }
        ok
    }

    async fn start(&self, l: Launch) -> Result<Box<dyn Running>, RuntimeError> {
        let image = l.image.clone().ok_or_else(|| RuntimeError::new("CreateContainerError", "no image"))?;
        let d = self.docker().await?;
        self.ensure_image(&d, &image, l.pull_policy.as_deref()).await?;
        // A fenced container starts only where its lease can be renewed.
        if let Some(lease) = &l.lease {
            lease.may_start()?;
        }
        self.remove_previous(&d, &l).await;
        let mut lbls: HashMap<String, String> = l.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        lbls.insert(labels::MANAGED.into(), self.marker.clone());
        lbls.insert(labels::NAMESPACE.into(), l.namespace.clone());
        lbls.insert(labels::POD.into(), l.pod.clone());
        lbls.insert(labels::CONTAINER.into(), l.container.clone());
        lbls.insert(labels::TEMPLATE.into(), l.template_hash.clone());
        lbls.insert(labels::GENERATION.into(), l.generation.to_string());
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &l.ports {
            bindings.insert(
                format!("{}/{}", p.container_port, p.protocol.as_str().to_ascii_lowercase()),
                Some(vec![PortBinding {
                    host_ip: Some(l.node_ip.to_string()),
                    host_port: Some(p.host_port.to_string()),
                }]),
            );
        }
        let binds: Vec<String> = l
            .mounts
            .iter()
            .map(|m| format!("{}:{}{}", m.host_path.display(), m.container_path, if m.read_only { ":ro" } else { "" }))
            .collect();
        let host = HostConfig {
            port_bindings: Some(bindings),
            binds: Some(binds),
            memory: l.memory_limit_bytes.map(|b| b as i64),
            nano_cpus: l.cpu_limit_millis.map(|m| (m * 1_000_000) as i64),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: (!l.command.is_empty()).then(|| l.command.clone()),
            cmd: (!l.args.is_empty()).then(|| l.args.clone()),
            env: Some(l.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: l.workdir.clone(),
            labels: Some(lbls),
            exposed_ports: Some(
                l.ports
                    .iter()
                    .map(|p| format!("{}/{}", p.container_port, p.protocol.as_str().to_ascii_lowercase()))
                    .collect(),
            ),
            host_config: Some(host),
            ..Default::default()
        };
        let name = format!("shoal_{}_{}_{}_{}", l.namespace, l.pod, l.container, &crate::util::random_hex(3));
        let created = d
            .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
            .await
            .map_err(|e| engine_err("CreateContainerError", e))?;
        if let Err(e) = d.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await {
            let _ = d
                .remove_container(
                    &created.id,
                    Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }),
                )
                .await;
            return Err(engine_err("StartError", e));
        }
        let lease_done = match l.lease.clone() {
            Some(lease) => match guard(&d, &created.id, lease).await {
                Ok(tx) => Some(tx),
                Err(e) => {
                    // A fenced container never runs unguarded.
                    let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                    let _ = d.remove_container(&created.id, Some(opts)).await;
                    return Err(e);
                }
            },
            None => None,
        };
        let logs = Self::follow_logs(d.clone(), created.id.clone(), l.log.clone(), 0);
        Ok(Box::new(Container { d, id: created.id, exited: None, logs: Some(logs), lease_done }))
    }

    async fn exec(&self, target: &ExecTarget, cmd: &[String], timeout: Duration) -> Result<i32, RuntimeError> {
        let d = self.docker().await?;
        let id = target.container_id.trim_start_matches("docker://");
        let full = self.resolve(&d, id).await.unwrap_or_else(|| id.to_string());
        let run = async {
            let ex = d
                .create_exec(&full, bollard::models::ExecConfig { cmd: Some(cmd.to_vec()), ..Default::default() })
                .await
                .map_err(|e| engine_err("ExecError", e))?;
            d.start_exec(&ex.id, Some(bollard::exec::StartExecOptions { detach: true, ..Default::default() }))
                .await
                .map_err(|e| engine_err("ExecError", e))?;
            loop {
                let i = d.inspect_exec(&ex.id).await.map_err(|e| engine_err("ExecError", e))?;
                if i.running != Some(true) {
                    return Ok(i.exit_code.unwrap_or(-1) as i32);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| RuntimeError::new("ExecTimeout", format!("command timed out after {timeout:?}")))?
    }

    async fn attach(
        &self,
        target: &ExecTarget,
        req: super::attach::AttachRequest,
    ) -> Result<super::attach::Session, RuntimeError> {
        let d = self.docker().await?;
        let id = target.container_id.trim_start_matches("docker://");
        let full = self.resolve(&d, id).await.unwrap_or_else(|| id.to_string());
        super::attach::docker::attach(d, &full, &req).await
    }

    async fn recover(&self, keep: &Keep) -> Result<Vec<Adopted>, RuntimeError> {
        let d = self.docker().await?;
        let filters = HashMap::from([("label".to_string(), vec![format!("{}={}", labels::MANAGED, self.marker)])]);
        let list = d
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| engine_err("RecoverError", e))?;
        let mut adopted = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            let l = c.labels.unwrap_or_default();
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            let running = c.state.map(|s| s.to_string() == "running").unwrap_or(false);
            if running && keep(&get(labels::NAMESPACE), &get(labels::POD), &get(labels::TEMPLATE)) {
                let info = d
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| engine_err("RecoverError", e))?;
                let ports = info
                    .host_config
                    .and_then(|h| h.port_bindings)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let (cp, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
                        let cp: u16 = cp.parse().ok()?;
                        let protocol = Protocol::parse(Some(&proto.to_ascii_uppercase())).ok()?;
                        let hp: u16 = v?.first()?.host_port.as_ref()?.parse().ok()?;
                        Some(PortMapping { name: String::new(), container_port: cp, host_port: hp, protocol })
                    })
                    .collect();
                adopted.push(Adopted {
                    namespace: get(labels::NAMESPACE),
                    pod: get(labels::POD),
                    container: get(labels::CONTAINER),
                    template_hash: get(labels::TEMPLATE),
                    running: Box::new(Container {
                        d: d.clone(),
                        id: id.clone(),
                        exited: None,
                        logs: None,
                        lease_done: None,
                    }),
                    ports,
                    started_at: unix_now(),
                    follow: Some(Box::new({
                        let (d, id) = (d.clone(), id.clone());
                        move |sink: LogSink| {
                            Self::follow_logs(d, id, sink, unix_now() as i32);
                        }
                    })),
                });
            } else {
                tracing::info!(container = %id, pod = %get(labels::POD), "removing a container this node no longer owns");
                let _ = d
                    .remove_container(&id, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }))
                    .await;
            }
        }
        Ok(adopted)
    }
}

impl DockerRuntime {
    /// The full id of a container given a prefix.
    async fn resolve(&self, d: &Docker, prefix: &str) -> Option<String> {
        d.inspect_container(prefix, None::<InspectContainerOptions>).await.ok()?.id
    }
}

/// Watches the engine and calls `on_change(available)` when it comes or goes.
pub fn watch_engine(
    rt: Arc<DockerRuntime>,
    on_change: impl Fn(bool) + Send + 'static,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let now = rt.available().await;
            if last != Some(now) {
                on_change(now);
                last = Some(now);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    });
}
