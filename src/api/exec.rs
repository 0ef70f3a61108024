//! `GET .../pods/{name}/exec`: a command in a running container, over
//! Kubernetes' remote-command WebSocket protocol (`v5.channel.k8s.io`, which
//! kubectl 1.30 and newer speak, and `v4.channel.k8s.io`, the Python
//! client's). Every message starts with its channel: 0 stdin, 1 stdout,
//! 2 stderr, 3 the final status (a `Status` object), 4 terminal size
//! (`{"Width":..,"Height":..}`); in v5, `[255, 0]` closes stdin.
//!
//! Any node answers: the node that runs the pod runs the command
//! (`agent::attach`); another node relays the upgrade to it byte for byte
//! (`upgrade`).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::error::ApiError;
use super::server::Ctx;
use crate::agent::attach::{AttachRequest, Entry, Session, SessionInput, SessionOutput};

/// The subprotocols spoken, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// An exec request's query: `command` repeats, one per argument.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecQuery {
    pub fn parse(query: &str) -> Result<ExecQuery, ApiError> {
        let mut q = ExecQuery::default();
        let flag = |k: &str, v: &str| match v {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            other => Err(ApiError::bad_request(format!("{k}={other:?}: use true or false"))),
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "command" => q.command.push(v.into_owned()),
                "container" => q.container = Some(v.into_owned()),
                "stdin" => q.stdin = flag(&k, &v)?,
                "stdout" => q.stdout = flag(&k, &v)?,
                "stderr" => q.stderr = flag(&k, &v)?,
                "tty" => q.tty = flag(&k, &v)?,
                _ => {}
            }
        }
        if q.command.is_empty() {
            return Err(ApiError::bad_request(
                "no command: give one or more `command=` parameters (kubectl: after `--`)",
            ));
        }
        if !(q.stdin || q.stdout || q.stderr) {
            return Err(ApiError::bad_request("at least one of stdin, stdout and stderr must be true"));
        }
        Ok(q)
    }
}

/// A pod's containers: as placement wants it, else as a node reports it.
pub fn pod_containers(
    plan: &crate::placement::plan::PlanView,
    view: &crate::membership::view::ClusterView,
    id: &str,
) -> Option<Vec<String>> {
    match plan.plan.desired.get(id) {
        Some(d) => Some(d.spec.containers.iter().map(|c| c.name.clone()).collect()),
        None => view
            .nodes
            .values()
            .find_map(|n| n.pods.get(id))
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect()),
    }
}

/// Picks the container a request names (or the only one).
pub fn choose_container(pod: &str, containers: &[String], asked: Option<String>) -> Result<String, ApiError> {
    match asked {
        Some(c) if containers.contains(&c) => Ok(c),
        Some(c) => Err(ApiError::bad_request(format!(
            "pod {pod} has no container {c:?}; choose one of: {}",
            containers.join(", ")
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "pod {pod} has several containers; choose one with -c: {}",
            containers.join(", ")
        ))),
    }
}

pub async fn pod_exec(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if upgrade.starts_with("spdy") {
        return Err(ApiError::bad_request(
            "Shoal serves exec over WebSocket (v5.channel.k8s.io), not SPDY: use kubectl 1.30 or newer, \
             or `shoal exec`",
        ));
    }
    if upgrade != "websocket" {
        return Err(ApiError::bad_request(
            "exec needs a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io)",
        ));
    }
    let q = ExecQuery::parse(req.uri().query().unwrap_or(""))?;
    let id = format!("{ns}/{name}");
    let view = ctx.view.borrow().clone();
    let plan = ctx.plan.borrow().clone();
    let containers = pod_containers(&plan, &view, &id).unwrap_or_default();
    if containers.is_empty() {
        return Err(ApiError::not_found(format!("pod {name:?} in namespace {ns:?}")));
    }
    let container = choose_container(&name, &containers, q.container.clone())?;
    if let Some(entry) = ctx.containers.get(&id, &container) {
        return local(req, entry, q).await;
    }
    let runner =
        view.nodes.values().find(|n| n.state.alive() && n.info.name != view.self_name && n.pods.contains_key(&id));
    let Some(runner) = runner else {
        return Err(ApiError::conflict(format!(
            "container {container} of pod {name} is not running (see `shoal describe pod {name}`)"
        )));
    };
    let client = super::client::Client::new(vec![runner.info.api_url.clone()], Some(ctx.token.clone()))
        .with_tls(ctx.api_tls.clone())
        .with_timeout(std::time::Duration::from_secs(10));
    super::upgrade::relay(&client, &runner.info.name, req).await
}

/// Runs the command on this node.
async fn local(req: Request, entry: Entry, q: ExecQuery) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade: {}", e.body_text())))?
        .protocols(PROTOCOLS);
    let Some(protocol) = ws.selected_protocol().and_then(|p| p.to_str().ok()).map(str::to_owned) else {
        return Err(ApiError::bad_request(format!(
            "no subprotocol this node speaks was offered: offer one of {}",
            PROTOCOLS.join(", ")
        )));
    };
    let v5 = protocol == PROTOCOLS[0];
    Ok(ws.on_upgrade(move |mut socket| async move {
        // With a terminal, kubectl sends its size first: the command starts
        // with it rather than a default.
        let (size, early) = if q.tty { first_size(&mut socket, v5).await } else { (None, None) };
        let attach = AttachRequest { command: q.command.clone(), stdin: q.stdin, tty: q.tty, size };
        match entry.attach(attach).await {
            Ok(session) => {
                if let Some(input) = early {
                    let _ = session.input.send(input).await;
                }
                bridge(socket, session, &q, v5).await
            }
            Err(e) => finish(socket, Err(e.message)).await,
        }
    }))
}

/// How long a terminal session waits for the caller's size before starting.
const SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The caller's first message, if it comes soon: its terminal size, or
/// another input to hand to the session once it starts.
async fn first_size(socket: &mut WebSocket, v5: bool) -> (Option<(u16, u16)>, Option<SessionInput>) {
    let Ok(Some(Ok(msg))) = tokio::time::timeout(SIZE_WAIT, socket.recv()).await else { return (None, None) };
    let data = match msg {
        Message::Binary(b) => b,
        Message::Text(t) => Bytes::from(t.as_str().to_owned()),
        _ => return (None, None),
    };
    match from_caller(&data, v5) {
        Some(SessionInput::Resize { width, height }) => (Some((width, height)), None),
        other => (None, other),
    }
}

/// Carries one session over the socket until the command ends or the
/// caller goes away (which kills the command).
async fn bridge(mut socket: WebSocket, session: Session, q: &ExecQuery, v5: bool) {
    let Session { input, mut output, exit } = session;
    loop {
        tokio::select! {
            out = output.recv() => {
                let (channel, data) = match out {
                    Some(SessionOutput::Stdout(b)) => (STDOUT, b),
                    Some(SessionOutput::Stderr(b)) => (STDERR, b),
                    None => break,
                };
                let wanted = if channel == STDOUT { q.stdout } else { q.stderr };
                if wanted && socket.send(frame(channel, &data)).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => {
                let data = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::from(t.as_str().to_owned()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let Some(to_session) = from_caller(&data, v5) else { continue };
                if input.send(to_session).await.is_err() {
                    break;
                }
            }
        }
    }
    let code = exit.await.unwrap_or_else(|_| Err("the command's runtime went away".into()));
    drop(input);
    finish(socket, code).await;
}

/// What one message from the caller means for the session, if anything.
pub fn from_caller(data: &[u8], v5: bool) -> Option<SessionInput> {
    let (&channel, rest) = data.split_first()?;
    match channel {
        STDIN if !rest.is_empty() => Some(SessionInput::Stdin(Bytes::copy_from_slice(rest))),
        RESIZE => {
            let v: Value = serde_json::from_slice(rest).ok()?;
            let dim = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n.min(u16::MAX as u64) as u16);
            Some(SessionInput::Resize { width: dim("Width")?, height: dim("Height")? })
        }
        CLOSE if v5 && rest.first() == Some(&STDIN) => Some(SessionInput::CloseStdin),
        _ => None,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// The final status: what kubectl turns into its exit code.
pub fn status(code: &Result<i32, String>) -> Value {
    match code {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(n) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {n}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]},
        }),
        Err(e) => json!({"metadata": {}, "status": "Failure", "message": e, "reason": "InternalError", "code": 500}),
    }
}

async fn finish(mut socket: WebSocket, code: Result<i32, String>) {
    let body = serde_json::to_vec(&status(&code)).unwrap_or_default();
    let _ = socket.send(frame(STATUS, &body)).await;
    // A normal closure (1000): client-go reads a close without a code as an
    // error on the status stream.
    let close = axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() };
    let _ = socket.send(Message::Close(Some(close))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_takes_one_command_parameter_per_argument() {
        let q = ExecQuery::parse("command=sh&command=-c&command=echo%20a%20b&container=web&stdout=true&tty=1").unwrap();
        assert_eq!(q.command, vec!["sh", "-c", "echo a b"]);
        assert_eq!(q.container.as_deref(), Some("web"));
        assert!(q.stdout && q.tty && !q.stdin && !q.stderr);
        let e = ExecQuery::parse("stdout=true").unwrap_err();
        assert!(e.to_string().contains("no command"), "{e}");
        let e = ExecQuery::parse("command=ls").unwrap_err();
        assert!(e.to_string().contains("stdin, stdout and stderr"), "{e}");
        let e = ExecQuery::parse("command=ls&stdin=maybe").unwrap_err();
        assert!(e.to_string().contains("stdin=\"maybe\""), "{e}");
    }

    #[test]
    fn caller_messages_map_to_session_inputs() {
        assert_eq!(from_caller(b"\x00ls\n", true), Some(SessionInput::Stdin(Bytes::from_static(b"ls\n"))));
        assert_eq!(from_caller(b"\x00", true), None);
        assert_eq!(
            from_caller(b"\x04{\"Width\":120,\"Height\":40}", false),
            Some(SessionInput::Resize { width: 120, height: 40 })
        );
        assert_eq!(from_caller(b"\x04{\"Width\":\"x\"}", false), None);
        assert_eq!(from_caller(&[255, 0], true), Some(SessionInput::CloseStdin));
        assert_eq!(from_caller(&[255, 0], false), None);
        assert_eq!(from_caller(&[], true), None);
    }

    #[test]
    fn the_final_status_carries_the_exit_code_as_client_go_reads_it() {
        assert_eq!(status(&Ok(0))["status"], "Success");
        let s = status(&Ok(3));
        assert_eq!(
            (s["reason"].as_str(), s["details"]["causes"][0]["message"].as_str()),
            (Some("NonZeroExitCode"), Some("3"))
        );
        assert_eq!(status(&Err("gone".into()))["message"], "gone");
    }
}
