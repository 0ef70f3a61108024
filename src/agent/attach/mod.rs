//! Interactive commands in a running container (`kubectl exec`, `shoal exec`).
//!
//! - `Session`: what a runtime returns for one command: a channel for stdin
//!   and terminal sizes, a channel of output, and the exit code;
//! - `Containers`: the containers this node runs, by pod and name, with
//!   where to run a command in each; the executor keeps it, the API reads it;
//! - `process`: sessions for the process runtime (pipes, or a pseudo
//!   terminal when a TTY is asked for); `docker`: the engine's exec.
//!
//! The wire protocol (Kubernetes' channel.k8s.io over WebSocket) lives in
//! `api::exec`; nothing here knows about it.

pub mod docker;
pub mod process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::runtime::{ExecTarget, Runtime, RuntimeError};

/// One command to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    pub command: Vec<String>,
    /// Whether the caller sends stdin (otherwise the command reads nothing).
    pub stdin: bool,
    /// A pseudo terminal: stdout and stderr are one stream, the terminal's.
    pub tty: bool,
    /// The terminal's size (columns, rows) from the start, if the caller
    /// said (a command that asks at once sees it, not a default).
    pub size: Option<(u16, u16)>,
}

/// What the caller sends to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInput {
    Stdin(Bytes),
    /// End of stdin: the command reads end of file.
    CloseStdin,
    /// The caller's terminal changed size (columns, rows).
    Resize {
        width: u16,
        height: u16,
    },
}

/// What a session sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutput {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A running command. Dropping `input` (or the whole session) ends it: the
/// command is killed if it is still running.
pub struct Session {
    pub input: mpsc::Sender<SessionInput>,
    /// Closes once the command's output is all sent.
    pub output: mpsc::Receiver<SessionOutput>,
    /// The command's exit code, or why it could not be waited for; sent
    /// after the last output.
    pub exit: oneshot::Receiver<Result<i32, String>>,
}

/// The channel ends a runtime's side of a session works with.
pub struct SessionIo {
    pub input: mpsc::Receiver<SessionInput>,
    pub output: mpsc::Sender<SessionOutput>,
    pub exit: oneshot::Sender<Result<i32, String>>,
}

/// A new session and the runtime's ends of it.
pub fn session() -> (Session, SessionIo) {
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(64);
    let (exit_tx, exit_rx) = oneshot::channel();
    (Session { input: in_tx, output: out_rx, exit: exit_rx }, SessionIo { input: in_rx, output: out_tx, exit: exit_tx })
}

/// Writes `data` to a command's stdin; a stdin that fails (the command
/// closed it) is dropped and later data goes nowhere.
pub async fn feed<W: tokio::io::AsyncWrite + Unpin>(stdin: &mut Option<W>, data: &[u8]) {
    use tokio::io::AsyncWriteExt;
    if let Some(s) = stdin.as_mut()
        && (s.write_all(data).await.is_err() || s.flush().await.is_err())
    {
        *stdin = None;
    }
}

/// A container a command can run in.
#[derive(Clone)]
pub struct Entry {
    pub runtime: Arc<dyn Runtime>,
    pub target: ExecTarget,
}

impl Entry {
    pub async fn attach(&self, req: AttachRequest) -> Result<Session, RuntimeError> {
        if req.command.is_empty() {
            return Err(RuntimeError::new("ExecError", "no command given: name one after `--`"));
        }
        self.runtime.attach(&self.target, req).await
    }
}

/// The containers running on this node, by `(namespace/pod, container)`.
#[derive(Clone, Default)]
pub struct Containers(Arc<Mutex<HashMap<(String, String), Entry>>>);

impl Containers {
    pub fn insert(&self, pod: &str, container: &str, entry: Entry) {
        self.lock().insert((pod.to_string(), container.to_string()), entry);
    }

    /// Forgets a container, unless another run of it (a restart) has taken
    /// its place since.
    pub fn remove(&self, pod: &str, container: &str, container_id: &str) {
        let mut map = self.lock();
        let key = (pod.to_string(), container.to_string());
        if map.get(&key).is_some_and(|e| e.target.container_id == container_id) {
            map.remove(&key);
        }
    }

    pub fn get(&self, pod: &str, container: &str) -> Option<Entry> {
        self.lock().get(&(pod.to_string(), container.to_string())).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::process::ProcessRuntime;

    fn entry(id: &str) -> Entry {
        Entry {
            runtime: Arc::new(ProcessRuntime::new("t".into())),
            target: ExecTarget { container_id: id.into(), env: vec![], workdir: None },
        }
    }

    #[test]
    fn a_restart_is_not_forgotten_by_the_end_of_the_run_before_it() {
        let c = Containers::default();
        c.insert("ns/p", "main", entry("1"));
        c.insert("ns/p", "main", entry("2"));
        c.remove("ns/p", "main", "1");
        assert_eq!(c.get("ns/p", "main").map(|e| e.target.container_id), Some("2".to_string()));
        c.remove("ns/p", "main", "2");
        assert!(c.get("ns/p", "main").is_none());
    }
}
