//! Wiring: one node = state + membership + planner + agent + proxy + API.
//!
//! Owns startup order and shutdown. Startup: data dir, identity, desired
//! state from disk, runtimes, membership, planner, agent, API. Shutdown:
//! leave the cluster, stop every pod (SIGTERM, grace, kill), close the API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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
use crate::membership::view::{ClusterView, NodeInfo, NodeState, NodeView, detect_capacity};
use crate::metrics::Metrics;
use crate::model::pods::{PodResult, Resources, RuntimeKind};
use crate::model::quantity::{parse_cpu_millis, parse_memory_bytes};
use crate::placement::plan::{PlanView, make_plan};
use crate::state::entry::kinds;
use crate::state::{Key, LocalWriter, StateDb, Writer};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::state::store::StoreError),
    #[error(
        "cannot listen on {addr} for the API: {source} (is another node using it? pass --api-addr or --node-ip)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Creates the file with mode 0600 if absent, filled by `make`; returns its trimmed content.
pub fn secret_file(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        return Ok(s.trim().to_string());
    }
    let value = make();
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(value.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(value)
}

/// A random hex string of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
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
        self.db
            .snapshot()
            .pod_results
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
    async fn record(&self, namespace: &str, name: &str, result: PodResult) -> Result<(), String> {
        let bytes = serde_json::to_vec(&result).map_err(|e| e.to_string())?;
        self.writer
            .write(vec![(
                Key::new(kinds::POD_RESULT, namespace, name),
                Some(bytes),
            )])
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
        NodeError::Config(crate::config::ConfigError::Invalid {
            field: field.into(),
            message: e,
        })
    };
    let cpu = match &cfg.capacity.cpu {
        Some(q) => parse_cpu_millis(q).map_err(|e| bad("capacity.cpu", e.to_string()))?,
        None => detected.cpu_millis,
    };
    let mem = match &cfg.capacity.memory {
        Some(q) => parse_memory_bytes(q).map_err(|e| bad("capacity.memory", e.to_string()))?,
        None => detected.memory_bytes,
    };
    let rcpu = parse_cpu_millis(&cfg.capacity.reserved_cpu)
        .map_err(|e| bad("capacity.reserved_cpu", e.to_string()))?;
    let rmem = parse_memory_bytes(&cfg.capacity.reserved_memory)
        .map_err(|e| bad("capacity.reserved_memory", e.to_string()))?;
    let capacity = Resources {
        cpu_millis: cpu,
        memory_bytes: mem,
    };
    let allocatable = Resources {
        cpu_millis: cpu.saturating_sub(rcpu),
        memory_bytes: mem.saturating_sub(rmem),
    };
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    Ok(NodeInfo {
        name: r.name.clone(),
        generation,
        api_url: format!("http://{}", r.api_addr),
        gossip_addr: SocketAddr::new(r.node_ip, r.gossip_addr.port()).to_string(),
        node_ip: r.node_ip.to_string(),
        capacity,
        allocatable,
        weight: cfg.capacity.weight.unwrap_or(cpu).max(1),
        max_pods: cfg.capacity.max_pods,
        labels: cfg.labels.clone(),
        runtimes: runtimes.iter().copied().collect(),
        arch: std::env::consts::ARCH.into(),
        os: std::env::consts::OS.into(),
        hostname,
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: generation / 1000,
        schedulable: true,
    })
}

/// A running node.
pub struct Node {
    pub name: String,
    pub api_addr: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    agent: JoinHandle<()>,
}

/// Recomputes the plan whenever the desired state or the view changes.
fn spawn_planner(
    db: &Arc<StateDb>,
    mut view_rx: watch::Receiver<Arc<ClusterView>>,
    epsilon: f64,
) -> (watch::Receiver<Arc<PlanView>>, JoinHandle<()>) {
    let mut state_rx = db.subscribe();
    let first = make_plan(
        &state_rx.borrow_and_update(),
        &view_rx.borrow_and_update(),
        epsilon,
    );
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = state_rx.changed() => if r.is_err() { return },
                r = view_rx.changed() => if r.is_err() { return },
            }
            let snap = state_rx.borrow_and_update().clone();
            let view = view_rx.borrow_and_update().clone();
            let pv = make_plan(&snap, &view, epsilon);
            tx.send_replace(Arc::new(pv));
        }
    });
    (rx, task)
}

/// A cluster of one: this node's record plus the pods its agent reports.
fn spawn_local_view(
    info: NodeInfo,
    mut statuses: watch::Receiver<Statuses>,
) -> (watch::Receiver<Arc<ClusterView>>, JoinHandle<()>) {
    let name = info.name.clone();
    let build = move |pods: &Statuses| {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            name.clone(),
            NodeView {
                info: info.clone(),
                state: NodeState::Ready,
                since: info.started_at,
                pods: (**pods).clone(),
            },
        );
        Arc::new(ClusterView {
            self_name: name.clone(),
            nodes,
            quorum: true,
        })
    };
    let (tx, rx) = watch::channel(build(&statuses.borrow_and_update()));
    let task = tokio::spawn(async move {
        while statuses.changed().await.is_ok() {
            let v = build(&statuses.borrow_and_update());
            tx.send_replace(v);
        }
    });
    (rx, task)
}

impl Node {
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let r = cfg.resolve()?;
        let dd = r.data_dir.clone();
        let dir_err = |e| NodeError::DataDir(dd.display().to_string(), e);
        std::fs::create_dir_all(&dd).map_err(dir_err)?;
        let _ = std::fs::set_permissions(&dd, std::fs::Permissions::from_mode(0o700));
        let token = secret_file(&token_path(&dd), || random_hex(32)).map_err(dir_err)?;
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

        let marker = agent_marker(&dd);
        let mut runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>> = BTreeMap::new();
        runtimes.insert(RuntimeKind::Process, Arc::new(ProcessRuntime::new(marker)));
        let info = self_info(
            &cfg,
            &r,
            generation,
            &runtimes.keys().copied().collect::<Vec<_>>(),
        )?;

        let writer: Arc<dyn Writer> = Arc::new(LocalWriter { db: db.clone() });
        let listener = tokio::net::TcpListener::bind(r.api_addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: r.api_addr,
                source,
            })?;
        let api_addr = listener
            .local_addr()
            .map_err(|e| NodeError::Other(e.to_string()))?;
        let mut info = info;
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
            log_limits: LogLimits {
                max_bytes: r.log_max_bytes,
                max_files: cfg.agent.log_max_files.max(1),
            },
            ports: PortAllocator::new(r.node_ip, [api_addr.port(), r.gossip_addr.port()]),
            runtimes,
            events: events.clone(),
            namespace_env: Box::new(|_| Vec::new()),
        });
        let results = Arc::new(StateResults {
            db: db.clone(),
            writer: writer.clone(),
        });
        let (agent, status_rx) = Agent::new(
            ctx.clone(),
            AgentConfig {
                handoff_timeout: cfg.agent.handoff_timeout,
            },
            results,
        );
        let (view_rx, view_task) = spawn_local_view(info, status_rx);
        let (plan_rx, plan_task) = spawn_planner(&db, view_rx.clone(), cfg.placement.epsilon);
        let (agent_plan_tx, agent_plan_rx) = watch::channel(plan_rx.borrow().plan.clone());
        let mut prx = plan_rx.clone();
        let forward = tokio::spawn(async move {
            while prx.changed().await.is_ok() {
                let p = prx.borrow_and_update().plan.clone();
                agent_plan_tx.send_replace(p);
            }
        });
        let agent_task = tokio::spawn(agent.run(agent_plan_rx, shutdown_rx.clone()));

        let api_ctx = Arc::new(ApiCtx {
            node_name: r.name.clone(),
            token,
            db: db.clone(),
            writer,
            view: view_rx,
            plan: plan_rx,
            events,
            validation: crate::model::validate::Context {
                node_port_range: r.node_port_range,
            },
            apply_lock: tokio::sync::Mutex::new(()),
            logs_dir: ctx.logs_dir(),
            log_limits: ctx.log_limits,
            metrics,
            started: Instant::now(),
            cluster: None,
        });
        let api_task = tokio::spawn({
            let rx = shutdown_rx.clone();
            async move {
                if let Err(e) = server::serve(listener, api_ctx, rx).await {
                    tracing::error!(error = %e, "API server failed");
                }
            }
        });
        tracing::info!(node = %r.name, api = %api_addr, node_ip = %r.node_ip, data_dir = %dd.display(), "node started");
        Ok(Node {
            name: r.name,
            api_addr,
            data_dir: dd,
            shutdown: shutdown_tx,
            tasks: vec![view_task, plan_task, forward, api_task],
            agent: agent_task,
        })
    }

    /// Stops every pod (each with its grace period) and the API.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.agent.await;
        for t in self.tasks {
            t.abort();
        }
        tracing::info!(node = %self.name, "node stopped");
    }
}
