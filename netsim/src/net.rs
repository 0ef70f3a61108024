//! The simulated network: latency, loss, duplication, reordering,
//! partitions and dead nodes, driven by the run's seeded RNG.
//!
//! Gossip goes through chitchat's `Transport` trait, encoded and decoded with
//! chitchat's own message encoding; state replication goes through Shoal's
//! `Rpc` trait to the real `SyncService` of the peer; liveness watches go
//! through Shoal's `Liveness` trait, with what a kernel would do: a port
//! whose process died refuses and closes its connections, a dead, frozen
//! or cut-off host does not answer. Nothing here knows what the messages
//! mean.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::membership::swim::link::Link;
use shoal::membership::watch::{Hello, Liveness, Probe};
use shoal::node::assembly::Network as NodeNetwork;
use shoal::state::sync::{Rpc, RpcError, SyncService};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::scenario::Network;

/// How long a request to an unreachable peer takes to fail.
pub const RPC_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a liveness probe waits for an answer (as `node::liveness`).
pub const PROBE_TIMEOUT: Duration = shoal::node::liveness::PROBE_TIMEOUT;
/// Bytes a liveness probe costs (handshake and hello; a held connection
/// is idle).
pub const PROBE_BYTES: usize = 120;

/// A liveness port's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Open,
    /// The process died on a running host: connections closed at once.
    Closed,
    /// The host died with it: nothing was sent.
    Vanished,
}
/// Largest gossip message accepted (Shoal's QUIC frame limit).
pub const MAX_GOSSIP_BYTES: usize = shoal::net::quic::MAX_GOSSIP_FRAME;

/// Traffic of one node.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub sent_bytes: u64,
    pub sent_messages: u64,
    pub oversized: u64,
    /// Largest digest message (chitchat Syn) sent: the part of gossip that
    /// grows with the cluster (one entry per known node).
    pub max_syn_bytes: u64,
}

struct State {
    rng: StdRng,
    model: Network,
    /// (from, to) pairs whose traffic is dropped.
    blocked: HashSet<(SocketAddr, SocketAddr)>,
    /// Crashed or paused nodes: nothing in, nothing out.
    down: HashSet<SocketAddr>,
    /// Hosts that do not answer at all (crashed, or frozen whole).
    silent: HashSet<SocketAddr>,
    /// Liveness ports, by address: the hello and the port's process.
    ports: HashMap<SocketAddr, (Hello, tokio::sync::watch::Sender<Port>)>,
    inboxes: HashMap<SocketAddr, mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>>,
    services: HashMap<SocketAddr, Arc<SyncService>>,
    traffic: HashMap<SocketAddr, Traffic>,
    /// Gossip in flight, earliest first (see `courier`).
    in_flight: BinaryHeap<Reverse<Parcel>>,
    /// Parcels queued so far: orders those due at one instant.
    parcels: u64,
    courier: bool,
}

/// One gossip message in flight, due at `at`.
struct Parcel {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Parcel {
    fn eq(&self, other: &Parcel) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Parcel {}

impl PartialOrd for Parcel {
    fn partial_cmp(&self, other: &Parcel) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Parcel {
    fn cmp(&self, other: &Parcel) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The network every simulated node is attached to.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
    /// Wakes the courier when a parcel due before its next one is queued.
    wake: Arc<Notify>,
}

impl SimNet {
    pub fn new(seed: u64, model: Network) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(State {
                rng: StdRng::seed_from_u64(seed ^ 0x6e65_7473_696d),
                model,
                blocked: HashSet::new(),
                down: HashSet::new(),
                silent: HashSet::new(),
                ports: HashMap::new(),
                inboxes: HashMap::new(),
                services: HashMap::new(),
                traffic: HashMap::new(),
                in_flight: BinaryHeap::new(),
                parcels: 0,
                courier: false,
            })),
            wake: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_down(&self, addr: SocketAddr, down: bool) {
        let mut s = self.lock();
        if down {
            s.down.insert(addr);
        } else {
            s.down.remove(&addr);
        }
    }

    /// Whether the host at `addr` answers nothing (crashed or frozen whole).
    pub fn set_silent(&self, addr: SocketAddr, silent: bool) {
        let mut s = self.lock();
        if silent {
            s.silent.insert(addr);
        } else {
            s.silent.remove(&addr);
        }
    }

    /// The process behind a liveness port ends: `Closed` when its host
    /// runs on (watchers see it at once), `Vanished` when the host died.
    pub fn close_port(&self, addr: SocketAddr, how: Port) {
        if let Some((_, tx)) = self.lock().ports.remove(&addr) {
            tx.send_replace(how);
        }
    }

    /// Drops traffic from every node of `a` to every node of `b` (one way).
    pub fn block(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut s = self.lock();
        for x in a {
            for y in b {
                s.blocked.insert((*x, *y));
            }
        }
    }

    pub fn heal(&self) {
        self.lock().blocked.clear();
    }

    pub fn partitioned(&self) -> bool {
        !self.lock().blocked.is_empty()
    }

    /// Whether `from` can currently reach `to`.
    pub fn reachable(&self, from: SocketAddr, to: SocketAddr) -> bool {
        let s = self.lock();
        !s.down.contains(&from) && !s.down.contains(&to) && !s.blocked.contains(&(from, to))
    }

    pub fn register_service(&self, addr: SocketAddr, svc: Arc<SyncService>) {
        self.lock().services.insert(addr, svc);
    }

    pub fn traffic(&self) -> HashMap<SocketAddr, Traffic> {
        self.lock().traffic.clone()
    }

    /// Decides the fate of one message: `None` when lost, else its delays
    /// (two when duplicated).
    fn route(&self, from: SocketAddr, to: SocketAddr, len: usize) -> Option<Vec<Duration>> {
        let mut s = self.lock();
        let t = s.traffic.entry(from).or_default();
        t.sent_bytes += len as u64;
        t.sent_messages += 1;
        if s.down.contains(&from) || s.down.contains(&to) {
            return None;
        }
        Self::path(&mut s, from, to)
    }

    /// The fate of a packet on the path from `from` to `to`, whatever runs
    /// at either end: `None` when cut or lost.
    fn path(s: &mut State, from: SocketAddr, to: SocketAddr) -> Option<Vec<Duration>> {
        if s.blocked.contains(&(from, to)) {
            return None;
        }
        let m = s.model.clone();
        if m.loss > 0.0 && s.rng.random_bool(m.loss) {
            return None;
        }
        let one = |s: &mut State| {
            let mut ms = if m.latency_max_ms > m.latency_min_ms {
                s.rng.random_range(m.latency_min_ms..m.latency_max_ms)
            } else {
                m.latency_min_ms
            };
            if m.reorder > 0.0 && s.rng.random_bool(m.reorder) {
                ms += s.rng.random_range(0.0..(m.latency_max_ms * 10.0).max(1.0));
            }
            Duration::from_micros((ms * 1000.0) as u64)
        };
        let mut delays = vec![one(s)];
        if m.duplicate > 0.0 && s.rng.random_bool(m.duplicate) {
            delays.push(one(s));
        }
        Some(delays)
    }

    /// Sends a gossip message: delivered after its latency if still deliverable.
    fn send_gossip(&self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if bytes.len() > MAX_GOSSIP_BYTES {
            self.lock().traffic.entry(from).or_default().oversized += 1;
            return;
        }
        let Some(delays) = self.route(from, to, bytes.len()) else { return };
        let now = Instant::now();
        let mut s = self.lock();
        if !s.courier {
            s.courier = true;
            tokio::spawn(self.clone().courier());
        }
        let earliest = s.in_flight.peek().map(|Reverse(p)| p.at);
        for d in delays {
            let at = now + d;
            s.parcels += 1;
            let seq = s.parcels;
            if earliest.is_none_or(|e| at < e) {
                self.wake.notify_one();
            }
            s.in_flight.push(Reverse(Parcel { at, seq, from, to, bytes: bytes.clone() }));
        }
    }

    /// Delivers the gossip in flight, each message when it is due, if its
    /// path is still open then. One task and one timer for the network
    /// rather than one of each per message: at 100 nodes an hour sends
    /// about three million.
    async fn courier(self) {
        loop {
            let next = self.lock().in_flight.peek().map(|Reverse(p)| p.at);
            match next {
                Some(at) if at > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                Some(_) => {}
                None => self.wake.notified().await,
            }
            let now = Instant::now();
            loop {
                let parcel = {
                    let mut s = self.lock();
                    let Some(due) = s.in_flight.peek_mut().filter(|top| top.0.at <= now) else { break };
                    let Reverse(p) = std::collections::binary_heap::PeekMut::pop(due);
                    if s.down.contains(&p.to) || s.blocked.contains(&(p.from, p.to)) {
                        continue;
                    }
                    s.inboxes.get(&p.to).cloned().map(|tx| (tx, p))
                };
                if let Some((tx, p)) = parcel {
                    let _ = tx.send((p.from, p.bytes));
                }
            }
        }
    }

    /// A watcher at `me` connects to the liveness port at `peer`.
    async fn probe(&self, me: SocketAddr, peer: SocketAddr) -> Probe {
        let answer = {
            let mut s = self.lock();
            let t = s.traffic.entry(me).or_default();
            t.sent_bytes += PROBE_BYTES as u64;
            t.sent_messages += 1;
            let there = Self::path(&mut s, me, peer);
            let back = Self::path(&mut s, peer, me);
            match (there, back) {
                _ if s.down.contains(&me) || s.silent.contains(&peer) => None,
                (Some(a), Some(b)) => {
                    Some((a[0] + b[0], s.ports.get(&peer).map(|(h, tx)| (h.clone(), tx.subscribe()))))
                }
                _ => None,
            }
        };
        let Some((rtt, port)) = answer else {
            tokio::time::sleep(PROBE_TIMEOUT).await;
            return Probe::NoAnswer;
        };
        tokio::time::sleep(rtt).await;
        let Some((hello, mut rx)) = port else { return Probe::Refused };
        let hello = Hello { time_ms: Some(crate::clock::unix_millis()), ..hello };
        if *rx.borrow() != Port::Open {
            return Probe::Refused;
        }
        let (net, latency) = (self.clone(), rtt / 2);
        let held = async move {
            loop {
                let how = rx.wait_for(|p| *p != Port::Open).await.map(|p| *p).unwrap_or(Port::Vanished);
                if how == Port::Vanished {
                    return std::future::pending().await;
                }
                // The FIN crosses the path (retried while it is cut).
                if Self::path(&mut net.lock(), peer, me).is_some() {
                    tokio::time::sleep(latency).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        Probe::Answered { hello, held: Box::pin(held) }
    }

    /// The network as node `me` sees it (for the node assembly).
    pub fn attach(&self, me: SocketAddr) -> SimNetwork {
        SimNetwork { transport: SimTransport { net: self.clone() }, net: self.clone(), me }
    }
}

/// One node's attachment to the simulated network.
pub struct SimNetwork {
    transport: SimTransport,
    net: SimNet,
    me: SocketAddr,
}

impl NodeNetwork for SimNetwork {
    fn gossip(&self) -> &dyn Transport {
        &self.transport
    }
    fn link(&self) -> Arc<dyn Link> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.net.lock().inboxes.insert(self.me, tx);
        Arc::new(SimLink { net: self.net.clone(), me: self.me, rx: tokio::sync::Mutex::new(rx) })
    }
    fn rpc(&self) -> Arc<dyn Rpc> {
        Arc::new(SimRpc { net: self.net.clone(), me: self.me })
    }
    fn serve_sync(&self, svc: Arc<SyncService>) {
        self.net.register_service(self.me, svc);
    }
    fn liveness(&self) -> Arc<dyn Liveness> {
        Arc::new(SimLiveness { net: self.net.clone(), me: self.me })
    }
    fn serve_liveness(&self, hello: Hello) {
        let (tx, _) = tokio::sync::watch::channel(Port::Open);
        self.net.lock().ports.insert(self.me, (hello, tx));
    }
}

/// Liveness watches on the simulated network.
struct SimLiveness {
    net: SimNet,
    me: SocketAddr,
}

#[async_trait]
impl Liveness for SimLiveness {
    async fn probe(&self, peer: SocketAddr) -> Probe {
        self.net.probe(self.me, peer).await
    }
}

/// SWIM's frames on the simulated network (the same path as chitchat's).
struct SimLink {
    net: SimNet,
    me: SocketAddr,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>>,
}

#[async_trait]
impl Link for SimLink {
    fn send(&self, to: SocketAddr, frame: Vec<u8>) {
        self.net.send_gossip(self.me, to, frame);
    }

    async fn recv(&self) -> Option<(SocketAddr, Vec<u8>)> {
        self.rx.lock().await.recv().await
    }
}

/// chitchat's transport on the simulated network.
struct SimTransport {
    net: SimNet,
}

#[async_trait]
impl Transport for SimTransport {
    async fn open(&self, addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.net.lock().inboxes.insert(addr, tx);
        Ok(Box::new(SimSocket { net: self.net.clone(), me: addr, rx, buf: Vec::new() }))
    }
}

struct SimSocket {
    net: SimNet,
    me: SocketAddr,
    rx: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    buf: Vec<u8>,
}

#[async_trait]
impl Socket for SimSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        self.buf.clear();
        msg.serialize(&mut self.buf);
        if matches!(msg, ChitchatMessage::Syn { .. }) {
            let mut s = self.net.lock();
            let t = s.traffic.entry(self.me).or_default();
            t.max_syn_bytes = t.max_syn_bytes.max(self.buf.len() as u64);
        }
        self.net.send_gossip(self.me, to, self.buf.clone());
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, bytes) = self.rx.recv().await.ok_or_else(|| anyhow::anyhow!("network closed"))?;
            let mut b = bytes.as_slice();
            if let Ok(m) = ChitchatMessage::deserialize(&mut b) {
                return Ok((from, m));
            }
        }
    }
}

/// Shoal's replication RPC on the simulated network.
struct SimRpc {
    net: SimNet,
    me: SocketAddr,
}

#[async_trait]
impl Rpc for SimRpc {
    async fn call(&self, peer: SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let Some(there) = self.net.route(self.me, peer, request.len()) else {
            tokio::time::sleep(RPC_TIMEOUT).await;
            return Err(RpcError(format!("{peer}: timed out")));
        };
        tokio::time::sleep(there[0]).await;
        let svc = self.net.lock().services.get(&peer).cloned();
        let Some(svc) = svc.filter(|_| self.net.reachable(self.me, peer)) else {
            tokio::time::sleep(RPC_TIMEOUT).await;
            return Err(RpcError(format!("{peer}: timed out")));
        };
        let reply = svc.handle(request).await;
        let Some(back) = self.net.route(peer, self.me, reply.len()) else {
            tokio::time::sleep(RPC_TIMEOUT).await;
            return Err(RpcError(format!("{peer}: reply lost")));
        };
        tokio::time::sleep(back[0]).await;
        Ok(reply)
    }
}
