//! Suspicions this node holds without a timer of its own. Pure: time
//! comes in as an argument.
//!
//! Under foca only the node whose probe failed times a suspect and
//! declares it Down; every other node holds the member Suspect until that
//! Down reaches it. Gossip can miss a node (each update is passed on a
//! bounded number of times), and a node that misses the Down keeps the
//! member Suspect, which placement counts as alive, until it probes the
//! member itself: at n nodes that can take n probe periods (netsim, 100
//! nodes: one node in 100 held a crashed peer Suspect for 13 to 47 s).
//!
//! So a node times every suspicion it holds, with a margin for the
//! prober's Down (or the suspect's refutation) to arrive. Past it, it asks
//! a few peers how they hold the member (`Frame::Query`), and takes their
//! word through foca's own precedence (`service::take_word`): a refutation
//! it missed, or a Down two of them hold. It never declares a member Down
//! on its own account: doing so (asking the suspect itself, and declaring
//! it Down when no answer came) gave about 80 false deaths in 3 of 4 runs
//! at 15 % loss in netsim (100 nodes), where the prober's timer alone gave
//! 13 in 1 run of 4.

use std::time::Duration;

use foca::Incarnation;
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::id::SwimId;

/// Peers asked about an overdue suspect each time.
pub const ASKED: usize = 3;

/// Most suspects asked about in one reading: the others stay due and are
/// asked about at the next (a node cut off from half the cluster holds
/// half of it Suspect for a moment, and must not send a question per
/// member at once).
pub const MAX_DUE: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Held {
    incarnation: Incarnation,
    due: Instant,
}

/// The suspects this node holds, and when to ask about each.
#[derive(Debug, Default)]
pub struct Suspicions {
    held: FxHashMap<SwimId, Held>,
    /// The earliest question due (None: no suspect held).
    next: Option<Instant>,
}

impl Suspicions {
    /// Follows one reading of foca's members: `suspects` are those it
    /// holds Suspect now (any other is forgotten). A suspect held `after`
    /// at one incarnation is due to be asked about, and again every
    /// `after` while it stays so: those returned, at most `MAX_DUE` (the
    /// rest stay due).
    pub fn scan(
        &mut self,
        suspects: impl Iterator<Item = (SwimId, Incarnation)>,
        now: Instant,
        after: Duration,
    ) -> Vec<SwimId> {
        let mut due = Vec::new();
        let mut held = FxHashMap::default();
        let mut next: Option<Instant> = None;
        for (id, incarnation) in suspects {
            let mut h = match self.held.get(&id) {
                Some(h) if h.incarnation == incarnation => *h,
                _ => Held { incarnation, due: now + after },
            };
            if now >= h.due && due.len() < MAX_DUE {
                h.due = now + after;
                due.push(id.clone());
            }
            next = Some(next.map_or(h.due, |n| n.min(h.due)));
            held.insert(id, h);
        }
        self.held = held;
        self.next = next;
        due
    }

    /// When the next question is due, if a suspect is held: the caller
    /// reads foca's members again then.
    pub fn next_due(&self) -> Option<Instant> {
        self.next
    }

    /// How many suspects are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no suspect is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const AFTER: Duration = Duration::from_millis(2200);

    fn id(n: u8) -> SwimId {
        SwimId::new(&format!("n{n}"), 1, SocketAddr::from(([127, 0, 0, n], 7946)))
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn a_suspect_held_too_long_is_asked_about_then_again_while_it_stays_so() {
        let t0 = Instant::now();
        let mut s = Suspicions::default();
        let mut scan = |t: f64| s.scan([(id(1), 3)].into_iter(), secs(t0, t), AFTER);
        for t in [0.0, 1.0, 2.0, 2.1] {
            assert_eq!(scan(t), vec![], "at {t} s");
        }
        assert_eq!(scan(2.25), vec![id(1)]);
        assert_eq!(scan(3.0), vec![], "not again at once");
        assert_eq!(scan(4.4), vec![]);
        assert_eq!(scan(4.5), vec![id(1)], "again an `after` later");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn at_most_max_due_suspects_are_asked_about_at_once_and_the_rest_next() {
        let t0 = Instant::now();
        let mut s = Suspicions::default();
        let all = || (0..10u8).map(|n| (id(n), 0));
        s.scan(all(), t0, AFTER);
        let first = s.scan(all(), t0 + AFTER, AFTER);
        assert_eq!(first.len(), MAX_DUE);
        assert_eq!(s.next_due(), Some(t0 + AFTER), "the rest are still due");
        let second = s.scan(all(), secs(t0, 2.3), AFTER);
        assert_eq!(second.len(), MAX_DUE);
        assert!(second.iter().all(|x| !first.contains(x)), "others than the first: {second:?}");
        assert_eq!(s.scan(all(), secs(t0, 2.4), AFTER).len(), 10 - 2 * MAX_DUE);
        assert_eq!(s.scan(all(), secs(t0, 2.5), AFTER), vec![]);
    }

    #[test]
    fn the_next_question_due_is_the_earliest_and_a_new_incarnation_starts_over() {
        let t0 = Instant::now();
        let mut s = Suspicions::default();
        assert_eq!(s.next_due(), None);
        s.scan([(id(1), 3)].into_iter(), t0, AFTER);
        s.scan([(id(1), 3), (id(2), 0)].into_iter(), secs(t0, 1.0), AFTER);
        assert_eq!(s.next_due(), Some(t0 + AFTER));
        assert_eq!(s.scan([(id(1), 3), (id(2), 0)].into_iter(), t0 + AFTER, AFTER), vec![id(1)]);
        assert_eq!(s.next_due(), Some(secs(t0, 1.0) + AFTER), "n2's first question is next");
        // n1 refuted and was suspected again: its timing starts over.
        assert_eq!(s.scan([(id(1), 4), (id(2), 0)].into_iter(), secs(t0, 3.0), AFTER), vec![]);
        assert_eq!(s.scan([(id(1), 4), (id(2), 0)].into_iter(), secs(t0, 3.3), AFTER), vec![id(2)]);
        assert_eq!(s.next_due(), Some(secs(t0, 3.0) + AFTER));
        // No longer suspect: forgotten.
        s.scan(std::iter::empty(), secs(t0, 4.0), AFTER);
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }
}
