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
use super::watch::Ring;
use crate::model::node::NodeName;
use crate::model::status::PodStatus;

/// Keys a node sets about itself.
pub mod keys {
    /// JSON `NodeInfo`.
    pub const INFO: &str = "info";
    /// Present when the node left gracefully.
    pub const LEFT: &str = "left";
    /// Prefix of per-pod status keys: `pod:<namespace>/<name>` → JSON
    /// `PodStatus`, its `summary` (the API asks the node for the details).
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
    pub digest: Arc<str>,
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
            match super::shared::node_info(v) {
                Ok(i) => r.info = Some(i),
                Err(_) => r.malformed += 1,
            }
        } else if k == keys::LEFT {
            r.left = true;
        } else if k == keys::STATE_DIGEST {
            r.digest = v.into();
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

/// State kept between assemblies: the last view (its nodes' states and
/// since when), how many of its nodes are alive and known, and the members
/// remembered from before a restart.
/// (What a node observes of others' deaths is not kept for decisions: it
/// differs between observers, and placement must use only facts every node
/// sees alike; see `settle`.)
#[derive(Debug, Default, Clone)]
pub struct Memory {
    /// The last view assembled (the next one is made from it).
    last: ClusterView,
    /// Nodes of `last` alive, and not Left.
    alive: usize,
    members: usize,
    /// XOR of `NodeView::member_key` over the alive nodes of `last`.
    alive_digest: u64,
    /// The alive nodes of `last` on the watch ring.
    ring: Ring,
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
        let names: Vec<NodeName> = self.last.nodes.keys().cloned().collect();
        for n in names {
            if let Some(v) = self.last.nodes.get_mut(&n) {
                v.since = by(v.since);
            }
        }
        for until in self.remembered.values_mut() {
            *until = by(*until);
        }
    }

    /// Remembers `members` (from before a restart) until `until_unix`.
    pub fn remembering(members: impl IntoIterator<Item = String>, until_unix: u64) -> Memory {
        Memory { remembered: members.into_iter().map(|m| (m, until_unix)).collect(), ..Default::default() }
    }

    /// The nodes a majority is counted of: those of the last view that have
    /// not left, and the remembered ones not heard from since.
    pub fn known(&self) -> usize {
        self.members + self.remembered.len()
    }

    /// Changes whenever a node comes alive or goes, or an alive node is
    /// seen with another generation or gossip address (what the liveness
    /// watches are chosen from), and only then (but for a 1 in 2^64 clash).
    pub fn alive_digest(&self) -> u64 {
        self.alive_digest
    }

    /// The alive nodes of the last view on the watch ring (what
    /// `service::watch_targets` reads).
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Puts `new` in place of `name`'s entry (`None`: gone from the view),
    /// keeping its `since` while its state stays, and counts the change.
    fn set(&mut self, name: &str, new: Option<NodeView>, now_unix: u64, changes: &mut Vec<Change>) {
        let counts = |v: &NodeView| (usize::from(v.state.alive()), usize::from(v.state != NodeState::Left));
        let Some(mut v) = new else {
            if let Some(old) = self.last.nodes.remove(name) {
                let (a, m) = counts(&old);
                self.alive -= a;
                self.members -= m;
                self.alive_digest ^= old.member_key();
                if a == 1 {
                    self.ring.remove(name);
                }
            }
            return;
        };
        let old = self.last.nodes.get(name);
        v.since = match old {
            Some(o) if o.state == v.state => o.since,
            _ => {
                changes.push(Change {
                    node: name.to_string(),
                    from: old.map(|o| o.state),
                    to: v.state,
                    generation: v.info.generation,
                });
                now_unix
            }
        };
        if old == Some(&v) {
            return;
        }
        let was_alive = old.is_some_and(|o| o.state.alive());
        if let Some(o) = old {
            let (a, m) = counts(o);
            self.alive -= a;
            self.members -= m;
            self.alive_digest ^= o.member_key();
        }
        let (a, m) = counts(&v);
        self.alive += a;
        self.members += m;
        self.alive_digest ^= v.member_key();
        match (was_alive, v.state.alive()) {
            (false, true) => self.ring.insert(name),
            (true, false) => self.ring.remove(name),
            _ => {}
        }
        match self.last.nodes.get_mut(name) {
            Some(slot) => *slot = v,
            None => {
                self.last.nodes.insert(name.into(), v);
            }
        }
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

/// The peers an assembly is made from.
#[derive(Debug, Clone, Copy)]
pub enum Peers<'a> {
    /// All of them (chitchat's state is read whole every round): a peer
    /// not among them is gone from the view. Several generations of one
    /// name may be given, in any order; the first of the highest wins.
    All(&'a [RawNode]),
    /// Only those whose records or state changed since the last assembly
    /// (SWIM's book keeps that list), each by name with its newest
    /// generation, or `None` when it is gone: O(changes · log n).
    Changed(&'a [(String, Option<RawNode>)]),
}

/// One peer's entry in the view (`None`: it gave no usable record yet).
fn entry(r: &RawNode, malformed: &mut usize) -> Option<NodeView> {
    let rec = &r.records;
    *malformed += rec.malformed;
    let info = rec.info.clone()?;
    if info.name != r.name {
        *malformed += 1;
        return None;
    }
    let state = if rec.left { NodeState::Left } else { r.state };
    Some(NodeView {
        info,
        state,
        since: 0,
        pods: rec.pods.clone(),
        state_digest: rec.digest.clone(),
        extra: rec.extra.clone(),
    })
}

/// Makes the view from the last one (`memory`), this node's own record and
/// the peers that changed. Returns the view, the state changes seen (for
/// events) and how many records were malformed among the peers given.
/// The view shares every unchanged entry with the last one, so comparing
/// them (`==`, `Nodes::diff`) costs only what changed.
pub fn assemble(me: Me<'_>, peers: Peers<'_>, now_unix: u64, memory: &mut Memory) -> (ClusterView, Vec<Change>, usize) {
    let Me { info: me, pods: my_pods, leaving } = me;
    let mut malformed = 0;
    let mut changes = Vec::new();
    if memory.last.self_name != me.name {
        memory.last.self_name = me.name.clone();
    }
    match peers {
        Peers::All(raw) => {
            // The newest generation of each peer, in name order (chitchat's
            // may hold several generations of one name, the first of the
            // highest wins).
            let mut newest: Vec<&RawNode> = raw.iter().filter(|r| r.name != me.name).collect();
            let order =
                |a: &&RawNode, b: &&RawNode| (a.name.as_str(), a.generation).cmp(&(b.name.as_str(), b.generation));
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
            let mut present: Vec<&str> = Vec::with_capacity(newest.len());
            for r in &newest {
                let v = entry(r, &mut malformed);
                if v.is_some() {
                    present.push(r.name.as_str());
                }
                memory.set(&r.name, v, now_unix, &mut changes);
            }
            // Nodes chitchat forgot (garbage-collected after the dead-node grace).
            let gone: Vec<NodeName> = memory
                .last
                .nodes
                .keys()
                .filter(|n| **n != me.name && present.binary_search(&n.as_str()).is_err())
                .cloned()
                .collect();
            for n in gone {
                memory.set(&n, None, now_unix, &mut changes);
            }
        }
        Peers::Changed(list) => {
            for (name, r) in list.iter().filter(|(n, _)| *n != me.name) {
                let v = r.as_ref().and_then(|r| entry(r, &mut malformed));
                memory.set(name, v, now_unix, &mut changes);
            }
        }
    }
    let state = if leaving { NodeState::Left } else { NodeState::Ready };
    let info = match memory.last.nodes.get(me.name.as_str()) {
        Some(v) if *v.info == *me => v.info.clone(),
        _ => Arc::new(me.clone()),
    };
    let pods = crate::model::status::peer_pods(my_pods);
    let mine = NodeView { info, state, since: 0, pods, state_digest: Default::default(), extra: Arc::default() };
    memory.set(&me.name, Some(mine), now_unix, &mut changes);
    let last = &memory.last.nodes;
    memory.remembered.retain(|n, until| *until > now_unix && !last.contains_key(n.as_str()));
    memory.last.quorum = memory.alive * 2 > memory.known();
    (memory.last.clone(), changes, malformed)
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
        let (v, changes, bad) =
            assemble(Me { info: &me(), pods: &pods, leaving: false }, Peers::All(&nodes), 100, &mut mem);
        assert_eq!(bad, 0);
        assert_eq!(v.nodes["a"].state, NodeState::Ready);
        assert_eq!(v.nodes["a"].info.generation, 2);
        assert_eq!(v.nodes["b"].state, NodeState::Suspect);
        assert_eq!(v.nodes["c"].state, NodeState::Left);
        assert_eq!(v.nodes["d"].state, NodeState::Dead);
        assert_eq!(changes.len(), 5);
        // me, a, b alive; d dead; c left and not counted: 3 of 4.
        assert!(v.quorum);
        let (v2, changes2, _) =
            assemble(Me { info: &me(), pods: &pods, leaving: false }, Peers::All(&nodes), 105, &mut mem);
        assert!(changes2.is_empty());
        assert_eq!(v2.nodes["a"].since, 100);
        // In any order (chitchat's raw nodes are not sorted), the same view.
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        shuffled.push(raw("a", 1, NodeState::Ready)); // an older generation again, after the newer
        let (v3, _, _) =
            assemble(Me { info: &me(), pods: &pods, leaving: false }, Peers::All(&shuffled), 105, &mut mem);
        assert_eq!(v3, v2);
        assert_eq!(v3.nodes.keys().collect::<Vec<_>>(), ["a", "b", "c", "d", "me"]);
    }

    #[test]
    fn a_restarted_node_alone_is_no_majority_of_its_remembered_cluster() {
        let pods = Arc::new(BTreeMap::new());
        let mut mem = Memory::remembering(["me", "a", "b"].map(String::from), 1000);
        let (v, _, _) = assemble(Me { info: &me(), pods: &pods, leaving: false }, Peers::All(&[]), 10, &mut mem);
        assert!(!v.quorum, "1 alive of 3 remembered");
        // One peer heard again: 2 of 3.
        let (v, _, _) = assemble(
            Me { info: &me(), pods: &pods, leaving: false },
            Peers::All(&[raw("a", 1, NodeState::Ready)]),
            11,
            &mut mem,
        );
        assert!(v.quorum);
        assert_eq!(mem.remembered.keys().collect::<Vec<_>>(), ["b"]);
        // Forgotten after their time, as chitchat forgets dead nodes.
        let mut mem = Memory::remembering(["me", "a", "b"].map(String::from), 1000);
        let (v, _, _) = assemble(Me { info: &me(), pods: &pods, leaving: false }, Peers::All(&[]), 1000, &mut mem);
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
        let (v, _, malformed) =
            assemble(Me { info: &me(), pods: &pods, leaving: false }, Peers::All(&nodes), 1, &mut mem);
        assert_eq!(malformed, 2);
        assert!(!v.nodes.contains_key("y"));
        // me and x alive, a and b dead: 2 of 4 is not a majority.
        assert!(!v.quorum);
    }

    mod incremental {
        use super::*;
        use proptest::prelude::*;

        /// One step of a cluster's life as a node's book sees it: peer `i`
        /// (of 8) now has this state, generation and `left` flag, or is gone.
        fn step() -> impl Strategy<Value = (usize, Option<(u8, u64, bool)>)> {
            (0..8usize, proptest::option::weighted(0.85, (0..3u8, 1..3u64, proptest::bool::weighted(0.1))))
        }

        fn raw_of(i: usize, (state, generation, left): (u8, u64, bool)) -> RawNode {
            let state = [NodeState::Ready, NodeState::Suspect, NodeState::Dead][state as usize];
            let kv = if left { vec![(keys::LEFT, "1".to_string())] } else { vec![] };
            raw_kv(&format!("n{i}"), generation, state, &kv)
        }

        proptest! {
            /// Making each view from the last by the peers that changed
            /// gives the view a full assembly gives, at every step: the
            /// same entries, states, times of change and majority.
            #[test]
            fn changes_alone_give_the_full_view(
                steps in proptest::collection::vec(proptest::collection::vec(step(), 1..4), 1..40),
                remembered in proptest::collection::btree_set(0..12usize, 0..6),
            ) {
                let remember = || Memory::remembering(remembered.iter().map(|i| format!("n{i}")), 20);
                let (mut full_mem, mut inc_mem) = (remember(), remember());
                let mut peers: BTreeMap<usize, RawNode> = BTreeMap::new();
                let pods = Arc::new(BTreeMap::new());
                for (t, batch) in steps.iter().enumerate() {
                    // As the book gives them: each name touched once, as it is now.
                    let mut touched = std::collections::BTreeSet::new();
                    for (i, now) in batch {
                        match now {
                            Some(p) => { peers.insert(*i, raw_of(*i, *p)); }
                            None => { peers.remove(i); }
                        }
                        touched.insert(*i);
                    }
                    let changed: Vec<(String, Option<RawNode>)> =
                        touched.iter().map(|i| (format!("n{i}"), peers.get(i).cloned())).collect();
                    let all: Vec<RawNode> = peers.values().cloned().collect();
                    let me = me();
                    let (full, full_changes, _) =
                        assemble(Me { info: &me, pods: &pods, leaving: false }, Peers::All(&all), t as u64, &mut full_mem);
                    let (inc, inc_changes, _) =
                        assemble(Me { info: &me, pods: &pods, leaving: false }, Peers::Changed(&changed), t as u64, &mut inc_mem);
                    prop_assert_eq!(&inc, &full);
                    prop_assert_eq!(inc_changes, full_changes);
                    prop_assert_eq!(inc_mem.known(), full_mem.known());
                    prop_assert_eq!(inc_mem.alive_digest(), full_mem.alive_digest());
                    let fresh = full.nodes.values().fold(0, |d, v| d ^ v.member_key());
                    prop_assert_eq!(full_mem.alive_digest(), fresh);
                    // The counts kept are those of the view.
                    let alive = full.nodes.values().filter(|n| n.state.alive()).count();
                    let members = full.nodes.values().filter(|n| n.state != NodeState::Left).count();
                    prop_assert_eq!(full.quorum, alive * 2 > members + full_mem.remembered.len());
                }
            }
        }
    }
}
