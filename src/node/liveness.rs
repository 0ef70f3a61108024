//! The liveness port over TCP, on the gossip port's number (QUIC has the
//! UDP side of it): a node answers each connection with its hello and then
//! holds it, idle, until its process ends; a watcher connects and waits.
//!
//! What the kernel does is the whole point (`membership::watch`): when the
//! process dies its connections are closed (FIN) at once and new ones are
//! refused (RST); when the host dies or the process is only paused, the
//! connection just stays quiet. TCP keepalive (`KEEPALIVE_*`) clears a
//! connection whose host vanished, so that the watcher tries again.
//!
//! The port is unauthenticated and says only a cluster tag, a name and a
//! generation. It is bounded (`MAX_HELD` connections, `MAX_PER_SOURCE` from
//! one address, so that one stranger cannot take the watchers' room;
//! `MAX_HELLO` bytes, every read and write under a timeout), and a peer that
//! sends anything is disconnected.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::membership::watch::{Hello, Liveness, MAX_HELLO, Probe};

/// Connections a node holds for its watchers (a node has `WATCHERS`; the
/// rest is room for restarts and strangers).
pub const MAX_HELD: usize = 256;
/// Connections held for one source address (a node has at most `WATCHERS`
/// watchers, all on other hosts unless a test runs several nodes on one
/// address; the rest is room for their restarts).
pub const MAX_PER_SOURCE: usize = 16;
/// How long a connection attempt or a hello may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle time before keepalive probes start, and their interval.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Why the liveness port could not open.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the liveness port {addr}/tcp: {source} (peers will notice a crash of this node by its silence, in about 3 s, instead of at once; free the TCP port with the gossip port's number)"
)]
pub struct ServeError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

fn keepalive(s: &TcpStream) {
    let ka = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE).with_interval(KEEPALIVE_INTERVAL);
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
}

/// Binds the liveness port at `addr` and serves `hello` on it, with the
/// time of `clock_ms` (unix ms) as each connection is answered.
pub fn serve(addr: SocketAddr, hello: Hello, clock_ms: fn() -> u64) -> Result<JoinHandle<()>, ServeError> {
    let std = std::net::TcpListener::bind(addr).map_err(|source| ServeError { addr, source })?;
    std.set_nonblocking(true).map_err(|source| ServeError { addr, source })?;
    let listener = TcpListener::from_std(std).map_err(|source| ServeError { addr, source })?;
    let slots = Arc::new(Semaphore::new(MAX_HELD));
    let per_source: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    // The held connections are tasks of this one: aborting it closes them
    // all, as the process's death would.
    Ok(tokio::spawn(async move {
        let mut held = tokio::task::JoinSet::new();
        loop {
            let Ok((mut s, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            while held.try_join_next().is_some() {}
            let Some(source) = SourceSlot::take(&per_source, from.ip()) else {
                continue; // dropped: closed at once
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let line = Hello { time_ms: Some(clock_ms()), ..hello.clone() }.encode().into_bytes();
            held.spawn(async move {
                let _slot = (slot, source);
                keepalive(&s);
                if tokio::time::timeout(PROBE_TIMEOUT, s.write_all(&line)).await.is_err() {
                    return;
                }
                // Hold until the watcher goes (EOF or error) or sends anything.
                let mut b = [0u8; 16];
                let _ = s.read(&mut b).await;
            });
        }
    }))
}

/// One held connection's place in its source address's count.
struct SourceSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceSlot {
    /// A place for a connection from `ip`, if it holds fewer than
    /// `MAX_PER_SOURCE`.
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<SourceSlot> {
        let mut m = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        (*n < MAX_PER_SOURCE).then(|| {
            *n += 1;
            SourceSlot { counts: counts.clone(), ip }
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Watches over real TCP.
pub struct TcpLiveness;

#[async_trait]
impl Liveness for TcpLiveness {
    async fn probe(&self, peer: SocketAddr) -> Probe {
        let s = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(peer)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
            _ => return Probe::NoAnswer,
        };
        keepalive(&s);
        match tokio::time::timeout(PROBE_TIMEOUT, read_hello(s)).await {
            Ok(Some((hello, s))) => Probe::Answered { hello, held: Box::pin(hold(s)) },
            _ => Probe::NoAnswer,
        }
    }
}

/// Reads one hello line (at most `MAX_HELLO` bytes).
async fn read_hello(mut s: TcpStream) -> Option<(Hello, TcpStream)> {
    let mut buf = Vec::with_capacity(64);
    let mut b = [0u8; 128];
    loop {
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(end) = buf.iter().position(|c| *c == b'\n') {
            return Some((Hello::decode(&buf[..=end]).ok()?, s));
        }
        if buf.len() > MAX_HELLO {
            return None;
        }
    }
}

/// Resolves when the connection ends (closed, reset, or keepalive failed).
async fn hold(mut s: TcpStream) {
    let mut b = [0u8; 64];
    while let Ok(n) = s.read(&mut b).await {
        if n == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::watch::cluster_tag;

    fn hello(generation: u64) -> Hello {
        Hello { cluster: cluster_tag("c"), name: "n1".into(), generation, time_ms: None }
    }

    fn clock() -> u64 {
        42
    }

    async fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_port_answers_holds_and_is_refused_once_closed() {
        let addr = free_addr().await;
        let server = serve(addr, hello(7), clock).unwrap();
        let Probe::Answered { hello: h, held } = TcpLiveness.probe(addr).await else { panic!("no answer") };
        assert_eq!(h, Hello { time_ms: Some(42), ..hello(7) });
        // The process "dies": its connections close and its port refuses.
        server.abort();
        tokio::time::timeout(Duration::from_secs(5), held).await.expect("the held connection ends");
        assert!(matches!(TcpLiveness.probe(addr).await, Probe::Refused));
    }

    #[tokio::test]
    async fn something_else_on_the_port_is_no_answer() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        assert!(matches!(TcpLiveness.probe(addr).await, Probe::NoAnswer));
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_place() {
        let addr = free_addr().await;
        let _server = serve(addr, hello(7), clock).unwrap();
        let mut held = Vec::new();
        for _ in 0..MAX_PER_SOURCE {
            let Probe::Answered { held: h, .. } = TcpLiveness.probe(addr).await else { panic!("no answer") };
            held.push(h);
        }
        assert!(matches!(TcpLiveness.probe(addr).await, Probe::NoAnswer), "one more from the same address is closed");
        // Another address is still answered.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = sock.connect(addr).await.unwrap();
        let mut b = [0u8; 128];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await.unwrap().unwrap();
        assert!(Hello::decode(&b[..n]).is_ok(), "{:?}", String::from_utf8_lossy(&b[..n]));
        // A place is given back when its connection ends.
        held.pop();
        let again = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Probe::Answered { held: h, .. } = TcpLiveness.probe(addr).await {
                    return Some(h);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        held.push(again.await.ok().flatten().expect("answered again once a place was free"));
    }
}
