//! Scenarios as data: cluster, workload, network model, faults, timeline.
//!
//! A scenario is a TOML file (see `configs/netsim/`). Unknown keys are
//! errors. Node choices ("one", "third"...) are made by the run's seeded RNG.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Cluster size (overridden by `--nodes`).
    pub nodes: usize,
    /// CPU cores of the nodes, cycled over the cluster (mixed capacities).
    #[serde(default = "default_capacities")]
    pub capacities: Vec<u64>,
    #[serde(default)]
    pub workload: Vec<Workload>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub timing: Timing,
    /// Nodes that join the running cluster (a mass join), besides `nodes`.
    #[serde(default)]
    pub join: Option<Join>,
}

/// `nodes` more nodes join a running cluster, booted one after another,
/// evenly spread over `within` from `at`. They know only the seeds (the
/// first three nodes), as `shoal up --join` does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    pub nodes: usize,
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

impl Join {
    /// When the `k`th of the joining nodes boots.
    pub fn boot_at(&self, k: usize) -> Duration {
        self.at + self.within.mul_f64(k as f64 / self.nodes.max(1) as f64)
    }
}

fn default_capacities() -> Vec<u64> {
    vec![4]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    /// Replicas; with `replicas_per_node`, this many per node instead.
    #[serde(default)]
    pub replicas: u32,
    #[serde(default)]
    pub replicas_per_node: u32,
    /// `spec.fencing: Majority`.
    #[serde(default)]
    pub fenced: bool,
    /// When it is applied.
    #[serde(with = "humantime_serde", default = "default_apply_at")]
    pub at: Duration,
    /// `spec.strategy.rollingUpdate.maxSurge` (a number or a percentage).
    #[serde(default)]
    pub max_surge: Option<String>,
    /// `spec.strategy.rollingUpdate.maxUnavailable`.
    #[serde(default)]
    pub max_unavailable: Option<String>,
    /// `spec.minReadySeconds`.
    #[serde(default)]
    pub min_ready_seconds: u32,
    /// A cron schedule: the workload is CronJobs (`cronjobs` of them, named
    /// `<name>-<i>`) instead of a Deployment.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default = "one")]
    pub cronjobs: u32,
    /// The CronJobs' `startingDeadlineSeconds`.
    #[serde(default)]
    pub starting_deadline_seconds: Option<u32>,
}

fn default_apply_at() -> Duration {
    Duration::from_secs(5)
}

/// The network model: every message gets a latency drawn uniformly from
/// [min, max]; may be lost, duplicated, or delayed further (reordering).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a message is delayed by up to 10x the max latency.
    pub reorder: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network { latency_min_ms: 0.5, latency_max_ms: 3.0, loss: 0.0, duplicate: 0.0, reorder: 0.0 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The host dies, `shoal` and its pods together (power loss).
    Crash,
    /// A crashed node, or a node whose agent crashed, comes back (new
    /// generation, same disk).
    Restart,
    /// Crash, then restart `down_for` later.
    CrashRestart,
    /// `shoal` dies (`kill -9` of the process); its pods keep running on the
    /// host until it comes back.
    AgentCrash,
    /// Agent crash, then restart `down_for` later.
    AgentCrashRestart,
    /// The node freezes for `down_for` (its traffic is lost meanwhile).
    Pause,
    /// Cut the network (`partition`: split-half, isolate-one, asymmetric).
    Partition,
    /// Remove every partition.
    Heal,
    /// Set the replicas of `deployment`.
    Scale,
    /// Change the pod template of `deployment` (a new version): a rollout.
    Update,
    /// Breaks an invariant on purpose (`fault`), to prove the observer sees
    /// it: `duplicate-fenced` starts a second copy of a running fenced
    /// replica behind every agent's back; `lose-write` tombstones an
    /// acknowledged object on one node, bypassing the API.
    Inject,
}

/// The faults `inject` knows.
pub const FAULTS: [&str; 2] = ["duplicate-fenced", "lose-write"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    pub action: Action,
    /// Which nodes: `one`, `third`, `half`, `all` (chosen anew at each
    /// repetition), `next` (one node per repetition, never the same twice
    /// until all had their turn), or a node name (`n003`).
    #[serde(default = "default_nodes")]
    pub nodes: String,
    #[serde(with = "humantime_serde", default)]
    pub down_for: Duration,
    /// For `partition`: `split-half`, `isolate-one` or `asymmetric`.
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub deployment: String,
    #[serde(default)]
    pub replicas: u32,
    /// For `inject`: one of `FAULTS`.
    #[serde(default)]
    pub fault: String,
    /// Repeat the event this many times, every `every`.
    #[serde(default = "one")]
    pub repeat: u32,
    #[serde(with = "humantime_serde", default)]
    pub every: Duration,
}

fn default_nodes() -> String {
    "one".into()
}

fn one() -> u32 {
    1
}

/// Node settings used in the run (Shoal's defaults unless overridden).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    #[serde(with = "humantime_serde")]
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    #[serde(with = "humantime_serde")]
    pub suspect_after: Duration,
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
    #[serde(with = "humantime_serde")]
    pub settle_time: Duration,
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub handoff_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub handoff_linger: Duration,
    #[serde(with = "humantime_serde")]
    pub fence_delay: Duration,
    /// `agent.fence_lease`: a fenced container's watchdog kills it this
    /// long after its node last renewed (a paused node renews nothing).
    #[serde(with = "humantime_serde")]
    pub fence_lease: Duration,
    /// Time for a simulated container to become Ready, drawn in [min, max].
    #[serde(with = "humantime_serde")]
    pub start_min: Duration,
    #[serde(with = "humantime_serde")]
    pub start_max: Duration,
    /// Leader baseline: how long a node must be the lowest-named live node
    /// before it acts as leader (an election timeout, as Raft's ~1 s).
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
    /// `membership.engine`: chitchat or swim (netsim's `--membership` wins).
    pub membership: shoal::config::Engine,
}

impl Default for Timing {
    /// The node's own defaults (`shoal::config`), plus the simulator's own
    /// settings.
    fn default() -> Self {
        let c = shoal::config::NodeConfig::default();
        Timing {
            gossip_interval: c.membership.gossip_interval,
            phi_threshold: c.membership.phi_threshold,
            suspect_after: c.membership.suspect_after,
            dead_after: c.membership.dead_after,
            settle_time: c.membership.settle_time,
            anti_entropy_interval: c.state.anti_entropy_interval,
            handoff_timeout: c.agent.handoff_timeout,
            handoff_linger: c.agent.handoff_linger,
            fence_delay: c.placement.fence_delay,
            fence_lease: c.agent.fence_lease,
            start_min: Duration::from_millis(300),
            start_max: Duration::from_millis(800),
            election_timeout: Duration::from_secs(1),
            membership: c.membership.engine,
        }
    }
}

/// What is wrong with a scenario's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {0}: {1}")]
    Read(String, std::io::Error),
    #[error("scenario {0}: {1}")]
    Parse(String, String),
    #[error("scenario {0}: {1}")]
    Invalid(String, String),
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read(path.display().to_string(), e))?;
        let s: Scenario =
            toml::from_str(&text).map_err(|e| ScenarioError::Parse(path.display().to_string(), e.to_string()))?;
        s.check().map_err(|m| ScenarioError::Invalid(path.display().to_string(), m.0))?;
        Ok(s)
    }

    pub fn check(&self) -> Result<(), Invalid> {
        if self.nodes == 0 {
            return Err(Invalid("nodes must be at least 1".into()));
        }
        if self.capacities.is_empty() || self.capacities.contains(&0) {
            return Err(Invalid("capacities must list core counts above 0".into()));
        }
        let n = &self.network;
        if !(0.0..=1.0).contains(&n.loss) || !(0.0..=1.0).contains(&n.duplicate) || !(0.0..=1.0).contains(&n.reorder) {
            return Err(Invalid("network.loss, duplicate and reorder are probabilities in [0, 1]".into()));
        }
        if n.latency_min_ms < 0.0 || n.latency_max_ms < n.latency_min_ms {
            return Err(Invalid("network latency: 0 <= latency_min_ms <= latency_max_ms".into()));
        }
        for w in &self.workload {
            if let Some(s) = &w.schedule
                && let Err((c, z)) = shoal::model::cron::Schedule::parse(s, None)
            {
                let why = c.or(z).map(|e| e.0).unwrap_or_default();
                return Err(Invalid(format!("workload {}: schedule: {why}", w.name)));
            }
        }
        for e in &self.events {
            if e.action == Action::Partition
                && !matches!(e.partition.as_str(), "split-half" | "isolate-one" | "asymmetric")
            {
                return Err(Invalid(format!(
                    "event at {:?}: partition must be split-half, isolate-one or asymmetric",
                    e.at
                )));
            }
            if matches!(e.action, Action::Scale | Action::Update)
                && (e.deployment.is_empty() || !self.workload.iter().any(|w| w.name == e.deployment))
            {
                return Err(Invalid(format!(
                    "event at {:?}: scale and update need the name of a workload deployment",
                    e.at
                )));
            }
            if e.action == Action::Inject && !FAULTS.contains(&e.fault.as_str()) {
                return Err(Invalid(format!("event at {:?}: inject needs fault = one of {}", e.at, FAULTS.join(", "))));
            }
        }
        Ok(())
    }

    /// Checks what depends on the cluster size (`--nodes` overrides it).
    pub fn check_size(&self, nodes: usize) -> Result<(), Invalid> {
        if nodes == 0 {
            return Err(Invalid("the cluster needs at least 1 node".into()));
        }
        for e in &self.events {
            let named = !matches!(e.nodes.as_str(), "one" | "third" | "half" | "all" | "next");
            if named && !(0..nodes).any(|i| crate::node::name_of(i) == e.nodes) {
                return Err(Invalid(format!(
                    "event at {:?} targets node {:?}, which does not exist: nodes are {} to {} (or use one, third, half, all, next)",
                    e.at,
                    e.nodes,
                    crate::node::name_of(0),
                    crate::node::name_of(nodes - 1)
                )));
            }
        }
        Ok(())
    }

    /// The time of the last fault (for the eventual checks).
    pub fn last_fault(&self) -> Duration {
        let events = self.events.iter().map(|e| e.at + e.every * e.repeat.saturating_sub(1) + e.down_for);
        events.chain(self.join.iter().map(|j| j.at + j.within)).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/netsim");
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).expect("configs/netsim") {
            let p = e.expect("entry").path();
            let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            s.check_size(s.nodes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            names.push(s.name);
        }
        names.sort();
        let want = [
            "agent-crash",
            "churn",
            "cron-under-faults",
            "flapping-node",
            "idle",
            "kill-a-third",
            "kill-one",
            "long-pause",
            "long-run",
            "lossy-network",
            "mass-join",
            "membership-fast",
            "membership-only",
            "rolling-restart",
            "rolling-update",
            "rolling-update-crash",
            "scale-to-1000-replicas",
            "split-brain-and-heal",
        ];
        assert_eq!(names, want);
    }

    fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.check().map_err(|e| e.0)?;
        Ok(s)
    }

    #[test]
    fn bad_scenarios_name_what_is_wrong() {
        let base = "name = \"x\"\nduration = \"10s\"\nnodes = 3\n";
        let e = parse(&format!("{base}colour = 1\n")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse(&format!("{base}[network]\nloss = 1.5\n")).unwrap_err();
        assert!(e.contains("network.loss"), "{e}");
        let e = parse(&format!("{base}[[events]]\nat = \"1s\"\naction = \"partition\"\npartition = \"diagonal\"\n"))
            .unwrap_err();
        assert!(e.contains("split-half"), "{e}");
        let e = parse(&format!("{base}[[events]]\nat = \"1s\"\naction = \"explode\"\n")).unwrap_err();
        assert!(e.contains("explode"), "{e}");
        let e =
            parse(&format!("{base}[[events]]\nat = \"1s\"\naction = \"inject\"\nfault = \"gremlins\"\n")).unwrap_err();
        assert!(e.contains("duplicate-fenced") && e.contains("lose-write"), "{e}");
        let s =
            parse(&format!("{base}[[events]]\nat = \"1s\"\naction = \"crash\"\nnodes = \"n007\"\n")).expect("valid");
        let e = s.check_size(3).unwrap_err().0;
        assert!(e.contains("n007") && e.contains("n000") && e.contains("n002"), "{e}");
        assert!(s.check_size(8).is_ok());
    }
}
