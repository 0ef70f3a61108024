//! Placement: which node owns each pod. A pure, deterministic function of the
//! live nodes and the desired pods, evaluated independently by every node.
//!
//! Each workload (the pods of one revision of a Deployment, or of one Job)
//! is spread on its own: its pods, in slot order, each go to the best node
//! (capacity-weighted rendezvous hashing: each node scores each pod with
//! `weight / -ln(u)`, `u` a hash of both names; above 32 nodes only the
//! pod's window of nodes does, see `candidates`) among those still below
//! their share, `ceil(pods so far × weight / total weight)`. On equal nodes
//! a workload's counts per node differ by at most one; on mixed ones they
//! stay within one of proportional. A pod's node depends only on its own
//! workload and the earlier slots, so scaling keeps the others where they
//! are, and other workloads come in only through capacity (requests, pod
//! counts) when it binds. Hard constraints: runtime, node selector,
//! resources, pod count, `topologySpreadConstraints` with
//! `DoNotSchedule`; `ScheduleAnyway` ones are preferences. Pods *pinned* to a
//! node (on a cordoned node, where they stay until drained) are placed there
//! first, and pods bound to one node (a DaemonSet's) go there or nowhere,
//! before any workload is spread. No clock, no RNG, no map iteration order, no `std::hash`: hashes
//! are blake3 over explicit bytes mixed with a fixed integer finalizer.
#![deny(clippy::disallowed_methods)]

pub mod addresses;
mod candidates;
pub mod cron;
pub mod daemonsets;
pub mod deployments;
pub mod desired;
pub mod jobs;
pub mod maintenance;
mod memo;
pub mod plan;
pub mod rollout;
mod spread;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::node::NodeName;
pub use crate::model::node::NodeSpec;
use crate::model::pods::{DesiredPod, Resources};
pub use memo::Memo;

/// The outcome: an owner for every placed pod, a reason for every other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Shared, so that a plan hands it on without copying 100,000 names;
    /// each owner shares its name with the node list (`NodeName` is an
    /// `Arc<str>`): a reference count per pod, not a string allocated,
    /// copied and later freed.
    pub owners: Arc<BTreeMap<String, NodeName>>,
    pub pending: BTreeMap<String, String>,
}

impl Placement {
    /// Pods per node.
    pub fn loads(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for n in self.owners.values() {
            *m.entry(n.as_str()).or_default() += 1;
        }
        m
    }
}

/// What placement decides, as it goes: owners by node index, sorted and
/// named once at the end (one bulk build of the map, not an insertion and
/// a name copied per pod into a growing tree).
#[derive(Default)]
struct Decisions {
    owners: Vec<(String, u32)>,
    pending: Vec<(String, String)>,
}

impl Decisions {
    /// Sorts the owners from `from` on by pod id (stably): called on each
    /// workload's, so that the final sort finds long sorted runs (workloads
    /// come in key order, and a pod's name starts with its owner's), not a
    /// shuffle: a pass over the ids rather than n log n comparisons.
    /// The same map: the sort is stable, and so is the final one.
    fn sort_from(&mut self, from: usize) {
        if let Some(part) = self.owners.get_mut(from..) {
            part.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }

    fn into_placement(self, state: &[Node<'_>]) -> Placement {
        // `collect` sorts stably and keeps the last of equal keys: the
        // same map as inserting one after another.
        Placement {
            owners: Arc::new(
                self.owners.into_iter().map(|(id, i)| (id, state[i as usize].spec.name.clone())).collect(),
            ),
            pending: self.pending.into_iter().collect(),
        }
    }
}

/// 64-bit seed of a name: the first 8 bytes of blake3.
fn seed(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// SplitMix64's finalizer: a fixed bijective mixer (stable forever).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `log2(m)` for `m = x / 2^k` in [1, 2) (`x` in `2^k ..= 2^(k+1) - 1`,
/// `k <= 62`), in 0.32 fixed point, bit by bit (repeated squaring).
/// Integer arithmetic only, so every machine (x86 or ARM, any libm) computes
/// the same bits; `f64::ln` gives no such promise. 32 rounds of 128-bit
/// squaring: exact, and too slow for every (pod, node) pair, so it builds
/// `LOG2_TABLE` at compile time.
const fn log2_frac_exact(x: u64, k: u64) -> u64 {
    // m as 2.62 fixed point.
    let mut m: u128 = (x as u128) << (62 - k);
    let one: u128 = 1 << 62;
    let mut frac: u64 = 0;
    let mut bit = 32;
    while bit > 0 {
        bit -= 1;
        m = (m * m) >> 62;
        if m >= 2 * one {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    frac
}

/// Bits of the mantissa that index `LOG2_TABLE`.
const LOG2_TABLE_BITS: u32 = 10;

/// `log2(1 + j / 1024)` in 0.32 fixed point for `j` in `0 ..= 1024` (the
/// last is `2^32`), from `log2_frac_exact`: the same bits everywhere. 8 KiB,
/// so it stays in the L1 cache beside the nodes.
static LOG2_TABLE: [u64; (1 << LOG2_TABLE_BITS) + 1] = {
    let n = 1u64 << LOG2_TABLE_BITS;
    let mut t = [0u64; (1 << LOG2_TABLE_BITS) + 1];
    let mut j = 0;
    while j < n {
        t[j as usize] = log2_frac_exact(n + j, LOG2_TABLE_BITS as u64);
        j += 1;
    }
    t[n as usize] = 1 << 32;
    t
};

/// `-log2(u)` in 32.32 fixed point, for `u = ((h >> 11) + 1) / 2^53` in
/// (0, 1]: the exponent from the leading zeros, the mantissa's log from
/// `LOG2_TABLE` with linear interpolation (within 2^-22 of exact:
/// `neg_log_table_is_close_to_exact`). Integer arithmetic only: the same
/// bits on every machine, and monotonic in `h`.
fn neg_log2_fixed(h: u64) -> u64 {
    let x = (h >> 11) + 1; // 1 ..= 2^53
    let k = 63 - u64::from(x.leading_zeros()); // floor(log2 x)
    // The mantissa's bits after the leading one, left-aligned.
    let y = (x << (63 - k)) << 1;
    let idx = (y >> (64 - LOG2_TABLE_BITS)) as usize;
    let rem = (y << LOG2_TABLE_BITS) >> 32; // the next 32 bits
    let t = &LOG2_TABLE;
    let frac = t[idx] + (((t[idx + 1] - t[idx]) * rem) >> 32);
    let log2_x = (k << 32) + frac;
    (53u64 << 32).saturating_sub(log2_x)
}

/// A rendezvous score `weight / -ln(u)`, kept as the pair so that scores
/// compare exactly by cross-multiplication (the ln 2 factor cancels), and
/// as the quotient in floating point, which decides nearly every
/// comparison in one instruction: division is correctly rounded, so
/// monotonic, and a quotient strictly above another means the exact one
/// is too; only equal quotients (or a weight that `f64` cannot hold
/// exactly, `NaN` here) need the exact comparison. The same answer on
/// every machine either way.
#[derive(Debug, Clone, Copy)]
struct Score {
    weight: u64,
    neg_log: u64,
    ratio: f64,
}

impl Score {
    const ZERO: Score = Score { weight: 0, neg_log: 0, ratio: 0.0 };

    fn new(weight: u64, h: u64) -> Score {
        let neg_log = neg_log2_fixed(h);
        // Both convert exactly (`neg_log` < 2^38); a weight of 2^53 or
        // more would not, and then only the exact comparison counts.
        let ratio = if weight < 1 << 53 { weight as f64 / neg_log as f64 } else { f64::NAN };
        Score { weight, neg_log, ratio }
    }
    /// `Greater` when `self` beats `o` (`w1 / l1 > w2 / l2`), `Equal` on
    /// a tie: exact.
    fn against(&self, o: &Score) -> std::cmp::Ordering {
        if self.ratio > o.ratio {
            std::cmp::Ordering::Greater
        } else if self.ratio < o.ratio {
            std::cmp::Ordering::Less
        } else {
            (u128::from(self.weight) * u128::from(o.neg_log)).cmp(&(u128::from(o.weight) * u128::from(self.neg_log)))
        }
    }
    /// Whether `(self, i)` ranks before `(o, j)`: the stronger score, on a
    /// tie the lower index (pod or node).
    fn ranks_before<I: Ord>(&self, i: I, o: &Score, j: I) -> bool {
        match self.against(o) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => i < j,
            std::cmp::Ordering::Less => false,
        }
    }
}

struct Node<'a> {
    spec: &'a NodeSpec,
    seed: u64,
    used: Resources,
    pods: u32,
    // Copied from `spec` so the hot loop stays in one cache line.
    alloc: Resources,
    max_pods: u32,
}

impl<'a> Node<'a> {
    /// Node `spec` with nothing placed on it yet.
    fn of(spec: &'a NodeSpec) -> Node<'a> {
        Node {
            spec,
            seed: seed(spec.name.as_bytes()),
            used: Resources::default(),
            pods: 0,
            alloc: spec.allocatable,
            max_pods: spec.max_pods,
        }
    }

    /// Counts `pod` against this node's capacity.
    fn take(&mut self, pod: &DesiredPod) {
        self.used = self.used.saturating_add(pod.requests);
        self.pods += 1;
    }
}

/// The nodes in name order, each name once (the first of a repeat), as
/// placement sees them; the memo's nodes are read the same way.
fn distinct_by_name(nodes: &[NodeSpec]) -> Vec<&NodeSpec> {
    let mut specs: Vec<&NodeSpec> = nodes.iter().collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    specs.dedup_by(|a, b| a.name == b.name);
    specs
}

/// Why a pod fits nowhere, for its Pending reason.
fn pending_reason(pod: &DesiredPod, nodes: &[Node<'_>]) -> String {
    if nodes.is_empty() {
        return "no live node".into();
    }
    let n = nodes.len();
    let runtime: Vec<&Node<'_>> = nodes.iter().filter(|x| x.spec.runtimes.contains(&pod.runtime)).collect();
    if runtime.is_empty() {
        return format!(
            "no node offers the {} runtime ({n} node{} checked)",
            pod.runtime.as_str(),
            if n == 1 { "" } else { "s" }
        );
    }
    let sel: Vec<&Node<'_>> = runtime.into_iter().filter(|x| selector_matches(pod, x.spec)).collect();
    if sel.is_empty() {
        let s: Vec<String> = pod.spec.node_selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return format!("no node matches nodeSelector {}", s.join(","));
    }
    let m = sel.len();
    let all = if m == n { format!("all {n}") } else { format!("the {m} matching") };
    let nodes_word = if m == 1 { "node" } else { "nodes" };
    let mut reasons = Vec::new();
    if sel.iter().all(|x| x.pods >= x.spec.max_pods) {
        reasons.push(format!("too many pods on {all} {nodes_word}"));
    }
    if sel.iter().all(|x| x.used.cpu_millis.saturating_add(pod.requests.cpu_millis) > x.spec.allocatable.cpu_millis) {
        reasons.push(format!("insufficient cpu on {all} {nodes_word}"));
    }
    if sel
        .iter()
        .all(|x| x.used.memory_bytes.saturating_add(pod.requests.memory_bytes) > x.spec.allocatable.memory_bytes)
    {
        reasons.push(format!("insufficient memory on {all} {nodes_word}"));
    }
    if reasons.is_empty() {
        reasons.push(format!("no single node has enough free cpu and memory among {all} {nodes_word}"));
    }
    reasons.join("; ")
}

fn selector_matches(pod: &DesiredPod, n: &NodeSpec) -> bool {
    pod.spec.node_selector.iter().all(|(k, v)| n.labels.get(k) == Some(v))
}

/// Places every pod. Same inputs (in any order) give the same answer.
/// `pinned`: pods that stay on a given node (it is cordoned, they run there).
pub fn place(nodes: &[NodeSpec], pods: &[DesiredPod], pinned: &BTreeMap<String, String>) -> Placement {
    place_in_windows(nodes, pods, pinned, candidates::WINDOW, None).0
}

/// `place`, reusing from `memo` (the last placement's) what nothing it
/// read changed for: whole workloads, or single pods' rankings (see
/// `memo`); and the memo for the next. The same placement, in less time
/// when little changed.
/// `nodes` is shared with the memo (the planner keeps it anyway).
pub fn place_incremental(
    nodes: &Arc<Vec<NodeSpec>>,
    pods: &[DesiredPod],
    pinned: &BTreeMap<String, String>,
    memo: Option<Memo>,
) -> (Placement, Memo) {
    let (placement, memo) = place_in_windows(nodes, pods, pinned, candidates::WINDOW, Some((nodes, memo)));
    (placement, memo.unwrap_or_default())
}

/// What makes a placement incremental: the nodes (shared with the memo
/// it makes) and the last memo, if any.
type Incremental<'a> = Option<(&'a Arc<Vec<NodeSpec>>, Option<Memo>)>;

/// `place`, each pod ranking at most `window` nodes (see `candidates`);
/// incremental with `memo` (and then returning the memo for the next).
fn place_in_windows(
    nodes: &[NodeSpec],
    pods: &[DesiredPod],
    pinned: &BTreeMap<String, String>,
    window: usize,
    memo: Incremental<'_>,
) -> (Placement, Option<Memo>) {
    if pods.is_empty() {
        return (Placement::default(), memo.map(|_| Memo::default()));
    }
    let specs = distinct_by_name(nodes);
    let mut state: Vec<Node<'_>> = specs.iter().map(|s| Node::of(s)).collect();
    let index = candidates::Index::new(&state, window);
    let mut out = Decisions::default();
    // Pods bound to one node (a DaemonSet's) go first: they take their
    // node's capacity before any workload is spread, and go nowhere else.
    for pod in pods.iter().filter(|p| p.node.is_some()) {
        place_bound(pod, &mut state, &mut out);
    }
    let mut scratch = spread::Scratch::new(&state);
    // Where the current workload's owners start (see `sort_from`).
    let mut from = out.owners.len();
    let mut record = memo.as_ref().map(|(nodes, _)| memo::Recorder::new(Arc::clone(nodes), window));
    let mut replay = memo.and_then(|(_, m)| memo::Replay::new(m, &state, window));
    for workload in spread::workloads(pods.iter().filter(|p| p.node.is_none())) {
        out.sort_from(from);
        from = out.owners.len();
        let last = replay.as_mut().and_then(|r| r.take(&workload));
        if let (Some(r), Some((_, entry))) = (replay.as_ref(), last.as_ref())
            && r.replay(&workload, entry, &mut state, &mut scratch, pinned, &mut out).is_some()
        {
            if let (Some(rec), Some((key, entry))) = (record.as_mut(), last) {
                rec.keep_replayed(key, entry);
            }
            continue;
        }
        let memo = spread::Memoize {
            keep: record.is_some(),
            last: replay.as_ref().and_then(|r| last.as_ref().map(|(_, e)| (e, r))),
        };
        let entry = spread::place_workload(&workload, &mut state, &index, pinned, &mut scratch, &mut out, memo);
        if let (Some(rec), Some(entry), Some(key)) = (record.as_mut(), entry, workload.key()) {
            rec.keep(key, entry);
        }
    }
    out.sort_from(from);
    let reused = replay.map_or(0, |r| r.reused());
    (out.into_placement(&state), record.map(|r| r.finish(reused)))
}

/// A pod bound to one node: there if the node is live and the pod fits
/// (cordoned or not), else pending with the reason.
fn place_bound(pod: &DesiredPod, state: &mut [Node<'_>], out: &mut Decisions) {
    let Some(want) = pod.node.as_deref() else { return };
    let Some(at) = state.iter().position(|n| n.spec.name == *want) else {
        out.pending.push((pod.id(), format!("node {want} is not live")));
        return;
    };
    let n = &mut state[at];
    let why = if !n.spec.runtimes.contains(&pod.runtime) {
        Some(format!("node {want} does not offer the {} runtime", pod.runtime.as_str()))
    } else if n.pods >= n.max_pods {
        Some(format!("too many pods on node {want}"))
    } else if !n.used.saturating_add(pod.requests).fits_within(n.alloc) {
        Some(format!("insufficient cpu or memory on node {want}"))
    } else {
        None
    };
    match why {
        Some(why) => out.pending.push((pod.id(), why)),
        None => {
            n.take(pod);
            out.owners.push((pod.id(), at as u32));
        }
    }
}

#[cfg(test)]
mod memo_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;
