//! One simulated node: Shoal's real membership (chitchat), desired state
//! (CRDT map on redb's in-memory backend, replication and anti-entropy),
//! planner and reconcile decisions, on the simulated network and clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::agent::Statuses;
use shoal::agent::decide::{Handoff, Plan};
use shoal::events::EventLog;
use shoal::membership::service::{GossipConfig, Membership};
use shoal::membership::view::{ClusterView, NodeInfo};
use shoal::model::pods::{Resources, RuntimeKind};
use shoal::placement::plan::{PlanRules, PlanView};
use shoal::state::StateDb;
use shoal::state::sync::{ReplicatedWriter, SyncService, hex_root, run_anti_entropy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::{self, AgentSettings, AgentState};
use crate::clock;
use crate::leader::{self, LeaderSettings};
use crate::net::SimNet;
use crate::scenario::Timing;

/// Which design the nodes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leaderless,
    Leader,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Leaderless => "leaderless",
            Mode::Leader => "leader",
        }
    }
}

/// What every node of a run shares.
pub struct Ctx {
    pub net: SimNet,
    pub timing: Timing,
    pub mode: Mode,
    pub seeds: Vec<String>,
    pub seed: u64,
}

/// A running node's parts.
pub struct Live {
    pub generation: u64,
    pub membership: Membership,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub local_plan: watch::Receiver<Arc<PlanView>>,
    /// What the agent follows, and a digest of its owners (agreement).
    pub follow: watch::Receiver<(Arc<Plan>, u64)>,
    pub agent: Arc<Mutex<AgentState>>,
    pub writer: Arc<ReplicatedWriter>,
    tasks: Vec<JoinHandle<()>>,
    _shutdown: watch::Sender<bool>,
}

pub struct SimNode {
    pub name: String,
    pub index: usize,
    pub addr: SocketAddr,
    pub cores: u64,
    /// Survives crashes (it is the node's disk).
    pub db: Arc<StateDb>,
    pub live: Option<Live>,
    /// Frozen until this virtual time.
    pub paused_until: Option<Duration>,
    pub boots: u64,
}

/// The name of the node with this index.
pub fn name_of(index: usize) -> String {
    format!("n{index:03}")
}

pub fn addr_of(index: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + index as u32 + 1)), 7421)
}

impl SimNode {
    pub fn new(index: usize, cores: u64) -> SimNode {
        let name = name_of(index);
        let db = Arc::new(StateDb::in_memory(&name, clock::ntp64, Duration::from_secs(60)).expect("in-memory state"));
        SimNode { name, index, addr: addr_of(index), cores, db, live: None, paused_until: None, boots: 0 }
    }

    pub fn up(&self) -> bool {
        self.live.is_some()
    }

    /// Starts (or restarts, with a new generation) the node.
    pub async fn boot(&mut self, ctx: &Ctx) {
        self.boots += 1;
        let t = &ctx.timing;
        // Settings a scenario does not vary: the node's own defaults.
        let defaults = shoal::config::NodeConfig::default();
        let generation = clock::EPOCH_UNIX * 1000 + clock::elapsed().as_millis() as u64 + self.index as u64;
        let cpu = self.cores * 1000;
        let info = NodeInfo {
            name: self.name.clone(),
            generation,
            api_url: String::new(),
            gossip_addr: self.addr.to_string(),
            node_ip: self.addr.ip().to_string(),
            capacity: Resources { cpu_millis: cpu, memory_bytes: self.cores * (4 << 30) },
            allocatable: Resources { cpu_millis: cpu, memory_bytes: self.cores * (4 << 30) },
            weight: cpu,
            max_pods: 10_000,
            labels: Default::default(),
            runtimes: [RuntimeKind::Process].into(),
            arch: "sim".into(),
            os: "sim".into(),
            hostname: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: clock::unix_secs(),
            schedulable: false,
            settling: false,
        };
        let (status_tx, status_rx) = watch::channel::<Statuses>(Arc::new(Default::default()));
        let gossip = GossipConfig {
            cluster_id: "netsim".into(),
            gossip_interval: t.gossip_interval,
            phi_threshold: t.phi_threshold,
            suspect_after: t.suspect_after,
            dead_node_grace: defaults.membership.dead_node_grace,
            seeds: ctx.seeds.iter().filter(|s| **s != self.addr.to_string()).cloned().collect(),
            clock: clock::unix_secs,
        };
        let events = Arc::new(EventLog::new(&self.name));
        let membership = Membership::start(gossip, info, self.addr, &ctx.net.transport(), status_rx, events)
            .await
            .expect("simulated gossip starts");
        let view = membership.view();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Schedulable after the settle time, as a real node.
        let info_tx = membership.info_sender();
        let settle = t.settle_time;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(settle).await;
            info_tx.send_modify(|i| i.schedulable = true);
        }));
        let rpc = Arc::new(ctx.net.rpc(self.addr));
        ctx.net.register_service(self.addr, Arc::new(SyncService { db: self.db.clone() }));
        let seed = ctx.seed ^ ((self.index as u64) << 20) ^ self.boots;
        tasks.push(tokio::spawn(run_anti_entropy(
            self.db.clone(),
            rpc.clone(),
            view.clone(),
            t.anti_entropy_interval,
            defaults.state.tombstone_horizon,
            seed,
            shutdown_rx.clone(),
        )));
        let set_key = membership.key_setter();
        let (db, mut rx) = (self.db.clone(), self.db.subscribe());
        tasks.push(tokio::spawn(async move {
            loop {
                set_key(shoal::membership::assemble::keys::STATE_DIGEST, hex_root(&db));
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }));
        tasks.push(tokio::spawn(shoal::membership::settle::run(
            view.clone(),
            membership.info_sender(),
            t.settle_time,
            clock::unix_secs,
            shutdown_rx.clone(),
        )));
        let rules = PlanRules { epsilon: shoal::placement::DEFAULT_EPSILON, fence_delay_secs: t.fence_delay.as_secs() };
        let (local_plan, planner) = shoal::node::spawn_planner(&self.db, view.clone(), rules, clock::unix_secs);
        tasks.push(planner);
        let first = local_plan.borrow().clone();
        let (follow_tx, follow_rx) = watch::channel((first.plan.clone(), first.owners_digest));
        match ctx.mode {
            Mode::Leaderless => {
                let mut lp = local_plan.clone();
                tasks.push(tokio::spawn(async move {
                    while lp.changed().await.is_ok() {
                        let p = lp.borrow_and_update().clone();
                        follow_tx.send_replace((p.plan.clone(), p.owners_digest));
                    }
                }));
            }
            Mode::Leader => {
                let s =
                    LeaderSettings { me: self.name.clone(), election_timeout: t.election_timeout, tick: agent::TICK };
                tasks.push(tokio::spawn(leader::run(
                    s,
                    view.clone(),
                    local_plan.clone(),
                    membership.key_setter(),
                    follow_tx,
                )));
            }
        }
        // The agent follows the plan part of `follow`.
        let (plan_tx, plan_rx) = watch::channel(follow_rx.borrow().0.clone());
        let mut fr = follow_rx.clone();
        tasks.push(tokio::spawn(async move {
            while fr.changed().await.is_ok() {
                let p = fr.borrow_and_update().0.clone();
                plan_tx.send_replace(p);
            }
        }));
        let agent_state = Arc::new(Mutex::new(AgentState::default()));
        let settings = AgentSettings {
            me: self.name.clone(),
            start_min: t.start_min,
            start_max: t.start_max,
            handoff: Handoff { timeout: t.handoff_timeout, linger: t.handoff_linger },
            seed: seed ^ 0xa9e7,
        };
        tasks.push(tokio::spawn(agent::run(settings, plan_rx, agent_state.clone(), status_tx)));
        let writer = Arc::new(ReplicatedWriter {
            rng: std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(seed ^ 0x77)),
            db: self.db.clone(),
            rpc,
            view: view.clone(),
            write_replicas: defaults.state.write_replicas,
            timeout: defaults.state.write_timeout,
        });
        ctx.net.set_down(self.addr, false);
        self.live = Some(Live {
            generation,
            membership,
            view,
            local_plan,
            follow: follow_rx,
            agent: agent_state,
            writer,
            tasks,
            _shutdown: shutdown_tx,
        });
    }

    /// Dies at once: tasks stop, traffic stops, its pods die with it.
    pub fn crash(&mut self, net: &SimNet) {
        net.set_down(self.addr, true);
        if let Some(l) = self.live.take() {
            l.membership.abort();
            for t in l.tasks {
                t.abort();
            }
            l.agent.lock().unwrap_or_else(|p| p.into_inner()).pods.clear();
        }
    }
}
