//! Cordoned and draining nodes, as placement inputs every node computes
//! alike from the desired state (which nodes) and gossip (what runs there).
//!
//! A cordoned node takes no new pod, and the pods it runs stay there:
//! placement pins them. A draining node is cordoned, and its pods are
//! unpinned a few at a time, per workload: as many as its `maxUnavailable`
//! (at least one), in pod order. An unpinned pod moves make-before-break
//! (the node keeps it until the new copy is Ready), and while it does, the
//! drained node still reports it, so it holds its place in the window: the
//! next one goes only when it has.
#![deny(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};

use super::NodeSpec;
use super::deployments::Progresses;
use crate::membership::view::ClusterView;
use crate::model::pods::DesiredPod;
use crate::state::Snapshot;

/// Marks the cordoned nodes of `nodes` unschedulable.
pub fn cordon(nodes: &mut [NodeSpec], snapshot: &Snapshot) {
    for n in nodes.iter_mut() {
        n.unschedulable = cordoned(snapshot, &n.name);
    }
}

/// Whether the desired state cordons `node`.
pub fn cordoned(snapshot: &Snapshot, node: &str) -> bool {
    snapshot.maintenance.get(node).is_some_and(|m| m.unschedulable)
}

/// The pods that stay where they run: on cordoned nodes, all of them; on
/// draining ones, all but the window moving now.
pub fn pins(
    snapshot: &Snapshot,
    view: &ClusterView,
    desired: &[DesiredPod],
    progress: &Progresses,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if snapshot.maintenance.is_empty() {
        return out;
    }
    let by_id: BTreeMap<String, &DesiredPod> = desired.iter().map(|d| (d.id(), d)).collect();
    for (name, m) in snapshot.maintenance.iter().filter(|(_, m)| m.unschedulable) {
        let Some(node) = view.nodes.get(name.as_str()).filter(|n| n.state.alive()) else { continue };
        // Its pods by workload (owner uid), in id order.
        let mut by_workload: BTreeMap<&str, Vec<&DesiredPod>> = BTreeMap::new();
        let running: BTreeSet<&String> = node.pods.iter().filter(|(_, s)| !s.terminating).map(|(id, _)| id).collect();
        for id in running {
            if let Some(d) = by_id.get(id) {
                by_workload.entry(d.owner.uid.as_str()).or_default().push(d);
            }
        }
        for pods in by_workload.values() {
            let moving = if m.draining { window(pods[0], progress) } else { 0 };
            for d in pods.iter().skip(moving) {
                out.insert(d.id(), name.clone());
            }
        }
    }
    out
}

/// How many of a workload's pods a drain moves at once.
fn window(d: &DesiredPod, progress: &Progresses) -> usize {
    if d.owner.kind != crate::model::Kind::Deployment {
        return 1;
    }
    progress.get(&(d.namespace.clone(), d.owner.name.clone())).map_or(1, |p| p.params.max_unavailable.max(1) as usize)
}
