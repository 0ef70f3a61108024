//! The `process` runtime: a container is a plain host process.
//!
//! Each container runs in its own process group (so stopping it reaches its
//! children too), with stdout/stderr captured to its log file. Every process
//! carries `SHOAL_AGENT_ID=<id of this node's data dir>` in its environment:
//! after a `kill -9` of the node, the next start finds the previous run's
//! processes by that marker in `/proc` and kills their groups, so no replica
//! ever runs twice on a node (processes cannot be re-attached to: their
//! stdout pipes died with the old node).

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::runtime::{Adopted, ExecTarget, Exit, Keep, Launch, Running, Runtime, RuntimeError};
use crate::model::pods::RuntimeKind;

/// Environment variable marking processes started by this node.
pub const MARKER_VAR: &str = "SHOAL_AGENT_ID";

pub struct ProcessRuntime {
    marker: String,
}

impl ProcessRuntime {
    /// `marker` identifies this node's data dir (stable across restarts).
    pub fn new(marker: String) -> ProcessRuntime {
        ProcessRuntime { marker }
    }
}

/// The environment a pod process inherits from the node: the node's own
/// environment minus Shoal's settings (the API token must never leak).
pub fn inherited_env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| !k.starts_with("SHOAL_")).collect()
}

struct Proc {
    child: Child,
    pgid: Pid,
    exited: Option<Exit>,
    /// The tasks copying stdout and stderr to the log: an exit is reported
    /// once they have written all the process said, so that a finished
    /// pod's log is whole when its status says it ended.
    pumps: Vec<tokio::task::JoinHandle<()>>,
    /// Dropped when the process ended: its lease renewal stops.
    lease_done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Longest wait for the log pumps after the process ended (its group is
/// killed first, so the pipes close unless something else holds them).
const DRAIN: Duration = Duration::from_secs(2);

fn exit_of(status: std::process::ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::from_code(c, None),
        (None, Some(sig)) => Exit::from_code(128 + sig, Some(sig)),
        (None, None) => Exit::from_code(-1, None),
    }
}

/// The exit code a shell would report (128 + signal for a killed process).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    exit_of(status).code
}

impl Proc {
    fn reap_group(&self) {
        // The leader is gone; make sure nothing it started lingers.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

#[async_trait]
impl Running for Proc {
    fn id(&self) -> String {
        format!("pid://{}", self.pgid)
    }

    async fn wait(&mut self) -> Exit {
        if let Some(e) = &self.exited {
            return e.clone();
        }
        let exit = match self.child.wait().await {
            Ok(st) => exit_of(st),
            Err(_) => Exit::from_code(-1, None),
        };
        self.reap_group();
        self.lease_done = None;
        for p in std::mem::take(&mut self.pumps) {
            let _ = tokio::time::timeout(DRAIN, p).await;
        }
        self.exited = Some(exit.clone());
        exit
    }

    async fn stop(&mut self, grace: Duration) -> Exit {
        if let Some(e) = &self.exited {
            return e.clone();
        }
        let _ = killpg(self.pgid, Signal::SIGTERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(e) => e,
            Err(_) => {
                let _ = killpg(self.pgid, Signal::SIGKILL);
                self.wait().await
            }
        }
    }
}

/// Why `argv0` could not be run, with a hint; `reason` is the error's.
pub(super) fn spawn_error(reason: &str, argv0: &str, e: &std::io::Error) -> RuntimeError {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => " (not found: check the command name and the node's PATH)",
        std::io::ErrorKind::PermissionDenied => " (permission denied: is it executable?)",
        _ => "",
    };
    RuntimeError::new(reason, format!("cannot run {argv0:?}: {e}{hint}"))
}

fn command_for(argv: &[String], env: &[(String, String)], workdir: Option<&PathBuf>) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
    if let Some(w) = workdir {
        cmd.current_dir(w);
    }
    cmd
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    async fn available(&self) -> bool {
        true
    }

    async fn start(&self, l: Launch) -> Result<Box<dyn Running>, RuntimeError> {
        let mut argv: Vec<String> = l.command.iter().chain(l.args.iter()).cloned().collect();
        if argv.is_empty() {
            return Err(RuntimeError::new("StartError", "no command to run"));
        }
        // A fenced pod runs under the lease watchdog (`agent::lease`).
        if let Some(lease) = &l.lease {
            lease.may_start()?;
            let exe = std::env::current_exe().map_err(|e| {
                RuntimeError::new("StartError", format!("cannot find the shoal binary for the lease watchdog: {e}"))
            })?;
            let mut wrapped = vec![
                exe.display().to_string(),
                "lease-watchdog".into(),
                "--ttl-ms".into(),
                lease.ttl.as_millis().to_string(),
                "--".into(),
            ];
            wrapped.append(&mut argv);
            argv = wrapped;
        }
        let mut env: Vec<(String, String)> = inherited_env();
        env.push((MARKER_VAR.to_string(), self.marker.clone()));
        env.extend(l.env.iter().cloned());
        let workdir = l.workdir.as_ref().map(PathBuf::from).unwrap_or_else(|| l.pod_dir.clone());
        let mut cmd = command_for(&argv, &env, Some(&workdir));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(false);
        if l.lease.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| spawn_error("StartError", &argv[0], &e))?;
        let mut lease_done = None;
        if let (Some(lease), Some(stdin)) = (l.lease.clone(), child.stdin.take()) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            lease_done = Some(tx);
            tokio::spawn(super::lease::renew(lease, stdin, rx));
        }
        let pid =
            child.id().ok_or_else(|| RuntimeError::new("StartError", "process exited before it could be tracked"))?;
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(l.log.clone().pump(out)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(l.log.clone().pump(err)));
        }
        Ok(Box::new(Proc { child, pgid: Pid::from_raw(pid as i32), exited: None, pumps, lease_done }))
    }

    async fn exec(&self, target: &ExecTarget, cmd: &[String], timeout: Duration) -> Result<i32, RuntimeError> {
        if cmd.is_empty() {
            return Err(RuntimeError::new("ExecError", "empty command"));
        }
        let mut env = inherited_env();
        env.extend(target.env.iter().cloned());
        let mut c = command_for(cmd, &env, target.workdir.as_ref());
        c.stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).kill_on_drop(true);
        let mut child = c.spawn().map_err(|e| spawn_error("StartError", &cmd[0], &e))?;
        let pgid = child.id().map(|p| Pid::from_raw(p as i32));
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(st)) => Ok(exit_of(st).code),
            Ok(Err(e)) => Err(RuntimeError::new("ExecError", e.to_string())),
            Err(_) => {
                if let Some(p) = pgid {
                    let _ = killpg(p, Signal::SIGKILL);
                }
                Err(RuntimeError::new("ExecTimeout", format!("command timed out after {timeout:?}")))
            }
        }
    }

    async fn attach(
        &self,
        target: &ExecTarget,
        req: super::attach::AttachRequest,
    ) -> Result<super::attach::Session, RuntimeError> {
        let mut env = inherited_env();
        env.extend(target.env.iter().cloned());
        super::attach::process::attach(&req.command, &env, target.workdir.as_ref(), &req)
    }

    async fn recover(&self, _keep: &Keep) -> Result<Vec<Adopted>, RuntimeError> {
        let marker = self.marker.clone();
        let killed = tokio::task::spawn_blocking(move || kill_marked(&marker, Duration::from_secs(10)))
            .await
            .map_err(|e| RuntimeError::new("RecoverError", e.to_string()))?;
        if killed > 0 {
            tracing::info!(groups = killed, "killed pod processes left by a previous run of this node");
        }
        Ok(Vec::new())
    }
}

/// Process ids whose environment carries `MARKER_VAR=marker`.
pub fn marked_pids(marker: &str) -> Vec<i32> {
    let needle = format!("{MARKER_VAR}={marker}");
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Kills every process group holding a marked process; waits until none is
/// left (or `deadline` passes). Returns how many groups were signalled.
pub fn kill_marked(marker: &str, deadline: Duration) -> usize {
    let start = Instant::now();
    let mut groups = BTreeSet::new();
    loop {
        let pids = marked_pids(marker);
        if pids.is_empty() || start.elapsed() > deadline {
            return groups.len();
        }
        for pid in pids {
            let pgid = pgid_of(pid).unwrap_or(pid);
            let me = nix::unistd::getpgrp().as_raw();
            if pgid != me {
                groups.insert(pgid);
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
