//! Wiring: one node = identity + state + membership + planner + agent + API.
//!
//! Owns startup order and shutdown. Startup: data dir; cluster identity
//! (create a cluster, join one with a token, or reload); desired state from
//! disk; QUIC endpoint; gossip; planner; agent; API. Shutdown: announce the
//! leave (peers see Left at once and start replacements), let pods hand off
//! to their new owners for a bounded time, stop the rest (SIGTERM, grace,
//! kill), close the network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::backoff::Backoff;
use crate::agent::logs::LogLimits;
use crate::agent::pod::PodCtx;
use crate::agent::ports::PortAllocator;
use crate::agent::process::ProcessRuntime;
use crate::agent::runtime::Runtime;
use crate::agent::{Agent, AgentConfig, ResultSink, Statuses};
use crate::api::server::{self, ApiCtx};
use crate::config::{NodeConfig, Resolved};
use crate::events::EventLog;
use crate::membership::service::{GossipConfig, Membership, system_unix};
use crate::membership::transport::QuicTransport;
use crate::membership::view::{ClusterView, NodeInfo, detect_capacity};
use crate::metrics::Metrics;
use crate::model::pods::{PodResult, Resources, RuntimeKind};
use crate::model::quantity::{parse_cpu_millis, parse_memory_bytes};
use crate::net::join::{JoinService, Tokens, join};
use crate::net::quic::Net;
use crate::net::tls::Identity;
use crate::placement::plan::{PlanRules, PlanView, Planner};
use crate::state::entry::kinds;
use crate::state::sync::{ReplicatedWriter, SyncService, hex_root, run_anti_entropy};
use crate::state::{Key, LocalWriter, StateDb, Writer};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::state::store::StoreError),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    Net(#[from] crate::net::quic::NetError),
    #[error(transparent)]
    Join(#[from] crate::net::join::JoinError),
    #[error("cannot listen on {addr} for the API: {source} (is another node using it? pass --api-addr or --node-ip)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Writes `content` to `path` with mode 0600, atomically (write, fsync, rename).
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a private file, or creates it (mode 0600) with `make()`; trimmed.
pub fn secret_file(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        return Ok(s.trim().to_string());
    }
    let value = make();
    write_private(path, &format!("{value}\n"))?;
    Ok(value)
}

/// A random hex string of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Path of the API token in a data dir (the CLI reads it from there).
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}

/// The value of `SHOAL_AGENT_ID` on this node's pod processes: derived from
/// the data dir, so it is the same across restarts of the node.
pub fn agent_marker(data_dir: &Path) -> String {
    let canon = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    blake3::hash(canon.as_os_str().as_encoded_bytes()).to_hex()[..16].to_string()
}

/// Records Job pod outcomes in the desired state.
struct StateResults {
    db: Arc<StateDb>,
    writer: Arc<dyn Writer>,
}

#[async_trait]
impl ResultSink for StateResults {
    fn current(&self, namespace: &str, name: &str) -> Option<PodResult> {
        self.db.snapshot().pod_results.get(&(namespace.to_string(), name.to_string())).cloned()
    }
    async fn record(&self, namespace: &str, name: &str, result: PodResult) -> Result<(), String> {
        let bytes = serde_json::to_vec(&result).map_err(|e| e.to_string())?;
        self.writer
            .write(vec![(Key::new(kinds::POD_RESULT, namespace, name), Some(bytes))])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// This node's own record, from the config and the host.
pub fn self_info(
    cfg: &NodeConfig,
    r: &Resolved,
    generation: u64,
    runtimes: &[RuntimeKind],
) -> Result<NodeInfo, NodeError> {
    let detected = detect_capacity();
    let bad = |field: &str, e: String| {
        NodeError::Config(crate::config::ConfigError::Invalid { field: field.into(), message: e })
    };
    let cpu = match &cfg.capacity.cpu {
        Some(q) => parse_cpu_millis(q).map_err(|e| bad("capacity.cpu", e.to_string()))?,
        None => detected.cpu_millis,
    };
    let mem = match &cfg.capacity.memory {
        Some(q) => parse_memory_bytes(q).map_err(|e| bad("capacity.memory", e.to_string()))?,
        None => detected.memory_bytes,
    };
    let rcpu = parse_cpu_millis(&cfg.capacity.reserved_cpu).map_err(|e| bad("capacity.reserved_cpu", e.to_string()))?;
    let rmem = parse_memory_bytes(&cfg.capacity.reserved_memory)
        .map_err(|e| bad("capacity.reserved_memory", e.to_string()))?;
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    Ok(NodeInfo {
        name: r.name.clone(),
        generation,
        api_url: format!("http://{}", r.api_addr),
        gossip_addr: SocketAddr::new(r.node_ip, r.gossip_addr.port()).to_string(),
        node_ip: r.node_ip.to_string(),
        capacity: Resources { cpu_millis: cpu, memory_bytes: mem },
        allocatable: Resources { cpu_millis: cpu.saturating_sub(rcpu), memory_bytes: mem.saturating_sub(rmem) },
        weight: cfg.capacity.weight.unwrap_or(cpu).max(1),
        max_pods: cfg.capacity.max_pods,
        labels: cfg.labels.clone(),
        runtimes: runtimes.iter().copied().collect(),
        arch: std::env::consts::ARCH.into(),
        os: std::env::consts::OS.into(),
        hostname,
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: generation / 1000,
        schedulable: false,
        settling: false,
    })
}

/// Shortest time between two plans: a burst of changes (a node dying, its
/// pods reporting) makes one recomputation, not hundreds.
pub const PLAN_DEBOUNCE: Duration = Duration::from_millis(20);

/// Recomputes the plan whenever the desired state or the view changes (and
/// every second, as time matters too). `clock` gives unix seconds.
pub fn spawn_planner(
    db: &Arc<StateDb>,
    mut view_rx: watch::Receiver<Arc<ClusterView>>,
    rules: PlanRules,
    clock: fn() -> u64,
) -> (watch::Receiver<Arc<PlanView>>, JoinHandle<()>) {
    let mut state_rx = db.subscribe();
    let mut planner = Planner::default();
    let first = planner.plan(&state_rx.borrow_and_update(), &view_rx.borrow_and_update(), &rules, clock());
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = state_rx.changed() => if r.is_err() { return },
                r = view_rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            tokio::time::sleep(PLAN_DEBOUNCE).await;
            let snap = state_rx.borrow_and_update().clone();
            let view = view_rx.borrow_and_update().clone();
            tx.send_replace(Arc::new(planner.plan(&snap, &view, &rules, clock())));
        }
    });
    (rx, task)
}

/// Settle time after this start: grows when the node restarted often
/// lately, so a flapping node does not make replicas bounce.
fn settle_time(dd: &Path, base: Duration) -> Duration {
    let path = dd.join("starts");
    let now = system_unix();
    let mut starts: Vec<u64> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .filter(|t| now.saturating_sub(*t) < 600)
        .collect();
    starts.push(now);
    let _ = std::fs::write(&path, starts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join("\n"));
    let n = starts.len() as u32;
    if n >= 3 { (base * 2u32.pow((n - 2).min(6))).min(Duration::from_secs(120)) } else { base }
}

/// The cluster identity: reloaded, obtained by joining, or a new cluster.
async fn identity(cfg: &NodeConfig, r: &Resolved) -> Result<(Identity, String, Vec<String>, bool), NodeError> {
    let dd = &r.data_dir;
    let dir_err = |e| NodeError::DataDir(dd.display().to_string(), e);
    if let Some(id) = Identity::load(dd)? {
        if id.node_name != r.name {
            return Err(NodeError::Other(format!(
                "data dir {} belongs to node {:?}; start with --name {} or use another --data-dir",
                dd.display(),
                id.node_name,
                id.node_name
            )));
        }
        let api = secret_file(&token_path(dd), || random_hex(32)).map_err(dir_err)?;
        return Ok((id, api, Vec::new(), false));
    }
    let mut seeds = cfg.join.clone();
    if seeds.is_empty()
        && cfg.membership.discover == "mdns"
        && let Some(t) = cfg.token.as_deref()
    {
        let pin = crate::net::token::JoinToken::parse(t).map_err(crate::net::join::JoinError::from)?.ca_hash;
        let tag = crate::membership::discovery::cluster_tag(&pin);
        let found = crate::membership::discovery::find(&tag, Duration::from_secs(5)).await;
        seeds = found.iter().map(|a| a.to_string()).collect();
        if seeds.is_empty() {
            return Err(NodeError::Other(
                "--discover mdns found no node of this cluster on the LAN within 5 s; pass --join HOST:PORT".into(),
            ));
        }
    }
    if !seeds.is_empty() {
        let token = cfg.token.as_deref().ok_or_else(|| {
            NodeError::Other(
                "joining a cluster needs its join token: pass --token (run `shoal token` on a cluster node)".into(),
            )
        })?;
        let a = join(&seeds, token, &r.name).await?;
        a.identity.save(dd)?;
        write_private(&token_path(dd), &format!("{}\n", a.api_token)).map_err(dir_err)?;
        return Ok((a.identity, a.api_token, a.peers, false));
    }
    let id = Identity::create_cluster(&r.name)?;
    id.save(dd)?;
    let api = secret_file(&token_path(dd), || random_hex(32)).map_err(dir_err)?;
    Ok((id, api, Vec::new(), true))
}

/// Remembers alive peers' gossip addresses, to rejoin after a restart.
fn spawn_peer_memory(dd: PathBuf, mut view: watch::Receiver<Arc<ClusterView>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = String::new();
        while view.changed().await.is_ok() {
            let v = view.borrow_and_update().clone();
            let mut peers: Vec<String> = v
                .nodes
                .values()
                .filter(|n| n.state.alive() && n.info.name != v.self_name)
                .map(|n| n.info.gossip_addr.clone())
                .collect();
            peers.sort();
            let text = peers.join("\n");
            if !peers.is_empty() && text != last {
                let _ = write_private(&dd.join("peers"), &text);
                last = text;
            }
        }
    })
}

/// A running node.
pub struct Node {
    pub name: String,
    pub api_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Printed once when this node created the cluster.
    pub new_cluster_token: Option<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    agent: JoinHandle<()>,
    membership: Membership,
    statuses: watch::Receiver<Statuses>,
    net: Arc<Net>,
    drain_limit: Duration,
    _discovery: Option<crate::membership::discovery::Discovery>,
}

impl Node {
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let r = cfg.resolve()?;
        let dd = r.data_dir.clone();
        let dir_err = |e| NodeError::DataDir(dd.display().to_string(), e);
        std::fs::create_dir_all(&dd).map_err(dir_err)?;
        let _ = std::fs::set_permissions(&dd, std::fs::Permissions::from_mode(0o700));
        let (identity, api_token, join_peers, new_cluster) = identity(&cfg, &r).await?;
        let db = Arc::new(StateDb::open(
            &dd.join("state.redb"),
            &r.name,
            uhlc::system_time_clock,
            cfg.state.max_clock_skew,
        )?);
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let events = Arc::new(EventLog::new(&r.name));
        let metrics = Arc::new(Metrics::new());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let writer: Arc<dyn Writer> = Arc::new(LocalWriter { db: db.clone() });
        let tokens = Arc::new(Tokens { ca_hash: identity.ca_hash()?, db: db.clone(), writer: writer.clone() });
        let new_cluster_token = if new_cluster { Some(tokens.rotate().await.map_err(NodeError::Other)?) } else { None };

        let advertise = SocketAddr::new(r.node_ip, r.gossip_addr.port());
        let (net, inbox) = Net::bind(r.gossip_addr, advertise, &identity, metrics.clone())?;
        let listener = tokio::net::TcpListener::bind(r.api_addr)
            .await
            .map_err(|source| NodeError::Bind { addr: r.api_addr, source })?;
        let api_addr = listener.local_addr().map_err(|e| NodeError::Other(e.to_string()))?;

        let mut runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>> = BTreeMap::new();
        runtimes.insert(RuntimeKind::Process, Arc::new(ProcessRuntime::new(agent_marker(&dd))));
        let docker = match cfg.runtimes.docker.as_str() {
            "off" => None,
            mode => {
                let socket = crate::agent::docker::socket_path(cfg.runtimes.docker_socket.as_deref());
                let rt = Arc::new(crate::agent::docker::DockerRuntime::new(socket.clone(), agent_marker(&dd)));
                if !rt.available().await {
                    if mode == "on" {
                        return Err(NodeError::Other(format!(
                            "runtimes.docker is \"on\" but no Docker engine answers at {socket}; start it, fix runtimes.docker_socket, or use \"auto\""
                        )));
                    }
                    tracing::info!(%socket, "no Docker engine answers; the docker runtime comes online when it does");
                }
                runtimes.insert(RuntimeKind::Docker, rt.clone());
                Some(rt)
            }
        };
        let mut offered: Vec<RuntimeKind> = vec![RuntimeKind::Process];
        if let Some(d) = &docker
            && d.available().await
        {
            offered.push(RuntimeKind::Docker);
        }
        let mut info = self_info(&cfg, &r, generation, &offered)?;
        info.api_url = format!("http://{api_addr}");

        let ctx = Arc::new(PodCtx {
            node_name: r.name.clone(),
            node_ip: r.node_ip,
            generation,
            data_dir: dd.clone(),
            backoff: Backoff {
                initial: cfg.agent.restart_backoff_initial,
                max: cfg.agent.restart_backoff_max,
                reset_after: cfg.agent.restart_backoff_reset,
            },
            log_limits: LogLimits { max_bytes: r.log_max_bytes, max_files: cfg.agent.log_max_files.max(1) },
            ports: PortAllocator::new(r.node_ip, [api_addr.port(), r.gossip_addr.port()]),
            runtimes,
            events: events.clone(),
            namespace_env: {
                let (db, ip) = (db.clone(), r.node_ip.to_string());
                Box::new(move |ns| crate::proxy::env::service_env(&db.snapshot(), ns, &ip))
            },
        });
        let (status_tx, status_rx) = Agent::status_channel();

        let mut seeds: Vec<String> = cfg.join.clone();
        seeds.extend(join_peers);
        seeds.extend(std::fs::read_to_string(dd.join("peers")).unwrap_or_default().lines().map(String::from));
        seeds.retain(|s| !s.is_empty() && s != &advertise.to_string());
        seeds.sort();
        seeds.dedup();
        let gossip = GossipConfig {
            cluster_id: identity.cluster_id.clone(),
            gossip_interval: cfg.membership.gossip_interval,
            phi_threshold: cfg.membership.phi_threshold,
            suspect_after: cfg.membership.suspect_after,
            dead_node_grace: cfg.membership.dead_node_grace,
            seeds,
            clock: system_unix,
        };
        let transport = QuicTransport::new(net.clone(), inbox);
        let membership = Membership::start(gossip, info, advertise, &transport, status_rx.clone(), events.clone())
            .await
            .map_err(NodeError::Other)?;
        let view_rx = membership.view();
        // From here on, writes reach write_replicas nodes before they are acknowledged.
        let writer: Arc<dyn Writer> = Arc::new(ReplicatedWriter {
            rng: std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(rand::random())),
            db: db.clone(),
            rpc: net.clone(),
            view: view_rx.clone(),
            write_replicas: cfg.state.write_replicas,
            timeout: cfg.state.write_timeout,
        });
        let tokens = Arc::new(Tokens { ca_hash: tokens.ca_hash.clone(), db: db.clone(), writer: writer.clone() });
        net.set_sync_handler(Arc::new(SyncService { db: db.clone() }));
        let ae_task = tokio::spawn(run_anti_entropy(
            db.clone(),
            net.clone(),
            view_rx.clone(),
            cfg.state.anti_entropy_interval,
            cfg.state.tombstone_horizon,
            rand::random(),
            shutdown_rx.clone(),
        ));
        let digest_task = {
            let (db, set) = (db.clone(), membership.key_setter());
            let mut rx = db.subscribe();
            tokio::spawn(async move {
                loop {
                    set(crate::membership::assemble::keys::STATE_DIGEST, hex_root(&db));
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            })
        };
        let results = Arc::new(StateResults { db: db.clone(), writer: writer.clone() });
        let agent = Agent::new(
            ctx.clone(),
            AgentConfig { handoff_timeout: cfg.agent.handoff_timeout, handoff_linger: cfg.agent.handoff_linger },
            results,
            status_tx,
        );
        net.set_join_handler(Arc::new(JoinService {
            identity: identity.clone(),
            db: db.clone(),
            view: view_rx.clone(),
            api_token: api_token.clone(),
            metrics: metrics.clone(),
        }));
        if let Some(d) = docker {
            // Advertise the docker runtime only while its engine answers:
            // placement then moves docker pods away from a node whose engine died.
            let info_tx = membership.info_sender();
            let events2 = events.clone();
            let me = r.name.clone();
            crate::agent::docker::watch_engine(
                d,
                move |up| {
                    info_tx.send_modify(|i| {
                        if up {
                            i.runtimes.insert(RuntimeKind::Docker);
                        } else {
                            i.runtimes.remove(&RuntimeKind::Docker);
                        }
                    });
                    events2.node(
                        !up,
                        &me,
                        if up { "RuntimeReady" } else { "RuntimeUnavailable" },
                        format!("docker runtime {}", if up { "available" } else { "unavailable" }),
                    );
                },
                shutdown_rx.clone(),
            );
        }
        let settle = settle_time(&dd, cfg.membership.settle_time);
        let settle_task = {
            let (info_tx, mut sd) = (membership_info_setter(&membership), shutdown_rx.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(settle) => info_tx(true),
                    _ = sd.wait_for(|s| *s) => {}
                }
            })
        };
        // Settling again after losing and regaining the majority.
        let isolation_task = tokio::spawn(crate::membership::settle::run(
            view_rx.clone(),
            membership.info_sender(),
            cfg.membership.settle_time,
            system_unix,
            shutdown_rx.clone(),
        ));
        let (plan_rx, plan_task) = spawn_planner(
            &db,
            view_rx.clone(),
            PlanRules { epsilon: cfg.placement.epsilon, fence_delay_secs: cfg.placement.fence_delay.as_secs() },
            system_unix,
        );
        let (agent_plan_tx, agent_plan_rx) = watch::channel(plan_rx.borrow().plan.clone());
        let mut prx = plan_rx.clone();
        let forward = tokio::spawn(async move {
            while prx.changed().await.is_ok() {
                let p = prx.borrow_and_update().plan.clone();
                agent_plan_tx.send_replace(p);
            }
        });
        let agent_task = tokio::spawn(agent.run(agent_plan_rx, shutdown_rx.clone()));

        let proxy_status = Arc::new(crate::proxy::server::ProxyStatus::default());
        let (proxy_plan_rx, proxy_metrics, proxy_events) = (plan_rx.clone(), metrics.clone(), events.clone());
        let api_ctx = Arc::new(ApiCtx {
            node_name: r.name.clone(),
            token: api_token,
            db: db.clone(),
            writer,
            view: view_rx.clone(),
            plan: plan_rx,
            events,
            validation: crate::model::validate::Context { node_port_range: r.node_port_range },
            apply_lock: tokio::sync::Mutex::new(()),
            logs_dir: ctx.logs_dir(),
            log_limits: ctx.log_limits,
            metrics,
            started: Instant::now(),
            cluster: Some(tokens),
            proxy: Some(proxy_status.clone()),
        });
        let api_task = tokio::spawn({
            let rx = shutdown_rx.clone();
            async move {
                if let Err(e) = server::serve(listener, api_ctx, rx).await {
                    tracing::error!(error = %e, "API server failed");
                }
            }
        });
        let proxy_task = tokio::spawn(crate::proxy::server::run(
            crate::proxy::server::ProxyConfig {
                node_ip: r.node_ip,
                connect_timeout: cfg.proxy.connect_timeout,
                response_timeout: cfg.proxy.response_timeout,
                round_robin: cfg.proxy.balancer == "round-robin",
            },
            crate::proxy::server::ProxyInputs {
                state: db.subscribe(),
                plan: proxy_plan_rx,
                view: view_rx.clone(),
                status: proxy_status,
                metrics: proxy_metrics,
                events: proxy_events,
                shutdown: shutdown_rx.clone(),
            },
        ));
        let dns_task = match cfg.proxy.dns_addr.as_str() {
            "" => None,
            a => {
                let addr = if a == "auto" {
                    SocketAddr::new(r.node_ip, 53)
                } else {
                    a.parse().unwrap_or(SocketAddr::new(r.node_ip, 53))
                };
                match tokio::net::UdpSocket::bind(addr).await {
                    Ok(sock) => {
                        tracing::info!(%addr, "DNS responder for *.svc.shoal");
                        Some(tokio::spawn(crate::proxy::dns::serve(
                            sock,
                            db.subscribe(),
                            view_rx.clone(),
                            shutdown_rx.clone(),
                        )))
                    }
                    Err(e) if a == "auto" => {
                        tracing::warn!(%addr, error = %e, "no DNS responder (set proxy.dns_addr to a free address to enable it)");
                        None
                    }
                    Err(e) => return Err(NodeError::Other(format!("cannot bind the DNS responder on {addr}: {e}"))),
                }
            }
        };
        let peers_task = spawn_peer_memory(dd.clone(), view_rx);
        let discovery = if cfg.membership.discover == "mdns" {
            let tag = crate::membership::discovery::cluster_tag(&identity.ca_hash()?);
            match crate::membership::discovery::start(&tag, Some((&r.name, advertise))) {
                Ok((d, mut found)) => {
                    let contact = membership.contact_handle();
                    tokio::spawn(async move {
                        while let Some(a) = found.recv().await {
                            contact(a);
                        }
                    });
                    Some(d)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS discovery unavailable; continuing with the configured peers");
                    None
                }
            }
        } else {
            None
        };
        tracing::info!(node = %r.name, api = %api_addr, gossip = %advertise, cluster = %identity.cluster_id, data_dir = %dd.display(), settle = ?settle, "node started");
        Ok(Node {
            name: r.name,
            api_addr,
            data_dir: dd,
            new_cluster_token,
            shutdown: shutdown_tx,
            tasks: [
                plan_task,
                forward,
                api_task,
                settle_task,
                isolation_task,
                peers_task,
                ae_task,
                digest_task,
                proxy_task,
            ]
            .into_iter()
            .chain(dns_task)
            .collect(),
            agent: agent_task,
            membership,
            statuses: status_rx,
            net,
            drain_limit: cfg.agent.handoff_timeout.min(Duration::from_secs(30)),
            _discovery: discovery,
        })
    }

    /// Leaves the cluster, lets pods hand off to their new owners (bounded),
    /// stops the rest with their grace periods, closes the network.
    pub async fn shutdown(self) {
        self.membership.leave().await;
        let view = self.membership.view();
        let deadline = Instant::now() + self.drain_limit;
        loop {
            let peers = view.borrow().nodes.values().filter(|n| n.state.alive() && n.info.name != self.name).count();
            if peers == 0 || self.statuses.borrow().is_empty() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.agent.await;
        for t in self.tasks {
            t.abort();
        }
        self.membership.shutdown().await;
        self.net.close().await;
        tracing::info!(node = %self.name, "node stopped");
    }
}

fn membership_info_setter(m: &Membership) -> impl Fn(bool) + Send + 'static {
    let tx = m.info_sender();
    move |schedulable| tx.send_modify(|i| i.schedulable = schedulable)
}
