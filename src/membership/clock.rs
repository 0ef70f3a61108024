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
//! node's corrected clock: its error is at most half a round trip. The
//! estimate is the lower median of every watched peer's latest sample and
//! this node's own (0), so a node follows the majority of the clocks it
//! watches, and one skewed node moves nobody but itself. In a two-node
//! cluster there is no majority: the node whose clock is ahead moves back.
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;

/// Residual offsets smaller than this are left alone: NTP keeps real
/// clocks within milliseconds, and the hybrid logical clock absorbs the rest.
pub const TOLERANCE_MS: i64 = 250;

/// What this node knows of its peers' clocks.
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    /// Peer name → its clock minus ours, in ms (its latest sample).
    samples: HashMap<String, i64>,
    /// The correction in force, in ms.
    correction: i64,
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
    pub fn sample(&mut self, name: &str, peer_ms: u64, sent_ms: u64, heard_ms: u64) {
        let mid = (sent_ms / 2 + heard_ms / 2) as i64;
        self.samples.insert(name.to_string(), peer_ms as i64 - mid);
    }

    /// Forgets peers no longer watched.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.samples.retain(|n, _| keep(n));
    }

    pub fn correction(&self) -> i64 {
        self.correction
    }

    /// The correction to take now, if the clocks this node watches say it
    /// is off by more than `TOLERANCE_MS`. Samples taken before a change
    /// are void after it (they were read against the old correction).
    pub fn decide(&mut self) -> Option<Adjust> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v: Vec<i64> = self.samples.values().copied().chain([0]).collect();
        v.sort_unstable();
        let residual = v[(v.len() - 1) / 2];
        if residual.abs() <= TOLERANCE_MS {
            return None;
        }
        let peers = self.samples.len();
        self.samples.clear();
        self.correction += residual;
        Some(Adjust { correction: self.correction, step: residual, peers })
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
        let a = ahead.decide().expect("a correction");
        assert_eq!((a.step, a.peers), (-(H as i64), 3));
        assert_eq!(ahead.decide(), None, "old samples are void after a change");
        // Sampled again against the corrected clock: nothing left to do.
        for p in ["a", "b", "c"] {
            ahead.sample(p, T + 10, T + 8, T + 12);
        }
        assert_eq!(ahead.decide(), None);
        assert_eq!(ahead.correction(), -(H as i64));
        // A peer that watches it, and two that are right, does not move.
        let mut peer = ClockSync::default();
        peer.sample("ahead", T + H, T, T);
        peer.sample("b", T, T, T);
        peer.sample("c", T + 30, T, T);
        assert_eq!(peer.decide(), None);
    }

    #[test]
    fn a_node_an_hour_behind_moves_forward() {
        let mut behind = ClockSync::default();
        behind.sample("a", T, T - H, T - H);
        behind.sample("b", T + 5, T - H, T - H + 4);
        let a = behind.decide().expect("a correction");
        assert!((a.step - H as i64).abs() < 10, "{a:?}");
    }

    #[test]
    fn two_nodes_agree_on_the_earlier_clock() {
        let (mut early, mut late) = (ClockSync::default(), ClockSync::default());
        early.sample("late", T + H, T, T);
        late.sample("early", T, T + H, T + H);
        assert_eq!(early.decide(), None, "the earlier clock stays");
        assert_eq!(late.decide().map(|a| a.step), Some(-(H as i64)));
    }

    #[test]
    fn small_offsets_are_left_to_the_hlc() {
        let mut s = ClockSync::default();
        s.sample("a", T + 200, T, T);
        s.sample("b", T + 240, T, T);
        assert_eq!(s.decide(), None);
    }
}
