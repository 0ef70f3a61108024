//! Running one probe check: HTTP GET, TCP connect or a command in the
//! container. I/O only; when to probe and what a result means is decided by
//! the agent core (`core::probe`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;

use crate::agent::runtime::{ExecTarget, Runtime};

/// Why a check failed, in words for the pod's events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// What a probe checks, resolved to an address or a command.
#[derive(Debug, Clone)]
pub enum Check {
    Http { addr: SocketAddr, path: String },
    Tcp { addr: SocketAddr },
    Exec { command: Vec<String> },
}

/// Runs one HTTP GET; success is a 2xx or 3xx status.
pub async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), CheckFailed> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .map_err(|e| format!("http handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::USER_AGENT, "shoal-probe")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
        let code = resp.status().as_u16();
        if (200..400).contains(&code) { Ok(()) } else { Err(format!("GET http://{addr}{path}: status {code}")) }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r.map_err(CheckFailed),
        Err(_) => Err(CheckFailed(format!("GET http://{addr}{path}: timed out after {timeout:?}"))),
    }
}

/// Runs one check. `Err` carries the reason for events.
pub async fn run_check(
    check: &Check,
    timeout: Duration,
    runtime: &Arc<dyn Runtime>,
    target: &ExecTarget,
) -> Result<(), CheckFailed> {
    match check {
        Check::Http { addr, path } => http_get(*addr, path, timeout).await,
        Check::Tcp { addr } => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CheckFailed(format!("connect {addr}: {e}"))),
            Err(_) => Err(CheckFailed(format!("connect {addr}: timed out after {timeout:?}"))),
        },
        Check::Exec { command } => match runtime.exec(target, command, timeout).await {
            Ok(0) => Ok(()),
            // Not the command itself: `$(VAR)` may have put a Secret's value in it.
            Ok(code) => Err(CheckFailed(format!("the probe's command exited with {code}"))),
            Err(e) => Err(CheckFailed(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_and_http_checks_fail_cleanly_on_closed_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(http_get(addr, "/", Duration::from_secs(1)).await.is_err());
    }
}
