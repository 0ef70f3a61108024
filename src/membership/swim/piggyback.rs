//! The stamps this node passes on, piggybacked on its SWIM packets
//! (`Frame::Stamped`): each is sent at most `max_tx` times, the least-sent
//! first (the newest among equals), and a newer stamp of a node replaces
//! the one queued (memberlist's transmit-limited queue). Pure.
//!
//! Why not foca's custom broadcasts, which did this before: foca walks its
//! whole backlog for every packet it fills (it stops only when the backlog
//! is empty, not when the packet is full). When every node's records change
//! at once (a cluster starting, every node turning schedulable), every
//! node holds a stamp of every other for as long as it takes to send each
//! `max_tx` times: at 1,000 nodes about 20 s, in which filling packets was
//! a fifth of a simulation's time. A fill here looks at what it takes and
//! at most `MAX_SKIPS` stamps that did not fit, whatever the backlog.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::wire::{MAX_STAMPS, Stamp};

/// Stamps a fill passes over because they do not fit before it stops.
pub const MAX_SKIPS: usize = 4;

/// Where a stamp stands in the queue: times sent, then newest first.
type Place = (u8, Reverse<u64>);

#[derive(Debug, Default)]
pub struct Backlog {
    queue: BTreeMap<Place, Queued>,
    /// Each queued stamp's place, by node.
    by_name: FxHashMap<String, Place>,
    /// The newest stamp heard of each node: news is what is newer.
    seen: FxHashMap<String, Stamp>,
    arrivals: u64,
}

#[derive(Debug)]
struct Queued {
    name: String,
    /// The stamp as a `Frame::Stamped` carries it (encoded once).
    bytes: Vec<u8>,
}

impl Backlog {
    /// A stamp heard, or this node's own: whether it is news (newer than
    /// any stamp of its node seen before). News is queued to be passed on,
    /// in place of an older stamp of its node.
    pub fn offer(&mut self, stamp: &Stamp) -> bool {
        if self.seen.get(&stamp.name).is_some_and(|old| !stamp.newer_than(old)) {
            return false;
        }
        self.seen.insert(stamp.name.clone(), stamp.clone());
        if let Some(place) = self.by_name.remove(&stamp.name) {
            self.queue.remove(&place);
        }
        let Ok(bytes) = postcard::to_stdvec(stamp) else { return true };
        self.arrivals += 1;
        let place = (0, Reverse(self.arrivals));
        self.queue.insert(place, Queued { name: stamp.name.clone(), bytes });
        self.by_name.insert(stamp.name.clone(), place);
        true
    }

    /// The stamps to piggyback on a packet with `room` bytes to spare, as
    /// a `Frame::Stamped` carries them (a count, then each stamp), into
    /// `out`: the least-sent that fit, each counted as sent once more and
    /// dropped once sent `max_tx` times. How many.
    pub fn fill(&mut self, room: usize, max_tx: u8, out: &mut Vec<u8>) -> usize {
        // The count's varint takes one byte up to `MAX_STAMPS`.
        let mut left = room.saturating_sub(1);
        let mut taken = Vec::new();
        let mut skips = 0;
        for (place, q) in &self.queue {
            if q.bytes.len() <= left {
                left -= q.bytes.len();
                taken.push(*place);
                if taken.len() == MAX_STAMPS {
                    break;
                }
            } else {
                skips += 1;
                if skips == MAX_SKIPS {
                    break;
                }
            }
        }
        if taken.is_empty() {
            return 0;
        }
        out.push(taken.len() as u8);
        for place in &taken {
            let Some(q) = self.queue.remove(place) else { continue };
            out.extend_from_slice(&q.bytes);
            let sent = place.0.saturating_add(1);
            if sent < max_tx {
                let next = (sent, place.1);
                if let Some(p) = self.by_name.get_mut(&q.name) {
                    *p = next;
                }
                self.queue.insert(next, q);
            } else {
                self.by_name.remove(&q.name);
            }
        }
        taken.len()
    }

    /// Stamps waiting to be passed on.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(name: &str, seq: u64) -> Stamp {
        Stamp {
            name: name.into(),
            generation: 1,
            addr: "127.0.0.11:7421".parse().unwrap(),
            seq,
            summary: 1,
            pods: seq,
            left: false,
            digest: "0123456789abcdef:1".into(),
        }
    }

    /// A fill, decoded as a `Frame::Stamped`'s list.
    fn fill(b: &mut Backlog, room: usize, max_tx: u8) -> Vec<Stamp> {
        let mut out = Vec::new();
        let n = b.fill(room, max_tx, &mut out);
        assert!(out.len() <= room, "{} bytes in a room of {room}", out.len());
        if n == 0 {
            assert!(out.is_empty());
            return Vec::new();
        }
        let list: Vec<Stamp> = postcard::from_bytes(&out).unwrap();
        assert_eq!(list.len(), n);
        list
    }

    fn names(v: &[Stamp]) -> Vec<String> {
        v.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn news_is_queued_once_and_a_newer_stamp_replaces_the_queued_one() {
        let mut b = Backlog::default();
        assert!(b.offer(&stamp("a", 1)));
        assert!(!b.offer(&stamp("a", 1)), "heard before: not passed on again");
        assert!(b.offer(&stamp("b", 1)));
        assert!(b.offer(&stamp("a", 2)), "a newer stamp of a is news");
        assert_eq!(b.len(), 2, "and takes the older one's place");
        assert!(!b.offer(&stamp("a", 1)), "an older stamp is not news");
        let sent = fill(&mut b, 10_000, 3);
        assert_eq!(sent.iter().find(|s| s.name == "a").map(|s| s.seq), Some(2));
        // Sent once already: a repeat of a stamp passed on stays unqueued.
        assert!(!b.offer(&stamp("b", 1)));
    }

    #[test]
    fn each_stamp_goes_max_tx_times_the_least_sent_and_newest_first() {
        let mut b = Backlog::default();
        for n in ["a", "b", "c"] {
            b.offer(&stamp(n, 1));
        }
        let one = b.offer(&stamp("a", 1));
        assert!(!one);
        let size = postcard::to_stdvec(&stamp("a", 1)).unwrap().len();
        // Room for two stamps a packet.
        let room = 1 + 2 * size;
        assert_eq!(names(&fill(&mut b, room, 2)), ["c", "b"], "newest first");
        assert_eq!(names(&fill(&mut b, room, 2)), ["a", "c"], "then the one not sent yet");
        b.offer(&stamp("d", 1));
        assert_eq!(names(&fill(&mut b, room, 2)), ["d", "b"], "news before what went once");
        assert_eq!(names(&fill(&mut b, room, 2)), ["d", "a"]);
        assert!(fill(&mut b, room, 2).is_empty() && b.is_empty(), "each went twice: nothing is left");
    }

    #[test]
    fn a_fill_stops_at_the_room_left_whatever_the_backlog() {
        let mut b = Backlog::default();
        for i in 0..10_000 {
            b.offer(&stamp(&format!("n{i:05}"), 1));
        }
        let size = postcard::to_stdvec(&stamp("n00000", 1)).unwrap().len();
        let sent = fill(&mut b, 1_400, 12);
        assert_eq!(sent.len(), 1_399 / size, "as many as fit");
        let bytes: usize = sent.iter().map(|s| postcard::to_stdvec(s).unwrap().len()).sum();
        assert!(bytes < 1_400);
        assert_eq!(b.len(), 10_000, "each is sent again later");
        assert!(fill(&mut b, 0, 12).is_empty(), "no room, nothing sent");
        // A stamp too big for the room is passed over, a smaller one after it taken.
        let mut b = Backlog::default();
        b.offer(&stamp("small", 1));
        b.offer(&Stamp { digest: "x".repeat(100), ..stamp("large", 1) });
        assert_eq!(names(&fill(&mut b, 1 + size, 3)), ["small"]);
    }
}
