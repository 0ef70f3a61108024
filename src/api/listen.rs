//! The API port: HTTPS, with a certificate of the cluster CA, and plain
//! HTTP on the same port for the clients `PlainHttp` allows (by default
//! only this host's own, over loopback).
//!
//! A connection's first byte tells the two apart: a TLS ClientHello opens
//! with a handshake record (0x16); an HTTP request opens with a method
//! name. A plain-HTTP client the policy refuses gets one HTTP answer that
//! says what to do instead, not a bare reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::net::PlainHttp;

/// A TLS handshake record's first byte.
const TLS_HANDSHAKE: u8 = 0x16;

/// How long a client may take to send its first byte, or its handshake.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// After refusing plain HTTP, how long and how many bytes of the client's
/// request are read and dropped before the connection closes.
pub const LINGER: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 64 << 10;

/// What the port speaks.
#[derive(Clone)]
pub struct Listen {
    pub tls: Arc<rustls::ServerConfig>,
    pub plain: PlainHttp,
}

/// What a connection opens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Tls,
    Plain,
}

/// Tells a TLS ClientHello from anything else by its first byte. Pure.
pub fn opening(first: u8) -> Opening {
    if first == TLS_HANDSHAKE { Opening::Tls } else { Opening::Plain }
}

/// The answer to a plain-HTTP client the policy refuses.
pub fn refusal(port: u16) -> String {
    let msg = format!(
        "this API speaks HTTPS: use https://HOST:{port} and the cluster CA (`shoal kubeconfig` writes both for kubectl; the shoal CLI finds the CA in the data dir, or takes --ca-file). Plain HTTP is served to this host's own clients only (api_plain_http)"
    );
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": msg, "reason": "BadRequest", "code": 400
    })
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    listen: Listen,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(listen.tls.clone());
    let port = listener.local_addr()?.port();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // (The guard `wait_for` returns is not Send: drop it inside.)
            _ = async { drop(shutdown.wait_for(|s| *s).await) } => return Ok(()),
        };
        let (app, acceptor, plain) = (app.clone(), acceptor.clone(), listen.plain);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Err(e) = connection(stream, peer, app, acceptor, plain, port).await {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    plain: PlainHttp,
    port: u16,
) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    if n == 0 {
        return Ok(());
    }
    match opening(first[0]) {
        Opening::Tls => {
            let tls = tokio::time::timeout(FIRST_BYTE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            http1(TokioIo::new(tls), peer, app).await
        }
        Opening::Plain if plain.allows(peer.ip()) => http1(TokioIo::new(stream), peer, app).await,
        Opening::Plain => {
            stream.write_all(refusal(port).as_bytes()).await?;
            stream.shutdown().await?;
            // A lingering close: read what the client still sends (the rest
            // of its request) before closing. Closing with unread bytes
            // resets the connection, and the reset can destroy the refusal
            // before the client reads it (or fail the client's write).
            let mut sink = [0u8; 4096];
            let mut left = LINGER_BYTES;
            let _ = tokio::time::timeout(LINGER, async {
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
            Ok(())
        }
    }
}

/// HTTP/1.1 on one connection; handlers see the peer as `ConnectInfo`.
async fn http1<I>(io: I, peer: SocketAddr, app: Router) -> std::io::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades()
        .await
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_is_told_from_an_http_request() {
        assert_eq!(opening(0x16), Opening::Tls);
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
            assert_eq!(opening(m.as_bytes()[0]), Opening::Plain, "{m}");
        }
    }

    #[test]
    fn plain_http_is_for_loopback_unless_opted_in() {
        let lo: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        let lan: std::net::IpAddr = "192.168.1.20".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(PlainHttp::Loopback.allows(lo) && PlainHttp::Loopback.allows(mapped));
        assert!(!PlainHttp::Loopback.allows(lan));
        assert!(!PlainHttp::Off.allows(lo));
        assert!(PlainHttp::Any.allows(lan));
    }

    #[test]
    fn the_refusal_is_one_http_answer_that_says_what_to_do() {
        let r = refusal(7420);
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["kind"], "Status");
        assert!(v["message"].as_str().unwrap().contains("https://HOST:7420"));
    }
}
