//! Incremental placement: what did not change is not computed again.
//!
//! Placement is a pure function of all nodes and all pods, and a node
//! recomputes it whenever a node joins, leaves or changes. Above the window
//! (`candidates`) a pod reads only the nodes on its arc of the ring, so one
//! node's change reaches few pods' windows; what else a workload reads is
//! the capacity the workloads before it left. `place_incremental` keeps,
//! for each workload (a `Memo`), its pods' names, seeds, requests, arcs,
//! rankings (their best `TOP` nodes and scores) and nodes, and the next
//! placement reuses them at two levels.
//!
//! **A pod's ranking** is reused when it is the same pod (name, so seed)
//! in the same slot, its workload has the same runtime, node selector and
//! number of nodes ranked, no pin and no topology spread constraint (so it
//! ranks exactly the schedulable nodes of its class), and no node that
//! joined, left or changed (any field of its spec) has a point on its arc:
//! it walks the same nodes with the same seeds, weights and filter, so its
//! ranking is the same. The workload's matching, capacity checks and
//! fallbacks then run as in a full placement.
//!
//! **A whole workload is replayed** (its pods go where they went, with no
//! matching) when, besides every pod's ranking being reusable:
//!
//! - it has at most one pod per schedulable node, the same requests, and
//!   last time every pod was placed by the matching with no capacity check
//!   failing on the way (each check made passed and placed a pod);
//! - each pod still fits its node, given what the workloads before it took.
//!
//! Then the matching would see the same pairs in the same order, make the
//! same checks and pass every one: the same owners. The memo changes the
//! time placement takes, never its answer; `memo_tests` compare it with a
//! full placement over random changes.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::candidates::{Span, points};
use super::spread::{self, Scratch, TOP, Workload};
use super::{Decisions, Node, NodeSpec, Score, seed};
use crate::model::Kind;
use crate::model::pods::{DesiredPod, Resources, RuntimeKind};

/// What groups pods into a workload: namespace, kind, owner, revision.
pub(super) type Key<'a> = (&'a str, Kind, &'a str, &'a str);
pub(super) type OwnedKey = (String, Kind, String, String);

/// What one placement leaves for the next: its nodes, and what it kept of
/// each workload (`Entry`), in workload order.
#[derive(Clone, Default)]
pub struct Memo {
    window: usize,
    /// The nodes it was made for, as given (shared with the caller).
    nodes: Arc<Vec<NodeSpec>>,
    workloads: Vec<(OwnedKey, Entry)>,
    replayed: usize,
    reused: usize,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("nodes", &self.nodes.len())
            .field("workloads", &self.workloads.len())
            .field("replayed", &self.replayed)
            .field("reused", &self.reused)
            .finish()
    }
}

impl Memo {
    /// Workloads the placement that made this memo replayed from the last.
    pub fn replayed(&self) -> usize {
        self.replayed
    }
    /// Pods of the other workloads whose ranking the placement that made
    /// this memo took from the last (their arc unchanged).
    pub fn reused(&self) -> usize {
        self.reused
    }
    /// Workloads this memo keeps something of for the next placement.
    pub fn kept(&self) -> usize {
        self.workloads.len()
    }
    /// Bytes it holds (its entries and pod names; the nodes are shared).
    pub fn bytes(&self) -> usize {
        let slot = std::mem::size_of::<Slot>();
        self.workloads
            .iter()
            .map(|((ns, _, owner, rev), e)| {
                std::mem::size_of::<(OwnedKey, Entry)>()
                    + ns.capacity()
                    + owner.capacity()
                    + rev.capacity()
                    + e.slots.iter().map(|s| slot + s.name.capacity()).sum::<usize>()
            })
            .sum()
    }
}

/// One workload as it was placed.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) runtime: RuntimeKind,
    pub(super) selector: BTreeMap<String, String>,
    /// Nodes each pod ranked.
    pub(super) l: usize,
    /// Whether it may be replayed whole: at most one pod per node, every
    /// pod placed by the matching, no capacity check failed.
    pub(super) clean: bool,
    /// Its pods, in slot order.
    pub(super) slots: Vec<Slot>,
}

/// One pod as it was placed.
#[derive(Clone)]
pub(super) struct Slot {
    /// Its name (the namespace is the workload's): the same name, the
    /// same seed, without hashing it again.
    pub(super) name: String,
    pub(super) seed: u64,
    pub(super) requests: Resources,
    pub(super) span: Span,
    /// Its node's seed (in a clean entry).
    pub(super) node: u64,
    /// Its best nodes (seeds) with their scores, best first.
    ranked: [(Score, u64); TOP],
    len: u8,
}

impl Slot {
    /// `pod` (seed `seed`), its arc and its ranking (`top`: node indices
    /// in `state`).
    pub(super) fn new(pod: &DesiredPod, seed: u64, span: Span, top: &[(Score, usize)], state: &[Node<'_>]) -> Slot {
        let mut ranked = [(Score::ZERO, 0); TOP];
        for (r, (score, i)) in ranked.iter_mut().zip(top) {
            *r = (*score, state[*i].seed);
        }
        Slot {
            name: pod.name.clone(),
            seed,
            requests: pod.requests,
            span,
            node: 0,
            ranked,
            len: top.len().min(TOP) as u8,
        }
    }

    /// `pod`'s seed, if this is its slot (`pod` of the same workload).
    pub(super) fn seed_of(&self, pod: &DesiredPod) -> Option<u64> {
        (self.name == pod.name).then_some(self.seed)
    }
}

/// The last memo, read alongside this placement's workloads (both in
/// workload order), and what changed since it was made.
pub(super) struct Replay {
    last: std::iter::Peekable<std::vec::IntoIter<(OwnedKey, Entry)>>,
    /// The ring points of every node that joined, left or changed, sorted.
    dirty: Vec<u64>,
    /// Node index by seed, in this placement.
    by_seed: FxHashMap<u64, u32>,
    /// Rankings reused so far.
    reused: Cell<usize>,
}

impl Replay {
    /// `None` when nothing can be replayed: no memo, another window size,
    /// or no ring on either side (every pod read every node).
    pub(super) fn new(memo: Option<Memo>, state: &[Node<'_>], window: usize) -> Option<Replay> {
        let memo = memo?;
        // In name order without repeats, as placement saw them.
        let old = super::distinct_by_name(&memo.nodes);
        if memo.window != window || old.len() <= window || state.len() <= window {
            return None;
        }
        let mut dirty = Vec::new();
        let new = state;
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let order = match (old.get(i), new.get(j)) {
                (Some(o), Some(n)) => o.name.cmp(&n.spec.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Equal => {
                    if old[i] != new[j].spec {
                        dirty.extend(points(new[j].seed));
                    }
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    dirty.extend(points(seed(old[i].name.as_bytes())));
                    i += 1;
                }
                Ordering::Greater => {
                    dirty.extend(points(new[j].seed));
                    j += 1;
                }
            }
        }
        dirty.sort_unstable();
        let by_seed: FxHashMap<u64, u32> = state.iter().enumerate().map(|(i, n)| (n.seed, i as u32)).collect();
        if by_seed.len() != state.len() {
            // Two names with one 64-bit seed: not worth a special case.
            return None;
        }
        Some(Replay { last: memo.workloads.into_iter().peekable(), dirty, by_seed, reused: Cell::new(0) })
    }

    /// What the last memo kept of `w`, if anything.
    pub(super) fn take(&mut self, w: &Workload<'_>) -> Option<(OwnedKey, Entry)> {
        let key = w.key()?;
        while self.last.next_if(|(k, _)| as_key(k) < key).is_some() {}
        self.last.next_if(|(k, _)| as_key(k) == key)
    }

    /// The ranking a pod with seed `ps` had in `slot`, into `top` (node
    /// indices of this placement), if it is the same pod and no node on its
    /// arc changed; its arc then.
    pub(super) fn ranking(&self, slot: &Slot, ps: u64, top: &mut Vec<(Score, usize)>) -> Option<Span> {
        if slot.seed != ps || slot.span.meets(&self.dirty) {
            return None;
        }
        top.clear();
        for (score, node) in &slot.ranked[..usize::from(slot.len)] {
            top.push((*score, *self.by_seed.get(node)? as usize));
        }
        self.reused.set(self.reused.get() + 1);
        Some(slot.span)
    }

    pub(super) fn reused(&self) -> usize {
        self.reused.get()
    }

    /// Replays `w` whole from `e` (its last entry) if nothing it read
    /// changed: its pods go to their nodes. `None`: place it.
    pub(super) fn replay(
        &self,
        w: &Workload<'_>,
        e: &Entry,
        state: &mut [Node<'_>],
        scratch: &mut Scratch,
        pinned: &BTreeMap<String, String>,
        out: &mut Decisions,
    ) -> Option<()> {
        let first = w.pods.first()?;
        if !e.clean
            || e.slots.len() != w.pods.len()
            || e.runtime != first.runtime
            || e.selector != first.spec.node_selector
            || !first.spec.topology_spread_constraints.is_empty()
        {
            return None;
        }
        let class = spread::class(scratch, state, first);
        if class.sched_count < w.pods.len() || class.sched_count.min(TOP) != e.l {
            return None;
        }
        let mut placed = Vec::with_capacity(w.pods.len());
        for (pod, slot) in w.pods.iter().zip(&e.slots) {
            let id = pod.id();
            if (!pinned.is_empty() && pinned.contains_key(&id))
                || pod.requests != slot.requests
                || pod.name != slot.name
                || slot.span.meets(&self.dirty)
            {
                return None;
            }
            let i = *self.by_seed.get(&slot.node)? as usize;
            if !class.fits(state, i, pod) {
                return None;
            }
            placed.push((id, i));
        }
        for ((id, i), pod) in placed.into_iter().zip(&w.pods) {
            state[i].take(pod);
            out.owners.push((id, i as u32));
        }
        Some(())
    }
}

fn as_key(k: &OwnedKey) -> Key<'_> {
    (k.0.as_str(), k.1, k.2.as_str(), k.3.as_str())
}

/// The memo a placement builds as it goes.
pub(super) struct Recorder {
    memo: Memo,
}

impl Recorder {
    pub(super) fn new(nodes: Arc<Vec<NodeSpec>>, window: usize) -> Recorder {
        Recorder { memo: Memo { window, nodes, workloads: Vec::new(), replayed: 0, reused: 0 } }
    }
    /// Keeps `e`, placed now.
    pub(super) fn keep(&mut self, key: Key<'_>, e: Entry) {
        self.memo.workloads.push(((key.0.into(), key.1, key.2.into(), key.3.into()), e));
    }
    /// Keeps `e`, replayed from the last memo.
    pub(super) fn keep_replayed(&mut self, key: OwnedKey, e: Entry) {
        self.memo.replayed += 1;
        self.memo.workloads.push((key, e));
    }
    /// The memo (`reused`: rankings taken from the last).
    pub(super) fn finish(mut self, reused: usize) -> Memo {
        self.memo.reused = reused;
        self.memo
    }
}
