//! The service proxy on every node: one TCP listener per TCP service port
//! (its node port, on the node IP), forwarding each connection to a Ready
//! endpoint chosen by `balance`; UDP service ports are relayed by `udp`.
//!
//! Owns listeners and per-endpoint statistics. A connect failure is retried
//! on another endpoint; a backend that accepts but does not answer within
//! `response_timeout` is dropped and penalised. A service with no endpoint
//! resets connections at once (no hang). A node port that cannot be bound
//! (another service, or another program) is reported, not silently skipped.
//! External clients of `externalTrafficPolicy: Local` services are handed
//! to the kernel instead where it can (`nat`, `Kernel`): the listener then
//! serves the others.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::affinity::Affinity;
use super::balance::{Stats, p2c, round_robin};
use super::endpoints::{Endpoint, candidates, endpoints};
use super::locality::{HostNets, is_internal};
use super::nat::{self, Forward};
use crate::events::EventLog;
use crate::membership::view::ClusterView;
use crate::metrics::Metrics;
use crate::model::Service;
use crate::model::types::Protocol;
use crate::model::{Kind, Object};
use crate::placement::plan::PlanView;
use crate::state::Snapshot;

/// Connection attempts per client connection (each on another endpoint).
pub const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub node_ip: IpAddr,
    pub connect_timeout: Duration,
    /// A backend that accepted but sends nothing this long after the client
    /// spoke is dropped and penalised.
    pub response_timeout: Duration,
    pub round_robin: bool,
    /// A UDP flow unused this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// Most UDP flows kept per service port (the least recently used one
    /// is evicted past it).
    pub udp_max_flows: usize,
    /// External clients of `externalTrafficPolicy: Local` services go to
    /// this node's replicas by kernel NAT (`nat`), not through the proxy.
    pub kernel_local: bool,
}

/// What the proxy reports about services (for `describe service`).
#[derive(Debug, Default)]
pub struct ProxyStatus {
    /// Service id (`ns/name`) → problems with its ports on this node.
    pub conflicts: Mutex<BTreeMap<String, Vec<String>>>,
    /// This node's LoadBalancer offer (`lb`), when it has a pool.
    pub offer: Mutex<Option<crate::placement::addresses::Offer>>,
}

impl ProxyStatus {
    pub fn conflicts_of(&self, svc: &str) -> Vec<String> {
        self.conflicts.lock().unwrap_or_else(|p| p.into_inner()).get(svc).cloned().unwrap_or_default()
    }
}

/// Most client addresses a service port remembers for `sessionAffinity`.
const AFFINITY_CLIENTS: usize = 16_384;

/// A service's traffic policies, as this node applies them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub external_local: bool,
    pub internal_local: bool,
    /// `sessionAffinity: ClientIP` with its timeout.
    pub affinity: Option<Duration>,
    /// The PROXY protocol header sent to backends first (`proxyproto`).
    pub proxy_protocol: Option<super::proxyproto::Version>,
}

impl Policy {
    pub fn of(svc: &Service) -> Policy {
        Policy {
            external_local: svc.spec.external_local(),
            internal_local: svc.spec.internal_local(),
            affinity: svc.spec.affinity_timeout(),
            proxy_protocol: super::proxyproto::Version::of(&svc.metadata.annotations),
        }
    }
}

/// A service port's endpoints and this node's view of each.
pub struct Table {
    pub endpoints: Vec<Endpoint>,
    pub stats: HashMap<(String, u16), Stats>,
    counter: u64,
    self_node: String,
    policy: Policy,
    affinity: Option<Affinity<(String, u16)>>,
    host: Arc<HostNets>,
}

impl Table {
    fn new(self_node: &str, host: Arc<HostNets>) -> Table {
        Table {
            endpoints: Vec::new(),
            stats: HashMap::new(),
            counter: 0,
            self_node: self_node.to_string(),
            policy: Policy::default(),
            affinity: None,
            host,
        }
    }

    /// A table of `eps` with the default policy (for tests of the relays).
    #[cfg(test)]
    pub(super) fn of(self_node: &str, eps: Vec<Endpoint>) -> Table {
        let mut t = Table::new(self_node, Arc::default());
        t.set(eps, Policy::default(), Arc::default(), Instant::now());
        t
    }

    fn set(&mut self, eps: Vec<Endpoint>, policy: Policy, host: Arc<HostNets>, now: Instant) {
        self.stats.retain(|k, _| eps.iter().any(|e| (e.ip.clone(), e.port) == *k));
        for e in &eps {
            self.stats.entry((e.ip.clone(), e.port)).or_insert_with(|| Stats::new(now));
        }
        self.endpoints = eps;
        if policy.affinity != self.policy.affinity {
            self.affinity = policy.affinity.map(|t| Affinity::new(t, AFFINITY_CLIENTS));
        }
        self.policy = policy;
        self.host = host;
    }
}

struct Listener {
    addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    task: JoinHandle<()>,
}

/// (namespace, service, service port, protocol, address served on): the
/// node IP for the node port, or a LoadBalancer address this node holds.
type PortKey = (String, String, i64, Protocol, IpAddr);

/// What the proxy watches and reports to.
pub struct ProxyInputs {
    pub state: watch::Receiver<Arc<Snapshot>>,
    pub plan: watch::Receiver<Arc<PlanView>>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// The LoadBalancer addresses this node holds (`lb`), and their Services.
    pub held: watch::Receiver<Arc<BTreeMap<IpAddr, String>>>,
    pub status: Arc<ProxyStatus>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the proxy until `shutdown`.
pub async fn run(cfg: ProxyConfig, inputs: ProxyInputs) {
    let ProxyInputs { mut state, mut plan, mut view, mut held, status, metrics, events, mut shutdown } = inputs;
    let mut listeners: HashMap<PortKey, Listener> = HashMap::new();
    // A node without a LoadBalancer pool runs no holder: its channel closes
    // at once, and holds nothing.
    let mut lb_open = true;
    let mut kernel = Kernel::default();
    loop {
        let snap = state.borrow_and_update().clone();
        let pv = plan.borrow_and_update().clone();
        let v = view.borrow_and_update().clone();
        let lb = held.borrow_and_update().clone();
        let (forwards, host) = reconcile(&cfg, &snap, &pv, &v, &lb, &mut listeners, &status, &metrics, &events).await;
        if cfg.kernel_local {
            kernel.update(forwards, &host, cfg.node_ip, &v.self_name, &events).await;
        }
        tokio::select! {
            r = held.changed(), if lb_open => lb_open = r.is_ok(),
            r = state.changed() => if r.is_err() { break },
            r = plan.changed() => if r.is_err() { break },
            r = view.changed() => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (_, l) in listeners {
        l.task.abort();
    }
    if cfg.kernel_local {
        let name = view.borrow().self_name.clone();
        kernel.update(Vec::new(), &HostNets::default(), cfg.node_ip, &name, &events).await;
    }
}

/// The nftables table of this node's kernel path, as last loaded.
#[derive(Default)]
struct Kernel {
    /// What the table was last asked to hold (`None`: nothing yet). Tried
    /// again only when that changes: a host without `nft` is not asked on
    /// every view.
    tried: Option<(Vec<Forward>, HostNets)>,
    /// A load failed and was reported: later failures stay quiet.
    warned: bool,
}

impl Kernel {
    /// Makes the table hold `forwards` when they changed. The first load
    /// also clears a table a killed node left behind.
    async fn update(&mut self, forwards: Vec<Forward>, host: &HostNets, ip: IpAddr, node: &str, events: &EventLog) {
        if self.tried.as_ref().is_some_and(|(f, h)| *f == forwards && (f.is_empty() || h == host)) {
            return;
        }
        let script = nat::ruleset(&nat::table_name(ip), host, &forwards);
        let r = tokio::task::spawn_blocking(move || crate::net::nat::load(&script)).await;
        let wanted = !forwards.is_empty();
        self.tried = Some((forwards, host.clone()));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Nothing to hand over, and no table of ours: no need to warn.
                if wanted && !self.warned {
                    self.warned = true;
                    tracing::warn!("externalTrafficPolicy: Local stays in the proxy: {e}");
                    events.node(
                        true,
                        node,
                        "KernelPathUnavailable",
                        format!("external clients of Local services go through the proxy: {e}"),
                    );
                }
            }
            Err(e) => tracing::warn!("nftables loader task failed: {e}"),
        }
    }
}

/// Which ports this node should serve, oldest service first (it keeps a
/// port two services claim): every service's node ports on the node IP,
/// and the service ports of each LoadBalancer address it holds (`held`).
fn wanted(
    snap: &Snapshot,
    node_ip: IpAddr,
    held: &BTreeMap<IpAddr, String>,
) -> Vec<(PortKey, u16, Arc<Service>, String)> {
    let mut out = Vec::new();
    for o in snap.of_kind(Kind::Service) {
        let Object::Service(s) = &o.object else { continue };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let created = s.metadata.creation_timestamp.clone().unwrap_or_default();
        let svc = Arc::new(s.clone());
        let lb = crate::placement::addresses::address_of(&s.spec)
            .filter(|ip| held.get(ip).is_some_and(|svc| *svc == format!("{ns}/{}", s.metadata.name)));
        for p in &s.spec.ports {
            if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                let key = (ns.clone(), s.metadata.name.clone(), p.port, p.proto(), node_ip);
                out.push((key, np, svc.clone(), created.clone()));
            }
            if let (Some(ip), Ok(port)) = (lb, u16::try_from(p.port)) {
                let key = (ns.clone(), s.metadata.name.clone(), p.port, p.proto(), ip);
                out.push((key, port, svc.clone(), created.clone()));
            }
        }
    }
    out.sort_by(|a, b| (&a.3, &a.0).cmp(&(&b.3, &b.0)));
    out
}

#[allow(clippy::too_many_arguments)]
async fn reconcile(
    cfg: &ProxyConfig,
    snap: &Snapshot,
    pv: &PlanView,
    view: &ClusterView,
    held: &BTreeMap<IpAddr, String>,
    listeners: &mut HashMap<PortKey, Listener>,
    status: &ProxyStatus,
    metrics: &Arc<Metrics>,
    events: &EventLog,
) -> (Vec<Forward>, Arc<HostNets>) {
    let now = Instant::now();
    let mut forwards: Vec<(PortKey, Forward)> = Vec::new();
    let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut claimed: HashMap<(SocketAddr, Protocol), String> = HashMap::new();
    let want = wanted(snap, cfg.node_ip, held);
    // The host's addresses, read only when a Local traffic policy needs them.
    let local = want.iter().any(|w| w.2.spec.external_local() || w.2.spec.internal_local());
    let host = Arc::new(if local { HostNets::read() } else { HostNets::default() });
    let keys: Vec<PortKey> = want.iter().map(|w| w.0.clone()).collect();
    for key in listeners.keys().filter(|k| !keys.contains(k)).cloned().collect::<Vec<_>>() {
        if let Some(l) = listeners.remove(&key) {
            l.task.abort();
        }
    }
    for (key, np, svc_obj, _) in want {
        let spec = &svc_obj.spec;
        let svc = format!("{}/{}", key.0, key.1);
        let proto = key.3;
        let addr = SocketAddr::new(key.4, np);
        let what = if key.4 == cfg.node_ip { format!("node port {np}/{proto}") } else { format!("{addr}/{proto}") };
        if let Some(other) = claimed.get(&(addr, proto)) {
            conflicts
                .entry(svc.clone())
                .or_default()
                .push(format!("{what} is also claimed by service {other}; the older service keeps it"));
            if let Some(l) = listeners.remove(&key) {
                l.task.abort();
            }
            continue;
        }
        claimed.insert((addr, proto), svc.clone());
        let port = spec.ports.iter().find(|p| p.port == key.2 && p.proto() == proto).cloned();
        let eps = port.map(|p| endpoints(&key.0, spec, &p, &pv.plan.desired, view)).unwrap_or_default();
        let policy = Policy::of(&svc_obj);
        if proto == Protocol::Tcp
            && policy.external_local
            && policy.affinity.is_none()
            && policy.proxy_protocol.is_none()
        {
            let mut to: Vec<SocketAddr> = eps
                .iter()
                .filter(|e| e.node == view.self_name)
                .filter_map(|e| Some(SocketAddr::new(e.ip.parse().ok()?, e.port)))
                .collect();
            to.sort();
            if !to.is_empty() {
                forwards.push((key.clone(), Forward { addr: key.4, port: np, to }));
            }
        }
        if let Some(l) = listeners.get(&key).filter(|l| l.addr == addr) {
            l.table.lock().unwrap_or_else(|p| p.into_inner()).set(eps, policy, host.clone(), now);
            continue;
        }
        if let Some(old) = listeners.remove(&key) {
            old.task.abort();
        }
        let mut t = Table::new(&view.self_name, host.clone());
        t.set(eps, policy, host.clone(), now);
        let table = Arc::new(Mutex::new(t));
        let (cfg2, svc2, metrics2) = (cfg.clone(), svc.clone(), metrics.clone());
        let bound = match proto {
            Protocol::Tcp => {
                TcpListener::bind(addr).await.map(|l| tokio::spawn(accept_loop(l, table.clone(), cfg2, svc2, metrics2)))
            }
            Protocol::Udp => tokio::net::UdpSocket::bind(addr)
                .await
                .map(|s| tokio::spawn(super::udp::serve_port(s, table.clone(), cfg2, svc2, metrics2))),
        };
        match bound {
            Ok(task) => {
                listeners.insert(key, Listener { addr, table, task });
            }
            Err(e) => {
                let msg = format!("cannot listen on {what} ({addr}): {e} (another program or service uses it)");
                if !status.conflicts_of(&svc).contains(&msg) {
                    events.node(true, &view.self_name, "PortConflict", format!("service {svc}: {msg}"));
                }
                conflicts.entry(svc).or_default().push(msg);
            }
        }
    }
    *status.conflicts.lock().unwrap_or_else(|p| p.into_inner()) = conflicts;
    // Only ports this node serves: never one another program holds.
    let mut forwards: Vec<Forward> =
        forwards.into_iter().filter(|(k, _)| listeners.contains_key(k)).map(|(_, f)| f).collect();
    forwards.sort();
    (forwards, host)
}

async fn accept_loop(l: TcpListener, table: Arc<Mutex<Table>>, cfg: ProxyConfig, svc: String, metrics: Arc<Metrics>) {
    loop {
        let Ok((client, _)) = l.accept().await else { continue };
        let (table, cfg, svc, metrics) = (table.clone(), cfg.clone(), svc.clone(), metrics.clone());
        tokio::spawn(async move {
            let (outcome, pod) = serve(client, &table, &cfg).await;
            if let Some(pod) = pod {
                metrics
                    .proxy_backend_connections
                    .get_or_create(&vec![("service".into(), svc.clone()), ("pod".into(), pod)])
                    .inc();
            }
            metrics
                .proxy_connections
                .get_or_create(&vec![("service".into(), svc), ("outcome".into(), outcome.into())])
                .inc();
        });
    }
}

/// Picks an endpoint for a connection from `client` (its pinned one under
/// `sessionAffinity`, else by the balancing rule), among those not yet
/// tried and allowed by the traffic policy, and counts it outstanding.
pub fn pick(table: &Mutex<Table>, tried: &[(String, u16)], rr: bool, client: Option<IpAddr>) -> Option<Endpoint> {
    let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let local_only = client
        .is_some_and(|ip| if is_internal(ip, &t.host) { t.policy.internal_local } else { t.policy.external_local });
    let keys: Vec<(String, u16)> = t.endpoints.iter().map(|e| (e.ip.clone(), e.port)).collect();
    let candidates = candidates(&t.endpoints, tried, local_only, &t.self_node);
    let pinned = match (client, t.affinity.as_mut()) {
        (Some(ip), Some(a)) => a
            .get(ip, now, |k| candidates.iter().any(|i| keys[*i] == *k))
            .and_then(|k| keys.iter().position(|x| *x == k)),
        _ => None,
    };
    let stats: Vec<Stats> = keys.iter().map(|k| t.stats.get(k).cloned().unwrap_or_else(|| Stats::new(now))).collect();
    t.counter = t.counter.wrapping_add(1);
    let i = match pinned {
        Some(i) => i,
        None if rr => round_robin(&candidates, t.counter)?,
        None => p2c(&stats, &candidates, rand::random(), rand::random(), now)?,
    };
    if let (Some(ip), Some(a)) = (client, t.affinity.as_mut()) {
        a.set(ip, keys[i].clone(), now);
    }
    let e = t.endpoints[i].clone();
    if let Some(s) = t.stats.get_mut(&keys[i]) {
        s.outstanding += 1;
    }
    Some(e)
}

/// Records how a connection or flow to the endpoint `key` (ip, port)
/// ended: it stops counting as outstanding.
pub fn settle(table: &Mutex<Table>, key: &(String, u16), verdict: Verdict) {
    let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = t.stats.get_mut(key) {
        s.outstanding = s.outstanding.saturating_sub(1);
        match verdict {
            Verdict::Latency(l) => s.observe(l, Instant::now()),
            Verdict::Failed => s.fail(Instant::now()),
            Verdict::Neutral => {}
        }
    }
}

fn reset(client: TcpStream) {
    // RST rather than FIN: the client learns at once that nothing serves.
    let _ = client.set_zero_linger();
    drop(client);
}

/// Serves one client connection; returns the outcome and the pod that served it.
async fn serve(client: TcpStream, table: &Mutex<Table>, cfg: &ProxyConfig) -> (&'static str, Option<String>) {
    let from = client.peer_addr().ok().map(|a| a.ip());
    let mut tried = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let Some(e) = pick(table, &tried, cfg.round_robin, from) else { break };
        let Ok(ip) = e.ip.parse::<IpAddr>() else {
            settle(table, &(e.ip.clone(), e.port), Verdict::Failed);
            tried.push((e.ip.clone(), e.port));
            continue;
        };
        let t0 = Instant::now();
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(SocketAddr::new(ip, e.port))).await {
            Ok(Ok(mut backend)) => {
                let _ = backend.set_nodelay(true);
                let _ = client.set_nodelay(true);
                let pp = table.lock().unwrap_or_else(|p| p.into_inner()).policy.proxy_protocol;
                if let (Some(v), Ok(src), Ok(dst)) = (pp, client.peer_addr(), client.local_addr()) {
                    let _ = backend.write_all(&super::proxyproto::header(v, src, dst)).await;
                }
                let connect = t0.elapsed();
                let (outcome, verdict) = pipe(client, backend, cfg.response_timeout).await;
                let verdict = match verdict {
                    Verdict::Latency(l) => Verdict::Latency(l.max(connect)),
                    v => v,
                };
                settle(table, &(e.ip.clone(), e.port), verdict);
                return (outcome, Some(e.pod));
            }
            _ => {
                settle(table, &(e.ip.clone(), e.port), Verdict::Failed);
                tried.push((e.ip.clone(), e.port));
            }
        }
    }
    reset(client);
    (if tried.is_empty() { "no_endpoints" } else { "connect_failed" }, None)
}

/// What a proxied connection says about its backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Answered; time from the client's first bytes to the first answer.
    Latency(Duration),
    /// Refused, reset, closed without answering, or timed out.
    Failed,
    /// Nothing to learn (the client left before the backend could answer).
    Neutral,
}

/// What the client side of a connection has done so far.
#[derive(Debug, Clone, Copy, Default)]
struct ClientSide {
    spoke: Option<Instant>,
    closed: bool,
}

/// Copies both ways until both sides close; returns the outcome and what it
/// says about the backend.
async fn pipe(client: TcpStream, backend: TcpStream, response_timeout: Duration) -> (&'static str, Verdict) {
    let (mut cr, mut cw) = client.into_split();
    let (mut br, mut bw) = backend.into_split();
    let (tx, mut rx) = watch::channel(ClientSide::default());
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tx.send_if_modified(|s| s.spoke.is_none().then(|| s.spoke = Some(Instant::now())).is_some());
                    if bw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = bw.shutdown().await;
        tx.send_modify(|s| s.closed = true);
    });
    let mut buf = vec![0u8; 16 * 1024];
    // Wait for the backend's first bytes; once the client has spoken, give
    // the backend `response_timeout` to answer.
    let mut watching = true;
    let first = loop {
        let side = *rx.borrow_and_update();
        let deadline = side.spoke.map(|t| t + response_timeout);
        tokio::select! {
            r = br.read(&mut buf) => break r,
            r = rx.changed(), if watching && !side.closed => {
                watching = r.is_ok();
                continue;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()).await }, if deadline.is_some() => {
                up.abort();
                return ("timeout", Verdict::Failed);
            }
        }
    };
    let side = *rx.borrow();
    let latency = side.spoke.map(|t| t.elapsed());
    match first {
        Ok(0) | Err(_) => {
            up.abort();
            // The client left first: not the backend's fault.
            if side.closed || side.spoke.is_none() {
                return ("client_gone", Verdict::Neutral);
            }
            // Accepted a request, then closed without a word: failing.
            return ("closed", Verdict::Failed);
        }
        Ok(n) => {
            if cw.write_all(&buf[..n]).await.is_err() {
                up.abort();
                return ("client_gone", latency.map_or(Verdict::Neutral, Verdict::Latency));
            }
        }
    }
    let _ = tokio::io::copy(&mut br, &mut cw).await;
    let _ = cw.shutdown().await;
    let _ = up.await;
    ("ok", latency.map_or(Verdict::Neutral, Verdict::Latency))
}
