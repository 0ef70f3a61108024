//! From (desired state, cluster view) to the agent's `Plan`: the desired
//! pods, their placement, and what the owners report. Pure.
//!
//! Placement depends only on the desired state and the placement-relevant
//! part of the view (which nodes, their capacity, labels, runtimes); pod
//! statuses change far more often. `Planner` keeps the last placement and
//! recomputes it only when those inputs change.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use super::cron::{self, Triggers};
use super::daemonsets::{self, DaemonProgresses};
use super::deployments::{Progresses, Rollouts, Wanted, desired_of};
use super::desired::DesiredPods;
use super::jobs;
use super::{Memo, NodeSpec, Placement, maintenance, place_incremental};
use crate::membership::view::{ClusterView, NodeState, NodeView, damps_settling, takes_pods};
use crate::model::node::NodeName;
use crate::model::pods::{DesiredPod, Results, desired_pods};
use crate::model::revision::fence_key;
use crate::model::status::ContainerState;
use crate::model::{Kind, Object};
use crate::state::Snapshot;
use imbl::ordmap::DiffItem;

/// The agent's input: what the cluster wants and who owns what.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every desired pod in the cluster, by id.
    pub desired: DesiredPods,
    /// Owner node of each placed pod (absent: pending).
    pub owners: Arc<BTreeMap<String, NodeName>>,
    /// The cluster view the plan was made from (owners' pod reports).
    pub view: Arc<ClusterView>,
    /// Whether this node sees a majority of the nodes it last knew.
    pub quorum: bool,
    /// Whether the live membership has not changed for the fence delay:
    /// fenced pods start only then, so that two nodes whose views still
    /// differ (just after a heal) never both believe they own one.
    pub stable: bool,
    /// Fenced pods some other live node still reports running.
    pub fenced_elsewhere: BTreeSet<String>,
    /// Recorded outcomes of Job pods (the agent adds to their failure counts).
    pub results: Results,
    /// The nodes that fire each CronJob (`placement::cron`), by
    /// `<namespace>/<name>`: the owner, then its fallback.
    pub triggers: Arc<Triggers>,
    /// The nodes placement used (alive, settled, schedulable), over which
    /// the keepers of Jobs with timers are ranked (`placement::jobs`).
    pub nodes: Arc<Vec<NodeSpec>>,
    /// `owned_by`'s answer, found once per plan.
    pub owned: OwnedIndex,
}

/// The pods a plan places on one node, found on first use and kept with
/// the plan: an agent reconciles against one plan twice a second, and
/// walking every owner each time was a tenth of a simulated cluster at
/// rest (100 nodes, 300 pods).
#[derive(Debug, Clone, Default)]
pub struct OwnedIndex(OnceLock<(String, Vec<String>)>);

impl Plan {
    /// The ids of the pods placed on node `me`, in id order.
    pub fn owned_by(&self, me: &str) -> Cow<'_, [String]> {
        let find = || self.owners.iter().filter(|(_, o)| *o == me).map(|(id, _)| id.clone()).collect::<Vec<_>>();
        let (node, ids) = self.owned.0.get_or_init(|| (me.to_string(), find()));
        if node == me { Cow::Borrowed(ids) } else { Cow::Owned(find()) }
    }

    /// The template hash of the copy the pod's owner reports Ready, if any.
    /// (Looked up on demand: only pods in handoff ask, and building the
    /// whole map on every view change cost O(pods) per node.)
    pub fn ready_on_owner(&self, id: &str) -> Option<&str> {
        let owner = self.owners.get(id)?;
        let node = self.view.nodes.get(owner.as_str()).filter(|n| n.state.alive())?;
        let st = node.pods.get(id)?;
        (st.ready && !st.terminating).then_some(st.template_hash.as_str())
    }
}

/// Everything derived from one (snapshot, view) pair.
#[derive(Debug, Clone, Default)]
pub struct PlanView {
    pub desired: Arc<Vec<DesiredPod>>,
    pub placement: Arc<Placement>,
    /// blake3 of the owners map: equal on two nodes iff they agree.
    pub owners_digest: u64,
    pub plan: Arc<Plan>,
    /// Where every Deployment's rollout stands, as this node sees it.
    pub progress: Arc<Progresses>,
    /// Where every DaemonSet stands, as this node sees it.
    pub daemons: Arc<DaemonProgresses>,
}

impl PlanView {
    /// Whether placement used this node (alive, settled, schedulable; a
    /// cordoned one counts): the plan's node list, in name order.
    pub fn schedulable(&self, name: &str) -> bool {
        self.plan.nodes.binary_search_by(|n| (*n.name).cmp(name)).is_ok()
    }
}

/// Settings of planning.
#[derive(Debug, Clone, Copy)]
pub struct PlanRules {
    /// A fenced pod last reported by a node declared Dead less than this
    /// long ago is not started elsewhere yet: that node may still run it
    /// until it notices it lost its majority.
    pub fence_delay_secs: u64,
    /// A new pod counts as available only after it has been seen Ready this
    /// long (plus its `minReadySeconds`), so that every node hears of it
    /// before a rollout stops the old copy (the agent's handoff linger).
    pub linger_ms: u64,
}

/// How long a node that has just lost its majority keeps the placement it
/// had. A node that froze (a laptop asleep, a machine swapping) sees every
/// peer dead for a moment when it resumes; without this grace it would own,
/// and start, every replica of the cluster until their heartbeats arrive
/// (netsim's flapping-node found that burst). A node cut off for longer
/// than this runs, as before, every unfenced replica it can. Fenced replicas
/// stop at once regardless (`Plan::quorum` is the view's). Only when two or
/// more peers vanished together: the survivor of a 2-node cluster whose peer
/// died takes its replicas over at once.
pub const MINORITY_GRACE_SECS: u64 = 5;

/// The placement part of a plan, kept while its inputs do not change.
#[derive(Debug, Clone)]
struct Cached {
    /// Digest of the desired pods (the snapshot and the rollouts' decisions).
    wanted: u64,
    /// Pods staying on cordoned nodes.
    pinned: BTreeMap<String, String>,
    nodes: Arc<Vec<NodeSpec>>,
    /// `nodes` and the settling ones (which run only their DaemonSet pods).
    with_settling: Arc<Vec<NodeSpec>>,
    settling: usize,
    /// The desired pods in placement's order, with their index by id.
    desired: DesiredPods,
    placement: Arc<Placement>,
    digest: u64,
    triggers: Arc<Triggers>,
}

/// The nodes placement sees in one view and one desired state, kept while
/// both show the same nodes (a cluster replans whenever a pod's status
/// changes anywhere, and every second while a delay runs; rebuilding the
/// nodes' specs each time cost as much as the rest of the plan at 300
/// nodes).
///
/// When the view changes, the lists are patched by what changed between
/// the memo's view and the new one (a few entries: O(changes · log n) to
/// find, a copy of the lists to patch), and made afresh only when the
/// desired state changed, many entries did, or settling nodes are left
/// out now and were not (or the reverse). At 1,000 nodes turning
/// schedulable one after another, every node replanned ten times a second
/// for as long as the wave lasted, each time walking the whole view.
#[derive(Debug, Clone)]
struct NodesMemo {
    view: Arc<ClusterView>,
    rev: u64,
    nodes: Arc<Vec<NodeSpec>>,
    with_settling: Arc<Vec<NodeSpec>>,
    settling: usize,
    /// Alive nodes of `view` whose records say settling, and whether
    /// placement left them out (`view::damps_settling`).
    settling_alive: usize,
    damp: bool,
}

/// Changed entries past which the node lists are made afresh.
const PATCH_AT_MOST: usize = 64;

impl NodesMemo {
    /// The lists of `view` made afresh.
    fn of(view: &Arc<ClusterView>, snapshot: &Snapshot) -> NodesMemo {
        let (alive, settling_alive) = view.settling_counts();
        let damp = damps_settling(view.quorum, settling_alive, alive);
        let mut nodes = view.placement_nodes_damped(damp);
        maintenance::cordon(&mut nodes, snapshot);
        let nodes = Arc::new(nodes);
        let with_settling = with_settling_of(&nodes, view);
        NodesMemo {
            view: view.clone(),
            rev: snapshot.rev,
            settling: alive.saturating_sub(nodes.len()),
            nodes,
            with_settling,
            settling_alive,
            damp,
        }
    }

    /// The lists of `view` (`alive` of its nodes alive) from these by
    /// what changed between the views, if few did and the desired state
    /// is the same.
    fn follow(&self, view: &Arc<ClusterView>, alive: usize, snapshot: &Snapshot) -> Option<NodesMemo> {
        if self.rev != snapshot.rev {
            return None;
        }
        let mut changed = Vec::new();
        for d in self.view.nodes.diff(&view.nodes) {
            changed.push(match d {
                DiffItem::Add(name, n) => (name, None, Some(n)),
                DiffItem::Remove(name, o) => (name, Some(o), None),
                DiffItem::Update { old: (name, o), new: (_, n) } => (name, Some(o), Some(n)),
            });
            if changed.len() > PATCH_AT_MOST {
                return None;
            }
        }
        let settles = |n: &NodeView| n.state.alive() && n.info.settling;
        let mut settling_alive = self.settling_alive;
        for (_, old, new) in &changed {
            settling_alive -= usize::from(old.is_some_and(settles));
            settling_alive += usize::from(new.is_some_and(settles));
        }
        let damp = damps_settling(view.quorum, settling_alive, alive);
        if damp != self.damp {
            return None;
        }
        let mut nodes = (*self.nodes).clone();
        let mut with_settling = (*self.with_settling).clone();
        for (name, _, new) in changed {
            let placed = new
                .filter(|n| takes_pods(n, damp))
                .map(|n| NodeSpec { unschedulable: maintenance::cordoned(snapshot, name), ..n.info.spec() });
            let listed = match &placed {
                Some(p) => Some(p.clone()),
                None => new.filter(|n| n.state.alive()).map(left_out),
            };
            put(&mut nodes, name, placed);
            put(&mut with_settling, name, listed);
        }
        Some(NodesMemo {
            view: view.clone(),
            rev: self.rev,
            settling: alive.saturating_sub(nodes.len()),
            nodes: Arc::new(nodes),
            with_settling: Arc::new(with_settling),
            settling_alive,
            damp,
        })
    }
}

/// Puts `spec` in place of `name`'s entry of a list in name order
/// (`None`: out of it).
fn put(list: &mut Vec<NodeSpec>, name: &str, spec: Option<NodeSpec>) {
    match (list.binary_search_by(|s| s.name.as_str().cmp(name)), spec) {
        (Ok(i), Some(s)) => list[i] = s,
        (Ok(i), None) => {
            list.remove(i);
        }
        (Err(i), Some(s)) => list.insert(i, s),
        (Err(_), None) => {}
    }
}

/// Computes plans, reusing the placement while its inputs are unchanged.
#[derive(Debug, Default)]
pub struct Planner {
    cache: Option<Cached>,
    /// How many placements were computed (for tests and metrics).
    pub computed: u64,
    /// The live membership (names, generations) and when it last changed.
    members: Option<(u64, u64)>,
    /// Live nodes when this node last had a majority (0: never had one),
    /// and when it last lost it with two or more peers at once.
    alive_with_quorum: usize,
    lost_quorum_at: Option<u64>,
    rollouts: Rollouts,
    nodes_memo: Option<NodesMemo>,
    /// What the last placement leaves for the next (`placement::memo`):
    /// a node joining or leaving replaces the few workloads it reaches.
    memo: Option<Memo>,
    /// The last view's live members.
    seen: Option<Members>,
    /// What the last plan was made from, and until when time alone
    /// leaves it as it is (see `unchanged`).
    valid: Option<Valid>,
}

/// The inputs of the last plan and the instant its first time-driven
/// answer changes: a delay after a membership change or a lost majority
/// ends, a fenced replica's old node has been dead long enough, a pod
/// becomes available, a rollout's deadline passes.
#[derive(Debug)]
struct Valid {
    rev: u64,
    view: Arc<ClusterView>,
    made_ms: u64,
    until_ms: u64,
}

/// `nodes` and the live nodes that take no other pod yet (starting,
/// settling, leaving), cordoned: DaemonSet pods also run there, and theirs
/// never move, so a restart of `shoal` leaves them running.
/// The same list as `nodes` (shared) when there is none. `nodes` is in name
/// order without repeats (as `placement_nodes` makes it), and so is the
/// result: one merging pass over both, allocating only when a node is added.
fn with_settling_of(nodes: &Arc<Vec<NodeSpec>>, view: &ClusterView) -> Arc<Vec<NodeSpec>> {
    debug_assert!(nodes.windows(2).all(|w| w[0].name < w[1].name), "nodes in name order");
    if view.nodes.len() <= nodes.len() {
        return nodes.clone();
    }
    let mut i = 0;
    let mut out: Option<Vec<NodeSpec>> = None;
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        let name = n.info.name.as_str();
        let start = i;
        while i < nodes.len() && nodes[i].name.as_str() < name {
            i += 1;
        }
        if let Some(o) = out.as_mut() {
            o.extend_from_slice(&nodes[start..i]);
        }
        if i < nodes.len() && nodes[i].name == name {
            if let Some(o) = out.as_mut() {
                o.push(nodes[i].clone());
            }
            i += 1;
            continue;
        }
        let o = out.get_or_insert_with(|| {
            let mut o = Vec::with_capacity(view.nodes.len());
            o.extend_from_slice(&nodes[..i]);
            o
        });
        o.push(left_out(n));
    }
    match out {
        None => nodes.clone(),
        Some(mut o) => {
            o.extend_from_slice(&nodes[i..]);
            Arc::new(o)
        }
    }
}

/// A live node placement left out, as the list with settling nodes holds
/// it: cordoned (it runs only the pods bound to it).
fn left_out(n: &NodeView) -> NodeSpec {
    NodeSpec { unschedulable: true, ..n.info.spec() }
}

/// Two views show the same nodes to placement: the same nodes, alive or
/// not, with the same records, and the same majority. Pod statuses may
/// differ: they change often, and placement does not read them. Views made
/// one from another share their unchanged entries, so this costs what
/// changed between them, not the cluster.
fn same_members(a: &Arc<ClusterView>, b: &Arc<ClusterView>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.quorum == b.quorum
            && a.nodes.len() == b.nodes.len()
            && a.nodes.diff(&b.nodes).all(|d| match d {
                DiffItem::Update { old: (_, a), new: (_, b) } => {
                    a.state.alive() == b.state.alive() && (Arc::ptr_eq(&a.info, &b.info) || a.info == b.info)
                }
                DiffItem::Add(..) | DiffItem::Remove(..) => false,
            }))
}

/// Two node lists are the same (the same memo, or equal).
fn same_nodes(a: &Arc<Vec<NodeSpec>>, b: &Arc<Vec<NodeSpec>>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// A digest of what the desired pods are made from.
fn wanted_digest(rev: u64, wanted: &[Wanted]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&rev.to_le_bytes());
    for w in wanted {
        h.update(w.kind.as_str().as_bytes());
        h.update(&[0]);
        h.update(w.namespace.as_bytes());
        h.update(&[0]);
        h.update(w.name.as_bytes());
        for (i, hash) in &w.pods {
            h.update(&i.to_le_bytes());
            h.update(hash.as_bytes());
        }
        for n in &w.nodes {
            h.update(n.as_bytes());
            h.update(&[0]);
        }
        h.update(&[1]);
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Who is alive (name and generation), as a digest, and how many: kept
/// from one view to the next by what changed between them (O(changes)).
#[derive(Debug, Clone)]
struct Members {
    view: Arc<ClusterView>,
    digest: u64,
    alive: usize,
}

impl Members {
    fn of(view: &Arc<ClusterView>) -> Members {
        let alive = view.nodes.values().filter(|n| n.state.alive()).count();
        let digest = view.nodes.values().fold(0, |d, n| d ^ n.member_key());
        Members { view: view.clone(), digest, alive }
    }

    fn follow(&mut self, view: &Arc<ClusterView>) {
        if Arc::ptr_eq(&self.view, view) {
            return;
        }
        for d in self.view.nodes.diff(&view.nodes) {
            let (old, new) = match d {
                DiffItem::Add(_, n) => (None, Some(n)),
                DiffItem::Remove(_, o) => (Some(o), None),
                DiffItem::Update { old: (_, o), new: (_, n) } => (Some(o), Some(n)),
            };
            for (n, gone) in old.into_iter().map(|o| (o, true)).chain(new.map(|n| (n, false))) {
                self.digest ^= n.member_key();
                if n.state.alive() {
                    if gone { self.alive -= 1 } else { self.alive += 1 }
                }
            }
        }
        self.view = view.clone();
    }
}

fn owners_digest(owners: &BTreeMap<String, NodeName>) -> u64 {
    let mut h = blake3::Hasher::new();
    for (k, v) in owners {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

impl Planner {
    /// What the last placement left for the next (`None` before the first).
    pub fn memo(&self) -> Option<&Memo> {
        self.memo.as_ref()
    }

    /// The node's clock stepped by `secs`: times kept from before move with
    /// it, so that no delay ends early (or late) because of the step.
    pub fn clock_moved(&mut self, secs: i64) {
        if let Some((_, since)) = &mut self.members {
            *since = since.saturating_add_signed(secs);
        }
        if let Some(t) = &mut self.lost_quorum_at {
            *t = t.saturating_add_signed(secs);
        }
        self.valid = None;
    }

    /// Whether the plan at `now_ms` from `snapshot` and `view` is the last
    /// one: the same inputs, and no delay it waited on has ended since.
    /// A cluster at rest replans every second for those delays alone; this
    /// spares it the work (at 100 nodes, planning the same inputs again was
    /// more than half of a simulated hour).
    pub fn unchanged(&self, snapshot: &Snapshot, view: &Arc<ClusterView>, now_ms: u64) -> bool {
        self.valid.as_ref().is_some_and(|v| {
            v.rev == snapshot.rev && Arc::ptr_eq(&v.view, view) && (v.made_ms..v.until_ms).contains(&now_ms)
        })
    }

    /// The plan at `now_ms` (unix milliseconds).
    pub fn plan(&mut self, snapshot: &Snapshot, view: &Arc<ClusterView>, rules: &PlanRules, now_ms: u64) -> PlanView {
        self.valid = None;
        let now_unix = now_ms / 1000;
        // When an answer below first changes with time alone (unix s).
        let mut until_unix = u64::MAX;
        let seen = match self.seen.as_mut() {
            Some(m) => {
                m.follow(view);
                m
            }
            None => self.seen.insert(Members::of(view)),
        };
        let (members, alive) = (seen.digest, seen.alive);
        let since = match self.members {
            Some((d, since)) if d == members => since,
            _ => {
                self.members = Some((members, now_unix));
                now_unix
            }
        };
        let stable = now_unix.saturating_sub(since) >= rules.fence_delay_secs;
        if !stable {
            until_unix = until_unix.min(since.saturating_add(rules.fence_delay_secs));
        }
        if view.quorum {
            self.alive_with_quorum = alive;
            self.lost_quorum_at = None;
        } else if self.alive_with_quorum >= alive + 2 && self.lost_quorum_at.is_none() {
            self.lost_quorum_at = Some(now_unix);
        }
        let grace = self.lost_quorum_at.is_some_and(|t| now_unix.saturating_sub(t) < MINORITY_GRACE_SECS);
        if let Some(t) = self.lost_quorum_at.filter(|_| grace) {
            until_unix = until_unix.min(t.saturating_add(MINORITY_GRACE_SECS));
        }
        let (nodes, with_settling, settling) = match &self.cache {
            Some(c) if grace => {
                let mut nodes = (*c.nodes).clone();
                maintenance::cordon(&mut nodes, snapshot);
                let nodes = Arc::new(nodes);
                let with_settling = with_settling_of(&nodes, view);
                (nodes, with_settling, c.settling)
            }
            _ => {
                let m = match self.nodes_memo.take() {
                    Some(mut m) if m.rev == snapshot.rev && same_members(&m.view, view) => {
                        // The same lists; following from this view keeps
                        // the next diff to what changes after it.
                        m.view = view.clone();
                        m
                    }
                    Some(m) => m.follow(view, alive, snapshot).unwrap_or_else(|| NodesMemo::of(view, snapshot)),
                    None => NodesMemo::of(view, snapshot),
                };
                let lists = (m.nodes.clone(), m.with_settling.clone(), m.settling);
                self.nodes_memo = Some(m);
                lists
            }
        };
        let (mut wanted, progress) = self.rollouts.decide(snapshot, view, rules.linger_ms, now_ms);
        let rollouts = &self.rollouts;
        let available = |id: &str, min_ready_ms: u64| rollouts.available(id, min_ready_ms, rules.linger_ms, now_ms);
        let (daemon_wanted, daemons) = daemonsets::decide(snapshot, view, &with_settling, &available);
        wanted.extend(daemon_wanted);
        let wanted_now = wanted_digest(snapshot.rev, &wanted);
        let same_pods = self.cache.as_ref().filter(|c| c.wanted == wanted_now).map(|c| c.desired.pods().clone());
        let desired = same_pods.unwrap_or_else(|| {
            let jobs: Vec<&Object> = snapshot.of_kind(Kind::Job).map(|o| &o.object).collect();
            let mut desired = desired_pods(jobs, snapshot.job_facts());
            desired.extend(desired_of(snapshot, &wanted));
            desired.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            Arc::new(desired)
        });
        let mut pinned = maintenance::pins(snapshot, view, &desired, &progress);
        for (id, node) in jobs::stay(snapshot, view, &desired) {
            pinned.entry(id).or_insert(node);
        }
        let fresh = self.cache.as_ref().is_some_and(|c| {
            c.wanted == wanted_now
                && same_nodes(&c.nodes, &nodes)
                && same_nodes(&c.with_settling, &with_settling)
                && c.settling == settling
                && c.pinned == pinned
        });
        if !fresh {
            self.computed += 1;
            let (mut placement, memo) = place_incremental(&with_settling, &desired, &pinned, self.memo.take());
            self.memo = Some(memo);
            if nodes.is_empty() && settling > 0 {
                for why in placement.pending.values_mut() {
                    *why = format!(
                        "no schedulable node yet: {settling} node(s) settling after a (re)start or a partition"
                    );
                }
            }
            let digest = owners_digest(&placement.owners);
            let triggers = Arc::new(cron::triggers(snapshot, &nodes));
            self.cache = Some(Cached {
                triggers,
                wanted: wanted_now,
                pinned,
                settling,
                desired: DesiredPods::new(desired),
                with_settling,
                placement: Arc::new(placement),
                nodes,
                digest,
            });
        }
        // CronJobs change no pod: their triggers follow the nodes and the
        // CronJobs themselves.
        if let Some(c) = self.cache.as_mut() {
            let keys = snapshot.of_kind(Kind::CronJob).count();
            let same = keys == c.triggers.len()
                && snapshot.of_kind(Kind::CronJob).all(|o| {
                    let m = o.object.meta();
                    c.triggers.contains_key(&cron::trigger_key(m.namespace.as_deref().unwrap_or_default(), &m.name))
                });
            if !same {
                c.triggers = Arc::new(cron::triggers(snapshot, &c.nodes));
            }
        }
        let Some(c) = &self.cache else { return PlanView::default() };
        // Fenced replicas running on other nodes (any revision of each: a
        // new revision's copy waits for the old one's, see `fence_key`).
        let mut running_elsewhere: BTreeSet<String> = BTreeSet::new();
        // Only the owners of fenced replicas matter: no other pod's key
        // can match one of theirs.
        let fenced_owners: BTreeSet<&str> =
            c.desired.pods().iter().filter(|d| d.fenced).map(|d| d.owner.uid.as_str()).collect();
        if !fenced_owners.is_empty() {
            for n in view.nodes.values().filter(|n| n.info.name != view.self_name) {
                // A node that left may still be stopping it (its lease
                // runs out within the fence delay), as may one declared Dead.
                let recent_death = matches!(n.state, NodeState::Dead | NodeState::Left)
                    && now_unix.saturating_sub(n.since) < rules.fence_delay_secs;
                if recent_death {
                    until_unix = until_unix.min(n.since.saturating_add(rules.fence_delay_secs));
                }
                if !(n.state.alive() || recent_death) {
                    continue;
                }
                for (id, s) in n.pods.iter().filter(|(_, s)| fenced_owners.contains(s.owner_uid.as_str())) {
                    if s.containers.iter().any(|c| !matches!(c.state, ContainerState::Terminated { .. })) {
                        running_elsewhere.insert(fence_key(&s.owner_uid, id));
                    }
                }
            }
        }
        let fenced_elsewhere: BTreeSet<String> = c
            .desired
            .iter()
            .filter(|(_, d)| d.fenced)
            .map(|(id, d)| (id.clone(), fence_key(&d.owner.uid, id)))
            .filter(|(_, key)| running_elsewhere.contains(key))
            .map(|(id, _)| id)
            .collect();
        let plan = Plan {
            desired: c.desired.clone(),
            owners: c.placement.owners.clone(),
            view: view.clone(),
            quorum: view.quorum,
            stable,
            fenced_elsewhere,
            results: snapshot.pod_results.clone(),
            triggers: c.triggers.clone(),
            nodes: c.nodes.clone(),
            owned: OwnedIndex::default(),
        };
        self.valid = Some(Valid {
            rev: snapshot.rev,
            view: view.clone(),
            made_ms: now_ms,
            until_ms: until_unix.saturating_mul(1000).min(self.rollouts.wake_ms()),
        });
        PlanView {
            desired: c.desired.pods().clone(),
            placement: c.placement.clone(),
            owners_digest: c.digest,
            plan: Arc::new(plan),
            progress: Arc::new(progress),
            daemons: Arc::new(daemons),
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests may read the clock for a base instant
mod tests {
    use super::*;
    use crate::membership::view::{NodeInfo, test_node as node};
    use crate::model::parse::{SourceFile, parse_files};
    use crate::model::validate::Context;
    use crate::state::StateDb;
    use crate::state::apply::{Mode, plan_apply};

    const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 6\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, command: [sleep, '1000']}]\n";

    fn snapshot() -> Arc<Snapshot> {
        snapshot_of(WEB)
    }

    fn snapshot_of(yaml: &str) -> Arc<Snapshot> {
        let db = StateDb::in_memory("a", || uhlc::NTP64(1 << 32), std::time::Duration::from_secs(60)).unwrap();
        let out =
            parse_files(&[SourceFile { name: "web.yaml".into(), content: yaml.into() }], &Context::default(), None);
        let (_, changes) = plan_apply(&db.snapshot(), out.objects, db.now(), Mode::Apply).unwrap();
        db.write(changes).unwrap();
        db.snapshot()
    }

    fn view(alive: &[&str], quorum: bool) -> Arc<ClusterView> {
        view_of(&["a", "b", "c"], alive, quorum)
    }

    fn view_of(names: &[&str], alive: &[&str], quorum: bool) -> Arc<ClusterView> {
        let mut v = ClusterView { self_name: names[0].into(), quorum, ..Default::default() };
        for name in names.iter().copied() {
            let info = NodeInfo {
                name: name.into(),
                schedulable: true,
                weight: 1000,
                allocatable: crate::model::pods::Resources { cpu_millis: 4000, memory_bytes: 8 << 30 },
                runtimes: Arc::new([crate::model::pods::RuntimeKind::Process].into()),
                max_pods: 100,
                ..Default::default()
            };
            let state = if alive.contains(&name) { NodeState::Ready } else { NodeState::Dead };
            v.nodes.insert(name.into(), node(info, state));
        }
        Arc::new(v)
    }

    fn owned_by_a(p: &PlanView) -> usize {
        p.plan.owners.values().filter(|o| *o == "a").count()
    }

    #[test]
    fn owned_by_lists_each_nodes_pods_whichever_node_asks_first() {
        let rules = PlanRules { fence_delay_secs: 10, linger_ms: 1000 };
        let p = Planner::default().plan(&snapshot(), &view(&["a", "b", "c"], true), &rules, 100_000);
        let of = |node: &str| -> Vec<String> {
            p.plan.owners.iter().filter(|(_, o)| *o == node).map(|(id, _)| id.clone()).collect()
        };
        assert_eq!(p.plan.owners.len(), 6);
        // The first asker's answer is kept; another node's is found afresh.
        for node in ["b", "a", "c", "b", "zz"] {
            assert_eq!(p.plan.owned_by(node).to_vec(), of(node), "{node}");
        }
        assert!(["a", "b", "c"].iter().all(|n| !of(n).is_empty()), "6 pods on 3 nodes: each has some");
        assert!(matches!(p.plan.owned_by("b"), Cow::Borrowed(_)), "kept for the first asker");
    }

    #[test]
    fn pod_statuses_changing_reuse_the_placement_and_a_node_changing_recomputes_it() {
        let rules = PlanRules { fence_delay_secs: 10, linger_ms: 1000 };
        let snap = snapshot();
        let mut p = Planner::default();
        let first = p.plan(&snap, &view(&["a", "b", "c"], true), &rules, 100_000);
        assert_eq!(p.computed, 1);
        // A new view whose only change is a pod status elsewhere.
        let mut v = (*view(&["a", "b", "c"], true)).clone();
        let st =
            crate::model::status::PodStatus { namespace: "default".into(), name: "x".into(), ..Default::default() };
        v.nodes.get_mut("b").unwrap().pods =
            crate::model::status::peer_pods(&BTreeMap::from([("default/x".into(), st)]));
        let again = p.plan(&snap, &Arc::new(v.clone()), &rules, 100_500);
        assert_eq!(p.computed, 1, "the same nodes: the placement is kept");
        assert!(Arc::ptr_eq(&first.placement, &again.placement));
        // A node's record changes (its capacity): placed again.
        let mut info = (*v.nodes["c"].info).clone();
        info.allocatable.cpu_millis = 1000;
        v.nodes.get_mut("c").unwrap().info = Arc::new(info);
        p.plan(&snap, &Arc::new(v), &rules, 101_000);
        assert_eq!(p.computed, 2, "another node record: placed again");
        // A node dies: placed again, and its replicas move.
        let dead = p.plan(&snap, &view(&["a", "b"], true), &rules, 101_500);
        assert_eq!(p.computed, 3);
        assert!(dead.plan.owners.values().all(|o| o != "c"));
    }

    /// Above the window the planner places incrementally: a node dying
    /// replays what it did not reach, and the plan is the one a planner
    /// with no memo makes.
    #[test]
    fn a_node_dying_in_a_large_cluster_is_placed_incrementally() {
        let rules = PlanRules { fence_delay_secs: 10, linger_ms: 1000 };
        let mut yaml = String::new();
        for w in 0..30 {
            yaml.push_str(&WEB.replace("name: web", &format!("name: web{w}")).replace("replicas: 6", "replicas: 8"));
            yaml.push_str("---\n");
        }
        let snap = snapshot_of(&yaml);
        let names: Vec<String> = (0..80).map(|i| format!("n{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut p = Planner::default();
        let all = p.plan(&snap, &view_of(&names, &names, true), &rules, 100_000);
        assert_eq!(all.plan.owners.len(), 240);
        assert_eq!(p.memo().map(Memo::kept), Some(30), "every workload kept");
        let alive: Vec<&str> = names.iter().copied().filter(|n| *n != "n40").collect();
        let fewer = view_of(&names, &alive, true);
        let after = p.plan(&snap, &fewer, &rules, 101_000);
        assert_eq!(p.computed, 2);
        let memo = p.memo().expect("a memo");
        assert!(memo.replayed() + memo.reused() > 0, "{memo:?}");
        assert!(after.plan.owners.values().all(|o| o != "n40"));
        let fresh = Planner::default().plan(&snap, &fewer, &rules, 101_000);
        assert_eq!(after.plan.owners, fresh.plan.owners);
        assert_eq!(after.placement, fresh.placement);
    }

    #[test]
    fn a_node_that_just_lost_its_majority_keeps_its_placement_for_a_grace() {
        let rules = PlanRules { fence_delay_secs: 10, linger_ms: 1000 };
        let snap = snapshot();
        let mut p = Planner::default();
        let all = p.plan(&snap, &view(&["a", "b", "c"], true), &rules, 100_000);
        assert_eq!(all.plan.owners.len(), 6);
        let mine = owned_by_a(&all);
        assert!(mine < 6, "three nodes share the replicas");
        // Everyone else looks dead (this node froze, or is cut off).
        let alone = view(&["a"], false);
        let now = p.plan(&snap, &alone, &rules, 101_000);
        assert_eq!(owned_by_a(&now), mine, "within the grace, the placement stays");
        assert!(!now.plan.quorum, "but fenced replicas stop at once");
        let later = p.plan(&snap, &alone, &rules, (101 + MINORITY_GRACE_SECS) * 1000);
        assert_eq!(owned_by_a(&later), 6, "after the grace, the cut-off node runs every replica it can");
        // A node that never had a majority (still joining) has no grace.
        let mut fresh = Planner::default();
        assert_eq!(owned_by_a(&fresh.plan(&snap, &alone, &rules, 100_000)), 6);
        // Nor does the survivor of a 2-node cluster whose one peer died.
        let mut two = Planner::default();
        let pair = view(&["a", "b"], true);
        let mut pair = (*pair).clone();
        pair.nodes.remove("c");
        assert!(owned_by_a(&two.plan(&snap, &Arc::new(pair.clone()), &rules, 100_000)) < 6);
        pair.quorum = false;
        pair.nodes.get_mut("b").unwrap().state = NodeState::Dead;
        assert_eq!(owned_by_a(&two.plan(&snap, &Arc::new(pair), &rules, 101_000)), 6);
    }

    /// The members digest and count kept by following views equal those
    /// computed afresh, through joins, deaths, restarts and departures.
    #[test]
    fn members_followed_view_to_view_are_those_of_the_view() {
        let mut rnd = crate::membership::view::xorshift(0x2545_f491_4f6c_dd1d);
        let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead, NodeState::Left];
        let mut view = ClusterView { self_name: "n000".into(), quorum: true, ..Default::default() };
        let mut members = Members::of(&Arc::new(view.clone()));
        for _ in 0..2000 {
            for _ in 0..1 + rnd(4) {
                let name = format!("n{:03}", rnd(200));
                if rnd(5) == 0 {
                    view.nodes.remove(name.as_str());
                } else {
                    let info = NodeInfo { name: name.clone(), generation: rnd(3), ..Default::default() };
                    view.nodes.insert(name.into(), node(info, states[rnd(4) as usize]));
                }
            }
            let v = Arc::new(view.clone());
            members.follow(&v);
            let fresh = Members::of(&v);
            assert_eq!((members.digest, members.alive), (fresh.digest, fresh.alive));
        }
    }

    /// The list with the settling nodes is the placement list plus every
    /// other live node of the view, cordoned, in name order, and is the
    /// placement list itself (shared) when there is no such node.
    #[test]
    fn with_settling_adds_the_live_nodes_left_out_cordoned() {
        let mut rnd = crate::membership::view::xorshift(0x94d0_49bb_1331_11eb);
        let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead, NodeState::Left];
        for _ in 0..500 {
            let mut view = ClusterView { self_name: "n00".into(), quorum: rnd(4) > 0, ..Default::default() };
            for i in 0..rnd(40) {
                let info = NodeInfo {
                    name: format!("n{i:02}"),
                    schedulable: rnd(3) > 0,
                    settling: rnd(4) == 0,
                    ..Default::default()
                };
                view.nodes.insert(info.name.as_str().into(), node(info, states[rnd(4) as usize]));
            }
            let mut nodes = view.placement_nodes();
            for n in nodes.iter_mut() {
                n.unschedulable = rnd(5) == 0;
            }
            let nodes = Arc::new(nodes);
            let got = with_settling_of(&nodes, &view);
            let mut want: Vec<NodeSpec> = nodes.to_vec();
            for n in view.nodes.values().filter(|n| n.state.alive()) {
                if !nodes.iter().any(|x| x.name == n.info.name) {
                    want.push(NodeSpec { unschedulable: true, ..n.info.spec() });
                }
            }
            want.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(*got, want);
            assert_eq!(Arc::ptr_eq(&got, &nodes), want.len() == nodes.len());
        }
    }

    /// The node lists patched view to view are those made afresh, through
    /// joins, deaths, departures, records changing (schedulable, settling)
    /// and majorities lost and regained, with cordoned nodes; and most
    /// steps are patched, not made afresh.
    #[test]
    fn node_lists_followed_view_to_view_are_those_made_afresh() {
        let mut rnd = crate::membership::view::xorshift(0x9e37_79b9_7f4a_7c15);
        let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead, NodeState::Left];
        let mut snap = Snapshot { rev: 7, ..Default::default() };
        for name in ["n003", "n017", "n042"] {
            snap.maintenance
                .insert(name.into(), crate::model::node::NodeMaintenance { unschedulable: true, draining: false });
        }
        let mut view = ClusterView { self_name: "n000".into(), quorum: true, ..Default::default() };
        let mut memo = NodesMemo::of(&Arc::new(view.clone()), &snap);
        let mut patched = 0;
        for step in 0..3000 {
            for _ in 0..1 + rnd(3) {
                let name = format!("n{:03}", rnd(60));
                if rnd(6) == 0 {
                    view.nodes.remove(name.as_str());
                } else {
                    let info = NodeInfo {
                        name: name.clone(),
                        generation: rnd(2),
                        schedulable: rnd(4) > 0,
                        settling: rnd(5) == 0,
                        ..Default::default()
                    };
                    view.nodes.insert(name.into(), node(info, states[rnd(4) as usize]));
                }
            }
            if rnd(20) == 0 {
                view.quorum = !view.quorum;
            }
            let v = Arc::new(view.clone());
            let alive = v.nodes.values().filter(|n| n.state.alive()).count();
            let fresh = NodesMemo::of(&v, &snap);
            let next = memo.follow(&v, alive, &snap);
            if let Some(n) = &next {
                patched += 1;
                let got = (&n.nodes, &n.with_settling, n.settling, n.settling_alive, n.damp);
                let want = (&fresh.nodes, &fresh.with_settling, fresh.settling, fresh.settling_alive, fresh.damp);
                assert_eq!(got, want, "step {step}");
            }
            memo = next.unwrap_or(fresh);
        }
        assert!(patched > 2000, "{patched} of 3000 steps patched");
        let other = Snapshot { rev: 8, ..Default::default() };
        assert!(memo.follow(&Arc::new(view.clone()), 0, &other).is_none(), "a new desired state: made afresh");
    }

    /// What a plan decides, compared whole (every part in a stable order).
    fn outcome(p: &PlanView) -> String {
        let q = &p.plan;
        format!(
            "{:?}\n{:?}\n{:?}\n{}/{}/{:?}\n{:?}\n{:?}",
            p.placement, p.desired, q.owners, q.stable, q.quorum, q.fenced_elsewhere, p.progress, p.daemons
        )
    }

    /// A planner that skips the inputs it planned last while `unchanged`
    /// says so publishes at every instant the plan of one that plans every
    /// time: through a rollout waiting on `minReadySeconds` and the linger,
    /// a progress deadline, a fenced replica on a node dead for less than
    /// the fence delay, a lost majority's grace and membership changes.
    /// The reference also reads each view afresh and decides the rollouts
    /// every time (no `Seen` followed, no `Decided` kept), and some views
    /// differ only in what no decision reads.
    #[test]
    fn skipping_unchanged_inputs_publishes_the_plan_of_planning_every_time() {
        use crate::model::status::{ContainerState, ContainerStatus, PodStatus, peer_pods};
        let rules = PlanRules { fence_delay_secs: 4, linger_ms: 1000 };
        let web = WEB.replace("  replicas: 6\n", "  replicas: 6\n  minReadySeconds: 2\n  progressDeadlineSeconds: 3\n");
        let db = WEB.replace("name: web", "name: db").replace("replicas: 6", "replicas: 1\n  fencing: Majority");
        let snap = snapshot_of(&format!("{web}---\n{db}"));
        let deployment = |name: &str| {
            let key =
                crate::model::ObjectKey { kind: Kind::Deployment, namespace: "default".into(), name: name.into() };
            match &snap.get(&key).expect("applied").object {
                Object::Deployment(d) => d.clone(),
                _ => unreachable!("a Deployment"),
            }
        };
        let pod = |name: &str, slot: u32, node: &str, ready: bool| {
            let d = deployment(name);
            let hash = crate::model::pods::template_hash(&d.spec.template);
            let running = ContainerState::Running { started_at: 100 };
            PodStatus {
                namespace: "default".into(),
                name: format!("{name}-{hash}-{slot}"),
                node: node.into(),
                owner_uid: d.metadata.uid.clone().unwrap_or_default(),
                template_hash: hash,
                ready,
                containers: vec![ContainerStatus { name: "c".into(), ready, state: running, ..Default::default() }],
                ..Default::default()
            }
        };
        let names = ["a", "b", "c", "d"];
        // Views: pods coming up Ready in steps, a node dying with the
        // fenced replica, this node cut off.
        let with_restarts = |alive: &[&str], quorum: bool, ready: usize, dead_since: u64, restarts: u32| {
            let mut v = (*view_of(&names, alive, quorum)).clone();
            for (i, node) in names.iter().enumerate() {
                let mut pods = BTreeMap::new();
                for slot in (0..6u32).filter(|s| *s as usize % 4 == i) {
                    let mut st = pod("web", slot, node, (slot as usize) < ready);
                    st.containers[0].restart_count = restarts;
                    pods.insert(st.id(), st);
                }
                if *node == "c" {
                    let st = pod("db", 0, node, true);
                    pods.insert(st.id(), st);
                }
                let n = v.nodes.get_mut(*node).expect("a node");
                n.pods = peer_pods(&pods);
                if !alive.contains(node) {
                    n.since = dead_since;
                }
            }
            Arc::new(v)
        };
        let with = |alive: &[&str], quorum: bool, ready: usize, dead_since: u64| {
            with_restarts(alive, quorum, ready, dead_since, 0)
        };
        let views = [
            // Views that differ in what no decision reads (a restart
            // counted): the rollouts' memo answers, the plan is made again.
            with_restarts(&names, true, 3, 0, 1),
            with_restarts(&names, true, 3, 0, 2),
            with(&names, true, 0, 0),
            with(&names, true, 3, 0),
            with(&names, true, 6, 0),
            with(&["a", "b", "d"], true, 6, 110),
            with(&["a", "b", "d"], true, 4, 130),
            with(&["a"], false, 6, 120),
            with(&["a", "b"], true, 2, 150),
        ];
        let (mut always, mut skipping) = (Planner::default(), Planner::default());
        always.rollouts.forget = true;
        let mut published = outcome(&skipping.plan(&snap, &views[0], &rules, 100_000));
        assert_eq!(published, outcome(&always.plan(&snap, &views[0], &rules, 100_000)));
        let mut rnd = crate::membership::view::xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut t, mut v, mut skipped, mut replanned) = (100_000u64, 0usize, 0, 0);
        for step in 0..3_000 {
            t += rnd(700);
            if rnd(8) == 0 {
                v = rnd(views.len() as u64) as usize;
            }
            let view = &views[v];
            if skipping.unchanged(&snap, view, t) {
                skipped += 1;
            } else {
                replanned += 1;
                published = outcome(&skipping.plan(&snap, view, &rules, t));
            }
            let expected = outcome(&always.plan(&snap, view, &rules, t));
            for (part, (p, e)) in published.lines().zip(expected.lines()).enumerate() {
                assert_eq!(p, e, "step {step}, view {v}, at {t} ms, part {part}");
            }
        }
        assert!(skipped > 1_000 && replanned > 300, "skipped {skipped}, replanned {replanned}");
    }
}
