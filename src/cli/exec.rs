//! `shoal exec POD -- CMD`: the client side of the API's exec (Kubernetes'
//! `v5.channel.k8s.io` over WebSocket), through any node. With `-t` this
//! terminal goes raw and its size follows the window; the command's exit
//! code becomes this process's.

use std::io::{IsTerminal, Read, Write};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use hyper::header::{self, HeaderMap, HeaderValue};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::CliError;
use super::args::ExecArgs;
use super::commands::client;
use crate::api::exec::PROTOCOLS;

pub async fn run(a: ExecArgs, pod: String) -> Result<(), CliError> {
    let tty = a.tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if a.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for c in &a.command {
        q.append_pair("command", c);
    }
    if let Some(c) = &a.container {
        q.append_pair("container", c);
    }
    q.append_pair("stdin", bool_str(a.stdin));
    q.append_pair("stdout", "true");
    q.append_pair("stderr", bool_str(!tty));
    q.append_pair("tty", bool_str(tty));
    let path = format!("/api/v1/namespaces/{}/pods/{pod}/exec?{}", a.namespace, q.finish());
    let mut headers = HeaderMap::new();
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(PROTOCOLS[0]));
    headers
        .insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).map_err(|e| CliError::Failed(e.to_string()))?);
    let c = client(&a.client).with_timeout(std::time::Duration::from_secs(30));
    let (_, resp) = c.send_with(Method::GET, &path, None, headers).await?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        // An error: the same request without the upgrade gets it as a Status.
        let code = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
        let status: crate::api::error::Status = serde_json::from_slice(&body)
            .map_err(|_| CliError::Failed(format!("exec: {code}: {}", String::from_utf8_lossy(&body))))?;
        return Err(crate::api::client::ClientError::Api { code, status: Box::new(status) }.into());
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| CliError::Failed(format!("exec: {e}")))?;
    let ws = WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(upgraded), Role::Client, None).await;
    let raw = if tty { RawMode::enter() } else { None };
    let code = session(ws, a.stdin, tty).await;
    drop(raw);
    match code? {
        0 => Ok(()),
        n => Err(CliError::Exited(n.clamp(1, 255) as u8)),
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

async fn session<S>(mut ws: WebSocketStream<S>, stdin: bool, tty: bool) -> Result<i32, CliError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let broken =
        |e: tokio_tungstenite::tungstenite::Error| CliError::Unreachable(format!("exec: connection lost: {e}"));
    let (input_tx, mut input) = mpsc::channel::<Option<Vec<u8>>>(16);
    if stdin {
        // A thread of its own: a read of stdin cannot be cancelled, and a
        // detached thread does not hold the process open at the end.
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut inp = std::io::stdin();
            loop {
                match inp.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = input_tx.blocking_send(None);
                        return;
                    }
                    Ok(n) => {
                        if input_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        drop(input_tx);
    }
    let mut winch = if tty {
        let size = terminal_size();
        if let Some(r) = size {
            ws.send(resize(r)).await.map_err(broken)?;
        }
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut stdin_open = stdin;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut code = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let data = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(broken(e)),
                };
                let Some((&channel, rest)) = data.split_first() else { continue };
                match channel {
                    1 => { let _ = out.write_all(rest); let _ = out.flush(); }
                    2 => { let _ = err.write_all(rest); let _ = err.flush(); }
                    3 => code = Some(exit_code(rest)),
                    _ => {}
                }
            }
            chunk = input.recv(), if stdin_open => {
                let msg = match chunk {
                    Some(Some(d)) => { let mut v = vec![0u8]; v.extend_from_slice(&d); v }
                    _ => { stdin_open = false; vec![255, 0] }
                };
                ws.send(Message::Binary(Bytes::from(msg))).await.map_err(broken)?;
            }
            Some(()) = async { match winch.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                if let Some(r) = terminal_size() {
                    ws.send(resize(r)).await.map_err(broken)?;
                }
            }
        }
    }
    code.unwrap_or_else(|| {
        Err(CliError::Unreachable("exec: the connection closed before the command's exit status came".into()))
    })
}

/// The exit code in exec's final status.
fn exit_code(status: &[u8]) -> Result<i32, CliError> {
    let v: serde_json::Value =
        serde_json::from_slice(status).map_err(|e| CliError::Failed(format!("exec: unreadable status: {e}")))?;
    match v["status"].as_str() {
        Some("Success") => Ok(0),
        _ if v["reason"] == "NonZeroExitCode" => Ok(v["details"]["causes"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
            .unwrap_or(1)),
        _ => Err(CliError::Failed(v["message"].as_str().unwrap_or("exec failed").to_string())),
    }
}

fn resize((width, height): (u16, u16)) -> Message {
    let mut v = vec![4u8];
    v.extend_from_slice(serde_json::json!({"Width": width, "Height": height}).to_string().as_bytes());
    Message::Binary(Bytes::from(v))
}

/// This terminal's columns and rows.
fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize through a valid pointer.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ as _, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// This terminal in raw mode (keys go to the command as typed) until dropped.
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let saved = tcgetattr(std::io::stdin()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_status_gives_the_exit_code() {
        let st = |code| serde_json::to_vec(&crate::api::exec::status(&code)).unwrap();
        assert_eq!(exit_code(&st(Ok(0))).unwrap(), 0);
        assert_eq!(exit_code(&st(Ok(42))).unwrap(), 42);
        let e = exit_code(&st(Err("no such container".into()))).unwrap_err();
        assert!(e.to_string().contains("no such container"), "{e}");
    }
}
