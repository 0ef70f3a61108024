//! From chitchat's raw state to the `ClusterView`: pure.
//!
//! Inputs are what chitchat knows (each node id's keys, whether its failure
//! detector thinks it live) plus when this node last saw each heartbeat
//! advance; `now` comes in as an argument. A node restarted with a new
//! generation replaces the old one (same name, larger generation).
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

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
}

/// A node's records, parsed from its chitchat keys. Parsed once per change
/// of the node's state (not on every assembly), so views stay cheap with
/// hundreds of nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub info: Option<Arc<NodeInfo>>,
    pub left: bool,
    pub pods: Arc<BTreeMap<String, PodStatus>>,
    pub digest: String,
    /// Other small keys, by name (e.g. netsim's leader baseline).
    pub extra: Arc<BTreeMap<String, String>>,
    /// Keys that did not parse (a peer sending garbage).
    pub malformed: usize,
}

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
        } else if let Some(id) = k.strip_prefix(keys::POD) {
            match serde_json::from_str::<PodStatus>(v) {
                Ok(p) if p.id() == id => {
                    pods.insert(id.to_string(), p);
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

/// What chitchat says about one node id.
#[derive(Debug, Clone)]
pub struct RawNode {
    pub name: String,
    pub generation: u64,
    pub live: bool,
    pub records: Arc<Records>,
    /// When this node last saw the heartbeat advance.
    pub last_heartbeat: Instant,
}

/// State kept between assemblies (state-change times, known nodes).
/// (What a node observes of others' deaths is not kept for decisions: it
/// differs between observers, and placement must use only facts every node
/// sees alike; see `settle`.)
#[derive(Debug, Default, Clone)]
pub struct Memory {
    pub states: BTreeMap<String, (NodeState, u64)>,
    /// Node generations seen live at least once: a generation chitchat has
    /// only just heard of is not yet live (its failure detector needs two
    /// heartbeats) and must not be shown as Dead.
    pub seen_live: std::collections::BTreeSet<(String, u64)>,
}

/// Settings of the assembly.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub suspect_after: Duration,
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
    pub pods: &'a Arc<BTreeMap<String, PodStatus>>,
    pub leaving: bool,
}

/// Builds the view from this node's own record and what chitchat knows.
pub fn assemble(
    me: Me<'_>,
    raw: &[RawNode],
    rules: Rules,
    now: Instant,
    now_unix: u64,
    memory: &mut Memory,
) -> (ClusterView, Vec<Change>, usize) {
    let Me { info: me, pods: my_pods, leaving } = me;
    for r in raw.iter().filter(|r| r.live) {
        memory.seen_live.insert((r.name.clone(), r.generation));
    }
    let mut newest: BTreeMap<&str, &RawNode> = BTreeMap::new();
    for r in raw {
        if r.name == me.name || !memory.seen_live.contains(&(r.name.clone(), r.generation)) {
            continue;
        }
        if newest.get(r.name.as_str()).is_none_or(|x| r.generation > x.generation) {
            newest.insert(&r.name, r);
        }
    }
    let mut nodes = BTreeMap::new();
    let mut malformed = 0;
    let self_state = if leaving { NodeState::Left } else { NodeState::Ready };
    nodes.insert(me.name.clone(), (Arc::new(me.clone()), self_state, my_pods.clone(), String::new(), Arc::default()));
    for (name, r) in newest {
        let rec = &r.records;
        malformed += rec.malformed;
        let Some(info) = rec.info.clone() else { continue };
        if info.name != name {
            malformed += 1;
            continue;
        }
        let state = if rec.left {
            NodeState::Left
        } else if !r.live {
            NodeState::Dead
        } else if now.saturating_duration_since(r.last_heartbeat) > rules.suspect_after {
            NodeState::Suspect
        } else {
            NodeState::Ready
        };
        nodes.insert(name.to_string(), (info, state, rec.pods.clone(), rec.digest.clone(), rec.extra.clone()));
    }
    let mut changes = Vec::new();
    let mut out = BTreeMap::new();
    for (name, (info, state, pods, state_digest, extra)) in nodes {
        let since = match memory.states.get(&name) {
            Some((prev, since)) if *prev == state => *since,
            prev => {
                changes.push(Change {
                    node: name.clone(),
                    from: prev.map(|p| p.0),
                    to: state,
                    generation: info.generation,
                });
                memory.states.insert(name.clone(), (state, now_unix));
                now_unix
            }
        };
        out.insert(name, NodeView { info, state, since, pods, state_digest, extra });
    }
    // Nodes chitchat forgot (garbage-collected after the dead-node grace).
    memory.states.retain(|n, _| out.contains_key(n));
    let present: std::collections::HashSet<(&str, u64)> = raw.iter().map(|r| (r.name.as_str(), r.generation)).collect();
    memory.seen_live.retain(|(n, g)| present.contains(&(n.as_str(), *g)));
    let known = out.values().filter(|n| n.state != NodeState::Left).count();
    let alive = out.values().filter(|n| n.state.alive()).count();
    let quorum = alive * 2 > known;
    (ClusterView { self_name: me.name.clone(), nodes: out, quorum }, changes, malformed)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests may read the clock for a base instant
mod tests {
    use super::*;

    fn info(name: &str, generation: u64) -> NodeInfo {
        NodeInfo { name: name.into(), generation, ..Default::default() }
    }

    fn raw_kv(name: &str, generation: u64, live: bool, hb_age_ms: u64, now: Instant, kv: &[(&str, String)]) -> RawNode {
        let mut all = vec![(keys::INFO.to_string(), serde_json::to_string(&info(name, generation)).unwrap())];
        all.extend(kv.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let records = Arc::new(parse_records(all.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        RawNode { name: name.into(), generation, live, records, last_heartbeat: now - Duration::from_millis(hb_age_ms) }
    }

    fn raw(name: &str, generation: u64, live: bool, hb_age_ms: u64, now: Instant) -> RawNode {
        raw_kv(name, generation, live, hb_age_ms, now, &[])
    }

    #[test]
    fn states_generations_and_quorum() {
        let now = Instant::now();
        let rules = Rules { suspect_after: Duration::from_millis(800) };
        let mut mem = Memory::default();
        let left = raw_kv("c", 1, true, 0, now, &[(keys::LEFT, "1".into())]);
        let nodes = vec![
            raw("a", 1, false, 5000, now),
            raw("a", 2, true, 10, now), // restarted: the new generation wins
            raw("b", 1, true, 2000, now),
            left,
            raw("d", 1, false, 9000, now),
        ];
        // Every generation here was live once (as if observed earlier).
        for r in &nodes {
            mem.seen_live.insert((r.name.clone(), r.generation));
        }
        let (v, changes, bad) = assemble(
            Me { info: &info("me", 1), pods: &Arc::new(BTreeMap::new()), leaving: false },
            &nodes,
            rules,
            now,
            100,
            &mut mem,
        );
        assert_eq!(bad, 0);
        assert_eq!(v.nodes["a"].state, NodeState::Ready);
        assert_eq!(v.nodes["a"].info.generation, 2);
        assert_eq!(v.nodes["b"].state, NodeState::Suspect);
        assert_eq!(v.nodes["c"].state, NodeState::Left);
        assert_eq!(v.nodes["d"].state, NodeState::Dead);
        assert_eq!(changes.len(), 5);
        // me, a, b alive; d dead; c left and not counted: 3 of 4.
        assert!(v.quorum);
        let (v2, changes2, _) = assemble(
            Me { info: &info("me", 1), pods: &Arc::new(BTreeMap::new()), leaving: false },
            &nodes,
            rules,
            now,
            105,
            &mut mem,
        );
        assert!(changes2.is_empty());
        assert_eq!(v2.nodes["a"].since, 100);
    }

    #[test]
    fn a_generation_never_seen_live_is_not_shown_dead() {
        let now = Instant::now();
        let rules = Rules { suspect_after: Duration::from_millis(800) };
        let mut mem = Memory::default();
        let (v, changes, _) = assemble(
            Me { info: &info("me", 1), pods: &Arc::new(BTreeMap::new()), leaving: false },
            &[raw("a", 1, false, 0, now)],
            rules,
            now,
            1,
            &mut mem,
        );
        assert!(!v.nodes.contains_key("a") && changes.len() == 1, "only me");
        let (v, _, _) = assemble(
            Me { info: &info("me", 1), pods: &Arc::new(BTreeMap::new()), leaving: false },
            &[raw("a", 1, true, 0, now)],
            rules,
            now,
            2,
            &mut mem,
        );
        assert_eq!(v.nodes["a"].state, NodeState::Ready);
        // Restarted: the new generation is not live yet, the old one shows Dead.
        let nodes = [raw("a", 1, false, 0, now), raw("a", 2, false, 0, now)];
        let (v, _, _) = assemble(
            Me { info: &info("me", 1), pods: &Arc::new(BTreeMap::new()), leaving: false },
            &nodes,
            rules,
            now,
            3,
            &mut mem,
        );
        assert_eq!((v.nodes["a"].state, v.nodes["a"].info.generation), (NodeState::Dead, 1));
    }

    #[test]
    fn minority_has_no_quorum_and_garbage_is_counted() {
        let now = Instant::now();
        let rules = Rules { suspect_after: Duration::from_millis(800) };
        let pod_key = format!("{}default/p-0", keys::POD);
        let bad = raw_kv("x", 1, true, 0, now, &[(pod_key.as_str(), "{not json".into())]);
        let mut wrong_name = raw("y", 1, true, 0, now);
        wrong_name.records = Arc::new(parse_records(
            [(keys::INFO, serde_json::to_string(&info("z", 1)).unwrap())].iter().map(|(k, v)| (*k, v.as_str())),
        ));
        let nodes = vec![raw("a", 1, false, 0, now), raw("b", 1, false, 0, now), bad, wrong_name];
        let mut mem = Memory::default();
        for r in &nodes {
            mem.seen_live.insert((r.name.clone(), r.generation));
        }
        let (v, _, malformed) = assemble(
            Me { info: &info("me", 1), pods: &Arc::new(BTreeMap::new()), leaving: false },
            &nodes,
            rules,
            now,
            1,
            &mut mem,
        );
        assert_eq!(malformed, 2);
        assert!(!v.nodes.contains_key("y"));
        // me and x alive, a and b dead: 2 of 4 is not a majority.
        assert!(!v.quorum);
    }
}
