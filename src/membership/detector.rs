//! The failure detector: whether each peer generation is Ready, Suspect or
//! Dead, from three kinds of evidence. Pure: time comes in as arguments; the
//! driver (`service`) feeds it heartbeats, endpoint evidence and the claims
//! other nodes gossip, and publishes the claims it returns.
//!
//! - **Silence.** Heartbeats travel in every gossip digest, so a peer's
//!   heartbeat advancing anywhere in the cluster is heard here within a
//!   round or two, through any live node: one bad link does not silence a
//!   peer. A peer whose heartbeat has not advanced for `dead_after` of this
//!   node's *awake* time is Dead. The default, 2.5 s, sits between the
//!   longest pause a node must survive (2 s, plus one heartbeat interval and
//!   one hop to be heard again: 2.3 s at most) and the 3 s in which a silent
//!   host must be declared dead everywhere.
//! - **This node's own pauses.** The awake clock advances with the driver's
//!   ticks, but a tick that comes far later than due (this process was
//!   stopped, its VM stalled, its disk swapped) adds one tick, not the
//!   gap: a node that wakes from a pause does not take its own silence for
//!   its peers'. (Without this, a node resumed after 2 s declared 4 of its
//!   4 peers Dead, and 7 to 12 of 19 at 20 nodes.)
//! - **Endpoints.** A process that died leaves its host answering at once
//!   that nothing listens on its port; a restarted one answers with a newer
//!   generation. The liveness watches (`watch`) report that evidence; a
//!   node holding it publishes a claim, and a peer is Dead once
//!   `CONFIRMATIONS` distinct nodes claim it (all there are, when fewer can
//!   watch), so one confused observer cannot kill a node. A claim is void
//!   once the peer's heartbeat is seen advancing `REFUTE_AFTER` after the
//!   claim was first seen here: a living node refutes a false claim just by
//!   running, while the last heartbeats of a dead one, still spreading
//!   through gossip when the claim arrives, do not.
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::view::NodeState;

/// A node generation: (name, generation).
pub type Id = (String, u64);

/// A tick later than due by more than this means this node was paused: the
/// excess does not count as time in which peers were silent. Long enough
/// for a loaded machine's scheduling delays (hundreds of ms on a busy
/// 2-core CI box), short enough that a 2 s stall is always caught.
pub const PAUSE_SLACK: Duration = Duration::from_millis(600);

/// Distinct nodes whose endpoint evidence makes a peer Dead (fewer when
/// fewer nodes could observe it: the survivor of a 2-node cluster decides
/// alone).
pub const CONFIRMATIONS: usize = 2;

/// A claim is void once the peer's heartbeat is seen advancing this long
/// after the claim was first seen. Heartbeats sent just before a crash
/// still spread through gossip for a few rounds after the claims (and
/// chitchat counts a beat per message handled, dozens a second, so beat
/// counts say nothing of time): they must not refute a true claim.
pub const REFUTE_AFTER: Duration = Duration::from_secs(2);

/// How long this node keeps publishing a claim. By then the peer is Dead by
/// silence too (or it refuted the claim long ago), so the claim is no
/// longer needed and its key can go.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Endpoint evidence that a peer generation's process is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Its host refused a connection to its port: nothing listens there.
    Refused,
    /// Its port answered with a newer generation of the same node.
    Replaced,
}

/// One node's gossiped claim that a peer generation's process is gone:
/// the value of its `down:<name>` key is the generation.
pub fn encode_claim(generation: u64) -> String {
    generation.to_string()
}

/// Parses a claim from a peer (untrusted: `None` on garbage).
pub fn decode_claim(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Settings of the detector.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    /// How often the driver ticks.
    pub tick: Duration,
    /// Silence after which a peer is Suspect (still alive for placement).
    pub suspect_after: Duration,
    /// Silence after which a peer is Dead.
    pub dead_after: Duration,
}

#[derive(Debug, Clone)]
struct Track {
    heartbeat: u64,
    /// Awake time of the last advance (or of the first sight).
    advanced_at: Duration,
    /// The same moment on the real (monotonic) clock, pauses included.
    advanced_real: Option<Instant>,
    /// The latest moment this peer is known to have heard this node (see
    /// `echo`), on the real clock.
    heard_by: Option<Instant>,
    /// The heartbeat advanced at least once while this node watched: a
    /// generation only heard of (from a digest, say long dead) is not shown.
    seen_live: bool,
    /// This node's own evidence: (kind, awake time).
    evidence: Option<(Evidence, Duration)>,
    /// Other nodes' claims against it: claimant → awake time first seen.
    claims: HashMap<String, Duration>,
}

impl Track {
    /// Whether a claim first seen at `at` has been refuted since.
    fn refutes(&self, at: Duration) -> bool {
        self.advanced_at > at + REFUTE_AFTER
    }
}

/// What the detector says of one peer generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub state: NodeState,
    /// Silence so far, on this node's awake clock.
    pub silent: Duration,
    /// Nodes (this one included) holding a valid claim against it.
    pub claims: usize,
}

/// The detector's memory. One per node, owned by the membership driver.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectorConfig,
    awake: Duration,
    last_tick: Option<Instant>,
    tracks: HashMap<Id, Track>,
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Detector {
        Detector { cfg, awake: Duration::ZERO, last_tick: None, tracks: HashMap::new() }
    }

    /// Advances the awake clock to `now`. Returns how long this node was
    /// paused, when this tick came far later than due.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let last = self.last_tick.replace(now)?;
        let step = now.saturating_duration_since(last);
        let paused = if step > self.cfg.tick + PAUSE_SLACK {
            self.awake += self.cfg.tick;
            Some(step - self.cfg.tick)
        } else {
            self.awake += step;
            None
        };
        let awake = self.awake;
        for t in self.tracks.values_mut() {
            if let Some((_, at)) = t.evidence
                && (awake.saturating_sub(at) > CLAIM_TTL || t.refutes(at))
            {
                t.evidence = None;
            }
        }
        paused
    }

    /// The awake clock: time this node has been running, pauses excluded.
    pub fn awake(&self) -> Duration {
        self.awake
    }

    /// A peer generation's heartbeat as chitchat knows it now.
    pub fn heartbeat(&mut self, id: &Id, heartbeat: u64) {
        let (awake, real) = (self.awake, self.last_tick);
        match self.tracks.get_mut(id) {
            Some(t) => {
                if heartbeat > t.heartbeat {
                    t.heartbeat = heartbeat;
                    t.advanced_at = awake;
                    t.advanced_real = real;
                    t.seen_live = true;
                }
            }
            None => {
                self.tracks.insert(
                    id.clone(),
                    Track {
                        heartbeat,
                        advanced_at: awake,
                        advanced_real: real,
                        heard_by: None,
                        seen_live: false,
                        evidence: None,
                        claims: HashMap::new(),
                    },
                );
            }
        }
    }

    /// Endpoint evidence against a peer generation (ignored for one never
    /// heard of, and kept once: the first evidence dates the claim).
    pub fn evidence(&mut self, id: &Id, e: Evidence) {
        let awake = self.awake;
        if let Some(t) = self.tracks.get_mut(id)
            && t.evidence.is_none()
        {
            t.evidence = Some((e, awake));
        }
    }

    /// This peer generation is known to have heard this node at `at` (its
    /// digest held a heartbeat this node had then; see `echo`).
    pub fn heard_by(&mut self, id: &Id, at: Instant) {
        if let Some(t) = self.tracks.get_mut(id) {
            t.heard_by = t.heard_by.max(Some(at));
        }
    }

    /// When this peer generation last was heard here and last heard this
    /// node, whichever is older (real clock).
    pub fn both_ways(&self, id: &Id) -> Option<Instant> {
        let t = self.tracks.get(id)?;
        Some(t.advanced_real?.min(t.heard_by?))
    }

    /// Forgets the generations `keep` rejects (gone from gossip).
    pub fn retain(&mut self, keep: impl Fn(&Id) -> bool) {
        self.tracks.retain(|id, _| keep(id));
    }

    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The claims this node publishes: per peer name, its newest claimed
    /// generation.
    pub fn claims(&self) -> HashMap<&str, u64> {
        let mut out: HashMap<&str, u64> = HashMap::new();
        for ((name, generation), t) in &self.tracks {
            let Some((_, at)) = t.evidence else { continue };
            if t.refutes(at) {
                continue;
            }
            if out.get(name.as_str()).is_none_or(|g| g < generation) {
                out.insert(name, *generation);
            }
        }
        out
    }

    /// Until when this node is in touch with a majority, both ways, on the
    /// real clock (its own pauses count here: a node that hung must not
    /// renew leases on the strength of its stale view). A peer counts from
    /// the older of the last time it was heard here and the last time it
    /// heard this node (`both_ways`): a node whose outgoing packets are
    /// lost hears everyone, but nobody hears it, and its peers will declare
    /// it Dead. `peers` are the alive peer generations; `known` is how many
    /// nodes count for the majority, this one included. `None` when even
    /// now it is not in touch with a majority.
    ///
    /// A fenced pod's lease is renewed only before this instant, so a node
    /// cut off, in either direction, renews nothing `dead_after` after it
    /// was last in touch with a majority (see `agent::lease`).
    pub fn majority_until<'a>(&self, peers: impl Iterator<Item = &'a Id>, known: usize) -> Option<Instant> {
        let now = self.last_tick?;
        let others_needed = known / 2;
        if others_needed == 0 {
            return Some(now + self.cfg.dead_after);
        }
        let mut heard: Vec<Instant> = peers.filter_map(|id| self.both_ways(id)).collect();
        if heard.len() < others_needed {
            return None;
        }
        heard.sort_unstable_by(|a, b| b.cmp(a));
        let until = heard[others_needed - 1] + self.cfg.dead_after;
        (until > now).then_some(until)
    }

    /// The peers to gossip with now so that this node stays in touch with
    /// a majority both ways: none while more than a majority of `peers`
    /// (the margin of one absorbs a peer that just went quiet) were in
    /// touch within `dead_after / 2`; otherwise the `most` least recently
    /// in touch. Random gossip covers every peer in a round or two in a
    /// small cluster; in a large one, a node's direct exchanges with any
    /// given peer are rarer, and digests only come with them.
    pub fn refresh<'a>(&self, peers: impl Iterator<Item = &'a Id>, known: usize, most: usize) -> Vec<&'a Id> {
        let Some(now) = self.last_tick else { return Vec::new() };
        let needed = known / 2 + 1;
        let within = self.cfg.dead_after / 2;
        let mut stale: Vec<(Option<Instant>, &Id)> = Vec::new();
        let mut fresh = 0;
        for id in peers {
            match self.both_ways(id) {
                Some(at) if now.saturating_duration_since(at) < within => fresh += 1,
                at => stale.push((at, id)),
            }
        }
        if fresh >= needed || stale.is_empty() {
            return Vec::new();
        }
        stale.sort_unstable();
        stale.into_iter().take(most).map(|(_, id)| id).collect()
    }

    /// Judges a peer generation: `None` until it was seen live.
    /// `claimants` are the other nodes that claim this very generation is
    /// gone (each once); `observers` is how many nodes, this one included,
    /// could observe it (the alive ones but itself). Notes when each claim
    /// was first seen, to tell a refutation from heartbeats still spreading.
    pub fn judge(&mut self, id: &Id, claimants: &[&str], observers: usize) -> Option<Judgement> {
        let awake = self.awake;
        let t = self.tracks.get_mut(id).filter(|t| t.seen_live)?;
        t.claims.retain(|who, _| claimants.contains(&who.as_str()));
        for who in claimants {
            if !t.claims.contains_key(*who) {
                t.claims.insert(who.to_string(), awake);
            }
        }
        let mine = t.evidence.is_some_and(|(_, at)| !t.refutes(at));
        let claims = usize::from(mine) + t.claims.values().filter(|at| !t.refutes(**at)).count();
        let silent = awake.saturating_sub(t.advanced_at);
        let need = CONFIRMATIONS.min(observers).max(1);
        let state = if silent >= self.cfg.dead_after || claims >= need {
            NodeState::Dead
        } else if silent >= self.cfg.suspect_after || claims > 0 {
            NodeState::Suspect
        } else {
            NodeState::Ready
        };
        Some(Judgement { state, silent, claims })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take a base instant from the clock
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    fn cfg() -> DetectorConfig {
        DetectorConfig {
            tick: TICK,
            suspect_after: Duration::from_millis(800),
            dead_after: Duration::from_millis(2500),
        }
    }

    fn id(n: &str) -> Id {
        (n.to_string(), 1)
    }

    /// A node's life, tick by tick: the peers whose heartbeat advances in a
    /// tick are given by `beats(t_ms)`.
    struct Run {
        d: Detector,
        base: Instant,
        t: Duration,
        hb: HashMap<String, u64>,
        /// Peers that no longer hear this node (its packets to them lost).
        deaf: Vec<String>,
    }

    impl Run {
        fn new(peers: &[&str]) -> Run {
            let mut r = Run {
                d: Detector::new(cfg()),
                base: Instant::now(),
                t: Duration::ZERO,
                hb: HashMap::new(),
                deaf: Vec::new(),
            };
            r.d.tick(r.base);
            for p in peers {
                r.hb.insert(p.to_string(), 1);
                r.d.heartbeat(&id(p), 1);
            }
            // Seen live: one advance each.
            r.step(TICK, |_| true);
            r
        }

        /// Advances by `by` (one tick, or a gap), then reports the beats.
        fn step(&mut self, by: Duration, beats: impl Fn(&str) -> bool) -> Option<Duration> {
            self.t += by;
            let paused = self.d.tick(self.base + self.t);
            let now = self.base + self.t;
            for (p, hb) in self.hb.iter_mut() {
                if beats(p) {
                    *hb += 1;
                    // A peer heard now hears this node now, unless cut.
                    if !self.deaf.contains(p) {
                        self.d.heard_by(&(p.clone(), 1), now);
                    }
                }
                self.d.heartbeat(&(p.clone(), 1), *hb);
            }
            paused
        }

        fn state(&mut self, p: &str) -> NodeState {
            self.d.judge(&id(p), &[], 3).unwrap().state
        }

        /// Runs `ms` of ticks; returns the worst state seen of `p`.
        fn run(&mut self, ms: u64, beats: impl Fn(&str, u64) -> bool, p: &str) -> NodeState {
            let mut worst = NodeState::Ready;
            for _ in 0..ms / 100 {
                let now = self.t.as_millis() as u64;
                self.step(TICK, |x| beats(x, now));
                worst = worst.max(self.state(p));
            }
            worst
        }
    }

    #[test]
    fn a_silent_peer_is_suspect_then_dead_within_the_bound() {
        let mut r = Run::new(&["a", "b"]);
        assert_eq!(r.run(2000, |_, _| true, "a"), NodeState::Ready);
        // "a" goes silent; "b" beats on.
        let mut dead_at = None;
        for i in 1..=40 {
            r.step(TICK, |p| p == "b");
            if r.state("a") == NodeState::Dead && dead_at.is_none() {
                dead_at = Some(i * 100);
            }
            if i * 100 == 1000 {
                assert_eq!(r.state("a"), NodeState::Suspect);
            }
        }
        assert_eq!(dead_at, Some(2500), "dead after exactly dead_after of silence");
        assert_eq!(r.state("b"), NodeState::Ready);
    }

    #[test]
    fn a_peer_paused_two_seconds_is_never_dead() {
        // Heartbeats every 200 ms; the peer stops for 2 s, then is heard
        // again 300 ms later (a heartbeat interval plus a gossip hop).
        let mut r = Run::new(&["p"]);
        let beat_every_200 = |now: u64| now.is_multiple_of(200);
        assert_eq!(r.run(2000, |_, t| beat_every_200(t), "p"), NodeState::Ready);
        let worst = r.run(2300, |_, _| false, "p");
        assert_eq!(worst, NodeState::Suspect, "suspect, not dead, while paused");
        assert_eq!(r.run(1000, |_, t| beat_every_200(t), "p"), NodeState::Ready);
        assert_eq!(r.state("p"), NodeState::Ready);
    }

    #[test]
    fn a_node_waking_from_a_pause_does_not_declare_its_peers_dead() {
        let mut r = Run::new(&["a", "b", "c"]);
        r.run(1000, |_, _| true, "a");
        // This node freezes 10 s: its next tick comes 10 s late, and the
        // peers' heartbeats are stale until the first gossip round after.
        let paused = r.step(Duration::from_secs(10), |_| false);
        assert_eq!(paused, Some(Duration::from_secs(10) - TICK));
        for p in ["a", "b", "c"] {
            assert_eq!(r.state(p), NodeState::Ready, "{p} after this node's own pause");
        }
        // A round or two later the heartbeats flow again.
        r.step(TICK, |_| false);
        r.step(TICK, |_| true);
        for p in ["a", "b", "c"] {
            assert_eq!(r.state(p), NodeState::Ready);
        }
    }

    #[test]
    fn a_late_tick_under_load_still_counts() {
        let mut r = Run::new(&["a"]);
        // 500 ms late is load, not a pause: it counts as silence.
        assert_eq!(r.step(TICK + Duration::from_millis(500), |_| false), None);
        assert_eq!(r.d.judge(&id("a"), &[], 2).unwrap().silent, Duration::from_millis(600));
    }

    #[test]
    fn twenty_percent_heartbeat_loss_causes_no_death() {
        // Every heartbeat reaches this node with probability 0.8, each of
        // three ways (direct, and two peers' digests), every 200 ms: a
        // deterministic pseudo-random pattern over 10 minutes.
        let mut r = Run::new(&["a"]);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut lost = 0;
        let mut worst = NodeState::Ready;
        for i in 0..6000u64 {
            let mut heard = false;
            if i % 2 == 0 {
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    heard |= !x.is_multiple_of(5);
                }
                lost += !heard as u32;
            }
            r.step(TICK, |_| heard);
            worst = worst.max(r.state("a"));
        }
        assert!(lost > 0, "the pattern loses some rounds entirely");
        assert!(worst < NodeState::Dead, "worst state under 20% loss: {worst:?}");
    }

    #[test]
    fn refused_endpoints_kill_with_two_observers_and_one_is_not_enough() {
        let mut r = Run::new(&["a", "me2"]);
        r.d.evidence(&id("a"), Evidence::Refused);
        let j = r.d.judge(&id("a"), &[], 3).unwrap();
        assert_eq!((j.state, j.claims), (NodeState::Suspect, 1), "one observer suspects");
        let j = r.d.judge(&id("a"), &["b"], 3).unwrap();
        assert_eq!((j.state, j.claims), (NodeState::Dead, 2), "a second observer confirms");
        // Alone with the peer, this node's evidence is all there is.
        assert_eq!(r.d.judge(&id("a"), &[], 1).unwrap().state, NodeState::Dead);
        assert_eq!(r.d.claims().get("a"), Some(&1));
        // Two other nodes suffice without this one.
        let mut r = Run::new(&["a"]);
        assert_eq!(r.d.judge(&id("a"), &["b", "c"], 3).unwrap().state, NodeState::Dead);
    }

    #[test]
    fn heartbeats_still_spreading_do_not_refute_a_true_claim() {
        // The peer died; its last heartbeats reach this node for another
        // second, after the claims did.
        let mut r = Run::new(&["a"]);
        r.d.evidence(&id("a"), Evidence::Refused);
        assert_eq!(r.d.judge(&id("a"), &["b"], 3).unwrap().state, NodeState::Dead);
        for _ in 0..10 {
            r.step(TICK, |_| true);
            assert_eq!(r.d.judge(&id("a"), &["b"], 3).unwrap().state, NodeState::Dead);
        }
        for _ in 0..40 {
            r.step(TICK, |_| false);
            assert_eq!(r.d.judge(&id("a"), &["b"], 3).unwrap().state, NodeState::Dead);
        }
    }

    #[test]
    fn a_living_peer_refutes_claims_by_beating() {
        let mut r = Run::new(&["a"]);
        r.d.evidence(&id("a"), Evidence::Refused);
        assert_eq!(r.d.judge(&id("a"), &["b"], 3).unwrap().state, NodeState::Dead);
        let mut back = None;
        for i in 1..=40 {
            r.step(TICK, |_| true);
            let j = r.d.judge(&id("a"), &["b"], 3).unwrap();
            if j.state == NodeState::Ready && back.is_none() {
                back = Some(i * 100);
            }
        }
        assert_eq!(back, Some(REFUTE_AFTER.as_millis() as u32 + 100), "refuted once it beat past REFUTE_AFTER");
        assert!(r.d.claims().is_empty(), "this node withdrew its own claim");
        // A claim first seen now is judged afresh; b's stays void.
        let j = r.d.judge(&id("a"), &["b", "c"], 3).unwrap();
        assert_eq!((j.state, j.claims), (NodeState::Suspect, 1));
    }

    #[test]
    fn claims_expire_and_unknown_generations_are_ignored() {
        let mut r = Run::new(&["a"]);
        r.d.evidence(&("a".to_string(), 9), Evidence::Replaced);
        assert!(r.d.claims().is_empty());
        r.d.evidence(&id("a"), Evidence::Replaced);
        assert_eq!(r.d.claims().len(), 1);
        for _ in 0..(CLAIM_TTL.as_millis() / 100 + 1) {
            r.step(TICK, |_| false);
        }
        assert!(r.d.claims().is_empty());
        assert_eq!(r.state("a"), NodeState::Dead, "dead by silence by then");
    }

    #[test]
    fn a_generation_never_seen_beating_is_not_judged() {
        let mut d = Detector::new(cfg());
        d.tick(Instant::now());
        d.heartbeat(&id("old"), 40);
        assert_eq!(d.judge(&id("old"), &[], 2), None);
    }

    #[test]
    fn the_majority_deadline_runs_on_the_real_clock() {
        let mut r = Run::new(&["a", "b", "c", "d"]);
        let ids: Vec<Id> = ["a", "b", "c", "d"].iter().map(|p| id(p)).collect();
        let at = r.base + r.t;
        assert_eq!(r.d.majority_until(ids.iter(), 5), Some(at + cfg().dead_after));
        // Two of four peers silent: still a majority (me, c, d) of 5.
        r.step(TICK, |p| p == "c" || p == "d");
        assert_eq!(r.d.majority_until(ids.iter(), 5), Some(r.base + r.t + cfg().dead_after));
        // Three silent: the deadline stops moving, then passes.
        let at = r.base + r.t;
        r.step(TICK, |p| p == "d");
        assert_eq!(r.d.majority_until(ids.iter(), 5), Some(at + cfg().dead_after));
        for _ in 0..25 {
            r.step(TICK, |p| p == "d");
        }
        assert_eq!(r.d.majority_until(ids.iter(), 5), None);
        // A pause counts here, unlike for the silence rule: after 3 s
        // frozen, nothing is renewed until peers are heard again.
        let mut r = Run::new(&["a", "b"]);
        r.step(Duration::from_secs(3), |_| false);
        let ab: Vec<Id> = vec![id("a"), id("b")];
        assert_eq!(r.d.majority_until(ab.iter(), 3), None);
        r.step(TICK, |_| true);
        assert!(r.d.majority_until(ab.iter(), 3).is_some());
        // Alone, this node always has its majority while it runs.
        assert!(r.d.majority_until([].iter(), 1).is_some());
    }

    #[test]
    fn a_node_nobody_hears_loses_its_majority_though_it_hears_everyone() {
        // This node's outgoing packets are lost: it still hears all four
        // peers, but their digests stop showing its heartbeat advance.
        let mut r = Run::new(&["a", "b", "c", "d"]);
        let ids: Vec<Id> = ["a", "b", "c", "d"].iter().map(|p| id(p)).collect();
        assert!(r.d.majority_until(ids.iter(), 5).is_some());
        // Two peers deaf to it: the other two and itself are still 3 of 5.
        r.deaf = vec!["a".into(), "b".into()];
        for _ in 0..30 {
            r.step(TICK, |_| true);
        }
        assert_eq!(r.d.majority_until(ids.iter(), 5), Some(r.base + r.t + cfg().dead_after));
        // Three deaf: the deadline stops moving at the last moment a
        // majority heard it, and passes dead_after later.
        r.deaf.push("c".into());
        let at = r.base + r.t;
        r.step(TICK, |_| true);
        assert_eq!(r.d.majority_until(ids.iter(), 5), Some(at + cfg().dead_after));
        for _ in 0..25 {
            r.step(TICK, |_| true);
        }
        assert_eq!(r.d.majority_until(ids.iter(), 5), None, "heard by too few");
        for p in ["a", "b", "c", "d"] {
            assert_eq!(r.state(p), NodeState::Ready, "it still hears {p}");
        }
        // Heard again: back at once.
        r.deaf.clear();
        r.step(TICK, |_| true);
        assert!(r.d.majority_until(ids.iter(), 5).is_some());
        // A peer never known to have heard it does not count.
        let mut d = Detector::new(cfg());
        d.tick(r.base);
        d.heartbeat(&id("x"), 1);
        d.tick(r.base + TICK);
        d.heartbeat(&id("x"), 2);
        assert_eq!(d.majority_until([id("x")].iter(), 2), None);
        d.heard_by(&id("x"), r.base + TICK);
        assert!(d.majority_until([id("x")].iter(), 2).is_some());
    }

    #[test]
    fn refreshes_the_least_recently_heard_peers_only_when_a_majority_is_not_fresh() {
        let names = ["a", "b", "c", "d", "e", "f"];
        let mut r = Run::new(&names);
        let ids: Vec<Id> = names.iter().map(|p| id(p)).collect();
        assert!(r.d.refresh(ids.iter(), 7, 2).is_empty(), "all fresh");
        // Only a and b keep exchanging digests with this node.
        r.deaf = vec!["c".into(), "d".into(), "e".into(), "f".into()];
        for _ in 0..12 {
            r.step(TICK, |_| true);
        }
        assert!(r.d.refresh(ids.iter(), 7, 2).is_empty(), "heard by all within dead_after / 2");
        // One exchange with d; then c, e and f go stale: 3 fresh of the 4 needed.
        r.d.heard_by(&id("d"), r.base + r.t);
        r.step(TICK, |_| true);
        let picked = r.d.refresh(ids.iter(), 7, 2);
        assert_eq!(picked, vec![&id("c"), &id("e")], "two of the stale ones, not d");
        // With a smaller cluster, 3 fresh are a majority and a margin.
        assert!(r.d.refresh(ids[..4].iter(), 5, 2).is_empty());
    }

    #[test]
    fn claims_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_claim(&encode_claim(1_700_000_000_123)), Some(1_700_000_000_123));
        for bad in ["", "x", "1.2", "-1", "99999999999999999999999"] {
            assert_eq!(decode_claim(bad), None, "{bad:?}");
        }
    }
}
