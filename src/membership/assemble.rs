//! From chitchat's raw state to the `ClusterView`: pure.
//!
//! Inputs are each node generation's records (its chitchat keys) and the
//! failure detector's judgement of it (`detector`); `now_unix` comes in as
//! an argument. A node restarted with a new generation replaces the old one
//! (same name, larger generation) once the new one was seen live.
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::Arc;

use super::detector::decode_claim;
use super::view::{ClusterView, NodeInfo, NodeState, NodeView};
use crate::model::status::PodStatus;

/// Keys a node sets about itself.
pub mod keys {
    /// JSON `NodeInfo`.
    pub const INFO: &str = "info";
    /// Present when the node left gracefully.
    pub const LEFT: &str = "left";
    /// Prefix of per-pod status keys: `pod:<namespace>/<name>` → JSON `PodStatus`.
    pub const POD: &str = "pod:";
    /// Root digest of its desired state (hex), to spot nodes out of sync.
    pub const STATE_DIGEST: &str = "sd";
    /// Prefix of claims that a peer's process is gone: `down:<name>` →
    /// its generation (see `detector`).
    pub const DOWN: &str = "down:";
}

/// A node's records, parsed from its chitchat keys. Parsed once per change
/// of the node's state (not on every assembly), so views stay cheap with
/// hundreds of nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub info: Option<Arc<NodeInfo>>,
    pub left: bool,
    pub pods: crate::model::status::PeerPods,
    pub digest: String,
    /// Other small keys, by name (e.g. netsim's leader baseline).
    pub extra: Arc<BTreeMap<String, String>>,
    /// Its claims that peers' processes are gone, by peer name.
    pub claims: BTreeMap<String, u64>,
    /// Keys that did not parse (a peer sending garbage).
    pub malformed: usize,
}

/// Most claims kept per node (a node makes at most a few: its watches).
pub const MAX_CLAIMS: usize = 64;

/// Most bytes of other keys kept per node.
pub const MAX_EXTRA_BYTES: usize = 256 << 10;

/// Parses a node's key-value pairs (untrusted: garbage is counted, skipped).
pub fn parse_records<'a>(kv: impl Iterator<Item = (&'a str, &'a str)>) -> Records {
    let mut r = Records::default();
    let mut pods = BTreeMap::new();
    let mut extra = BTreeMap::new();
    let mut extra_bytes = 0;
    for (k, v) in kv {
        if k == keys::INFO {
            match serde_json::from_str::<NodeInfo>(v) {
                Ok(i) => r.info = Some(Arc::new(i)),
                Err(_) => r.malformed += 1,
            }
        } else if k == keys::LEFT {
            r.left = true;
        } else if k == keys::STATE_DIGEST {
            r.digest = v.to_string();
        } else if let Some(peer) = k.strip_prefix(keys::DOWN) {
            match decode_claim(v) {
                Some(c) if r.claims.len() < MAX_CLAIMS => {
                    r.claims.insert(peer.to_string(), c);
                }
                _ => r.malformed += 1,
            }
        } else if let Some(id) = k.strip_prefix(keys::POD) {
            match serde_json::from_str::<PodStatus>(v) {
                Ok(p) if p.id() == id => {
                    pods.insert(id.to_string(), Arc::new(p));
                }
                _ => r.malformed += 1,
            }
        } else if extra_bytes + k.len() + v.len() <= MAX_EXTRA_BYTES {
            extra_bytes += k.len() + v.len();
            extra.insert(k.to_string(), v.to_string());
        }
    }
    r.pods = Arc::new(pods);
    r.extra = Arc::new(extra);
    r
}

/// One node generation: its records and what the detector judges of it.
/// Only generations the detector saw live are given.
#[derive(Debug, Clone)]
pub struct RawNode {
    pub name: String,
    pub generation: u64,
    /// Ready, Suspect or Dead (Left comes from its records).
    pub state: NodeState,
    pub records: Arc<Records>,
}

/// State kept between assemblies (state-change times).
/// (What a node observes of others' deaths is not kept for decisions: it
/// differs between observers, and placement must use only facts every node
/// sees alike; see `settle`.)
#[derive(Debug, Default, Clone)]
pub struct Memory {
    pub states: BTreeMap<String, (NodeState, u64)>,
    /// The members this node knew before it (re)started, each until the
    /// unix second it is forgotten. Until it hears from them they count as
    /// known, not alive: a node restarted while cut off from its peers must
    /// not take itself for a majority of one (the chaos suite found one
    /// running every replica, its fenced one too, beside the others).
    pub remembered: BTreeMap<String, u64>,
}

impl Memory {
    /// Moves every kept time by `secs` (the node's clock was corrected).
    pub fn shift(&mut self, secs: i64) {
        let by = |t: u64| t.saturating_add_signed(secs);
        for (_, since) in self.states.values_mut() {
            *since = by(*since);
        }
        for until in self.remembered.values_mut() {
            *until = by(*until);
        }
    }

    /// Remembers `members` (from before a restart) until `until_unix`.
    pub fn remembering(members: impl IntoIterator<Item = String>, until_unix: u64) -> Memory {
        Memory { remembered: members.into_iter().map(|m| (m, until_unix)).collect(), ..Default::default() }
    }
}

/// A state change this assembly observed (for events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub node: String,
    pub from: Option<NodeState>,
    pub to: NodeState,
    pub generation: u64,
}

/// This node's own part of the view.
pub struct Me<'a> {
    pub info: &'a NodeInfo,
    pub pods: &'a crate::model::status::Statuses,
    pub leaving: bool,
}

/// Builds the view from this node's own record and the judged peers.
pub fn assemble(me: Me<'_>, raw: &[RawNode], now_unix: u64, memory: &mut Memory) -> (ClusterView, Vec<Change>, usize) {
    let Me { info: me, pods: my_pods, leaving } = me;
    // The newest generation of each peer, in name order (a book's raw nodes
    // come sorted already: no sort, no map; chitchat's may hold several
    // generations of one name, the first of the highest wins).
    let mut newest: Vec<&RawNode> = raw.iter().filter(|r| r.name != me.name).collect();
    let order = |a: &&RawNode, b: &&RawNode| (a.name.as_str(), a.generation).cmp(&(b.name.as_str(), b.generation));
    if !newest.is_sorted_by(|a, b| order(a, b).is_le()) {
        newest.sort_by(order);
    }
    newest.dedup_by(|later, kept| {
        if later.name != kept.name {
            return false;
        }
        if later.generation > kept.generation {
            *kept = *later;
        }
        true
    });
    let mut malformed = 0;
    let self_state = if leaving { NodeState::Left } else { NodeState::Ready };
    // Each peer's view; `since` is filled in below, from `memory`.
    let view = |info, state, pods, state_digest, extra| NodeView { info, state, since: 0, pods, state_digest, extra };
    let mut nodes: Vec<(&str, NodeView)> = Vec::with_capacity(newest.len() + 1);
    for r in newest {
        let rec = &r.records;
        malformed += rec.malformed;
        let Some(info) = rec.info.clone() else { continue };
        if info.name != r.name {
            malformed += 1;
            continue;
        }
        let state = if rec.left { NodeState::Left } else { r.state };
        nodes.push((r.name.as_str(), view(info, state, rec.pods.clone(), rec.digest.clone(), rec.extra.clone())));
    }
    let at = nodes.partition_point(|n| n.0 < me.name.as_str());
    let my_pods = crate::model::status::peer_pods(my_pods);
    nodes
        .insert(at, (me.name.as_str(), view(Arc::new(me.clone()), self_state, my_pods, String::new(), Arc::default())));
    let mut changes = Vec::new();
    let mut out = Vec::with_capacity(nodes.len());
    for (name, mut v) in nodes {
        v.since = match memory.states.get(name) {
            Some((prev, since)) if *prev == v.state => *since,
            prev => {
                changes.push(Change {
                    node: name.to_string(),
                    from: prev.map(|p| p.0),
                    to: v.state,
                    generation: v.info.generation,
                });
                memory.states.insert(name.to_string(), (v.state, now_unix));
                now_unix
            }
        };
        out.push((name.to_string(), v));
    }
    // Already in name order: the map is built in one pass.
    let out: BTreeMap<String, NodeView> = out.into_iter().collect();
    // Nodes chitchat forgot (garbage-collected after the dead-node grace).
    memory.states.retain(|n, _| out.contains_key(n));
    memory.remembered.retain(|n, until| *until > now_unix && !out.contains_key(n));
    let known = out.values().filter(|n| n.state != NodeState::Left).count() + memory.remembered.len();
    let alive = out.values().filter(|n| n.state.alive()).count();
    let quorum = alive * 2 > known;
    (ClusterView { self_name: me.name.clone(), nodes: out, quorum }, changes, malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, generation: u64) -> NodeInfo {
        NodeInfo { name: name.into(), generation, ..Default::default() }
    }

    fn raw_kv(name: &str, generation: u64, state: NodeState, kv: &[(&str, String)]) -> RawNode {
        let mut all = vec![(keys::INFO.to_string(), serde_json::to_string(&info(name, generation)).unwrap())];
        all.extend(kv.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let records = Arc::new(parse_records(all.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        RawNode { name: name.into(), generation, state, records }
    }

    fn raw(name: &str, generation: u64, state: NodeState) -> RawNode {
        raw_kv(name, generation, state, &[])
    }

    fn me() -> NodeInfo {
        info("me", 1)
    }

    #[test]
    fn states_generations_and_quorum() {
        let mut mem = Memory::default();
        let left = raw_kv("c", 1, NodeState::Ready, &[(keys::LEFT, "1".into())]);
        let nodes = vec![
            raw("a", 1, NodeState::Dead),
            raw("a", 2, NodeState::Ready), // restarted: the new generation wins
            raw("b", 1, NodeState::Suspect),
            left,
            raw("d", 1, NodeState::Dead),
        ];
        let pods = Arc::new(BTreeMap::new());
        let (v, changes, bad) = assemble(Me { info: &me(), pods: &pods, leaving: false }, &nodes, 100, &mut mem);
        assert_eq!(bad, 0);
        assert_eq!(v.nodes["a"].state, NodeState::Ready);
        assert_eq!(v.nodes["a"].info.generation, 2);
        assert_eq!(v.nodes["b"].state, NodeState::Suspect);
        assert_eq!(v.nodes["c"].state, NodeState::Left);
        assert_eq!(v.nodes["d"].state, NodeState::Dead);
        assert_eq!(changes.len(), 5);
        // me, a, b alive; d dead; c left and not counted: 3 of 4.
        assert!(v.quorum);
        let (v2, changes2, _) = assemble(Me { info: &me(), pods: &pods, leaving: false }, &nodes, 105, &mut mem);
        assert!(changes2.is_empty());
        assert_eq!(v2.nodes["a"].since, 100);
        // In any order (chitchat's raw nodes are not sorted), the same view.
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        shuffled.push(raw("a", 1, NodeState::Ready)); // an older generation again, after the newer
        let (v3, _, _) = assemble(Me { info: &me(), pods: &pods, leaving: false }, &shuffled, 105, &mut mem);
        assert_eq!(v3, v2);
        assert_eq!(v3.nodes.keys().collect::<Vec<_>>(), ["a", "b", "c", "d", "me"]);
    }

    #[test]
    fn a_restarted_node_alone_is_no_majority_of_its_remembered_cluster() {
        let pods = Arc::new(BTreeMap::new());
        let mut mem = Memory::remembering(["me", "a", "b"].map(String::from), 1000);
        let (v, _, _) = assemble(Me { info: &me(), pods: &pods, leaving: false }, &[], 10, &mut mem);
        assert!(!v.quorum, "1 alive of 3 remembered");
        // One peer heard again: 2 of 3.
        let (v, _, _) =
            assemble(Me { info: &me(), pods: &pods, leaving: false }, &[raw("a", 1, NodeState::Ready)], 11, &mut mem);
        assert!(v.quorum);
        assert_eq!(mem.remembered.keys().collect::<Vec<_>>(), ["b"]);
        // Forgotten after their time, as chitchat forgets dead nodes.
        let mut mem = Memory::remembering(["me", "a", "b"].map(String::from), 1000);
        let (v, _, _) = assemble(Me { info: &me(), pods: &pods, leaving: false }, &[], 1000, &mut mem);
        assert!(v.quorum);
    }

    #[test]
    fn claims_are_parsed_and_garbage_is_counted() {
        let down = |n: &str| format!("{}{n}", keys::DOWN);
        let r =
            raw_kv("x", 1, NodeState::Ready, &[(down("a").as_str(), "7".into()), (down("b").as_str(), "seven".into())]);
        assert_eq!(r.records.claims.get("a"), Some(&7));
        assert_eq!((r.records.claims.len(), r.records.malformed), (1, 1));
    }

    #[test]
    fn minority_has_no_quorum_and_garbage_is_counted() {
        let pod_key = format!("{}default/p-0", keys::POD);
        let bad = raw_kv("x", 1, NodeState::Ready, &[(pod_key.as_str(), "{not json".into())]);
        let mut wrong_name = raw("y", 1, NodeState::Ready);
        wrong_name.records = Arc::new(parse_records(
            [(keys::INFO, serde_json::to_string(&info("z", 1)).unwrap())].iter().map(|(k, v)| (*k, v.as_str())),
        ));
        let nodes = vec![raw("a", 1, NodeState::Dead), raw("b", 1, NodeState::Dead), bad, wrong_name];
        let mut mem = Memory::default();
        let pods = Arc::new(BTreeMap::new());
        let (v, _, malformed) = assemble(Me { info: &me(), pods: &pods, leaving: false }, &nodes, 1, &mut mem);
        assert_eq!(malformed, 2);
        assert!(!v.nodes.contains_key("y"));
        // me and x alive, a and b dead: 2 of 4 is not a majority.
        assert!(!v.quorum);
    }
}
