//! A minimal HTTP/1.1 backend for the proxy benchmarks (`bench/proxy.py`):
//! answers every request with `ok` after `$DELAY_MS` milliseconds
//! (`$SLOW_DELAY_MS` when the pod name ends with `$SLOW_POD`), on
//! `$SHOAL_NODE_IP:$PORT`, keep-alive honoured. Not part of Shoal.
//!
//! `cargo build --release --example bench_backend`

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let ip = std::env::var("SHOAL_NODE_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let ms = |k: &str| std::env::var(k).ok().and_then(|d| d.parse().ok()).unwrap_or(0);
    let pod = std::env::var("SHOAL_POD_NAME").unwrap_or_default();
    let slow = std::env::var("SLOW_POD").is_ok_and(|s| !s.is_empty() && pod.ends_with(&s));
    let delay = Duration::from_millis(if slow { ms("SLOW_DELAY_MS") } else { ms("DELAY_MS") });
    let l = tokio::net::TcpListener::bind(format!("{ip}:{port}")).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 8192];
            let mut have = 0;
            loop {
                let n = match s.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                have += n;
                // Answer each complete request head.
                while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                    let close = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase().contains("connection: close");
                    buf.copy_within(end + 4..have, 0);
                    have -= end + 4;
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let hdr = if close { "Connection: close\r\n" } else { "" };
                    if s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{hdr}\r\nok").as_bytes())
                        .await
                        .is_err()
                        || close
                    {
                        return;
                    }
                }
                if have == buf.len() {
                    return;
                }
            }
        });
    }
}
