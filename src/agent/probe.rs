//! Liveness and readiness probes: httpGet, tcpSocket and exec.
//!
//! `Prober` holds the resolved target and timing of one probe and runs one
//! check at a time; `Tracker` is the pure threshold logic (consecutive
//! successes/failures) that turns checks into a verdict.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;

use super::runtime::{ExecTarget, Runtime};
use crate::model::types::Probe;

/// What a probe checks, resolved to an address or a command.
#[derive(Debug, Clone)]
pub enum Check {
    Http { addr: SocketAddr, path: String },
    Tcp { addr: SocketAddr },
    Exec { command: Vec<String> },
}

/// Timing of a probe, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i64>, d: i64| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive-result thresholds: pure.
#[derive(Debug, Clone, Copy)]
pub struct Tracker {
    successes: u32,
    failures: u32,
    healthy: bool,
}

impl Tracker {
    /// `initially_healthy`: liveness starts healthy, readiness does not.
    pub fn new(initially_healthy: bool) -> Tracker {
        Tracker { successes: 0, failures: 0, healthy: initially_healthy }
    }

    /// Records one check; returns the verdict after it.
    pub fn record(&mut self, ok: bool, t: &Timing) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= t.success_threshold {
                self.healthy = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= t.failure_threshold {
                self.healthy = false;
            }
        }
        self.healthy
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }
}

/// Runs one HTTP GET; success is a 2xx or 3xx status.
pub async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
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
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("GET http://{addr}{path}: timed out after {timeout:?}"))?
}

/// Runs one check. `Err` carries the reason for events.
pub async fn run_check(
    check: &Check,
    timeout: Duration,
    runtime: &Arc<dyn Runtime>,
    target: &ExecTarget,
) -> Result<(), String> {
    match check {
        Check::Http { addr, path } => http_get(*addr, path, timeout).await,
        Check::Tcp { addr } => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
            Err(_) => Err(format!("connect {addr}: timed out after {timeout:?}")),
        },
        Check::Exec { command } => match runtime.exec(target, command, timeout).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("command {command:?} exited with {code}")),
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let t = Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut ready = Tracker::new(false);
        assert!(!ready.record(true, &t));
        assert!(ready.record(true, &t));
        assert!(ready.record(false, &t));
        assert!(ready.record(false, &t));
        assert!(!ready.record(false, &t));
        let mut live = Tracker::new(true);
        assert!(live.record(false, &t) && live.record(false, &t));
        assert!(!live.record(false, &t));
    }

    #[tokio::test]
    async fn tcp_and_http_checks_fail_cleanly_on_closed_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(http_get(addr, "/", Duration::from_secs(1)).await.is_err());
    }
}
