//! The cluster's time: how far this host's clock is from its peers', and
//! the correction it takes. Pure: samples and the current correction in,
//! a new correction out; the driver (`service`) applies it (a real node:
//! `util::set_clock_offset_ms`, which every stamp, schedule and expiry
//! reads).
//!
//! Why: hybrid logical clocks keep causality, but a node whose wall clock
//! is an hour ahead stamps its writes an hour ahead, and its peers refuse
//! stamps that far in the future (`state.max_clock_skew`); one an hour
//! behind refuses every peer's writes the same way, and its own writes that
//! have not seen the latest value lose to older ones. Leases and failure
//! detection never read the wall clock (they run on monotonic time), but
//! CronJob times and token expiry are compared across nodes.
//!
//! Each sample is one peer's clock read during a liveness-watch handshake
//! (`watch::Hello::time_ms`) against the midpoint of the handshake on this
//! node's corrected clock: its error is at most half a round trip. A node
//! decides only once it holds a sample of every peer it watches, and moves
//! only when a strict majority of those clocks and its own (0) are off the
//! same way: to the median, or with an even count to the middle value
//! nearer its own. So one skewed node moves nobody but itself, and two
//! skewed nodes that a node watches beside two good ones move nobody (they
//! stay off, and say so, rather than pull the cluster with them). In a
//! two-node cluster there is no majority: the node whose clock is ahead
//! moves back. Readings outside 2020-2100 are ignored (a peer cannot make
//! this node's clock read 1970), and a node whose own clock reads outside
//! that range has no say: it follows its peers.
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;

/// Residual offsets smaller than this are left alone: NTP keeps real
/// clocks within milliseconds, and the hybrid logical clock absorbs the rest.
pub const TOLERANCE_MS: i64 = 250;

/// The clock readings taken from peers (unix ms): 2020-01-01 to 2100-01-01.
/// Outside it a reading is garbage, not a clock to follow.
pub const PLAUSIBLE_MS: std::ops::Range<u64> = 1_577_836_800_000..4_102_444_800_000;

/// What this node knows of its peers' clocks.
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    /// Peer name → its clock minus ours, in ms (its latest sample).
    samples: HashMap<String, i64>,
    /// The correction in force, in ms.
    correction: i64,
    /// This node's own clock read outside `PLAUSIBLE_MS` at the last
    /// sample: it has no say, and follows its peers.
    own_implausible: bool,
}

/// A change of correction to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjust {
    /// The new correction (ms added to the system clock).
    pub correction: i64,
    /// How far the clock moves now (new minus old correction).
    pub step: i64,
    /// Peers whose samples decided it.
    pub peers: usize,
}

impl ClockSync {
    /// With `correction` (ms) already in force.
    pub fn starting_at(correction: i64) -> ClockSync {
        ClockSync { correction, ..Default::default() }
    }

    /// A sample: peer `name` read `peer_ms` while this node's corrected
    /// clock read `sent_ms` before asking and `heard_ms` after the answer.
    /// A reading outside `PLAUSIBLE_MS` is ignored.
    pub fn sample(&mut self, name: &str, peer_ms: u64, sent_ms: u64, heard_ms: u64) {
        if !PLAUSIBLE_MS.contains(&peer_ms) {
            return;
        }
        let mid = sent_ms / 2 + heard_ms / 2;
        self.own_implausible = !PLAUSIBLE_MS.contains(&mid);
        if let Ok(offset) = i64::try_from(i128::from(peer_ms) - i128::from(mid)) {
            self.samples.insert(name.to_string(), offset);
        }
    }

    /// Forgets peers no longer watched.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.samples.retain(|n, _| keep(n));
    }

    pub fn correction(&self) -> i64 {
        self.correction
    }

    /// The correction to take now, if the clocks this node watches say it
    /// is off by more than `TOLERANCE_MS`; nothing before it holds samples
    /// of `expected` peers (every one it watches). Samples taken before a
    /// change are void after it (they were read against the old correction).
    pub fn decide(&mut self, expected: usize) -> Option<Adjust> {
        if self.samples.is_empty() || self.samples.len() < expected {
            return None;
        }
        let own = if self.own_implausible { None } else { Some(0) };
        let mut v: Vec<i64> = self.samples.values().copied().chain(own).collect();
        v.sort_unstable();
        let residual = middle(&v);
        if residual.abs() <= TOLERANCE_MS {
            return None;
        }
        let correction = self.correction.checked_add(residual)?;
        let peers = self.samples.len();
        self.samples.clear();
        self.correction = correction;
        Some(Adjust { correction, step: residual, peers })
    }
}

/// Where a strict majority of the sorted offsets `v` (this node's own, 0,
/// among them) says this clock is: the median; with an even count, the
/// middle value nearer 0 (both middle values on one side of 0 mean a strict
/// majority is there), except with two clocks, where the earlier wins.
fn middle(v: &[i64]) -> i64 {
    let n = v.len();
    if n % 2 == 1 {
        return v[n / 2];
    }
    let (a, b) = (v[n / 2 - 1], v[n / 2]);
    if n == 2 || a > 0 {
        a
    } else if b < 0 {
        b
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;
    const T: u64 = 1_800_000_000_000;

    #[test]
    fn a_node_an_hour_ahead_moves_back_and_its_peers_stay() {
        // This node reads T + 1 h; its three peers read T.
        let mut ahead = ClockSync::default();
        for p in ["a", "b", "c"] {
            ahead.sample(p, T, T + H - 2, T + H + 2);
        }
        let a = ahead.decide(3).expect("a correction");
        assert_eq!((a.step, a.peers), (-(H as i64), 3));
        assert_eq!(ahead.decide(3), None, "old samples are void after a change");
        // Sampled again against the corrected clock: nothing left to do.
        for p in ["a", "b", "c"] {
            ahead.sample(p, T + 10, T + 8, T + 12);
        }
        assert_eq!(ahead.decide(3), None);
        assert_eq!(ahead.correction(), -(H as i64));
        // A peer that watches it, and two that are right, does not move.
        let mut peer = ClockSync::default();
        peer.sample("ahead", T + H, T, T);
        peer.sample("b", T, T, T);
        peer.sample("c", T + 30, T, T);
        assert_eq!(peer.decide(3), None);
    }

    #[test]
    fn a_node_an_hour_behind_moves_forward() {
        let mut behind = ClockSync::default();
        behind.sample("a", T, T - H, T - H);
        behind.sample("b", T + 5, T - H, T - H + 4);
        let a = behind.decide(2).expect("a correction");
        assert!((a.step - H as i64).abs() < 10, "{a:?}");
    }

    #[test]
    fn two_nodes_agree_on_the_earlier_clock() {
        let (mut early, mut late) = (ClockSync::default(), ClockSync::default());
        early.sample("late", T + H, T, T);
        late.sample("early", T, T + H, T + H);
        assert_eq!(early.decide(1), None, "the earlier clock stays");
        assert_eq!(late.decide(1).map(|a| a.step), Some(-(H as i64)));
    }

    #[test]
    fn small_offsets_are_left_to_the_hlc() {
        let mut s = ClockSync::default();
        s.sample("a", T + 200, T, T);
        s.sample("b", T + 240, T, T);
        assert_eq!(s.decide(2), None);
    }

    #[test]
    fn two_skewed_clocks_beside_two_good_ones_move_nobody() {
        // A correct node watching two nodes an hour behind and one right one.
        let mut good = ClockSync::default();
        good.sample("a", T - H, T, T);
        good.sample("b", T - H, T, T);
        good.sample("c", T, T, T);
        assert_eq!(good.decide(3), None, "a tie is no majority: the good clock stays");
        // One of the skewed nodes, watching its twin and two right ones.
        let mut off = ClockSync::default();
        off.sample("b", T - H, T - H, T - H);
        off.sample("c", T, T - H, T - H);
        off.sample("d", T, T - H, T - H);
        assert_eq!(off.decide(3), None);
        // With a third right clock it sees a strict majority, and moves.
        off.sample("e", T, T - H, T - H);
        assert_eq!(off.decide(4).map(|a| a.step), Some(H as i64));
    }

    #[test]
    fn a_node_waits_for_every_watched_clock() {
        let mut s = ClockSync::default();
        s.sample("a", T - H, T, T);
        assert_eq!(s.decide(3), None, "one sample of three is not enough");
        s.sample("b", T, T, T);
        s.sample("c", T, T, T);
        assert_eq!(s.decide(3), None);
    }

    #[test]
    fn implausible_or_huge_readings_are_ignored() {
        let mut s = ClockSync::default();
        for (i, t) in [0, 1, u64::MAX, i64::MAX as u64 + 1, 5_000_000_000_000].into_iter().enumerate() {
            s.sample(&i.to_string(), t, T, T);
        }
        assert_eq!(s.decide(0), None, "no sample was taken");
        // A node whose own clock reads 1970 (a Pi without RTC) follows its
        // plausible peers, even the one peer of a 2-node cluster.
        let mut pi = ClockSync::default();
        pi.sample("a", T, 1000, 1002);
        pi.sample("b", T + 3, 1000, 1004);
        let a = pi.decide(2).expect("a correction");
        assert!((a.correction - (T as i64 - 1001)).abs() < 10, "{a:?}");
        let mut pi = ClockSync::default();
        pi.sample("a", T, 1000, 1002);
        let a = pi.decide(1).expect("a correction");
        assert!((a.correction - (T as i64 - 1001)).abs() < 10, "{a:?}");
    }
}
