//! A real node (`shoal up`): the edges around the shared assembly.
//!
//! Startup order: data dir; cluster identity (create, join with a token, or
//! reload); desired state from disk; QUIC endpoint; runtimes; the assembly
//! (membership, replication, settle, planner, agent); then the API, the
//! service proxy, DNS, peer memory and discovery. Shutdown: announce the
//! leave (peers see Left at once and start replacements), let pods hand off
//! for a bounded time, stop the rest (SIGTERM, grace, kill), close the
//! network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::NodeError;
use super::adapters::QuicNetwork;
use super::assembly::{Assembly, Parts, Settings};
use super::cluster::{JoinService, Tokens};
use super::identity::{agent_marker, identity, record_start, remembered_members, self_info, spawn_peer_memory};
use crate::agent::docker::{self, DockerRuntime};
use crate::agent::exec::RuntimeExecutor;
use crate::agent::exec::prepare::PodCtx;
use crate::agent::logs::LogLimits;
use crate::agent::ports::PortAllocator;
use crate::agent::process::ProcessRuntime;
use crate::agent::runtime::Runtime;
use crate::api::server::{self, ApiCtx};
use crate::config::{Balancer, Discover, DockerMode, NodeConfig, Resolved};
use crate::events::EventLog;
use crate::membership::discovery::{self, Discovery};
use crate::membership::view::{ClusterView, NodeInfo};
use crate::metrics::Metrics;
use crate::model::pods::RuntimeKind;
use crate::net::quic::Net;
use crate::state::{LocalWriter, StateDb, Writer};
use crate::util::unix_millis;

/// A running node.
pub struct Node {
    pub name: String,
    pub api_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Printed once when this node created the cluster.
    pub new_cluster_token: Option<String>,
    assembly: Assembly,
    tasks: Vec<JoinHandle<()>>,
    net: Arc<Net>,
    drain_limit: Duration,
    _discovery: Option<Discovery>,
}

/// The runtimes this node offers; Docker's engine is watched separately.
async fn runtimes(
    cfg: &NodeConfig,
    dd: &std::path::Path,
) -> Result<(BTreeMap<RuntimeKind, Arc<dyn Runtime>>, Option<Arc<DockerRuntime>>), NodeError> {
    let mut runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>> = BTreeMap::new();
    runtimes.insert(RuntimeKind::Process, Arc::new(ProcessRuntime::new(agent_marker(dd))));
    if cfg.runtimes.docker == DockerMode::Off {
        return Ok((runtimes, None));
    }
    let socket = docker::socket_path(cfg.runtimes.docker_socket.as_deref());
    let rt = Arc::new(DockerRuntime::new(socket.clone(), agent_marker(dd)));
    if !rt.available().await {
        if cfg.runtimes.docker == DockerMode::On {
            return Err(NodeError::DockerRequired { socket });
        }
        tracing::info!(%socket, "no Docker engine answers; the docker runtime comes online when it does");
    }
    runtimes.insert(RuntimeKind::Docker, rt.clone());
    Ok((runtimes, Some(rt)))
}

/// Advertises the docker runtime only while its engine answers: placement
/// then moves docker pods away from a node whose engine died.
fn watch_docker(rt: Arc<DockerRuntime>, a: &Assembly, events: Arc<EventLog>) {
    let (info_tx, me) = (a.membership.info_sender(), a.name.clone());
    docker::watch_engine(
        rt,
        move |up| {
            info_tx.send_modify(|i: &mut NodeInfo| {
                if up {
                    Arc::make_mut(&mut i.runtimes).insert(RuntimeKind::Docker);
                } else {
                    Arc::make_mut(&mut i.runtimes).remove(&RuntimeKind::Docker);
                }
            });
            let reason = if up { "RuntimeReady" } else { "RuntimeUnavailable" };
            events.node(!up, &me, reason, format!("docker runtime {}", if up { "available" } else { "unavailable" }));
        },
        a.shutdown_signal(),
    );
}

/// The DNS responder for `*.svc.shoal`, when configured and bindable.
async fn spawn_dns(
    cfg: &NodeConfig,
    r: &Resolved,
    db: &Arc<StateDb>,
    a: &Assembly,
) -> Result<Option<JoinHandle<()>>, NodeError> {
    let auto = SocketAddr::new(r.node_ip, 53);
    let addr = match cfg.proxy.dns_addr.as_str() {
        "" => return Ok(None),
        "auto" => auto,
        a => a.parse().unwrap_or(auto),
    };
    match tokio::net::UdpSocket::bind(addr).await {
        Ok(sock) => {
            tracing::info!(%addr, "DNS responder for *.svc.shoal");
            let serve = crate::proxy::dns::serve(sock, db.subscribe(), a.view.clone(), a.shutdown_signal());
            Ok(Some(tokio::spawn(serve)))
        }
        Err(e) if cfg.proxy.dns_addr == "auto" => {
            tracing::warn!(%addr, error = %e, "no DNS responder (set proxy.dns_addr to a free address to enable it)");
            Ok(None)
        }
        Err(source) => Err(NodeError::DnsBind { addr, source }),
    }
}

/// Peers found on the LAN are gossiped with at once.
fn start_discovery(tag: &str, name: &str, advertise: SocketAddr, a: &Assembly) -> Option<Discovery> {
    match discovery::start(tag, Some((name, advertise))) {
        Ok((d, mut found)) => {
            let contact = a.membership.contact_handle();
            tokio::spawn(async move {
                while let Some(addr) = found.recv().await {
                    contact(addr);
                }
            });
            Some(d)
        }
        Err(e) => {
            tracing::warn!(error = %e, "mDNS discovery unavailable; continuing with the configured peers");
            None
        }
    }
}

/// Join addresses: the configured ones, those a join answered with, and
/// the peers this node knew before it stopped.
fn seeds(cfg: &NodeConfig, r: &Resolved, joined: Vec<String>, advertise: SocketAddr) -> Vec<String> {
    let mut seeds: Vec<String> = cfg.join.clone();
    seeds.extend(joined);
    seeds.extend(std::fs::read_to_string(r.data_dir.join("peers")).unwrap_or_default().lines().map(String::from));
    seeds.retain(|s| !s.is_empty() && s != &advertise.to_string());
    seeds.sort();
    seeds.dedup();
    seeds
}

impl Node {
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let r = cfg.resolve()?;
        if cfg.placement.epsilon.is_some() {
            tracing::warn!(
                "placement.epsilon is no longer used (each workload is spread evenly on its own); remove it"
            );
        }
        let dd = r.data_dir.clone();
        std::fs::create_dir_all(&dd).map_err(|e| NodeError::DataDir(dd.display().to_string(), e))?;
        let _ = std::fs::set_permissions(&dd, std::fs::Permissions::from_mode(0o700));
        super::identity::check_format(&dd)?;
        let found = identity(&cfg, &r).await?;
        let id = found.identity;
        let advertise = SocketAddr::new(r.node_ip, r.gossip_addr.port());
        let seeds = seeds(&cfg, &r, found.peers.clone(), advertise);
        check_clock_at_start(&seeds, &id.cluster_id).await;
        let db = Arc::new(open_state(&cfg, &dd, &r.name)?);
        let generation = super::identity::next_generation(&dd, unix_millis());
        let events = Arc::new(EventLog::new(&r.name));
        let metrics = Arc::new(Metrics::new());
        let ca_hash = id.ca_hash()?;
        let keys = Arc::new(open_keys(&cfg, &dd, &id.cluster_id, &r.name, found.new_cluster)?);
        let new_cluster_token = if found.new_cluster {
            // Before the cluster exists, the token is written here only.
            let local: Arc<dyn Writer> = Arc::new(LocalWriter { db: db.clone() });
            Some(Tokens { ca_hash: ca_hash.clone(), db: db.clone(), writer: local }.rotate().await?)
        } else {
            None
        };

        let (net, inbox) = Net::bind(r.gossip_addr, advertise, &id, metrics.clone())?;
        let listener = tokio::net::TcpListener::bind(r.api_addr)
            .await
            .map_err(|source| NodeError::Bind { addr: r.api_addr, source })?;
        let api_addr = listener.local_addr().map_err(|source| NodeError::Bind { addr: r.api_addr, source })?;
        let (runtimes, docker) = runtimes(&cfg, &dd).await?;
        let mut offered = vec![RuntimeKind::Process];
        if let Some(d) = &docker
            && d.available().await
        {
            offered.push(RuntimeKind::Docker);
        }
        let mut info = self_info(&cfg, &r, generation, &offered)?;
        // Clients dial the API at its address, or the node's when it
        // listens on every interface; it speaks HTTPS (`api::listen`).
        let api_host = if api_addr.ip().is_unspecified() { r.node_ip } else { api_addr.ip() };
        info.api_url = format!("https://{}", SocketAddr::new(api_host, api_addr.port()));
        let listen = api_listen(&id, &r, api_addr, cfg.api_plain_http)?;

        let liveness_addr =
            SocketAddr::new(r.gossip_addr.ip(), net.local_addr().map_or(advertise.port(), |a| a.port()));
        let network = QuicNetwork::new(net.clone(), inbox, liveness_addr);
        let parts = Parts {
            info,
            advertise,
            cluster_id: id.cluster_id.clone(),
            seeds,
            db: db.clone(),
            network: &network,
            clock: crate::util::unix_secs,
            clock_ms: crate::util::unix_millis,
            starts: record_start(&dd),
            seed: rand::random(),
            events: events.clone(),
            frozen: None,
            remembered: remembered_members(&dd),
            adjust_clock: Some(clock_adjust(db.clone())),
        };
        let mut a = Assembly::start(parts, Settings::from_config(&cfg)).await?;
        let ctx = Arc::new(PodCtx {
            node_name: r.name.clone(),
            node_ip: r.node_ip,
            generation,
            data_dir: dd.clone(),
            log_limits: LogLimits { max_bytes: r.log_max_bytes, max_files: cfg.agent.log_max_files.max(1) },
            ports: PortAllocator::new(r.node_ip, [api_addr.port(), r.gossip_addr.port()]),
            runtimes,
            namespace_env: {
                let (db, ip) = (db.clone(), r.node_ip.to_string());
                Box::new(move |ns| crate::proxy::env::service_env(&db.snapshot(), ns, &ip))
            },
            config: super::keys::config_source(db.clone(), keys.clone()),
            secrets_dir: secrets_dir(&dd)?,
            fence_lease: crate::agent::runtime::LeaseSpec {
                ttl: cfg.agent.fence_lease,
                until: lease_watch(a.membership.majority(), a.shutdown_signal()),
            },
            containers: Default::default(),
        });
        let own = a.own_plan();
        a.spawn_agent(RuntimeExecutor::new(ctx.clone()), own);
        let writer: Arc<dyn Writer> = a.writer.clone();
        let tokens = Arc::new(Tokens { ca_hash: ca_hash.clone(), db: db.clone(), writer: writer.clone() });
        net.set_join_handler(Arc::new(JoinService {
            identity: id.clone(),
            db: db.clone(),
            view: a.view.clone(),
            api_token: found.api_token.clone(),
            metrics: metrics.clone(),
        }));
        if let Some(d) = docker {
            watch_docker(d, &a, events.clone());
        }
        net.set_keys_handler(Arc::new(super::keys::KeysHandler {
            keys: keys.clone(),
            db: db.clone(),
            metrics: metrics.clone(),
        }));
        let key_exchange = Arc::new(super::keys::KeyExchange {
            net: net.clone(),
            keys: keys.clone(),
            view: a.view.clone(),
            db: db.clone(),
        });

        let proxy_status = Arc::new(crate::proxy::server::ProxyStatus::default());
        let api_ctx = Arc::new(ApiCtx {
            node_name: r.name.clone(),
            token: found.api_token,
            db: db.clone(),
            writer,
            view: a.view.clone(),
            plan: a.plan.clone(),
            events: events.clone(),
            validation: crate::model::validate::Context { node_port_range: r.node_port_range },
            apply_lock: tokio::sync::Mutex::new(()),
            logs_dir: ctx.logs_dir(),
            log_limits: ctx.log_limits,
            metrics: metrics.clone(),
            started: Instant::now(),
            cluster: Some(tokens),
            proxy: Some(proxy_status.clone()),
            keys: Some(keys.clone()),
            key_peers: Some(key_exchange.clone()),
            api_tls: crate::net::tls::api_client_config(&id.ca_cert_pem).ok().map(Arc::new),
            watch_cache: Default::default(),
            containers: ctx.containers.clone(),
        });
        let shutdown = a.shutdown_signal();
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = server::serve(listener, api_ctx, listen, shutdown).await {
                tracing::error!(error = %e, "API server failed");
            }
        })];
        let (held_tx, held_rx) = watch::channel(Arc::new(std::collections::BTreeMap::new()));
        if !r.lb_pool.is_empty() {
            tasks.push(tokio::spawn(crate::proxy::lb::run(
                lb_config(&cfg, &r),
                crate::proxy::lb::LbInputs {
                    state: db.subscribe(),
                    plan: a.plan.clone(),
                    view: a.view.clone(),
                    majority: a.membership.majority(),
                    publish: Box::new(a.membership.key_setter()),
                    held: held_tx,
                    status: proxy_status.clone(),
                    events: events.clone(),
                    shutdown: a.shutdown_signal(),
                },
            )));
        }
        tasks.push(tokio::spawn(crate::proxy::server::run(
            crate::proxy::server::ProxyConfig {
                node_ip: r.node_ip,
                connect_timeout: cfg.proxy.connect_timeout,
                response_timeout: cfg.proxy.response_timeout,
                round_robin: cfg.proxy.balancer == Balancer::RoundRobin,
                udp_idle_timeout: cfg.proxy.udp_idle_timeout,
                udp_max_flows: cfg.proxy.udp_max_flows,
                kernel_local: cfg.proxy.kernel_local,
            },
            crate::proxy::server::ProxyInputs {
                state: db.subscribe(),
                plan: a.plan.clone(),
                view: a.view.clone(),
                held: held_rx,
                status: proxy_status,
                metrics,
                events,
                shutdown: a.shutdown_signal(),
            },
        )));
        tasks.push(key_exchange.spawn(a.shutdown_signal()));
        tasks.push(spawn_config_sync(ctx.clone(), db.clone(), keys.clone(), a.plan.clone(), a.shutdown_signal()));
        tasks.push(spawn_log_sweep(
            r.name.clone(),
            ctx.logs_dir(),
            db.clone(),
            a.plan.clone(),
            a.view.clone(),
            a.shutdown_signal(),
        ));
        tasks.extend(spawn_dns(&cfg, &r, &db, &a).await?);
        tasks.push(spawn_peer_memory(dd.clone(), a.view.clone()));
        let discovery = match cfg.membership.discover {
            Discover::Mdns => start_discovery(&discovery::cluster_tag(&ca_hash), &r.name, advertise, &a),
            Discover::Off => None,
        };
        tracing::info!(node = %r.name, api = %api_addr, gossip = %advertise, cluster = %id.cluster_id, data_dir = %dd.display(), settle = ?a.settle, "node started");
        Ok(Node {
            name: r.name,
            api_addr,
            data_dir: dd,
            new_cluster_token,
            assembly: a,
            tasks,
            net,
            drain_limit: cfg.agent.handoff_timeout.min(Duration::from_secs(30)),
            _discovery: discovery,
        })
    }

    /// Leaves the cluster, lets pods hand off to their new owners (bounded),
    /// stops the rest with their grace periods, closes the network.
    pub async fn shutdown(self) {
        let a = &self.assembly;
        a.membership.leave().await;
        let view: watch::Receiver<Arc<ClusterView>> = a.view.clone();
        let deadline = Instant::now() + self.drain_limit;
        loop {
            let peers = view.borrow().nodes.values().filter(|n| n.state.alive() && n.info.name != self.name).count();
            if peers == 0 || a.statuses.borrow().is_empty() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.assembly.stop().await;
        for t in self.tasks {
            t.abort();
        }
        self.net.close().await;
        tracing::info!(node = %self.name, "node stopped");
    }
}

/// How often the log sweep runs.
const LOG_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Removes, every minute, the log files of pods that are neither desired,
/// reported by a node, nor a Job pod this node finished (its recorded
/// result names this node: an attempt cut short here is not its log).
fn spawn_log_sweep(
    me: String,
    dir: PathBuf,
    db: Arc<StateDb>,
    plan: watch::Receiver<Arc<crate::placement::plan::PlanView>>,
    view: watch::Receiver<Arc<crate::membership::view::ClusterView>>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LOG_SWEEP_EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let snapshot = db.snapshot();
            let (plan, view) = (plan.borrow().clone(), view.borrow().clone());
            let (dir, me) = (dir.clone(), me.clone());
            let _ = tokio::task::spawn_blocking(move || {
                crate::agent::logs::sweep(&dir, |ns, pod| {
                    let id = crate::model::pods::pod_id(ns, pod);
                    snapshot.pod_results.get(&(ns.to_string(), pod.to_string())).is_some_and(|r| r.node == me)
                        || plan.plan.desired.contains_key(&id)
                        || view.nodes.values().any(|n| n.pods.contains_key(&id))
                })
            })
            .await;
        }
    })
}

/// Keeps the `configMap` and `secret` volumes of the pods prepared on this
/// node equal to their objects: on every change of the desired state that
/// touches a ConfigMap or a Secret (or the node's keys), rewrites the files
/// that changed (an object that is gone leaves its last files, as in
/// Kubernetes). Only volumes whose directory exists are touched.
fn spawn_config_sync(
    ctx: Arc<PodCtx>,
    db: Arc<StateDb>,
    keys: Arc<crate::state::keys::DataKeys>,
    plan: watch::Receiver<Arc<crate::placement::plan::PlanView>>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    use crate::agent::exec::prepare::config_volume_dir;
    use crate::model::config::{volume_files, volume_ref};
    let mut state = db.subscribe();
    let mut key_changes = keys.subscribe();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            tokio::select! {
                r = state.changed() => if r.is_err() { return },
                r = key_changes.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let snapshot = db.snapshot();
            // Only what pods read: the ConfigMaps and Secrets, and the keys.
            let inputs: Vec<(crate::model::ObjectKey, crate::state::Stamp)> = snapshot
                .objects
                .iter()
                .filter(|(k, _)| matches!(k.kind, crate::model::Kind::ConfigMap | crate::model::Kind::Secret))
                .map(|(k, o)| (k.clone(), o.stamp))
                .collect();
            let now = (inputs, *key_changes.borrow_and_update());
            if last.as_ref() == Some(&now) {
                continue;
            }
            last = Some(now);
            let plan = plan.borrow().clone();
            let (ctx, db, keys) = (ctx.clone(), db.clone(), keys.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let lookup = |source, ns: &str, name: &str| super::keys::lookup(&db, &keys, source, ns, name);
                for d in plan.desired.iter() {
                    for v in &d.spec.volumes {
                        let Some(r) = volume_ref(v) else { continue };
                        let path = config_volume_dir(
                            &ctx.pods_dir(),
                            &ctx.secrets_dir,
                            r.source,
                            &d.namespace,
                            &d.name,
                            &v.name,
                        );
                        if !path.is_dir() {
                            continue;
                        }
                        let Ok(files) = volume_files(&d.namespace, &r, &lookup) else { continue };
                        match crate::agent::exec::config_files::write(&path, &files, r.mode) {
                            Ok(true) => {
                                tracing::info!(pod = %d.id(), volume = %v.name, from = %r.name, "volume updated")
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(pod = %d.id(), volume = %v.name, error = %e, "cannot update volume")
                            }
                        }
                    }
                }
            })
            .await;
        }
    })
}

/// The desired state from its store, or, with `--rebuild-state`, a fresh
/// one (the old file kept aside) that anti-entropy refills from peers.
fn open_state(cfg: &NodeConfig, dd: &std::path::Path, name: &str) -> Result<StateDb, NodeError> {
    let path = dd.join("state.redb");
    if cfg.state.rebuild && path.exists() {
        let aside = dd.join(format!("state.redb.bad-{}", crate::util::unix_secs()));
        std::fs::rename(&path, &aside).map_err(|e| NodeError::DataDir(dd.display().to_string(), e))?;
        tracing::warn!(kept = %aside.display(), "--rebuild-state: starting with an empty desired state; peers fill it in");
    }
    StateDb::open(&path, name, crate::util::ntp64_now, cfg.state.max_clock_skew).map_err(|e| match e {
        crate::state::store::StoreError::Open { .. }
        | crate::state::store::StoreError::Db(_)
        | crate::state::store::StoreError::Corrupt(..) => {
            NodeError::StoreUnreadable { path: path.display().to_string(), message: e.to_string() }
        }
    })
}

/// Corrects the node's clock to the cluster's: every wall-clock read
/// (`util`) and the state's hybrid logical clock.
fn clock_adjust(db: Arc<StateDb>) -> crate::membership::service::ClockAdjust {
    let apply = Arc::new(move |ms| {
        crate::util::set_clock_offset_ms(ms);
        db.clock_stepped();
    });
    crate::membership::service::ClockAdjust { apply, initial: crate::util::clock_offset_ms() }
}

/// Compares this host's clock with a few known peers' (their liveness
/// ports) before anything is stamped: a host whose clock is far off would
/// otherwise stamp its first writes on it, which peers refuse (too far in
/// the future) or which lose to older ones (too far in the past). Peers
/// that do not answer within a second are skipped; alone, nothing changes.
async fn check_clock_at_start(seeds: &[String], cluster_id: &str) {
    use crate::membership::watch::{Liveness, Probe, cluster_tag};
    let tag = cluster_tag(cluster_id);
    let mut probes = tokio::task::JoinSet::new();
    for addr in seeds.iter().filter_map(|s| s.parse::<SocketAddr>().ok()).take(5) {
        let tag = tag.clone();
        probes.spawn(async move {
            let sent = unix_millis();
            let p = crate::node::liveness::TcpLiveness.probe(addr).await;
            let heard = unix_millis();
            match p {
                Probe::Answered { hello, .. } if hello.cluster == tag => {
                    hello.time_ms.map(|t| (hello.name, t, sent, heard))
                }
                _ => None,
            }
        });
    }
    let mut sync = crate::membership::clock::ClockSync::default();
    while let Some(r) = probes.join_next().await {
        if let Ok(Some((name, t, sent, heard))) = r {
            sync.sample(&name, t, sent, heard);
        }
    }
    // Every answer is in: decide on what answered.
    if let Some(a) = sync.decide(0) {
        crate::util::set_clock_offset_ms(a.correction);
        let (secs, dir) = ((a.correction as f64 / 1000.0).abs(), if a.correction < 0 { "ahead of" } else { "behind" });
        tracing::warn!(
            "this host's clock is {secs:.1} s {dir} its peers' (the median of {} answering): Shoal runs on the cluster's time (state stamps, CronJob times, token expiry); set the host's clock right (NTP)",
            a.peers
        );
    }
}

/// The API port's TLS (a certificate of the cluster CA for every name and
/// address clients may use) and its plain-HTTP policy.
fn api_listen(
    id: &crate::net::tls::Identity,
    r: &crate::config::Resolved,
    api_addr: SocketAddr,
    plain: crate::config::PlainHttp,
) -> Result<crate::api::listen::Listen, NodeError> {
    let mut sans: Vec<String> = vec![r.name.clone(), "localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Some(h) = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()) {
        sans.push(h);
    }
    sans.push(r.node_ip.to_string());
    if api_addr.ip().is_unspecified() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let ip = a.address.and_then(|s| {
                    s.as_sockaddr_in()
                        .map(|v| std::net::IpAddr::V4(v.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v| std::net::IpAddr::V6(v.ip())))
                });
                if let Some(ip) = ip {
                    sans.push(ip.to_string());
                }
            }
        }
    } else {
        sans.push(api_addr.ip().to_string());
    }
    sans.sort();
    sans.dedup();
    let tls_err = |e: crate::net::tls::TlsError| NodeError::Keys(format!("the API's TLS certificate: {e}"));
    let (cert, key) = id.issue_api(&sans).map_err(tls_err)?;
    let tls = id.api_server_config(&cert, &key).map_err(tls_err)?;
    if plain == crate::config::PlainHttp::Any {
        tracing::warn!(
            "api_plain_http = any: the API also serves plain HTTP to every address, and API tokens cross the network in clear; use HTTPS (`shoal kubeconfig`) and drop this setting"
        );
    }
    Ok(crate::api::listen::Listen { tls: Arc::new(tls), plain })
}

/// Until when fenced pods' leases may be renewed: membership's majority
/// deadline, and nothing once the node shuts down.
/// This node's LoadBalancer settings: the interface defaults to the one
/// with the node IP.
fn lb_config(cfg: &NodeConfig, r: &Resolved) -> crate::proxy::lb::LbConfig {
    let interface = cfg
        .load_balancer
        .interface
        .clone()
        .or_else(|| crate::net::vip::interface_of(r.node_ip))
        .unwrap_or_else(|| "(no interface has the node IP: set load_balancer.interface)".into());
    crate::proxy::lb::LbConfig {
        node: r.name.clone(),
        pool: r.lb_pool.clone(),
        pool_text: cfg.load_balancer.pool.clone(),
        interface,
        ttl: cfg.agent.fence_lease,
        beat: crate::agent::lease::beat_interval(cfg.agent.fence_lease),
    }
}

fn lease_watch(
    mut majority: watch::Receiver<Option<tokio::time::Instant>>,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Option<tokio::time::Instant>> {
    let (tx, rx) = watch::channel(*majority.borrow());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = majority.changed() => if r.is_err() { break },
                _ = shutdown.wait_for(|s| *s) => break,
            }
            tx.send_replace(*majority.borrow_and_update());
        }
        // Shutting down: renew no more.
        let _ = tx.send(None);
    });
    rx
}

/// The private tmpfs directory of this node's `secret` volumes.
fn secrets_dir(dd: &std::path::Path) -> Result<PathBuf, NodeError> {
    let dir = crate::agent::exec::prepare::default_secrets_dir(&agent_marker(dd));
    crate::agent::exec::prepare::secure_secrets_dir(&dir)
        .map_err(|e| NodeError::Keys(format!("secret volumes in {}: {e}", dir.display())))?;
    Ok(dir)
}

/// This node's data keys: from their file (outside the data dir), or a
/// new key when this node creates the cluster. A node that joined, or
/// lost the file, receives them from a peer (`keys::KeyExchange`).
fn open_keys(
    cfg: &NodeConfig,
    dd: &std::path::Path,
    cluster_id: &str,
    name: &str,
    new_cluster: bool,
) -> Result<crate::state::keys::DataKeys, NodeError> {
    let path = cfg.data_key_file.clone().unwrap_or_else(|| crate::config::default_key_file(cluster_id, name));
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let parent = path.parent().map(canon).unwrap_or_default();
    if parent.starts_with(canon(dd)) {
        return Err(NodeError::Keys(format!(
            "the data key file {} is inside the data dir {}: a copy of the data dir would then open every Secret; put it elsewhere (--data-key-file, SHOAL_DATA_KEY_FILE)",
            path.display(),
            dd.display()
        )));
    }
    let keys = crate::state::keys::DataKeys::open(&path).map_err(|e| NodeError::Keys(e.to_string()))?;
    if new_cluster && keys.usable() == 0 {
        let id = keys.generate(unix_millis()).map_err(|e| NodeError::Keys(e.to_string()))?;
        tracing::info!(key = %id, file = %path.display(), "made the cluster data key");
    }
    Ok(keys)
}
