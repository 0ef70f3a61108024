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
    /// The queued stamps in order, each by its slot.
    queue: BTreeMap<Place, u32>,
    /// The queued stamps (a free slot is reused): a fill moves a stamp in
    /// the queue by its slot, without looking its node up (at 1,000 nodes
    /// a lookup by name for each stamp sent was a third of a fill).
    slots: Vec<Queued>,
    free: Vec<u32>,
    /// Each queued stamp's slot, by node.
    by_name: FxHashMap<String, u32>,
    /// The newest stamp heard of each node: news is what is newer.
    seen: FxHashMap<String, Stamp>,
    arrivals: u64,
}

#[derive(Debug, Default)]
struct Queued {
    name: String,
    place: Place,
    /// The stamp as a `Frame::Stamped` carries it (encoded once).
    bytes: Vec<u8>,
}

impl Backlog {
    /// A stamp heard, or this node's own: whether it is news (newer than
    /// any stamp of its node seen before). News is queued to be passed on,
    /// in place of an older stamp of its node.
    pub fn offer(&mut self, stamp: &Stamp) -> bool {
        match self.seen.get_mut(&stamp.name) {
            Some(old) if !stamp.newer_than(old) => return false,
            Some(old) => *old = stamp.clone(),
            None => {
                self.seen.insert(stamp.name.clone(), stamp.clone());
            }
        }
        let Ok(bytes) = postcard::to_stdvec(stamp) else { return true };
        self.arrivals += 1;
        let place = (0, Reverse(self.arrivals));
        match self.by_name.get(&stamp.name) {
            Some(&slot) => {
                // In place of the older stamp queued, in the same slot.
                let q = &mut self.slots[slot as usize];
                self.queue.remove(&q.place);
                q.place = place;
                q.bytes = bytes;
                self.queue.insert(place, slot);
            }
            None => {
                let q = Queued { name: stamp.name.clone(), place, bytes };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = q;
                        slot
                    }
                    None => {
                        self.slots.push(q);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.queue.insert(place, slot);
                self.by_name.insert(stamp.name.clone(), slot);
            }
        }
        true
    }

    /// The stamps to piggyback on a packet with `room` bytes to spare, as
    /// a `Frame::Stamped` carries them (a count, then each stamp), into
    /// `out`: the least-sent that fit, each counted as sent once more and
    /// dropped once sent `max_tx` times. How many.
    pub fn fill(&mut self, room: usize, max_tx: u8, out: &mut Vec<u8>) -> usize {
        // The count's varint takes one byte up to `MAX_STAMPS`.
        let mut left = room.saturating_sub(1);
        let mut taken: Vec<(Place, u32)> = Vec::new();
        let mut skips = 0;
        for (place, &slot) in &self.queue {
            let len = self.slots[slot as usize].bytes.len();
            if len <= left {
                left -= len;
                taken.push((*place, slot));
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
        for (place, slot) in &taken {
            self.queue.remove(place);
            let q = &mut self.slots[*slot as usize];
            out.extend_from_slice(&q.bytes);
            let sent = place.0.saturating_add(1);
            if sent < max_tx {
                q.place = (sent, place.1);
                self.queue.insert(q.place, *slot);
            } else {
                let q = std::mem::take(q);
                self.by_name.remove(&q.name);
                self.free.push(*slot);
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

    /// The queue's rule written plainly: every queued stamp with its times
    /// sent and arrival, sorted at each fill.
    #[derive(Default)]
    struct Plain {
        seen: std::collections::HashMap<String, Stamp>,
        queued: Vec<(Stamp, u8, u64)>,
        arrivals: u64,
    }

    impl Plain {
        fn offer(&mut self, s: &Stamp) -> bool {
            if self.seen.get(&s.name).is_some_and(|old| !s.newer_than(old)) {
                return false;
            }
            self.seen.insert(s.name.clone(), s.clone());
            self.queued.retain(|(q, _, _)| q.name != s.name);
            self.arrivals += 1;
            self.queued.push((s.clone(), 0, self.arrivals));
            true
        }

        fn fill(&mut self, room: usize, max_tx: u8) -> Vec<Stamp> {
            self.queued.sort_by_key(|(_, sent, arrival)| (*sent, Reverse(*arrival)));
            let (mut left, mut skips, mut taken) = (room.saturating_sub(1), 0, Vec::new());
            for (i, (s, _, _)) in self.queued.iter().enumerate() {
                let len = postcard::to_stdvec(s).unwrap().len();
                if len <= left {
                    left -= len;
                    taken.push(i);
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
            let out: Vec<Stamp> = taken.iter().map(|i| self.queued[*i].0.clone()).collect();
            for i in &taken {
                self.queued[*i].1 += 1;
            }
            self.queued.retain(|(_, sent, _)| *sent < max_tx);
            out
        }
    }

    #[test]
    fn the_backlog_sends_what_the_plain_rule_sends_under_any_mix_of_news_and_fills() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (mut b, mut plain) = (Backlog::default(), Plain::default());
            let max_tx = rng.random_range(1..6);
            let mut sent = 0;
            for step in 0..2_000 {
                if rng.random_bool(0.6) {
                    let name = format!("n{}", rng.random_range(0..40));
                    let s =
                        Stamp { digest: "d".repeat(rng.random_range(0..60)), ..stamp(&name, rng.random_range(1..30)) };
                    assert_eq!(b.offer(&s), plain.offer(&s), "seed {seed} step {step}: offer of {name}");
                } else {
                    let room = rng.random_range(0..600);
                    let got = fill(&mut b, room, max_tx);
                    let want = plain.fill(room, max_tx);
                    sent += got.len();
                    assert_eq!(got, want, "seed {seed} step {step}: fill of {room} bytes");
                }
                assert_eq!(b.len(), plain.queued.len(), "seed {seed} step {step}");
            }
            assert!(sent > 50, "seed {seed}: the fills sent stamps ({sent})");
        }
    }
}
