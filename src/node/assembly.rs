//! One node's core parts, put together the same way for `shoal up` and for
//! every netsim node: membership, the replicated writer and anti-entropy,
//! the state-digest publisher, settle (after a start and after an
//! isolation), the planner, and the agent.
//!
//! What differs between a real node and a simulated one comes in as
//! arguments and nothing else: the clock (`Parts::clock`, and tokio's clock,
//! which netsim pauses), the network (`Network`: gossip transport, RPC client,
//! RPC server) and the runtime (the agent's `Executor`). The real node adds
//! its edges around this (API, proxy, DNS, TLS identity, discovery).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::adapters::StateResults;
use crate::agent::core::backoff::Backoff;
use crate::agent::core::decide::Handoff;
use crate::agent::core::{AgentCore, CoreConfig};
use crate::agent::cron;
use crate::agent::driver::{self, DriverConfig, Executor, Sinks};
use crate::config::NodeConfig;
use crate::events::EventLog;
use crate::membership::assemble::keys;
use crate::membership::engine::{Engine, Membership, Wire};
use crate::membership::service::{ClockAdjust, GossipConfig, MembershipError};
use crate::membership::settle::{self, Settle};
use crate::membership::swim::link::Link;
use crate::membership::view::{ClusterView, NodeInfo};
use crate::membership::watch::{Hello, Liveness, cluster_tag};
use crate::model::status::Statuses;
use crate::placement::plan::{Plan, PlanRules, PlanView, Planner};
use crate::state::StateDb;
use crate::state::sync::{ReplicatedWriter, Rpc, SyncService, hex_root, run_anti_entropy};

/// How a node talks to its peers.
pub trait Network: Send + Sync {
    /// chitchat's transport (opened once, by membership).
    fn gossip(&self) -> &dyn Transport;
    /// The same gossip port as raw frames, for SWIM (taken once, instead
    /// of `gossip`).
    fn link(&self) -> Arc<dyn Link>;
    /// Connections to peers' liveness ports (`membership::watch`).
    fn liveness(&self) -> Arc<dyn Liveness>;
    /// Opens this node's liveness port, answering with `hello` until the
    /// node's process ends.
    fn serve_liveness(&self, hello: Hello);
    /// Requests to peers' replication services.
    fn rpc(&self) -> Arc<dyn Rpc>;
    /// Answers peers' replication requests with `svc`.
    fn serve_sync(&self, svc: Arc<SyncService>);
}

/// The settings of the assembled parts (from the node config).
#[derive(Debug, Clone)]
pub struct Settings {
    pub engine: Engine,
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    pub suspect_after: Duration,
    pub dead_after: Duration,
    pub dead_node_grace: Duration,
    pub settle_time: Duration,
    pub write_replicas: u32,
    pub write_timeout: Duration,
    pub anti_entropy_interval: Duration,
    pub tombstone_horizon: Duration,
    pub plan: PlanRules,
    pub handoff: Handoff,
    pub backoff: Backoff,
    pub cron_fallback_delay: Duration,
}

/// The agent reconciles at least this often, besides every plan change and
/// every timer of its own.
pub const AGENT_TICK: Duration = Duration::from_millis(500);

impl Settings {
    pub fn from_config(c: &NodeConfig) -> Settings {
        Settings {
            engine: c.membership.engine,
            gossip_interval: c.membership.gossip_interval,
            phi_threshold: c.membership.phi_threshold,
            suspect_after: c.membership.suspect_after,
            dead_after: c.membership.dead_after,
            dead_node_grace: c.membership.dead_node_grace,
            settle_time: c.membership.settle_time,
            write_replicas: c.state.write_replicas,
            write_timeout: c.state.write_timeout,
            anti_entropy_interval: c.state.anti_entropy_interval,
            tombstone_horizon: c.state.tombstone_horizon,
            plan: PlanRules {
                fence_delay_secs: c.placement.fence_delay.as_secs(),
                linger_ms: c.agent.handoff_linger.as_millis() as u64,
            },
            handoff: Handoff { timeout: c.agent.handoff_timeout, linger: c.agent.handoff_linger },
            cron_fallback_delay: c.placement.cron_fallback_delay,
            backoff: Backoff {
                initial: c.agent.restart_backoff_initial,
                max: c.agent.restart_backoff_max,
                reset_after: c.agent.restart_backoff_reset,
            },
        }
    }
}

/// What one node brings to the assembly.
pub struct Parts<'a> {
    pub info: NodeInfo,
    /// The gossip address peers reach this node at.
    pub advertise: SocketAddr,
    pub cluster_id: String,
    pub seeds: Vec<String>,
    /// The desired state (on disk, or in memory in netsim: it outlives the node).
    pub db: Arc<StateDb>,
    pub network: &'a dyn Network,
    /// Unix seconds now.
    pub clock: fn() -> u64,
    /// Unix milliseconds now (the same clock).
    pub clock_ms: fn() -> u64,
    /// Unix seconds of this node's recent starts, this one included.
    pub starts: Vec<u64>,
    /// Seeds the node's own randomness (write fan-out, anti-entropy peers).
    pub seed: u64,
    pub events: Arc<EventLog>,
    /// netsim's frozen host (see `GossipConfig::frozen`); `None` for a real node.
    pub frozen: Option<watch::Receiver<bool>>,
    /// The members this node knew before it started (see `GossipConfig`).
    pub remembered: Vec<String>,
    /// Corrects this node's clock to the cluster's (see `GossipConfig`).
    pub adjust_clock: Option<ClockAdjust>,
}

/// The assembled node.
pub struct Assembly {
    pub name: String,
    pub membership: Membership,
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// The plan this node computes (every node computes the same).
    pub plan: watch::Receiver<Arc<PlanView>>,
    pub writer: Arc<ReplicatedWriter>,
    /// The statuses of this node's pods, as the agent reports them.
    pub statuses: watch::Receiver<Statuses>,
    /// How long this node takes no pods after this start.
    pub settle: Duration,
    status_tx: Option<watch::Sender<Statuses>>,
    settings: Settings,
    clock: fn() -> u64,
    clock_ms: fn() -> u64,
    db: Arc<StateDb>,
    info: NodeInfo,
    events: Arc<EventLog>,
    shutdown_tx: watch::Sender<bool>,
    shutdown_rx: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    agent: Option<JoinHandle<()>>,
}

impl Assembly {
    pub async fn start(p: Parts<'_>, s: Settings) -> Result<Assembly, MembershipError> {
        let (status_tx, status_rx) = driver::status_channel();
        let gossip = GossipConfig {
            cluster_id: p.cluster_id,
            gossip_interval: s.gossip_interval,
            phi_threshold: s.phi_threshold,
            suspect_after: s.suspect_after,
            dead_after: s.dead_after,
            dead_node_grace: s.dead_node_grace,
            seeds: p.seeds,
            clock: p.clock,
            clock_ms: p.clock_ms,
            adjust_clock: p.adjust_clock,
            frozen: p.frozen,
            remembered: p.remembered,
        };
        let info = p.info.clone();
        // The liveness port opens before gossip: a peer that hears of this
        // node can watch it at once.
        p.network.serve_liveness(Hello {
            cluster: cluster_tag(&gossip.cluster_id),
            name: info.name.clone(),
            generation: info.generation,
            time_ms: None,
        });
        let wire = match s.engine {
            Engine::Chitchat => Wire::Chitchat(p.network.gossip()),
            Engine::Swim => Wire::Swim(p.network.link()),
        };
        let net = (wire, p.network.liveness());
        let membership =
            Membership::start(gossip, p.info, p.advertise, net, status_rx.clone(), p.events.clone()).await?;
        let view = membership.view();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let rpc = p.network.rpc();
        p.network.serve_sync(Arc::new(SyncService { db: p.db.clone() }));
        // From here on, writes reach write_replicas nodes before they are acknowledged.
        let writer = Arc::new(ReplicatedWriter {
            rng: std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(p.seed ^ 0x77)),
            db: p.db.clone(),
            rpc: rpc.clone(),
            view: view.clone(),
            write_replicas: s.write_replicas,
            timeout: s.write_timeout,
        });
        tasks.push(tokio::spawn(run_anti_entropy(
            p.db.clone(),
            rpc,
            view.clone(),
            s.anti_entropy_interval,
            s.tombstone_horizon,
            p.seed,
            shutdown_rx.clone(),
        )));
        tasks.push(spawn_digest_publisher(&p.db, membership.key_setter()));
        let settle = Settle::new(s.settle_time, p.starts, (p.clock)());
        let settle_time = settle.after_start();
        tasks.push(tokio::spawn(settle::run(
            view.clone(),
            membership.info_sender(),
            settle,
            p.clock,
            shutdown_rx.clone(),
        )));
        let (plan, planner) = spawn_planner(&p.db, view.clone(), s.plan, p.clock_ms);
        tasks.push(planner);
        Ok(Assembly {
            name: info.name.clone(),
            membership,
            view,
            plan,
            writer,
            statuses: status_rx,
            settle: settle_time,
            status_tx: Some(status_tx),
            settings: s,
            clock: p.clock,
            clock_ms: p.clock_ms,
            db: p.db.clone(),
            info,
            events: p.events,
            shutdown_tx,
            shutdown_rx,
            tasks,
            agent: None,
        })
    }

    /// The agent's part of this node's own plan, kept current.
    pub fn own_plan(&mut self) -> watch::Receiver<Arc<Plan>> {
        let mut prx = self.plan.clone();
        let (tx, rx) = watch::channel(prx.borrow_and_update().plan.clone());
        self.tasks.push(tokio::spawn(async move {
            while prx.changed().await.is_ok() {
                let p = prx.borrow_and_update().plan.clone();
                tx.send_replace(p);
            }
        }));
        rx
    }

    /// Starts the agent on `exec`, following `plan` (this node's own plan,
    /// or in netsim's leader baseline, the leader's): the pods it owns, and
    /// the CronJobs it fires.
    pub fn spawn_agent<E: Executor>(&mut self, exec: E, plan: watch::Receiver<Arc<Plan>>) {
        let Some(statuses) = self.status_tx.take() else { return };
        let triggers =
            cron::CronSettings { fallback_delay: self.settings.cron_fallback_delay, clock_ms: self.clock_ms };
        self.tasks.push(tokio::spawn(cron::run(
            self.name.clone(),
            self.db.clone(),
            self.writer.clone(),
            plan.clone(),
            self.events.clone(),
            triggers,
            self.shutdown_rx.clone(),
        )));
        let core = AgentCore::new(CoreConfig {
            node: self.name.clone(),
            host_ip: self.info.node_ip.clone(),
            backoff: self.settings.backoff,
            handoff: self.settings.handoff,
        });
        let sinks = Sinks {
            statuses,
            results: Arc::new(StateResults { writer: self.writer.clone() }),
            events: self.events.clone(),
        };
        let cfg = DriverConfig { tick: AGENT_TICK, unix: self.clock };
        self.agent = Some(tokio::spawn(driver::run(core, exec, plan, self.shutdown_rx.clone(), sinks, cfg)));
    }

    /// The shutdown signal the node's other tasks follow.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_rx.clone()
    }

    /// Adds a task to stop with the node.
    pub fn adopt_task(&mut self, t: JoinHandle<()>) {
        self.tasks.push(t);
    }

    /// Stops everything at once, as a crash would: no leave, no goodbye,
    /// nothing stopped. (netsim; pods are the runtime's business.)
    pub fn abort(self) {
        self.membership.abort();
        for t in self.tasks.into_iter().chain(self.agent) {
            t.abort();
        }
    }

    /// Stops the agent (every pod with its grace period), then the rest.
    pub async fn stop(self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(a) = self.agent {
            let _ = a.await;
        }
        for t in self.tasks {
            t.abort();
        }
        self.membership.shutdown().await;
    }
}

/// Publishes the digest of the desired state in gossip whenever it changes,
/// so that anti-entropy picks peers that differ.
fn spawn_digest_publisher(db: &Arc<StateDb>, set: impl Fn(&str, String) + Send + 'static) -> JoinHandle<()> {
    let (db, mut rx) = (db.clone(), db.subscribe());
    tokio::spawn(async move {
        loop {
            set(keys::STATE_DIGEST, hex_root(&db));
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

/// A wall-clock step at least this big between two plans (beyond the time
/// that passed) is a correction of the node's clock, not drift.
pub const CLOCK_STEP_MS: i64 = 1000;

/// How long the planner waits after a change for the rest of its burst (a
/// node dying, its pods reporting): one recomputation, not hundreds.
pub const PLAN_DEBOUNCE: Duration = Duration::from_millis(20);

/// Shortest time between the starts of two plans. A change after a quiet
/// spell is planned within `PLAN_DEBOUNCE`; under a steady stream of changes
/// (pods coming up all over a large cluster: each one changes every node's
/// view) a node plans at most ten times a second, not fifty. Costs at most
/// this much on top of failure detection when a death follows a plan.
pub const PLAN_GAP: Duration = Duration::from_millis(100);

/// Recomputes the plan whenever the desired state or the view changes (and
/// every second, as time matters too, unless nothing the last plan waited on
/// has ended: `Planner::unchanged`). `clock_ms` gives unix milliseconds.
pub fn spawn_planner(
    db: &Arc<StateDb>,
    mut view_rx: watch::Receiver<Arc<ClusterView>>,
    rules: PlanRules,
    clock_ms: fn() -> u64,
) -> (watch::Receiver<Arc<PlanView>>, JoinHandle<()>) {
    let mut state_rx = db.subscribe();
    let mut planner = Planner::default();
    let first = planner.plan(&state_rx.borrow_and_update(), &view_rx.borrow_and_update(), &rules, clock_ms());
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        // The wall clock against elapsed time: a step (the node's clock
        // corrected to the cluster's) moves the planner's kept times too.
        let mut last = (clock_ms(), tokio::time::Instant::now());
        loop {
            tokio::select! {
                r = state_rx.changed() => if r.is_err() { return },
                r = view_rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = tokio::time::Instant::now();
            tokio::time::sleep_until((now + PLAN_DEBOUNCE).max(last.1 + PLAN_GAP)).await;
            let snap = state_rx.borrow_and_update().clone();
            let view = view_rx.borrow_and_update().clone();
            let now = (clock_ms(), tokio::time::Instant::now());
            let expected = last.0 + now.1.duration_since(last.1).as_millis() as u64;
            let step = now.0 as i64 - expected as i64;
            if step.abs() >= CLOCK_STEP_MS {
                planner.clock_moved(step / 1000);
            }
            last = now;
            if planner.unchanged(&snap, &view, now.0) {
                continue;
            }
            tx.send_replace(Arc::new(planner.plan(&snap, &view, &rules, now.0)));
        }
    });
    (rx, task)
}
