//! The UDP side of the service proxy: one socket per UDP service port (its
//! node port, on the node IP), relaying datagrams to Ready endpoints.
//!
//! Each client flow (`flows`) gets its own upstream socket, bound to the
//! node IP and connected to the flow's backend, so that the backend's
//! replies map back to the client; a task per flow relays them from the node
//! port. The backend is picked per flow by the same rule as TCP
//! connections (`balance`): a flow's *outstanding* is an unanswered
//! datagram, its latency the time to the first reply.
//!
//! A backend that refuses a datagram (ICMP port unreachable: its process is
//! gone) loses the flow, and the flow's last unanswered datagram is sent
//! again to another endpoint, up to `MAX_ATTEMPTS` backends, so a query
//! caught by a crash is answered anyway. A backend that stops being a Ready
//! endpoint (its pod stopped, its node declared dead) loses its flows at
//! their next datagram. Silence alone never moves a flow: many UDP
//! protocols (syslog, metrics) never answer.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::flows::{Flow, Flows, Route};
use super::server::{MAX_ATTEMPTS, ProxyConfig, Table, Verdict, pick, settle};
use crate::metrics::Metrics;

/// Largest datagram relayed (the UDP maximum over IPv4).
const MAX_DATAGRAM: usize = 65_507;
/// Largest datagram kept for a resend when its backend refuses it.
const MAX_KEPT: usize = 4096;
/// How often idle flows are swept.
const SWEEP: Duration = Duration::from_secs(1);

type Key = (String, u16);

/// A flow's upstream: the connected socket and its reply relay.
pub struct Upstream {
    sock: Arc<UdpSocket>,
    pending: Arc<Mutex<Pending>>,
    relay: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// The flow's oldest unanswered datagram: when it was sent, and (if small
/// enough) the newest one, to resend if the backend refuses it.
#[derive(Default)]
struct Pending {
    since: Option<Instant>,
    last: Option<Vec<u8>>,
}

/// One UDP service port.
struct Port {
    sock: Arc<UdpSocket>,
    table: Arc<Mutex<Table>>,
    flows: Mutex<Flows<Key, Upstream>>,
    cfg: ProxyConfig,
    svc: String,
    metrics: Arc<Metrics>,
    /// Datagrams refused by their flow's backend, to send again (by the
    /// port's task: a relay cannot, it is stopped with its flow).
    resend: mpsc::UnboundedSender<(Vec<u8>, SocketAddr, Key)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves one UDP service port until aborted.
pub async fn serve_port(
    sock: UdpSocket,
    table: Arc<Mutex<Table>>,
    cfg: ProxyConfig,
    svc: String,
    metrics: Arc<Metrics>,
) {
    let flows = Mutex::new(Flows::new(cfg.udp_max_flows, cfg.udp_idle_timeout));
    let (resend, mut refused) = mpsc::unbounded_channel();
    let port = Arc::new(Port { sock: Arc::new(sock), table, flows, cfg, svc, metrics, resend });
    // Relays hold the port; its flows hold the relays. When this task is
    // aborted (the service or port is gone), the guard drops the flows,
    // which stops the relays, so the node port's socket is closed.
    let _guard = CloseOnDrop(port.clone());
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        tokio::select! {
            r = port.sock.recv_from(&mut buf) => match r {
                Ok((n, client)) => port.forward(&buf[..n], client, Vec::new()).await,
                // A refusal reported on the unconnected socket (an ICMP
                // error for a reply to a client that left): nothing to do.
                Err(_) => continue,
            },
            Some((data, client, tried)) = refused.recv() => port.forward(&data, client, vec![tried]).await,
            _ = sweep.tick() => port.sweep(),
        }
    }
}

struct CloseOnDrop(Arc<Port>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let gone = lock(&self.0.flows).clear();
        drop(gone);
    }
}

impl Port {
    fn count(&self, outcome: &str) {
        self.metrics
            .proxy_udp_flows
            .get_or_create(&vec![("service".into(), self.svc.clone()), ("outcome".into(), outcome.into())])
            .inc();
    }

    fn is_live(&self, k: &Key) -> bool {
        lock(&self.table).endpoints.iter().any(|e| e.ip == k.0 && e.port == k.1)
    }

    /// Relays one client datagram; `tried` are backends that refused it.
    async fn forward(self: &Arc<Self>, data: &[u8], client: SocketAddr, mut tried: Vec<Key>) {
        let now = Instant::now();
        let (route, dropped) = lock(&self.flows).route(client, now, |k| self.is_live(k) && !tried.contains(k));
        self.close(dropped.into_iter().collect());
        if let Route::Existing(k) = &route {
            let up = lock(&self.flows).get(&client).map(|f| (f.conn.sock.clone(), f.conn.pending.clone()));
            if let Some((sock, pending)) = up {
                self.mark_pending(k, &pending, data, now);
                match sock.send(data).await {
                    Ok(_) => return,
                    Err(e) if refused(&e) => {
                        self.refused(client, k);
                        tried.push(k.clone());
                    }
                    Err(_) => return, // a transient send error: UDP may drop
                }
            }
        }
        if let Route::New { moved_from: Some(_) } = route {
            self.count("moved");
        }
        while tried.len() < MAX_ATTEMPTS {
            let Some(e) = pick(&self.table, &tried, self.cfg.round_robin, Some(client.ip())) else { break };
            let key: Key = (e.ip.clone(), e.port);
            match self.open(&e.ip, e.port, client, key.clone(), data).await {
                Ok(up) => {
                    let replaced = lock(&self.flows).insert(client, key, up, Instant::now());
                    self.close(replaced);
                    self.count(if tried.is_empty() { "new" } else { "retried" });
                    return;
                }
                Err(_) => {
                    settle(&self.table, &key, Verdict::Failed);
                    tried.push(key);
                }
            }
        }
        self.count(if tried.is_empty() { "no_endpoints" } else { "refused" });
    }

    /// Opens a flow's upstream to `ip:port` and sends its first datagram
    /// (the endpoint is already counted outstanding by `pick`).
    async fn open(
        self: &Arc<Self>,
        ip: &str,
        port: u16,
        client: SocketAddr,
        key: Key,
        data: &[u8],
    ) -> std::io::Result<Upstream> {
        let ip: IpAddr = ip.parse().map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "endpoint IP"))?;
        let sock = UdpSocket::bind(SocketAddr::new(self.cfg.node_ip, 0)).await?;
        sock.connect(SocketAddr::new(ip, port)).await?;
        let sock = Arc::new(sock);
        let kept = (data.len() <= MAX_KEPT).then(|| data.to_vec());
        let pending = Arc::new(Mutex::new(Pending { since: Some(Instant::now()), last: kept }));
        sock.send(data).await?;
        let relay = tokio::spawn(self.clone().relay(sock.clone(), pending.clone(), client, key));
        Ok(Upstream { sock, pending, relay })
    }

    /// Counts a datagram on an existing flow outstanding (if it is the
    /// flow's first unanswered one) and keeps it for a resend.
    fn mark_pending(&self, k: &Key, pending: &Mutex<Pending>, data: &[u8], now: Instant) {
        let mut p = lock(pending);
        p.last = (data.len() <= MAX_KEPT).then(|| data.to_vec());
        if p.since.is_none() {
            p.since = Some(now);
            let mut t = lock(&self.table);
            if let Some(s) = t.stats.get_mut(k) {
                s.outstanding += 1;
            }
        }
    }

    /// Relays a flow's replies to its client from the node port.
    async fn relay(self: Arc<Self>, up: Arc<UdpSocket>, pending: Arc<Mutex<Pending>>, client: SocketAddr, key: Key) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match up.recv(&mut buf).await {
                Ok(n) => {
                    let now = Instant::now();
                    let since = {
                        let mut p = lock(&pending);
                        p.last = None;
                        p.since.take()
                    };
                    if let Some(t) = since {
                        settle(&self.table, &key, Verdict::Latency(now - t));
                    }
                    lock(&self.flows).touch(&client, now);
                    let _ = self.sock.send_to(&buf[..n], client).await;
                }
                Err(e) if refused(&e) => {
                    // The backend is gone: the unanswered datagram is sent
                    // again elsewhere, by the port's task (removing the
                    // flow stops this one).
                    if let Some(data) = lock(&pending).last.take() {
                        let _ = self.resend.send((data, client, key.clone()));
                    }
                    self.refused(client, &key);
                    return;
                }
                Err(_) => continue,
            }
        }
    }

    /// `client`'s flow was refused by `key`: the flow goes, the backend is
    /// penalised.
    fn refused(&self, client: SocketAddr, key: &Key) {
        let gone = {
            let mut f = lock(&self.flows);
            // Only if the flow still goes to that backend.
            if f.get(&client).is_some_and(|fl| fl.backend == *key) { f.fail(&client) } else { None }
        };
        if let Some(g) = gone {
            let was_pending = lock(&g.conn.pending).since.take().is_some();
            let mut t = lock(&self.table);
            if let Some(s) = t.stats.get_mut(key) {
                if was_pending {
                    s.outstanding = s.outstanding.saturating_sub(1);
                }
                s.fail(Instant::now());
            }
            drop(t);
            self.count("backend_refused");
            // Dropped last, outside the locks: it aborts the relay (maybe
            // the caller itself, which does nothing after this).
            drop(g);
        }
    }

    fn sweep(&self) {
        let gone = lock(&self.flows).expire(Instant::now());
        self.close(gone);
    }

    /// Closes flows removed from the table: an unanswered one stops
    /// counting as outstanding (without a verdict: silence is not failure).
    fn close(&self, gone: Vec<(SocketAddr, Flow<Key, Upstream>)>) {
        for (_, f) in gone {
            if lock(&f.conn.pending).since.take().is_some() {
                settle(&self.table, &f.backend, Verdict::Neutral);
            }
        }
    }
}

fn refused(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::ConnectionRefused
}

#[cfg(test)]
mod tests;
