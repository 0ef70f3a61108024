//! One workload's pods onto the nodes: pinned pods first, then every other
//! pod, in slot order, to the best node below its share that meets the
//! hard constraints, preferring one that meets the soft ones too.

use std::collections::{BTreeMap, BinaryHeap};

use rustc_hash::FxHashMap;

use std::cmp::Ordering;

use super::candidates::Index;
use super::memo::{Entry, Key, Replay, Slot};
use super::{Decisions, Node, Score, mix, pending_reason, seed, selector_matches};
use crate::model::Kind;
use crate::model::pods::{DesiredPod, RuntimeKind};
use crate::model::types::TopologySpreadConstraint;

/// Most (pod, node) pairs ranked for one workload; beyond, pods are placed
/// in slot order (a workload of 1,000 replicas on 1,000 nodes).
const MAX_PAIRS: usize = 1 << 20;
/// Nodes each pod ranks for the matching: its best few are nearly always
/// enough; one that runs out is placed on its own afterwards.
pub(super) const TOP: usize = 4;

/// The nodes a class of pods (one runtime, one node selector) may run on.
pub(super) struct Class {
    pub(super) elig: Vec<bool>,
    /// Eligible and not cordoned.
    sched: Vec<bool>,
    pub(super) sched_count: usize,
}

impl Class {
    /// Whether `pod` fits node `i` as it is now.
    pub(super) fn fits(&self, state: &[Node<'_>], i: usize, pod: &DesiredPod) -> bool {
        let n = &state[i];
        self.elig[i] && n.pods < n.max_pods && n.used.saturating_add(pod.requests).fits_within(n.alloc)
    }
}

/// What placing the workloads one after another reuses: the classes met
/// so far, and one count per node (reset after each workload), so that a
/// workload of a few pods costs a few pods' work, not a pass over every
/// node.
pub(super) struct Scratch {
    classes: BTreeMap<RuntimeKind, BTreeMap<BTreeMap<String, String>, Class>>,
    counts: Vec<u32>,
    touched: Vec<usize>,
}

impl Scratch {
    pub(super) fn new(state: &[Node<'_>]) -> Scratch {
        Scratch { classes: BTreeMap::new(), counts: vec![0; state.len()], touched: Vec::new() }
    }
}

/// The class of `first` (and of its workload), made on first use.
pub(super) fn class<'s>(scratch: &'s mut Scratch, state: &[Node<'_>], first: &DesiredPod) -> &'s Class {
    let by_sel = scratch.classes.entry(first.runtime).or_default();
    if !by_sel.contains_key(&first.spec.node_selector) {
        let elig: Vec<bool> =
            state.iter().map(|n| n.spec.runtimes.contains(&first.runtime) && selector_matches(first, n.spec)).collect();
        let sched: Vec<bool> = elig.iter().zip(state).map(|(e, n)| *e && !n.spec.unschedulable).collect();
        let sched_count = sched.iter().filter(|s| **s).count();
        by_sel.insert(first.spec.node_selector.clone(), Class { elig, sched, sched_count });
    }
    &by_sel[&first.spec.node_selector]
}

/// How many of the workload's pods each node may hold.
enum Targets {
    /// No more pods than schedulable nodes, no spread constraint: one on
    /// each (without a pass over every node to say so).
    One,
    Each(Vec<u32>),
}

impl Targets {
    fn of(&self, class: &Class, i: usize) -> u32 {
        match self {
            Targets::One => u32::from(class.sched[i]),
            Targets::Each(v) => v[i],
        }
    }
}

/// The pods of one workload: one revision of a Deployment, or one Job.
pub(super) struct Workload<'a> {
    pub(super) pods: Vec<&'a DesiredPod>,
}

/// What groups pods into a workload: namespace, kind, owner, revision.
fn key_of(p: &DesiredPod) -> Key<'_> {
    let rev = if p.owner.kind == Kind::Deployment { p.template_hash.as_str() } else { "" };
    (p.namespace.as_str(), p.owner.kind, p.owner.name.as_str(), rev)
}

impl Workload<'_> {
    /// Its key (`None` for no pod).
    pub(super) fn key(&self) -> Option<Key<'_>> {
        self.pods.first().map(|p| key_of(p))
    }
}

/// Pods grouped into workloads, in a fixed order (namespace, kind, owner,
/// revision), each in slot order.
pub(super) fn workloads<'a>(pods: impl IntoIterator<Item = &'a DesiredPod>) -> Vec<Workload<'a>> {
    // Grouped by hash, then the few groups sorted: a million pods cost a
    // million hashes, not a million string comparisons times log(groups).
    // Pods mostly come a workload at a time (the planner lists them so):
    // a pod of the same workload as the one before joins its group with
    // no hash.
    let mut m: FxHashMap<Key<'a>, usize> = FxHashMap::default();
    let mut groups: Vec<(Key<'a>, Vec<&DesiredPod>)> = Vec::new();
    let mut at = usize::MAX;
    for p in pods {
        let k = key_of(p);
        if groups.get(at).is_none_or(|(last, _)| *last != k) {
            at = *m.entry(k).or_insert_with(|| {
                groups.push((k, Vec::new()));
                groups.len() - 1
            });
        }
        groups[at].1.push(p);
    }
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    groups
        .into_iter()
        .map(|(_, mut v)| {
            v.sort_by(|a, b| (a.index, &a.name).cmp(&(b.index, &b.name)));
            v.dedup_by(|a, b| a.name == b.name);
            Workload { pods: v }
        })
        .collect()
}

/// Replicas per domain of one constraint.
struct Domains<'c> {
    c: &'c TopologySpreadConstraint,
    /// Domain of each node (its label value), if it has the label.
    of: Vec<Option<String>>,
    counts: BTreeMap<String, u32>,
}

impl Domains<'_> {
    /// Whether a replica more on node `i` keeps the skew within bounds.
    fn allows(&self, i: usize) -> bool {
        let Some(d) = &self.of[i] else { return !self.c.hard() };
        let min = self.counts.values().copied().min().unwrap_or(0);
        let here = self.counts.get(d).copied().unwrap_or(0);
        i64::from(here + 1) - i64::from(min) <= self.c.max_skew
    }
}

/// How many of the workload's `n` pods each node may hold. Replicas go to
/// distinct nodes first (so that losing one node loses as few as it can):
/// with no more pods than nodes, room for one on each; with more, one each,
/// and the rest by weight, each node to at most its proportional share
/// `ceil(n × weight / total)` (ties: a hash of the workload, so that the
/// choice is stable when other nodes come or go). With a topology spread constraint, the domains (its label's values)
/// first share the pods evenly, then each domain's nodes share its part.
fn targets(first: &DesiredPod, n: usize, state: &[Node<'_>], elig: &[bool], domains: &[Domains<'_>]) -> Vec<u32> {
    let ws = seed(format!("{}/{}/{}", first.namespace, first.owner.name, first.template_hash).as_bytes());
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    let key = domains.first();
    for i in (0..state.len()).filter(|i| elig[*i] && !state[*i].spec.unschedulable) {
        let d = key.and_then(|d| d.of[i].as_deref());
        if key.is_some_and(|k| k.c.hard()) && d.is_none() {
            continue;
        }
        groups.entry(d).or_default().push(i);
    }
    let mut out = vec![0u32; state.len()];
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let per_group: Vec<u64> = if key.is_some() {
        let hashes: Vec<(u64, u64)> = groups.iter().map(|g| (1, mix(ws ^ state[g[0]].seed))).collect();
        largest_remainder(n as u64, &hashes, None)
    } else {
        vec![n as u64; groups.len()]
    };
    for (members, m) in groups.iter().zip(per_group) {
        let ranked = |i: usize| (state[i].spec.weight.max(1), mix(ws ^ state[i].seed));
        let k = members.len() as u64;
        if m <= k {
            // Distinct nodes: room for one on each; the matching picks which.
            for i in members {
                out[*i] = 1;
            }
            continue;
        }
        // One each, then the rest by weight, up to each node's share.
        let total: u128 = members.iter().map(|i| u128::from(ranked(*i).0)).sum::<u128>().max(1);
        let caps: Vec<u64> =
            members.iter().map(|i| ((u128::from(m) * u128::from(ranked(*i).0)).div_ceil(total)) as u64).collect();
        let weights: Vec<(u64, u64)> = members.iter().map(|i| ranked(*i)).collect();
        let extra =
            largest_remainder(m - k, &weights, Some(&caps.iter().map(|c| c.saturating_sub(1)).collect::<Vec<_>>()));
        for (i, e) in members.iter().zip(extra) {
            out[*i] = (1 + e) as u32;
        }
    }
    out
}

/// Splits `n` by the weights: floors, then one more each to the largest
/// remainders (ties by the given hash), never above `caps` (what a capped
/// part cannot take goes to the next).
fn largest_remainder(n: u64, parts: &[(u64, u64)], caps: Option<&[u64]>) -> Vec<u64> {
    let total: u128 = parts.iter().map(|(w, _)| u128::from(*w)).sum::<u128>().max(1);
    let cap = |i: usize| caps.map_or(u64::MAX, |c| c[i]);
    let mut out: Vec<u64> = parts
        .iter()
        .enumerate()
        .map(|(i, (w, _))| ((u128::from(n) * u128::from(*w) / total) as u64).min(cap(i)))
        .collect();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    let rem = |i: usize| (u128::from(n) * u128::from(parts[i].0)) % total;
    order.sort_by(|a, b| rem(*b).cmp(&rem(*a)).then(parts[*b].1.cmp(&parts[*a].1)).then(a.cmp(b)));
    let mut left = n.saturating_sub(out.iter().sum());
    while left > 0 {
        let before = left;
        for &i in &order {
            if left > 0 && out[i] < cap(i) {
                out[i] += 1;
                left -= 1;
            }
        }
        if left == before {
            break;
        }
    }
    out
}

/// This workload's pods per node so far (in `Scratch::counts`).
struct Fill<'s> {
    counts: &'s mut [u32],
    touched: &'s mut Vec<usize>,
}

impl Fill<'_> {
    fn assign(
        &mut self,
        state: &mut [Node<'_>],
        domains: &mut [Domains<'_>],
        i: usize,
        pod: &DesiredPod,
        id: String,
        out: &mut Decisions,
    ) {
        state[i].take(pod);
        if self.counts[i] == 0 {
            self.touched.push(i);
        }
        self.counts[i] += 1;
        for d in domains.iter_mut() {
            if let Some(v) = &d.of[i] {
                *d.counts.entry(v.clone()).or_default() += 1;
            }
        }
        out.owners.push((id, i as u32));
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        for i in self.touched.drain(..) {
            self.counts[i] = 0;
        }
    }
}

/// One (pod, node) pair of the matching, and where it is in `tops`. The
/// heap's greatest is the strongest score, then the lowest (pod, node).
struct Pair {
    score: Score,
    p: u32,
    node: u32,
    at: u32,
}

impl Ord for Pair {
    fn cmp(&self, o: &Pair) -> Ordering {
        self.score.against(&o.score).then_with(|| (o.p, o.node).cmp(&(self.p, self.node)))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, o: &Pair) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Pair {
    fn eq(&self, o: &Pair) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Pair {}

/// The memo's part in placing one workload (see `memo`).
#[derive(Default, Clone, Copy)]
pub(super) struct Memoize<'m> {
    /// Keep what a later placement can reuse.
    pub(super) keep: bool,
    /// What the last placement kept of this workload, to reuse each
    /// unchanged pod's ranking.
    pub(super) last: Option<(&'m Entry, &'m Replay)>,
}

/// Places one workload's pods. With `memo.keep`, returns what the memo
/// keeps of it (each pod's ranking, unless a pod is pinned, a spread
/// constraint applies or the workload is too large to rank pairs), marked
/// `clean` when a later placement may replay it whole: at most one pod per
/// node, and every pod placed in the matching with no capacity check
/// failing.
pub(super) fn place_workload(
    w: &Workload<'_>,
    state: &mut [Node<'_>],
    index: &Index,
    pinned: &BTreeMap<String, String>,
    scratch: &mut Scratch,
    out: &mut Decisions,
    memo: Memoize<'_>,
) -> Option<Entry> {
    let first = w.pods.first()?;
    class(scratch, state, first);
    let Scratch { classes, counts, touched } = scratch;
    let class = classes.get(&first.runtime).and_then(|c| c.get(&first.spec.node_selector))?;
    let elig = &class.elig;
    let mut domains: Vec<Domains<'_>> = first
        .spec
        .topology_spread_constraints
        .iter()
        .map(|c| {
            let of: Vec<Option<String>> = state.iter().map(|n| n.spec.labels.get(&c.topology_key).cloned()).collect();
            let counts =
                of.iter().zip(elig).filter(|(_, e)| **e).filter_map(|(d, _)| d.clone().map(|d| (d, 0))).collect();
            Domains { c, of, counts }
        })
        .collect();
    let targets = if domains.is_empty() && w.pods.len() <= class.sched_count {
        Targets::One
    } else {
        Targets::Each(targets(first, w.pods.len(), state, elig, &domains))
    };
    let target = |i: usize| targets.of(class, i);
    let mut fill = Fill { counts, touched };
    let fits = |state: &[Node<'_>], i: usize, pod: &DesiredPod| class.fits(state, i, pod);
    // Whether the pods' rankings are kept (`keep`) and reused (`last`):
    // with no pin, each pod's slot in the matching is its slot in `w`.
    let mut any_pinned = false;
    let mut rest: Vec<(&DesiredPod, String)> = Vec::with_capacity(w.pods.len());
    for pod in &w.pods {
        let id = pod.id();
        let at = if pinned.is_empty() {
            None
        } else {
            let name = pinned.get(&id);
            any_pinned |= name.is_some();
            name.and_then(|name| state.binary_search_by(|n| n.spec.name.as_str().cmp(name)).ok())
        };
        match at {
            Some(i) if fits(state, i, pod) => fill.assign(state, &mut domains, i, pod, id, out),
            _ => rest.push((*pod, id)),
        }
    }
    let hard = |domains: &[Domains<'_>], i: usize| domains.iter().filter(|d| d.c.hard()).all(|d| d.allows(i));
    // Strongest pairings first: each pod goes to the node with room it scores
    // best on, the strongest (pod, node) pairs served first (the stable
    // matching of both sides ranking by the pair's score), so a node that
    // comes or goes moves few pods. Above MAX_PAIRS pairs, pods in slot order.
    let cand = match &targets {
        Targets::One => class.sched_count,
        Targets::Each(v) => v.iter().filter(|t| **t > 0).count(),
    };
    let l = cand.min(TOP);
    // Without a spread constraint a pod ranks the schedulable nodes of its
    // class (`target(i) > 0` for exactly those), so its ranking depends on
    // its seed, `l`, and the nodes on its arc only.
    let rankable = domains.is_empty() && !any_pinned;
    let mut keep = memo.keep && rankable;
    let last = memo
        .last
        .filter(|(e, _)| rankable && e.l == l && e.runtime == first.runtime && e.selector == first.spec.node_selector);
    let seeds: Vec<u64> = rest
        .iter()
        .enumerate()
        .map(|(p, (pod, id))| {
            last.and_then(|(e, _)| e.slots.get(p)?.seed_of(pod)).unwrap_or_else(|| seed(id.as_bytes()))
        })
        .collect();
    // Whether a later placement may replay it whole, so far.
    let mut clean = keep && matches!(targets, Targets::One);
    let mut slots: Vec<Slot> = Vec::with_capacity(if keep { rest.len() } else { 0 });
    let rest: Vec<(usize, (&DesiredPod, String))> = if rest.len().saturating_mul(l) <= MAX_PAIRS {
        // Each pod's best `l` nodes, best first, one run per pod in `tops`
        // (`ends[p]`: where pod `p`'s run ends).
        let mut tops: Vec<(Score, u32)> = Vec::with_capacity(rest.len() * l);
        let mut ends: Vec<u32> = Vec::with_capacity(rest.len());
        let mut top = Vec::with_capacity(l);
        for (p, ps) in seeds.iter().enumerate() {
            let reused = last.and_then(|(e, r)| r.ranking(e.slots.get(p)?, *ps, &mut top));
            let span = reused.or_else(|| index.top(state, *ps, l, |i, _| target(i) > 0, &mut top));
            if keep {
                match span {
                    Some(span) => slots.push(Slot::new(rest[p].0, *ps, span, &top, state)),
                    None => keep = false,
                }
            }
            tops.extend(top.iter().map(|(score, i)| (*score, *i as u32)));
            ends.push(tops.len() as u32);
        }
        // Every (pod, node) pair, strongest first ((pod, node) breaks
        // ties, so there is one order): each pod's run is in that order,
        // so the next pair overall is the best of each waiting pod's next
        // one, off a heap, rather than a sort of all the pairs; a pod
        // placed drops its other pairs, as the loop would skip them.
        let pair = |p: usize, at: usize| Pair { score: tops[at].0, p: p as u32, node: tops[at].1, at: at as u32 };
        let mut heap: BinaryHeap<Pair> = (0..ends.len())
            .filter_map(|p| {
                let from = if p == 0 { 0 } else { ends[p - 1] as usize };
                (from < ends[p] as usize).then(|| pair(p, from))
            })
            .collect();
        let mut rest: Vec<Option<(&DesiredPod, String)>> = rest.into_iter().map(Some).collect();
        while let Some(Pair { p, node: i, at, .. }) = heap.pop() {
            let (p, i, at) = (p as usize, i as usize, at as usize);
            let Some((pod, _)) = &rest[p] else { continue };
            let taken = if fill.counts[i] >= target(i) {
                false
            } else if !fits(state, i, pod) {
                clean = false;
                false
            } else if !hard(&domains, i) {
                false
            } else if let Some((pod, id)) = rest[p].take() {
                fill.assign(state, &mut domains, i, pod, id, out);
                if let Some(slot) = slots.get_mut(p) {
                    slot.node = state[i].seed;
                }
                true
            } else {
                false
            };
            if !taken && at + 1 < ends[p] as usize {
                heap.push(pair(p, at + 1));
            }
        }
        rest.into_iter().enumerate().filter_map(|(p, r)| r.map(|r| (p, r))).collect()
    } else {
        keep = false;
        rest.into_iter().enumerate().collect()
    };
    clean &= rest.is_empty();
    let entry =
        keep.then(|| Entry { runtime: first.runtime, selector: first.spec.node_selector.clone(), l, clean, slots });
    for (p, (pod, id)) in rest {
        let ps = seeds[p];
        let soft = |domains: &[Domains<'_>], i: usize| domains.iter().all(|d| d.allows(i));
        let ok = |i: usize, n: &Node<'_>| !n.spec.unschedulable && fits(state, i, pod);
        let below = |i: usize| fill.counts[i] < target(i);
        let pick = index
            .best(state, ps, |i, n| ok(i, n) && below(i) && soft(&domains, i))
            .or_else(|| index.best(state, ps, |i, n| ok(i, n) && below(i) && hard(&domains, i)))
            // Capacity forces it: anywhere it fits within the hard constraints.
            .or_else(|| index.best(state, ps, |i, n| ok(i, n) && hard(&domains, i)));
        match pick {
            Some(i) => fill.assign(state, &mut domains, i, pod, id, out),
            None => {
                let blocked = (0..state.len()).any(|i| !state[i].spec.unschedulable && fits(state, i, pod));
                let why = match domains.iter().find(|d| d.c.hard()) {
                    Some(d) if blocked => format!(
                        "topologySpreadConstraints: another replica on any node would put more than maxSkew {} in one {} domain",
                        d.c.max_skew, d.c.topology_key
                    ),
                    _ => pending_reason(pod, state),
                };
                out.pending.push((id, why));
            }
        }
    }
    entry
}
