//! The leader-based baseline, on the same nodes, network and failure
//! detector as the leaderless design.
//!
//! Election: a node leads when it sees a majority of the nodes and has been
//! the lowest-named live node in its own view (chitchat's failure detector)
//! for `election_timeout`, as a Raft candidate waits out an election timeout
//! and needs a majority of votes; each new leader takes a term one above any
//! it has seen. A minority side has no leader (Raft's behaviour), so it
//! reschedules nothing until the partition heals. The leader runs the same placement function and
//! publishes the assignment (term + owners) as a gossip key; every node obeys
//! the highest-term assignment it has seen from a live node, and keeps the
//! last one while there is no leader. So after a crash nothing moves until
//! the failure is detected, a new leader is elected (if the leader died) and
//! its assignment has spread — the cost this design pays for one decider.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal::membership::view::ClusterView;
use shoal::model::node::NodeName;
use shoal::placement::deployments::pod_by_id;
use shoal::placement::plan::Plan;
use shoal::placement::plan::PlanView;
use shoal::state::Snapshot;
use tokio::sync::watch;
use tokio::time::Instant;

/// The gossip key carrying a leader's assignment.
pub const KEY: &str = "leader-assignment";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Assignment {
    pub term: u64,
    pub leader: String,
    pub owners: BTreeMap<String, NodeName>,
}

/// A 64-bit digest of an owners map (FNV-1a), to compare nodes' assignments.
fn digest(owners: &BTreeMap<String, NodeName>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in owners {
        for b in k.bytes().chain([0u8]).chain(v.as_str().bytes()).chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub struct LeaderSettings {
    pub me: String,
    pub election_timeout: Duration,
    pub tick: Duration,
}

/// Turns the local plan (desired pods, placement this node would compute)
/// into the plan the agent follows: the owners the current leader assigned.
/// Publishes `(plan, owners digest)` and, when leading, the assignment key.
pub async fn run(
    s: LeaderSettings,
    mut view_rx: watch::Receiver<Arc<ClusterView>>,
    mut local_rx: watch::Receiver<Arc<PlanView>>,
    state: watch::Receiver<Arc<Snapshot>>,
    set_key: impl Fn(&str, String) + Send + 'static,
    out: watch::Sender<(Arc<Plan>, u64)>,
) {
    let mut candidate: Option<(String, Instant)> = None;
    let mut my_term: Option<u64> = None;
    let mut accepted = Assignment::default();
    let mut published = String::new();
    let mut tick = tokio::time::interval(s.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Parsed assignments by node, kept while its gossiped keys are the same.
    let mut parsed: std::collections::HashMap<String, (usize, Option<Arc<Assignment>>)> = Default::default();
    let mut owners: Arc<BTreeMap<String, NodeName>> = Arc::default();
    let mut owners_digest = digest(&owners);
    let mut sent: Option<(usize, usize, usize, bool)> = None;
    loop {
        tokio::select! {
            r = view_rx.changed() => if r.is_err() { return },
            r = local_rx.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let view = view_rx.borrow_and_update().clone();
        let local = local_rx.borrow_and_update().clone();
        let now = Instant::now();
        let alive: BTreeSet<&String> = view.nodes.values().filter(|n| n.state.alive()).map(|n| &n.info.name).collect();
        let lowest = alive.iter().next().map(|n| (*n).clone());
        match (&candidate, &lowest) {
            (Some((c, _)), Some(l)) if c == l => {}
            (_, Some(l)) => candidate = Some((l.clone(), now)),
            (_, None) => candidate = None,
        }
        // Leading takes a majority, as a Raft election does: a minority
        // side has no leader and moves nothing.
        let leading = view.quorum
            && candidate
                .as_ref()
                .is_some_and(|(c, since)| *c == s.me && now.duration_since(*since) >= s.election_timeout);
        // The newest assignment published by a live node.
        let mut best: Option<Arc<Assignment>> = None;
        for n in view.nodes.values().filter(|n| n.state.alive()) {
            let ptr = Arc::as_ptr(&n.extra) as usize;
            let a = match parsed.get(&n.info.name) {
                Some((p, a)) if *p == ptr => a.clone(),
                _ => {
                    let a = n.extra.get(KEY).and_then(|v| serde_json::from_str::<Assignment>(v).ok()).map(Arc::new);
                    parsed.insert(n.info.name.clone(), (ptr, a.clone()));
                    a
                }
            };
            if let Some(a) = a
                && best.as_ref().is_none_or(|b| (a.term, &a.leader) > (b.term, &b.leader))
            {
                best = Some(a);
            }
        }
        parsed.retain(|name, _| view.nodes.contains_key(name.as_str()));
        if leading {
            let mut term = *my_term.get_or_insert_with(|| best.as_ref().map_or(0, |b| b.term).max(accepted.term) + 1);
            // Another leader's higher term (it led while this one could not
            // be seen): take a newer term, as a Raft leader re-elected would.
            if let Some(b) = best.as_ref().filter(|b| b.leader != s.me && b.term >= term) {
                term = b.term + 1;
                my_term = Some(term);
            }
            let mine = Assignment { term, leader: s.me.clone(), owners: (*local.plan.owners).clone() };
            let json = serde_json::to_string(&mine).unwrap_or_default();
            if json != published {
                set_key(KEY, json.clone());
                published = json;
            }
            accepted = mine;
        } else {
            my_term = None;
            // The same leader's newer assignment (same term) replaces the old
            // one; two leaders of one term (a partition) are ordered by name.
            if let Some(b) = best.filter(|b| (b.term, &b.leader) >= (accepted.term, &accepted.leader))
                && *b != accepted
            {
                accepted = (*b).clone();
            }
        }
        if accepted.owners != *owners {
            owners = Arc::new(accepted.owners.clone());
            owners_digest = digest(&owners);
        }
        let inputs =
            (Arc::as_ptr(&view) as usize, Arc::as_ptr(&local) as usize, Arc::as_ptr(&owners) as usize, leading);
        if sent == Some(inputs) {
            continue;
        }
        sent = Some(inputs);
        // The leader decides which pods exist (a rollout's too): its pods,
        // built from this node's desired state where its own plan lacks them.
        let mut desired = local.plan.desired.clone();
        let missing: Vec<&String> = owners.keys().filter(|id| !desired.contains_key(id)).collect();
        if !missing.is_empty() {
            let snap = state.borrow().clone();
            desired = desired.with(missing.into_iter().filter_map(|id| pod_by_id(&snap, id)));
        }
        // The leader fires every CronJob while it leads (with a majority),
        // as Kubernetes' controller manager does; with no leader, nobody does.
        let triggers = if leading {
            Arc::new(local.plan.triggers.keys().map(|k| (k.clone(), vec![s.me.clone()])).collect())
        } else {
            Arc::default()
        };
        // Likewise it alone keeps the Jobs' deadlines and TTLs.
        let nodes = if leading {
            Arc::new(local.plan.nodes.iter().filter(|n| n.name == s.me).cloned().collect())
        } else {
            Arc::default()
        };
        let plan = Plan {
            triggers,
            nodes,
            desired,
            owners: owners.clone(),
            view: view.clone(),
            quorum: local.plan.quorum,
            stable: local.plan.stable,
            fenced_elsewhere: local.plan.fenced_elsewhere.clone(),
            results: local.plan.results.clone(),
            owned: Default::default(),
        };
        out.send_replace((Arc::new(plan), owners_digest));
    }
}
