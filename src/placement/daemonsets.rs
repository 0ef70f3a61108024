//! DaemonSets: one pod on every node that can run it, decided by every node
//! alike from the desired state and the nodes it sees.
//!
//! A DaemonSet's nodes are the live, settled nodes that offer its runtime
//! and match its `nodeSelector` (node labels include the well-known
//! `kubernetes.io/hostname`, `kubernetes.io/arch` and `kubernetes.io/os`),
//! cordoned or not, as Kubernetes' DaemonSet pods tolerate a cordon. Its pod
//! on node `n` is named `<daemonset>-<n>` and bound to `n`: it runs there or
//! nowhere, so a node that dies or leaves takes its pod with it and nothing
//! moves. A node that joins gets its pod once it has settled.
//!
//! Updates follow the rolling-update rule of `rollout`, with one slot per
//! node in name order and no surge (a node runs one copy): at most
//! `maxUnavailable` nodes (default 1) are without an available pod because
//! of the update, and each node's pod is replaced in place, old stopped,
//! then new started. `OnDelete` keeps old pods until they are gone.
#![deny(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap};

use super::NodeSpec;
use super::deployments::Wanted;
use super::rollout::{self, Observed, ObservedPod, RolloutStatus};
use crate::membership::view::ClusterView;
use crate::model::pods::{DesiredPod, OwnerRef, Template, daemon_pod, daemon_pod_name, runtime_of, template_hash};
use crate::model::revision::{self, Revision, RolloutParams, daemonset_revision_name};
use crate::model::status::Phase;
use crate::model::{DaemonSet, Kind, Object, ObjectKey};
use crate::state::Snapshot;

/// Where one DaemonSet stands, as this node sees it (Kubernetes'
/// `DaemonSetStatus` counts come from `status` and `nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonProgress {
    pub generation: u64,
    pub params: RolloutParams,
    /// The current template's hash and revision number (0: not recorded yet).
    pub hash: String,
    pub revision: u64,
    /// The nodes that should run its pod, in slot order.
    pub nodes: Vec<String>,
    pub status: RolloutStatus,
    /// Pods reported on nodes that should not run one (`numberMisscheduled`).
    pub misscheduled: u32,
}

/// Progress of every DaemonSet, by (namespace, name).
pub type DaemonProgresses = BTreeMap<(String, String), DaemonProgress>;

/// The nodes of `nodes` that DaemonSet `ds` runs on, sorted by name.
pub fn eligible(ds: &DaemonSet, nodes: &[NodeSpec]) -> Vec<String> {
    let spec = &ds.spec.template.spec;
    let runtime = runtime_of(spec);
    let mut v: Vec<String> = nodes
        .iter()
        .filter(|n| n.runtimes.contains(&runtime))
        .filter(|n| spec.node_selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .map(|n| n.name.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The recorded revision `hash` of DaemonSet `ds`.
pub fn revision_of<'a>(snapshot: &'a Snapshot, ds: &DaemonSet, hash: &str) -> Option<&'a Revision> {
    let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    revision::lookup(&snapshot.revisions, ns, daemonset_revision_name(&ds.metadata.name, hash), uid)
}

/// Decides every DaemonSet of `snapshot` over `nodes` (the placement
/// nodes), from the pods `view` shows. `available(id, ready)`: whether a
/// pod counts as available (Ready long enough; `minReadySeconds` is added
/// through `min_ready_ms`).
pub fn decide(
    snapshot: &Snapshot,
    view: &ClusterView,
    nodes: &[NodeSpec],
    available: &dyn Fn(&str, u64) -> bool,
) -> (Vec<Wanted>, DaemonProgresses) {
    let mut wanted = Vec::new();
    let mut progress = DaemonProgresses::new();
    let sets: Vec<&DaemonSet> = snapshot
        .of_kind(Kind::DaemonSet)
        .filter_map(|o| if let Object::DaemonSet(d) = &o.object { Some(d) } else { None })
        .collect();
    if sets.is_empty() {
        return (wanted, progress);
    }
    let uids: HashMap<&str, usize> =
        sets.iter().enumerate().map(|(i, d)| (d.metadata.uid.as_deref().unwrap_or_default(), i)).collect();
    let mut reported: Vec<Vec<(&str, &crate::model::status::PodStatus)>> = vec![Vec::new(); sets.len()];
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        for st in n.pods.values() {
            if st.terminating || !matches!(st.phase, Phase::Pending | Phase::Running) {
                continue;
            }
            if let Some(&i) = uids.get(st.owner_uid.as_str()) {
                reported[i].push((n.info.name.as_str(), st));
            }
        }
    }
    for (ds, reported) in sets.into_iter().zip(reported) {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let on = eligible(ds, nodes);
        let params = RolloutParams::of_daemonset(&ds.spec, on.len() as u32);
        let current = template_hash(&ds.spec.template);
        let min_ready_ms = params.min_ready_secs * 1000;
        let slot_of: HashMap<String, u32> =
            on.iter().enumerate().map(|(i, n)| (daemon_pod_name(&ds.metadata.name, n), i as u32)).collect();
        let mut obs = Observed::new();
        let mut misscheduled = 0;
        for (node, st) in reported {
            let Some(&slot) = slot_of.get(&st.name).filter(|s| on[**s as usize] == node) else {
                misscheduled += 1;
                continue;
            };
            let pod = ObservedPod {
                hash: st.template_hash.clone(),
                ready: st.ready,
                available: st.ready && available(&st.id(), min_ready_ms),
            };
            obs.entry(slot).or_default().push(pod);
        }
        let known = |h: &str| h == current || revision_of(snapshot, ds, h).is_some();
        let decision = rollout::decide(&params, &current, &known, &obs);
        let revision = revision_of(snapshot, ds, &current).map_or(0, |r| r.revision);
        let key = (ns.clone(), ds.metadata.name.clone());
        wanted.push(Wanted {
            kind: Kind::DaemonSet,
            namespace: ns,
            name: ds.metadata.name.clone(),
            pods: decision.pods,
            nodes: on.clone(),
        });
        progress.insert(
            key,
            DaemonProgress {
                generation: ds.metadata.generation.unwrap_or(1),
                params,
                hash: current,
                revision,
                nodes: on,
                status: decision.status,
                misscheduled,
            },
        );
    }
    (wanted, progress)
}

/// The pods of one DaemonSet's decision (pods of a revision whose template
/// is not known here are left out: they cannot be run).
pub fn desired_of(snapshot: &Snapshot, w: &Wanted, out: &mut Vec<DesiredPod>) {
    let key = ObjectKey { kind: Kind::DaemonSet, namespace: w.namespace.clone(), name: w.name.clone() };
    let Some(Object::DaemonSet(ds)) = snapshot.get(&key).map(|o| &o.object) else { return };
    let current = template_hash(&ds.spec.template);
    let owner = OwnerRef {
        kind: Kind::DaemonSet,
        name: ds.metadata.name.clone(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
    };
    // One copy of each revision's template for all its pods.
    let mut templates: HashMap<&str, Option<Template>> = HashMap::new();
    for (slot, h) in &w.pods {
        let Some(node) = w.nodes.get(*slot as usize) else { continue };
        let template = templates.entry(h.as_str()).or_insert_with(|| {
            let t =
                if *h == current { Some(&ds.spec.template) } else { revision_of(snapshot, ds, h).map(|r| &r.template) };
            t.map(Template::of)
        });
        if let Some(t) = template {
            out.push(daemon_pod(&w.namespace, owner.clone(), node, *slot, t, h));
        }
    }
}

#[cfg(test)]
mod tests;
