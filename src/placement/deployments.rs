//! The pods every Deployment wants right now: its rollout rule (`rollout`)
//! fed with what this node sees, plus the memory that needs. When each pod
//! was first seen Ready makes `minReadySeconds` (and the linger that lets
//! every node hear of a new copy before an old one goes); when each rollout
//! last progressed makes `progressDeadlineSeconds`. Time comes in as an
//! argument.
#![deny(clippy::disallowed_methods)]

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use imbl::ordmap::DiffItem;
use rustc_hash::FxHashMap;

use super::rollout::{self, Observed, ObservedPod, RolloutStatus};
use crate::membership::view::{ClusterView, NodeView};
use crate::model::Object;
use crate::model::pods::{
    DesiredPod, OwnerRef, Template, deployment_pod, is_indexed, job_pod, job_pod_name, template_hash,
};
use crate::model::revision::{self, Revision, RolloutParams, parse_pod_name, revision_name};
use crate::model::status::Phase;
use crate::model::{Deployment, Kind};
use crate::state::Snapshot;

/// Where one Deployment's rollout stands, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The Deployment's `metadata.generation` this was decided from.
    pub generation: u64,
    pub params: RolloutParams,
    /// The current template's hash and revision number (0: not recorded yet).
    pub hash: String,
    pub revision: u64,
    pub status: RolloutStatus,
    /// No progress for `progressDeadlineSeconds`.
    pub deadline_exceeded: bool,
}

/// Progress of every Deployment, by (namespace, name).
pub type Progresses = BTreeMap<(String, String), Progress>;

/// The memory of the rollouts on this node.
#[derive(Debug, Default)]
pub struct Rollouts {
    /// Pod id -> unix ms when first seen Ready (on a live node, not
    /// terminating). Fx-hashed: read for every pod of every rollout at
    /// every plan (SipHash and its compares were about 6 % of netsim's hour).
    ready_since: FxHashMap<String, u64>,
    last_progress: HashMap<(String, String), LastProgress>,
    /// The pods of the last view, kept while the view is the same.
    seen: Option<Seen>,
    /// The earliest unix ms at which an answer given since the last
    /// `decide` changes with time alone: a pod read as Ready but not yet
    /// available becomes available, or a rollout's deadline passes. Until
    /// then the same snapshot and view decide the same (`Planner::unchanged`).
    wake_ms: Cell<u64>,
    /// The last decision, given again while nothing it read changed.
    last: Option<Decided>,
    /// Tests: read every view afresh and decide every time (the
    /// reference for following views and for the memo).
    #[cfg(test)]
    pub(super) forget: bool,
}

/// A decision and what it was made from: the snapshot's rev, the pods
/// seen (unchanged since unless `Seen::changed`), and the span of time
/// over which the same inputs give the same answer.
#[derive(Debug)]
struct Decided {
    rev: u64,
    made_ms: u64,
    wake_ms: u64,
    wanted: Vec<Wanted>,
    progress: Progresses,
}

/// What one view shows of the pods that count for a rollout (pending or
/// running, not terminating, on a live node), by owner uid. A cluster replans
/// every second with the same view while a delay runs: this is read once per view, not
/// once per plan; and a new view is followed from the last by the nodes that
/// changed between them (at 1,000 nodes, reading every node at each of ten
/// plans a second was 4 % of a simulation that ran no pod at all).
#[derive(Debug)]
struct Seen {
    view: Arc<ClusterView>,
    by_owner: FxHashMap<String, Vec<SeenPod>>,
    /// How many live nodes report each pod Ready (`ready_since` holds the
    /// pods counted here).
    ready: FxHashMap<String, u32>,
    /// Whether what is counted changed since the last decision was made
    /// (most status changes during a rollout do not touch it: a container
    /// started, a restart counted, an old copy gone after it terminated).
    changed: bool,
}

#[derive(Debug)]
struct SeenPod {
    name: String,
    id: String,
    ready: bool,
    /// `ready_since` of its id when it is counted Ready (an entry that
    /// does not change while any report of the pod counts it Ready: kept
    /// here so that deciding reads no map per pod).
    since: Option<u64>,
}

impl SeenPod {
    /// The same report of a pod (what removing a node's report matches).
    fn same(&self, other: &SeenPod) -> bool {
        self.ready == other.ready && self.id == other.id && self.name == other.name
    }
}

/// Changed nodes past which a view is read afresh rather than followed.
const FOLLOW_AT_MOST: usize = 64;

/// The pods of node `n` that count for a rollout, with their owner uid.
fn counted(n: &NodeView) -> impl Iterator<Item = (&str, SeenPod)> {
    counted_refs(n).map(|(owner, id, st)| {
        (owner, SeenPod { name: st.name.clone(), id: id.to_string(), ready: st.ready, since: None })
    })
}

fn counted_refs(n: &NodeView) -> impl Iterator<Item = (&str, &str, &crate::model::status::PodStatus)> {
    n.pods
        .iter()
        .filter(move |_| n.state.alive())
        .filter(|(_, st)| !st.terminating && matches!(st.phase, Phase::Pending | Phase::Running))
        .map(|(id, st)| (st.owner_uid.as_str(), id.as_str(), &**st))
}

/// Whether two records of a node count the same pods, alike.
fn counts_same(a: &NodeView, b: &NodeView) -> bool {
    counted_refs(a)
        .map(|(owner, id, st)| (owner, id, st.name.as_str(), st.ready))
        .eq(counted_refs(b).map(|(owner, id, st)| (owner, id, st.name.as_str(), st.ready)))
}

impl Seen {
    /// What `view` shows, read afresh; `ready_since` keeps the pods Ready
    /// in it (those newly Ready from `now_ms`).
    fn of(view: &Arc<ClusterView>, ready_since: &mut FxHashMap<String, u64>, now_ms: u64) -> Seen {
        let mut seen =
            Seen { view: view.clone(), by_owner: FxHashMap::default(), ready: FxHashMap::default(), changed: true };
        for n in view.nodes.values() {
            seen.node(n, true, ready_since, now_ms);
        }
        ready_since.retain(|id, _| seen.ready.contains_key(id));
        seen
    }

    /// Follows `view` from the one held by the nodes that changed between
    /// them; `None` when too many did (read it afresh then).
    fn follow(
        mut self,
        view: &Arc<ClusterView>,
        ready_since: &mut FxHashMap<String, u64>,
        now_ms: u64,
    ) -> Option<Seen> {
        let last = self.view.clone();
        let mut changed = Vec::new();
        for d in last.nodes.diff(&view.nodes) {
            changed.push(match d {
                DiffItem::Add(_, n) => (None, Some(n)),
                DiffItem::Remove(_, o) => (Some(o), None),
                DiffItem::Update { old: (_, o), new: (_, n) } => (Some(o), Some(n)),
            });
            if changed.len() > FOLLOW_AT_MOST {
                return None;
            }
        }
        changed.retain(|(old, new)| match (old, new) {
            (Some(o), Some(n)) => {
                o.state.alive() != n.state.alive() || !(Arc::ptr_eq(&o.pods, &n.pods) || counts_same(o, n))
            }
            _ => true,
        });
        self.changed |= !changed.is_empty();
        // What comes in first, then what goes: a pod that moves from one
        // node to another within the change stays Ready since when it was.
        for n in changed.iter().filter_map(|(_, new)| *new) {
            self.node(n, true, ready_since, now_ms);
        }
        for o in changed.iter().filter_map(|(old, _)| *old) {
            self.node(o, false, ready_since, now_ms);
        }
        self.view = view.clone();
        Some(self)
    }

    /// Counts node `n`'s pods in (`add`) or out.
    fn node(&mut self, n: &NodeView, add: bool, ready_since: &mut FxHashMap<String, u64>, now_ms: u64) {
        for (owner, mut pod) in counted(n) {
            if pod.ready {
                let count = self.ready.entry(pod.id.clone()).or_default();
                if add {
                    *count += 1;
                    pod.since = Some(*ready_since.entry(pod.id.clone()).or_insert(now_ms));
                } else {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.ready.remove(&pod.id);
                        ready_since.remove(&pod.id);
                    }
                }
            }
            if add {
                match self.by_owner.get_mut(owner) {
                    Some(v) => v.push(pod),
                    None => {
                        self.by_owner.insert(owner.to_string(), vec![pod]);
                    }
                }
            } else if let Some(v) = self.by_owner.get_mut(owner) {
                // Two nodes may report one pod (a handoff): either entry
                // goes, they are equal.
                if let Some(i) = v.iter().position(|p| p.same(&pod)) {
                    v.swap_remove(i);
                }
                if v.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
        }
    }
}

/// When a rollout last progressed: its template hash, the time (unix ms),
/// and the best (updated, available) counts seen since it started.
#[derive(Debug, Clone)]
struct LastProgress {
    hash: String,
    at_ms: u64,
    best: (u32, u32),
}

/// One workload's decision (a Deployment's or a DaemonSet's): which
/// (slot, revision hash) pods it wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Wanted {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub pods: Vec<(u32, String)>,
    /// A DaemonSet's node of each slot (empty for a Deployment).
    pub nodes: Vec<String>,
}

/// The recorded revision `hash` of Deployment `d`.
fn revision_of<'a>(snapshot: &'a Snapshot, d: &Deployment, hash: &str) -> Option<&'a Revision> {
    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    revision::lookup(&snapshot.revisions, ns, revision_name(&d.metadata.name, hash), uid)
}

impl Rollouts {
    /// Decides every Deployment of `snapshot` from what `view` shows at
    /// `now_ms`. `linger_ms`: how long a pod must have been seen Ready before
    /// it counts as available, on top of `minReadySeconds`.
    pub fn decide(
        &mut self,
        snapshot: &Snapshot,
        view: &Arc<ClusterView>,
        linger_ms: u64,
        now_ms: u64,
    ) -> (Vec<Wanted>, Progresses) {
        #[cfg(test)]
        if self.forget {
            self.last = None;
            self.seen = None;
        }
        if !self.seen.as_ref().is_some_and(|s| Arc::ptr_eq(&s.view, view)) {
            let followed = self.seen.take().and_then(|s| s.follow(view, &mut self.ready_since, now_ms));
            self.seen = Some(followed.unwrap_or_else(|| Seen::of(view, &mut self.ready_since, now_ms)));
        }
        // The same snapshot, the same pods counted, before any wait it
        // read ends: the same decision.
        let counted_changed = self.seen.as_mut().is_some_and(|s| std::mem::take(&mut s.changed));
        if let Some(l) = self
            .last
            .as_ref()
            .filter(|l| !counted_changed && l.rev == snapshot.rev && (l.made_ms..l.wake_ms).contains(&now_ms))
        {
            self.wake_ms.set(l.wake_ms);
            return (l.wanted.clone(), l.progress.clone());
        }
        // Out of `self` while `self.deadline` runs; put back at the end.
        let seen = self.seen.take();
        self.wake_ms.set(u64::MAX);
        let empty = FxHashMap::default();
        let by_owner = seen.as_ref().map_or(&empty, |s| &s.by_owner);
        let mut wanted = Vec::new();
        let mut progress = Progresses::new();
        let mut decided = HashSet::new();
        for o in snapshot.of_kind(Kind::Deployment) {
            let Object::Deployment(d) = &o.object else { continue };
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            let key = (ns.clone(), d.metadata.name.clone());
            decided.insert(key.clone());
            let params = RolloutParams::of(&d.spec);
            let current = template_hash(&d.spec.template);
            let uid = d.metadata.uid.as_deref().unwrap_or_default();
            let min_ready_ms = params.min_ready_secs * 1000 + linger_ms;
            let mut obs = Observed::new();
            for st in by_owner.get(uid).map(Vec::as_slice).unwrap_or_default() {
                let Some((hash, index)) = parse_pod_name(&d.metadata.name, &st.name) else { continue };
                let available = st.ready && st.since.is_some_and(|t| self.waited(t, min_ready_ms, now_ms));
                let slot = obs.entry(index).or_default();
                // One pod reported by two nodes (a handoff) is one pod.
                match slot.iter_mut().find(|p| p.hash == hash) {
                    Some(p) => {
                        p.ready |= st.ready;
                        p.available |= available;
                    }
                    None => slot.push(ObservedPod { hash: hash.to_string(), ready: st.ready, available }),
                }
            }
            let known = |h: &str| h == current || revision_of(snapshot, d, h).is_some();
            let decision = rollout::decide(&params, &current, &known, &obs);
            let deadline_exceeded = self.deadline(&key, &current, &params, &decision.status, now_ms);
            let revision = revision_of(snapshot, d, &current).map_or(0, |r| r.revision);
            wanted.push(Wanted {
                kind: Kind::Deployment,
                namespace: ns,
                name: d.metadata.name.clone(),
                pods: decision.pods,
                nodes: Vec::new(),
            });
            let generation = d.metadata.generation.unwrap_or(1);
            progress.insert(
                key,
                Progress { generation, params, hash: current, revision, status: decision.status, deadline_exceeded },
            );
        }
        self.last_progress.retain(|k, _| decided.contains(k));
        self.seen = seen;
        self.last = Some(Decided {
            rev: snapshot.rev,
            made_ms: now_ms,
            wake_ms: self.wake_ms.get(),
            wanted: wanted.clone(),
            progress: progress.clone(),
        });
        (wanted, progress)
    }

    /// Whether pod `id` has been seen Ready for `min_ready_ms` plus the
    /// linger at `now_ms` (after `decide` has read the view).
    pub fn available(&self, id: &str, min_ready_ms: u64, linger_ms: u64, now_ms: u64) -> bool {
        self.ready_since.get(id).is_some_and(|t| self.waited(*t, min_ready_ms + linger_ms, now_ms))
    }

    /// Whether `wait_ms` have passed since `since` at `now_ms`; if not,
    /// when they will have (kept in `wake_ms`).
    fn waited(&self, since: u64, wait_ms: u64, now_ms: u64) -> bool {
        let done = now_ms.saturating_sub(since) >= wait_ms;
        if !done {
            self.wake(since.saturating_add(wait_ms));
        }
        done
    }

    fn wake(&self, at_ms: u64) {
        self.wake_ms.set(self.wake_ms.get().min(at_ms));
    }

    /// See `wake_ms`: `u64::MAX` when nothing waits on time.
    pub fn wake_ms(&self) -> u64 {
        self.wake_ms.get()
    }

    /// Whether the rollout of `key` made no progress for its deadline. Any
    /// rise of the updated or available counts is progress; a new template
    /// starts the clock again.
    fn deadline(
        &mut self,
        key: &(String, String),
        hash: &str,
        p: &RolloutParams,
        s: &RolloutStatus,
        now_ms: u64,
    ) -> bool {
        let counts = (s.updated, s.available);
        let fresh = || LastProgress { hash: hash.to_string(), at_ms: now_ms, best: counts };
        let e = self.last_progress.entry(key.clone()).or_insert_with(fresh);
        if e.hash != hash {
            *e = fresh();
        }
        if counts.0 > e.best.0 || counts.1 > e.best.1 {
            e.at_ms = now_ms;
            e.best = (counts.0.max(e.best.0), counts.1.max(e.best.1));
        }
        let deadline_ms = p.progress_deadline_secs.saturating_mul(1000);
        let exceeded = now_ms.saturating_sub(e.at_ms) > deadline_ms;
        let at_ms = e.at_ms;
        if !s.complete && !p.paused && !exceeded {
            self.wake(at_ms.saturating_add(deadline_ms).saturating_add(1));
        }
        !s.complete && !p.paused && exceeded
    }
}

/// The DesiredPods of the Deployments' and DaemonSets' decisions (pods of a revision whose
/// template is not known here are left out: they cannot be run).
pub fn desired_of(snapshot: &Snapshot, wanted: &[Wanted]) -> Vec<DesiredPod> {
    let mut out = Vec::new();
    for w in wanted {
        if w.kind == Kind::DaemonSet {
            super::daemonsets::desired_of(snapshot, w, &mut out);
            continue;
        }
        let key =
            crate::model::ObjectKey { kind: Kind::Deployment, namespace: w.namespace.clone(), name: w.name.clone() };
        let Some(Object::Deployment(d)) = snapshot.get(&key).map(|o| &o.object) else { continue };
        let current = template_hash(&d.spec.template);
        let owner = OwnerRef {
            kind: Kind::Deployment,
            name: d.metadata.name.clone(),
            uid: d.metadata.uid.clone().unwrap_or_default(),
        };
        let fenced = d.spec.fencing.as_deref() == Some("Majority");
        // One copy of each revision's template for all its pods.
        let mut templates: HashMap<&str, Option<Template>> = HashMap::new();
        for (i, h) in &w.pods {
            let template = templates.entry(h.as_str()).or_insert_with(|| {
                let t = if *h == current {
                    Some(&d.spec.template)
                } else {
                    revision_of(snapshot, d, h).map(|r| &r.template)
                };
                t.map(Template::of)
            });
            if let Some(t) = template {
                out.push(deployment_pod(&w.namespace, owner.clone(), *i, t, h, fenced));
            }
        }
    }
    out
}

/// The pod `id` (`namespace/name`) of a Deployment (whichever revision it
/// is of) or of a Job, as the desired state defines it (for a plan that
/// takes its pods from elsewhere: netsim's leader baseline).
pub fn pod_by_id(snapshot: &Snapshot, id: &str) -> Option<DesiredPod> {
    deployment_pod_by_id(snapshot, id).or_else(|| job_pod_by_id(snapshot, id))
}

/// A Job's pod `<job>-<index>` (the name possibly shortened with a hash).
fn job_pod_by_id(snapshot: &Snapshot, id: &str) -> Option<DesiredPod> {
    let (ns, name) = id.split_once('/')?;
    let index: u32 = name.rsplit_once('-')?.1.parse().ok()?;
    snapshot.of_kind(Kind::Job).find_map(|o| {
        let Object::Job(j) = &o.object else { return None };
        if j.metadata.namespace.as_deref() != Some(ns) || job_pod_name(&j.metadata.name, index) != name {
            return None;
        }
        let owner = OwnerRef {
            kind: Kind::Job,
            name: j.metadata.name.clone(),
            uid: j.metadata.uid.clone().unwrap_or_default(),
        };
        let hash = template_hash(&j.spec.template);
        Some(job_pod(ns, owner, index, &Template::of(&j.spec.template), &hash, is_indexed(j)))
    })
}

fn deployment_pod_by_id(snapshot: &Snapshot, id: &str) -> Option<DesiredPod> {
    let (ns, name) = id.split_once('/')?;
    snapshot.of_kind(Kind::Deployment).find_map(|o| {
        let Object::Deployment(d) = &o.object else { return None };
        if d.metadata.namespace.as_deref() != Some(ns) {
            return None;
        }
        let (hash, index) = parse_pod_name(&d.metadata.name, name)?;
        let current = template_hash(&d.spec.template);
        let template =
            if hash == current { Some(&d.spec.template) } else { revision_of(snapshot, d, hash).map(|r| &r.template) }?;
        let owner = OwnerRef {
            kind: Kind::Deployment,
            name: d.metadata.name.clone(),
            uid: d.metadata.uid.clone().unwrap_or_default(),
        };
        let fenced = d.spec.fencing.as_deref() == Some("Majority");
        Some(deployment_pod(ns, owner, index, &Template::of(template), hash, fenced))
    })
}

#[cfg(test)]
#[path = "deployments_tests.rs"]
mod tests;
