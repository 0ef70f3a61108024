//! From (desired state, cluster view) to the agent's `Plan`: the desired
//! pods, their placement, and what the owners report. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Placement, place};
use crate::agent::decide::Plan;
use crate::agent::status::ContainerState;
use crate::membership::view::{ClusterView, NodeState};
use crate::model::Object;
use crate::model::pods::{DesiredPod, desired_pods};
use crate::state::Snapshot;

/// Everything derived from one (snapshot, view) pair.
#[derive(Debug, Clone, Default)]
pub struct PlanView {
    pub desired: Vec<DesiredPod>,
    /// Nodes placement used (alive, settled, schedulable).
    pub schedulable: std::collections::BTreeSet<String>,
    pub placement: Placement,
    pub plan: Arc<Plan>,
}

/// Settings of planning.
#[derive(Debug, Clone, Copy)]
pub struct PlanRules {
    pub epsilon: f64,
    /// A fenced pod last reported by a node declared Dead less than this
    /// long ago is not started elsewhere yet: that node may still run it
    /// until it notices it lost its majority.
    pub fence_delay_secs: u64,
    /// Base settle time of a node that (re)appears, in seconds.
    pub settle_secs: u64,
}

pub fn make_plan(snapshot: &Snapshot, view: &ClusterView, rules: &PlanRules, now_unix: u64) -> PlanView {
    let epsilon = rules.epsilon;
    let objects: Vec<&Object> = snapshot.objects.values().map(|o| &o.object).collect();
    let desired = desired_pods(objects, &snapshot.pod_results);
    let nodes = view.placement_nodes(now_unix, rules.settle_secs);
    let mut placement = place(&nodes, &desired, epsilon);
    let settling = view.nodes.values().filter(|n| n.state.alive()).count() - nodes.len();
    if nodes.is_empty() && settling > 0 {
        for why in placement.pending.values_mut() {
            *why = format!("no schedulable node yet: {settling} node(s) settling after (re)start");
        }
    }
    let mut ready_on_owner = BTreeMap::new();
    for (id, owner) in &placement.owners {
        if let Some(st) = view.nodes.get(owner).filter(|n| n.state.alive()).and_then(|n| n.pods.get(id))
            && st.ready
            && !st.terminating
        {
            ready_on_owner.insert(id.clone(), st.template_hash.clone());
        }
    }
    let mut fenced_elsewhere = std::collections::BTreeSet::new();
    for d in desired.iter().filter(|d| d.fenced) {
        let id = d.id();
        let elsewhere = view.nodes.values().any(|n| {
            let recent_death = n.state == NodeState::Dead && now_unix.saturating_sub(n.since) < rules.fence_delay_secs;
            n.info.name != view.self_name
                && (n.state.alive() || recent_death)
                && n.pods
                    .get(&id)
                    .is_some_and(|s| s.containers.iter().any(|c| !matches!(c.state, ContainerState::Terminated { .. })))
        });
        if elsewhere {
            fenced_elsewhere.insert(id);
        }
    }
    let plan = Plan {
        desired: desired.iter().map(|d| (d.id(), d.clone())).collect(),
        owners: placement.owners.clone(),
        ready_on_owner,
        quorum: view.quorum,
        fenced_elsewhere,
    };
    let schedulable = nodes.iter().map(|n| n.name.clone()).collect();
    PlanView { desired, schedulable, placement, plan: Arc::new(plan) }
}
