//! When a node next sends a random peer its versions (`Frame::Sync`).
//! Pure: time comes in as an argument.
//!
//! A peer answers a sync only when their books differ, with at most
//! `MAX_VERSIONS` stamps. A node in step gets no answer and syncs once per
//! `SYNC_EVERY`; a node that lacks much (a new one above all) gets answers,
//! and then syncs every `SYNC_SOON` until `FAST_SYNCS` syncs in a row went
//! unanswered. Its first sync goes out at once.

use std::time::Duration;

use tokio::time::Instant;

/// How often a random peer is sent this node's versions (`Frame::Sync`):
/// repairs a stamp lost in gossip within about this period, at one small
/// exchange per period per node.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// How soon the next sync goes out after an answer. 300 nodes joining 100
/// (netsim, seed 1): a new node held every earlier one Ready within 7.4 s
/// p99 at one sync per 2 s, 3.1 s at one per 250 ms always.
pub const SYNC_SOON: Duration = Duration::from_millis(250);

/// Syncs sent at the fast pace after the last answer, answered or not (a
/// sync or its answer lost, or sent to a peer as new as this node, does not
/// end the catching up; silence this many times does).
pub const FAST_SYNCS: u8 = 3;

/// The sync pace of one node.
#[derive(Debug, Clone)]
pub struct SyncPace {
    next: Instant,
    fast: u8,
}

impl SyncPace {
    /// A node that just started: its first sync is due at once.
    pub fn starting(now: Instant) -> SyncPace {
        SyncPace { next: now, fast: 0 }
    }

    /// Whether a sync is due.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// A sync went out: the next one is due `SYNC_SOON` later while fast
    /// syncs remain, else `SYNC_EVERY` later.
    pub fn sent(&mut self, now: Instant) {
        let wait = if self.fast > 0 {
            self.fast -= 1;
            SYNC_SOON
        } else {
            SYNC_EVERY
        };
        self.next = now + wait;
    }

    /// An answer came (the books differ): the next sync within
    /// `SYNC_SOON`, and `FAST_SYNCS` at that pace after it.
    pub fn answered(&mut self, now: Instant) {
        self.next = self.next.min(now + SYNC_SOON);
        self.fast = FAST_SYNCS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends every sync due at each 50 ms tick until `until`, answering
    /// those whose index `answer` picks; the times they went out (ms).
    fn run(until_ms: u64, answer: impl Fn(usize) -> bool) -> Vec<u64> {
        let t0 = Instant::now();
        let mut pace = SyncPace::starting(t0);
        let mut sent = Vec::new();
        for ms in (0..=until_ms).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            if pace.due(now) {
                pace.sent(now);
                if answer(sent.len()) {
                    pace.answered(now);
                }
                sent.push(ms);
            }
        }
        sent
    }

    #[test]
    fn a_node_in_step_syncs_at_once_then_every_two_seconds() {
        assert_eq!(run(6_000, |_| false), vec![0, 2_000, 4_000, 6_000]);
    }

    #[test]
    fn answers_bring_the_fast_pace_until_three_syncs_go_unanswered() {
        // The first three answered: 250 ms apart while answers come; after
        // the last answer, the sync it brought forward and `FAST_SYNCS`
        // more at that pace, unanswered; then the slow pace again.
        let sent = run(6_000, |i| i < 3);
        assert_eq!(sent, vec![0, 250, 500, 750, 1_000, 1_250, 1_500, 3_500, 5_500]);
    }

    #[test]
    fn an_answer_brings_a_slow_sync_forward() {
        let t0 = Instant::now();
        let mut pace = SyncPace::starting(t0);
        pace.sent(t0);
        assert!(!pace.due(t0 + Duration::from_millis(1_000)));
        pace.answered(t0 + Duration::from_millis(1_000));
        assert!(!pace.due(t0 + Duration::from_millis(1_200)));
        assert!(pace.due(t0 + SYNC_SOON + Duration::from_millis(1_000)));
    }
}
