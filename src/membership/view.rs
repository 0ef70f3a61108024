//! What this node knows about the cluster: each node's record, its state
//! (Ready, Suspect, Dead, Left) and the pods it reports.
//!
//! Owns the record a node gossips about itself (`NodeInfo`, small: no pod
//! specs) and the view assembled from everyone's records (`ClusterView`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::node::{NodeName, NodeSpec};
use crate::model::pods::{Resources, RuntimeKind};

/// What a node tells the cluster about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    /// New on every start (the start time in unix milliseconds).
    pub generation: u64,
    /// `http://IP:PORT` of its API.
    pub api_url: String,
    pub gossip_addr: String,
    pub node_ip: String,
    pub capacity: Resources,
    pub allocatable: Resources,
    pub weight: u64,
    pub max_pods: u32,
    #[serde(default)]
    pub labels: std::sync::Arc<BTreeMap<String, String>>,
    #[serde(default)]
    pub runtimes: std::sync::Arc<BTreeSet<RuntimeKind>>,
    pub arch: String,
    pub os: String,
    pub hostname: String,
    pub version: String,
    /// Unix seconds when the node started.
    pub started_at: u64,
    /// Whether placement may give it pods (past its settle time, not leaving).
    pub schedulable: bool,
    /// Cut off from the majority, or back from that less than its settle
    /// time ago (see `settle`): no new pods while the cluster has a majority.
    #[serde(default)]
    pub settling: bool,
}

impl NodeInfo {
    pub fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: self.name.as_str().into(),
            allocatable: self.allocatable,
            weight: self.weight.max(1),
            labels: self.labels.clone(),
            runtimes: self.runtimes.clone(),
            max_pods: self.max_pods,
            unschedulable: false,
        }
    }
}

/// A node's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeState {
    Ready,
    /// Alive per the failure detector, but not heard from lately.
    Suspect,
    Dead,
    /// Left gracefully.
    Left,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "Ready",
            NodeState::Suspect => "Suspect",
            NodeState::Dead => "Dead",
            NodeState::Left => "Left",
        }
    }

    /// Counted as alive (for placement and quorum).
    pub fn alive(self) -> bool {
        matches!(self, NodeState::Ready | NodeState::Suspect)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub info: std::sync::Arc<NodeInfo>,
    pub state: NodeState,
    /// Unix seconds of the last state change seen here.
    pub since: u64,
    /// Pods it reports, by id.
    pub pods: crate::model::status::PeerPods,
    /// Short digest of its desired state (to spot nodes out of sync).
    pub state_digest: std::sync::Arc<str>,
    /// Other small keys it gossips.
    pub extra: std::sync::Arc<BTreeMap<String, String>>,
}

impl NodeView {
    /// This node's part of a digest of the live membership (XORed over the
    /// nodes, so it follows a view by its changes): its name, generation
    /// and gossip address while alive, 0 otherwise. The membership loop
    /// (`assemble`) and the planner both keep one.
    pub fn member_key(&self) -> u64 {
        if !self.state.alive() {
            return 0;
        }
        let mut h = blake3::Hasher::new();
        h.update(self.info.name.as_bytes());
        h.update(&[0]);
        h.update(&self.info.generation.to_le_bytes());
        h.update(self.info.gossip_addr.as_bytes());
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]))
    }
}

/// Whether placement leaves settling nodes out (see
/// `ClusterView::placement_nodes`): while the view has a majority and
/// fewer than half the live nodes settle.
pub fn damps_settling(quorum: bool, settling: usize, alive: usize) -> bool {
    quorum && settling * 2 < alive
}

/// Whether placement gives a node pods (see `ClusterView::placement_nodes`).
pub fn takes_pods(n: &NodeView, damp: bool) -> bool {
    n.state.alive() && n.info.schedulable && !(damp && n.info.settling)
}

/// The nodes of a view by name: a persistent map, so that a view made
/// from the last one by a few changes shares the rest with it, costs
/// O(changes · log n) to make, and compares with it (`diff`, `==`) in as
/// much (at 1,000 nodes a view changes several times a second somewhere).
/// Keyed by shared names: a change copies the path to its entry, keys
/// included, and at 1,000 nodes copying a name per key was most of the
/// cost of assembling a view.
pub type Nodes = imbl::OrdMap<NodeName, NodeView>;

/// The cluster as this node sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    pub self_name: String,
    pub nodes: Nodes,
    /// Whether this node sees a majority of the nodes it last knew.
    pub quorum: bool,
}

impl ClusterView {
    /// Nodes placement may use: alive, schedulable by their own account,
    /// and, while this view has a majority, not settling. Only facts every
    /// node sees alike (gossiped records), so that all agree.
    ///
    /// Settling damps a node that flaps: a few nodes. When half or more of
    /// the live nodes settle at once (a split of the whole cluster has just
    /// healed and every side lost its majority), nobody waits: excluding
    /// them would pile every replica onto the first nodes to finish
    /// settling and move them all again a second later (netsim's
    /// split-brain-and-heal found that herd).
    pub fn placement_nodes(&self) -> Vec<NodeSpec> {
        let (alive, settling) = self.settling_counts();
        self.placement_nodes_damped(damps_settling(self.quorum, settling, alive))
    }

    /// `placement_nodes`, with settling nodes left out or not (`damp`).
    pub fn placement_nodes_damped(&self, damp: bool) -> Vec<NodeSpec> {
        // Sized at once: at 1,000 nodes, growing the list by doubling
        // copied it more than building it (a profile of netsim).
        let mut out = Vec::with_capacity(self.nodes.len());
        out.extend(self.nodes.values().filter(|n| takes_pods(n, damp)).map(|n| n.info.spec()));
        out
    }

    /// The alive nodes, and how many of them are settling.
    pub fn settling_counts(&self) -> (usize, usize) {
        self.nodes
            .values()
            .filter(|n| n.state.alive())
            .fold((0, 0), |(a, s), n| (a + 1, s + usize::from(n.info.settling)))
    }

    /// API URLs of the alive nodes (for client failover), this node first.
    pub fn api_urls(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if let Some(me) = self.nodes.get(self.self_name.as_str()) {
            v.push(me.info.api_url.clone());
        }
        for n in self.nodes.values() {
            if n.state.alive() && n.info.name != self.self_name {
                v.push(n.info.api_url.clone());
            }
        }
        v
    }
}

/// A node of a test view: its record and state, no pods.
#[cfg(test)]
pub(crate) fn test_node(info: NodeInfo, state: NodeState) -> NodeView {
    NodeView {
        info: std::sync::Arc::new(info),
        state,
        since: 0,
        pods: Default::default(),
        state_digest: Default::default(),
        extra: Default::default(),
    }
}

/// A small deterministic random source for tests: `rnd(n)` is in `0..n`.
#[cfg(test)]
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// Detected capacity of this host: (cpu millicores, memory bytes).
pub fn detect_capacity() -> Resources {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(1 << 30);
    Resources { cpu_millis: cpus * 1000, memory_bytes: mem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(name: &str, state: NodeState) -> NodeView {
        test_node(NodeInfo { name: name.into(), schedulable: true, weight: 1000, ..Default::default() }, state)
    }

    #[test]
    fn settling_nodes_take_no_pods_while_the_view_has_a_majority() {
        let mut v = ClusterView { self_name: "me".into(), quorum: true, ..Default::default() };
        for n in [
            nv("me", NodeState::Ready),
            nv("steady", NodeState::Ready),
            nv("back", NodeState::Ready),
            nv("gone", NodeState::Dead),
        ] {
            v.nodes.insert(n.info.name.as_str().into(), n);
        }
        std::sync::Arc::make_mut(&mut v.nodes.get_mut("back").unwrap().info).settling = true;
        let names = |v: &ClusterView| v.placement_nodes().into_iter().map(|n| n.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&v), ["me", "steady"]);
        v.quorum = false;
        assert_eq!(names(&v), ["back", "me", "steady"], "a minority side uses every live node");
        v.quorum = true;
        std::sync::Arc::make_mut(&mut v.nodes.get_mut("steady").unwrap().info).settling = true;
        assert_eq!(names(&v), ["back", "me", "steady"], "when half the nodes settle, none waits");
    }

    /// Views are published only when they differ from the last one, and
    /// that comparison skips the entries both share. imbl 6's skipping lost
    /// a difference sitting just after a shared run (imbl issue #161): a
    /// node could keep showing a crashed peer Ready forever (netsim's
    /// membership-only found it at 300 nodes). Fixed in imbl 7.0.2; this
    /// keeps it fixed.
    #[test]
    fn a_view_one_change_from_the_last_never_compares_equal() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead];
        for _ in 0..200 {
            let mut nodes = Nodes::new();
            for _ in 0..1 + rnd(600) {
                let n = nv(&format!("n{:03}", rnd(1000)), states[rnd(3) as usize]);
                nodes.insert(n.info.name.as_str().into(), n);
            }
            for _ in 0..20 {
                let last = nodes.clone();
                for _ in 0..1 + rnd(3) {
                    let name = format!("n{:03}", rnd(1000));
                    if rnd(3) == 0 {
                        nodes.remove(name.as_str());
                    } else {
                        nodes.insert(name.as_str().into(), nv(&name, states[rnd(3) as usize]));
                    }
                }
                let differ = last.len() != nodes.len() || last.iter().zip(nodes.iter()).any(|(a, b)| a != b);
                assert_eq!(last != nodes, differ);
                assert_eq!(last.diff(&nodes).next().is_some(), differ);
            }
        }
    }
}
