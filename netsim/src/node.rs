//! One simulated node: Shoal's own node assembly (`shoal::node::assembly`:
//! membership, replication, settle, planner, agent) on the simulated clock,
//! network and host. The node brings only those three; the leader baseline
//! replaces the plan its agent follows.
//!
//! Three ways to fail: `crash` (the host dies, pods with it), `agent_crash`
//! (`shoal` dies, its pods run on until it comes back and adopts or removes
//! them) and a pause (everything freezes; see `runtime` and `run`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::config::NodeConfig;
use shoal::events::EventLog;
use shoal::membership::view::{ClusterView, NodeInfo};
use shoal::model::pods::{Resources, RuntimeKind};
use shoal::node::assembly::{Assembly, Parts, Settings};
use shoal::placement::plan::{Plan, PlanView};
use shoal::state::StateDb;
use shoal::state::sync::ReplicatedWriter;
use tokio::sync::watch;

use crate::clock;
use crate::leader::{self, LeaderSettings};
use crate::net::{Port, SimNet};
use crate::runtime::{Machine, SharedMachine, SimExecutor, SimTiming};
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
    /// Every node of the run: what a restarted node remembers of its cluster.
    pub members: Vec<String>,
}

/// How often the leader baseline re-evaluates who leads.
pub const LEADER_TICK: Duration = Duration::from_millis(100);

/// A running `shoal` process's parts.
pub struct Live {
    pub generation: u64,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub local_plan: watch::Receiver<Arc<PlanView>>,
    /// What the agent follows, and a digest of its owners (agreement).
    pub follow: watch::Receiver<(Arc<Plan>, u64)>,
    pub writer: Arc<ReplicatedWriter>,
    assembly: Assembly,
}

pub struct SimNode {
    pub name: String,
    pub index: usize,
    pub addr: SocketAddr,
    pub cores: u64,
    /// Survives crashes (it is the node's disk).
    pub db: Arc<StateDb>,
    /// Unix seconds of this node's starts (on its disk, for settling).
    pub starts: Vec<u64>,
    /// What runs on the host: survives an agent crash, not a host crash.
    pub machine: SharedMachine,
    /// The host is up (it may run pods without its agent).
    pub host_up: bool,
    /// The `shoal` process, while it runs.
    pub live: Option<Live>,
    /// Frozen until this virtual time.
    pub paused_until: Option<Duration>,
    paused: watch::Sender<bool>,
    pub boots: u64,
}

/// The name of the node with this index.
pub fn name_of(index: usize) -> String {
    format!("n{index:03}")
}

pub fn addr_of(index: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + index as u32 + 1)), 7421)
}

/// The node configuration a scenario's timing stands for: Shoal's defaults,
/// with what the scenario sets.
pub fn node_config(t: &Timing) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.membership.gossip_interval = t.gossip_interval;
    c.membership.engine = t.membership;
    c.membership.phi_threshold = t.phi_threshold;
    c.membership.suspect_after = t.suspect_after;
    c.membership.dead_after = t.dead_after;
    c.membership.settle_time = t.settle_time;
    c.state.anti_entropy_interval = t.anti_entropy_interval;
    c.agent.handoff_timeout = t.handoff_timeout;
    c.agent.handoff_linger = t.handoff_linger;
    c.placement.fence_delay = t.fence_delay;
    c
}

impl SimNode {
    pub fn new(index: usize, cores: u64) -> SimNode {
        let name = name_of(index);
        let db = Arc::new(StateDb::in_memory(&name, clock::ntp64, Duration::from_secs(60)).expect("in-memory state"));
        SimNode {
            name,
            index,
            addr: addr_of(index),
            cores,
            db,
            starts: Vec::new(),
            machine: Arc::new(Mutex::new(Machine::default())),
            host_up: true,
            live: None,
            paused_until: None,
            paused: watch::channel(false).0,
            boots: 0,
        }
    }

    /// The `shoal` process runs.
    pub fn up(&self) -> bool {
        self.live.is_some()
    }

    fn info(&self, generation: u64) -> NodeInfo {
        let cpu = self.cores * 1000;
        let capacity = Resources { cpu_millis: cpu, memory_bytes: self.cores * (4 << 30) };
        NodeInfo {
            name: self.name.clone(),
            generation,
            api_url: String::new(),
            gossip_addr: self.addr.to_string(),
            node_ip: self.addr.ip().to_string(),
            capacity,
            allocatable: capacity,
            weight: cpu,
            max_pods: 10_000,
            labels: std::sync::Arc::new([("kubernetes.io/hostname".to_string(), self.name.clone())].into()),
            runtimes: std::sync::Arc::new([RuntimeKind::Process].into()),
            arch: "sim".into(),
            os: "sim".into(),
            hostname: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: clock::unix_secs(),
            schedulable: false,
            settling: false,
        }
    }

    /// Starts (or restarts, with a new generation) the node's `shoal`; the
    /// host comes up with it if it was down.
    pub async fn boot(&mut self, ctx: &Ctx) {
        self.boots += 1;
        self.host_up = true;
        let t = &ctx.timing;
        let generation = clock::EPOCH_UNIX * 1000 + clock::elapsed().as_millis() as u64 + self.index as u64;
        self.starts.push(clock::unix_secs());
        let seed = ctx.seed ^ ((self.index as u64) << 20) ^ self.boots;
        let network = ctx.net.attach(self.addr);
        let parts = Parts {
            info: self.info(generation),
            advertise: self.addr,
            cluster_id: "netsim".into(),
            seeds: ctx.seeds.iter().filter(|s| **s != self.addr.to_string()).cloned().collect(),
            db: self.db.clone(),
            network: &network,
            clock: clock::unix_secs,
            clock_ms: clock::unix_millis,
            starts: self.starts.clone(),
            seed,
            events: Arc::new(EventLog::new(&self.name)),
            frozen: Some(self.paused.subscribe()),
            // A restarted node remembers its cluster (its data dir); a
            // first start knows nobody.
            remembered: if self.boots > 1 { ctx.members.clone() } else { Vec::new() },
            // Simulated clocks agree: nothing to correct.
            adjust_clock: None,
        };
        let mut a =
            Assembly::start(parts, Settings::from_config(&node_config(t))).await.expect("simulated node starts");
        let local_plan = a.plan.clone();
        let first = local_plan.borrow().clone();
        let (follow_tx, follow_rx) = watch::channel((first.plan.clone(), first.owners_digest));
        match ctx.mode {
            Mode::Leaderless => {
                let mut lp = local_plan.clone();
                a.adopt_task(tokio::spawn(async move {
                    while lp.changed().await.is_ok() {
                        let p = lp.borrow_and_update().clone();
                        follow_tx.send_replace((p.plan.clone(), p.owners_digest));
                    }
                }));
            }
            Mode::Leader => {
                let s =
                    LeaderSettings { me: self.name.clone(), election_timeout: t.election_timeout, tick: LEADER_TICK };
                let task = leader::run(
                    s,
                    a.view.clone(),
                    local_plan.clone(),
                    self.db.subscribe(),
                    a.membership.key_setter(),
                    follow_tx,
                );
                a.adopt_task(tokio::spawn(task));
            }
        }
        // The agent follows the plan part of `follow`; a paused node hears
        // of no change until it resumes (then of the latest).
        let (plan_tx, plan_rx) = watch::channel(follow_rx.borrow().0.clone());
        let (mut fr, mut paused) = (follow_rx.clone(), self.paused.subscribe());
        a.adopt_task(tokio::spawn(async move {
            while fr.changed().await.is_ok() {
                let _ = paused.wait_for(|p| !*p).await;
                let p = fr.borrow_and_update().0.clone();
                plan_tx.send_replace(p);
            }
        }));
        let timing = SimTiming { start_min: t.start_min, start_max: t.start_max };
        let exec = SimExecutor::new(self.machine.clone(), self.paused.subscribe(), timing, seed ^ 0xa9e7);
        a.spawn_agent(exec, plan_rx);
        ctx.net.set_down(self.addr, false);
        ctx.net.set_silent(self.addr, false);
        self.live = Some(Live {
            generation,
            view: a.view.clone(),
            local_plan,
            follow: follow_rx,
            writer: a.writer.clone(),
            assembly: a,
        });
    }

    /// `shoal` dies at once (kill -9): its tasks stop, its traffic stops;
    /// its pods keep running on the host, except fenced ones: their lease
    /// watchdog (`shoal::agent::lease`, a process of its own on the host)
    /// sees its pipe to `shoal` close and kills them at once.
    pub fn agent_crash(&mut self, net: &SimNet) {
        net.set_down(self.addr, true);
        // The host closes the dead process's connections, and refuses new ones.
        net.close_port(self.addr, Port::Closed);
        if let Some(l) = self.live.take() {
            l.assembly.abort();
            self.machine.lock().unwrap_or_else(|p| p.into_inner()).containers.retain(|_, c| !c.fenced);
        }
    }

    /// The host dies at once: `shoal` and its pods with it.
    pub fn crash(&mut self, net: &SimNet) {
        // Nothing is sent: no FIN, no refusal, from now on no answer.
        net.set_silent(self.addr, true);
        net.close_port(self.addr, Port::Vanished);
        self.agent_crash(net);
        self.host_up = false;
        self.machine.lock().unwrap_or_else(|p| p.into_inner()).containers.clear();
    }

    /// A paused node renews no lease: `ttl` into the pause, its fenced
    /// containers' watchdogs (processes of their own, which the pause does
    /// not freeze in this model) kill them; its agent hears of it when it
    /// thaws.
    pub fn enforce_leases(&mut self, at: Duration, ttl: Duration) {
        let Some(since) = self.paused_until else { return };
        if at.saturating_sub(since) < ttl {
            return;
        }
        let (killed, agent) = {
            let mut m = self.machine.lock().unwrap_or_else(|p| p.into_inner());
            (m.expire_leases(tokio::time::Instant::now()), m.agent.clone())
        };
        let Some(agent) = agent else { return };
        for id in killed {
            let (agent, mut paused) = (agent.clone(), self.paused.subscribe());
            tokio::spawn(async move {
                let _ = paused.wait_for(|p| !*p).await;
                let exit = shoal::agent::runtime::Exit::from_code(137, Some(9));
                let _ = agent.send(shoal::agent::core::Input::Exited { id, container: 0, exit }).await;
            });
        }
    }

    /// Freezes (or thaws) the whole node: its agent acts on nothing and its
    /// network is cut; its containers run on.
    pub fn set_paused(&mut self, net: &SimNet, paused: bool, at: Duration) {
        net.set_down(self.addr, paused);
        net.set_silent(self.addr, paused);
        self.paused_until = paused.then_some(at);
        self.paused.send_replace(paused);
    }
}
