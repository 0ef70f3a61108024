//! Which nodes a pod ranks, and its best few among them.
//!
//! Up to `WINDOW` nodes, a pod ranks every node: placement is exact
//! capacity-weighted rendezvous hashing, as on any homelab. Above, ranking
//! every node makes placement cost pods × nodes (100,000 replicas on 1,000
//! nodes took 0.87 s, and 1,000,000 on 10,000 would take over a minute), so each
//! pod ranks only a window: the first `WINDOW` distinct nodes that pass its
//! filter, clockwise from the pod's point on a consistent-hash ring with
//! `POINTS` points per node. Rendezvous scores then choose among the window,
//! so weights still count and a node's share stays proportional.
//!
//! What the window costs: a node that joins or leaves enters or leaves the
//! windows near its points, and pushes out or lets in the next node in each,
//! so up to about 2/N of the pods move where exact rendezvous moves 1/N
//! (`examples/placement_report.rs` measured 1.3-1.6× the minimum from 50 to
//! 2,000 nodes; `window_tests` bound it). What it buys: O(`WINDOW`) per pod,
//! whatever the cluster's size.
//!
//! The ring, like every score, is blake3 seeds and a fixed integer mixer:
//! the same bits on every machine.

use std::cell::{Cell, RefCell};

use super::{Node, Score, mix};

/// Nodes each pod ranks at most. 32 keeps each weight class of a large
/// cluster within 7 % of its proportional share (a window spans many
/// nodes' arcs; `window_tests`) for about a microsecond per pod: 100,000
/// replicas on 1,000 nodes in 157 ms (64: 196 ms; every node: 874 ms).
pub(super) const WINDOW: usize = 32;
/// Points per node on the ring: more points, less variance in how often a
/// node falls in a window.
const POINTS: u64 = 16;
/// Salt of a pod's point on the ring, so that where a pod sits on the ring
/// and how it scores nodes are independent hashes.
const RING_SALT: u64 = 0x7269_6e67_2d70_6f73; // "ring-pos"

/// How pods find their nodes: every node, or the ring above the window.
pub(super) struct Index {
    /// (point, node) sorted; empty when every pod ranks every node.
    ring: Vec<(u64, u32)>,
    /// Where each of the ring's `2^k` equal arcs starts in `ring` (`k`
    /// the smallest with `2^k` at least the ring's length, about one point
    /// per arc), and its end: a pod finds its place on the ring in one
    /// lookup and a short search, not a binary search over the whole ring
    /// (about 14 dependent cache misses at 1,000 nodes).
    starts: Vec<u32>,
    /// `64 - k`: a position's arc is `pos >> shift`.
    shift: u32,
    /// Each node's (seed, weight), side by side: the hot loop reads
    /// nothing else of a node.
    keys: Vec<(u64, u64)>,
    /// Nodes already met on this walk (a stamp per node).
    marks: RefCell<Vec<u32>>,
    stamp: Cell<u32>,
    window: usize,
}

impl Index {
    /// `window`: `WINDOW`, or (to compare, in tests) `usize::MAX` for exact
    /// rendezvous at any size.
    pub(super) fn new(state: &[Node<'_>], window: usize) -> Index {
        let mut ring = Vec::new();
        // A window above `WINDOW` (in tests, `usize::MAX`) ranks every node.
        if state.len() > window && window <= WINDOW {
            ring.reserve(state.len() * POINTS as usize);
            for (i, n) in state.iter().enumerate() {
                ring.extend(points(n.seed).map(|p| (p, i as u32)));
            }
            ring.sort_unstable();
        }
        let k = ring.len().next_power_of_two().trailing_zeros().clamp(1, 24);
        let shift = 64 - k;
        let mut starts = Vec::with_capacity(if ring.is_empty() { 0 } else { (1 << k) + 1 });
        if !ring.is_empty() {
            let mut at = 0;
            for arc in 0..=(1u64 << k) {
                while at < ring.len() && ring[at].0 >> shift < arc {
                    at += 1;
                }
                starts.push(at as u32);
            }
        }
        Index {
            ring,
            starts,
            shift,
            keys: state.iter().map(|n| (n.seed, n.spec.weight.max(1))).collect(),
            marks: RefCell::new(vec![0; state.len()]),
            stamp: Cell::new(0),
            window,
        }
    }

    /// A pod's `l` best nodes among those passing `ok` (in its window
    /// above the window's size), best first, into `best` (cleared first:
    /// the caller keeps one buffer for every pod); ties go to the lower
    /// index. Returns the pod's arc of the ring when its window filled
    /// before the walk came round (a `Span`), `None` otherwise (no ring, or
    /// fewer than `window` nodes passed: every node was read).
    pub(super) fn top(
        &self,
        state: &[Node<'_>],
        ps: u64,
        l: usize,
        ok: impl Fn(usize, &Node<'_>) -> bool,
        best: &mut Vec<(Score, usize)>,
    ) -> Option<Span> {
        best.clear();
        if l == 0 {
            return None;
        }
        let score = |i: usize| {
            let (seed, weight) = self.keys[i];
            Score::new(weight, mix(ps ^ seed))
        };
        if self.ring.is_empty() {
            for i in (0..state.len()).filter(|i| ok(*i, &state[*i])) {
                keep(best, l, score(i), i);
            }
            None
        } else {
            // The window first, then its scores (independent of each
            // other, so they overlap in the pipeline), then the best. The
            // ring is built for windows up to `WINDOW` only (`new`).
            let mut found = [0u32; WINDOW];
            let mut n = 0;
            let span = self.walk(ps, state, &ok, |i| {
                found[n] = i as u32;
                n += 1;
            });
            let found = &found[..n];
            let mut scores = [Score::ZERO; WINDOW];
            for (s, i) in scores.iter_mut().zip(found) {
                *s = score(*i as usize);
            }
            for (s, i) in scores.iter().zip(found) {
                keep(best, l, *s, *i as usize);
            }
            span
        }
    }
    /// The best node passing `ok`, or `None`.
    pub(super) fn best(&self, state: &[Node<'_>], ps: u64, ok: impl Fn(usize, &Node<'_>) -> bool) -> Option<usize> {
        let mut best = Vec::with_capacity(1);
        let _ = self.top(state, ps, 1, ok, &mut best);
        best.first().map(|(_, i)| *i)
    }

    /// Calls `f` on the first `window` distinct nodes passing `ok`,
    /// clockwise from the pod's point (all of them if fewer pass); the arc
    /// it read, if it stopped before coming round.
    fn walk(
        &self,
        ps: u64,
        state: &[Node<'_>],
        ok: impl Fn(usize, &Node<'_>) -> bool,
        mut f: impl FnMut(usize),
    ) -> Option<Span> {
        let mut marks = self.marks.borrow_mut();
        let stamp = match self.stamp.get().checked_add(1) {
            Some(s) => s,
            None => {
                marks.iter_mut().for_each(|m| *m = 0);
                1
            }
        };
        self.stamp.set(stamp);
        let pos = ring_pos(ps);
        let start = self.start(pos);
        let mut found = 0;
        // Clockwise from `start`, once round (an index that wraps, not a
        // chain of two slices: fewer branches per point).
        let len = self.ring.len();
        let mut at = start;
        for _ in 0..len {
            if at == len {
                at = 0;
            }
            let (point, i) = self.ring[at];
            at += 1;
            let i = i as usize;
            if marks[i] == stamp {
                continue;
            }
            marks[i] = stamp;
            if ok(i, &state[i]) {
                f(i);
                found += 1;
                if found == self.window {
                    return Some(Span { from: pos, to: point });
                }
            }
        }
        None
    }

    /// The first point of the ring at or after `pos` (`ring.len()` if
    /// none): `ring.partition_point(|(p, _)| *p < pos)`, through `starts`.
    fn start(&self, pos: u64) -> usize {
        let arc = (pos >> self.shift) as usize;
        let (lo, hi) = (self.starts[arc] as usize, self.starts[arc + 1] as usize);
        lo + self.ring[lo..hi].partition_point(|(p, _)| *p < pos)
    }
}

/// `(s, i)` into `best` (at most `l`, best first) if it ranks among them.
/// It runs for every node of every pod's window (3.2 million times for
/// 100,000 replicas), and most lose to the last at once: inlined, with the
/// insertion by hand, it took 7 % fewer instructions of a whole placement
/// than a closure the compiler left as a call (callgrind,
/// `examples/place_once.rs`).
#[inline(always)]
fn keep(best: &mut Vec<(Score, usize)>, l: usize, s: Score, i: usize) {
    let mut at = best.len();
    if at == l {
        let (o, j) = &best[l - 1];
        if o.ranks_before(*j, &s, i) {
            return;
        }
        at = l - 1;
    } else {
        best.push((s, i));
    }
    while at > 0 && s.ranks_before(i, &best[at - 1].0, best[at - 1].1) {
        best[at] = best[at - 1];
        at -= 1;
    }
    best[at] = (s, i);
}

/// Where a pod sits on the ring (`ps`: its seed).
fn ring_pos(ps: u64) -> u64 {
    mix(ps.rotate_left(32) ^ RING_SALT)
}

/// The points of the ring a pod's walk read: from its position to the
/// point that filled its window, clockwise (through `u64::MAX` to 0 when
/// `to < from`). Its window depends on no point outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) from: u64,
    pub(super) to: u64,
}

impl Span {
    /// Whether any of `points` (sorted) lies on the arc.
    pub(super) fn meets(&self, points: &[u64]) -> bool {
        let within = |lo: u64, hi: u64| {
            let at = points.partition_point(|p| *p < lo);
            at < points.len() && points[at] <= hi
        };
        if self.from <= self.to {
            within(self.from, self.to)
        } else {
            within(self.from, u64::MAX) || within(0, self.to)
        }
    }
}

/// A node's points on the ring (`seed`: its seed).
pub(super) fn points(seed: u64) -> impl Iterator<Item = u64> {
    (0..POINTS).map(move |j| mix(seed ^ mix(j + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests::node;

    /// The arcs' table finds the same first point as a binary search over
    /// the whole ring, at the ring's points, between them and at both ends.
    #[test]
    fn start_finds_the_first_point_at_or_after_a_position() {
        for n in [33usize, 100, 1000] {
            let specs: Vec<_> = (0..n).map(|i| node(&format!("n{i}"), 1, 1)).collect();
            let state: Vec<Node<'_>> = specs.iter().map(Node::of).collect();
            let index = Index::new(&state, WINDOW);
            let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1];
            for (p, _) in &index.ring {
                probes.extend([*p, p.wrapping_sub(1), p.wrapping_add(1)]);
            }
            probes.extend((0..10_000u64).map(|i| mix(i ^ 0x5eed)));
            for pos in probes {
                assert_eq!(index.start(pos), index.ring.partition_point(|(p, _)| *p < pos), "{n} nodes, {pos}");
            }
        }
    }
}
