//! The SWIM membership service (`--membership swim`): runs foca over a
//! `Link`, publishes this node's records as a versioned `Stamp` (gossiped)
//! and pages (pulled), keeps the `Book` of peers' records, and assembles
//! the same `ClusterView` as the chitchat service, through the same
//! `assemble`.
//!
//! Node states come from foca: Alive is Ready, Suspect is Suspect, Down is
//! Dead, and a stamp that says the node left is Left. The liveness
//! watches feed it too: a peer whose process is gone (its port refuses) is
//! declared Down at once, and that spreads like any SWIM update.
//!
//! Fencing: this node may renew fenced leases while its view has a
//! majority and, within `dead_after`, its own probes were answered by
//! `ACK_QUORUM` distinct peers (or by a majority, in a cluster smaller
//! than that). A node cut off both ways, or one whose packets out are
//! lost, stops hearing answers at once; a minority that still hears
//! itself loses its majority when its view declares the rest Down.
//!
//! Time comes from tokio (virtual in netsim); randomness from a seed made
//! of the node's name and generation, so a netsim run is the same each time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Weak};
use std::time::Duration;

use foca::{
    AccumulatingRuntime, Codec, Config, Foca, Member, Message, NoCustomBroadcast, OwnedNotification, PeriodicParams,
    PostcardCodec, State, Timer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::book::{Book, Own, Pull};
use super::id::SwimId;
use super::link::Link;
use super::pace::SyncPace;
use super::piggyback::Backlog;
use super::suspicion::{ASKED, Suspicions};
use super::wire::{self, Frame, Have, HeldMember, MemberState, Stamp, WireError};
use crate::events::EventLog;
use crate::membership::assemble::{Me, Memory, Peers, assemble, keys};
use crate::membership::clock::ClockSync;
use crate::membership::detector::Id;
use crate::membership::last_inputs::LastInputs;
use crate::membership::service::{
    EVIDENCE_QUEUE, GossipConfig, Handles, MembershipError, PUSH_FANOUT, report_changes, take_reports, watch_targets,
};
use crate::membership::view::{ClusterView, NodeInfo, NodeState};
use crate::membership::watch::{self as liveness_watch, Liveness, Report};
use crate::model::status::Statuses;

/// Distinct peers whose answers to this node's probes, within `dead_after`,
/// let it renew fenced leases (fewer in a cluster smaller than twice this).
pub const ACK_QUORUM: usize = 3;

/// Frames from a member that arrive this soon after it was seen Down were
/// on their way before (a killed process's last packets): no sign of life.
pub const IN_FLIGHT: Duration = Duration::from_millis(500);

/// The least time between two announces to one peer that keeps sending
/// to an older identity of this node (see `Node::answer_stale`).
pub const STALE_ANSWER_EVERY: Duration = Duration::from_secs(1);

/// foca's member states are read this often, at once after a member came
/// up, went down or was renamed (only Suspect, which placement treats as
/// alive, waits for it), and when a suspect this node times is due
/// (`suspicion`).
pub const SCAN_EVERY: Duration = Duration::from_secs(1);

/// foca's settings from the node's: a probe every 2.5 gossip intervals
/// (500 ms by default), answered within one interval, and a suspect is Down
/// after `dead_after - suspect_after` (at least a probe period).
pub fn foca_config(cfg: &GossipConfig, members: usize) -> Config {
    let mut c = Config::simple();
    let period = cfg.gossip_interval.mul_f64(2.5).max(Duration::from_millis(50));
    c.probe_period = period;
    c.probe_rtt = cfg.gossip_interval.min(period / 2);
    c.suspect_to_down_after = cfg.dead_after.saturating_sub(cfg.suspect_after).max(period);
    c.remove_down_after = cfg.dead_node_grace.max(Duration::from_secs(1));
    c.max_transmissions = max_transmissions(members);
    c.max_packet_size = NonZeroUsize::new(wire::MAX_SWIM_PACKET).unwrap_or(NonZeroUsize::MIN);
    c.notify_down_members = true;
    let params = |frequency, n| {
        Some(PeriodicParams { frequency, num_members: NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN) })
    };
    // A member list out of step is mended by a Feed every 30 s; the sides of
    // a healed partition find each other within seconds (each announce to a
    // member held Down that is alive makes one of the two rejoin).
    c.periodic_announce = params(Duration::from_secs(30), 1);
    c.periodic_announce_to_down_members = params(Duration::from_secs(1), 2);
    c.periodic_gossip = params(cfg.gossip_interval, 3);
    c
}

/// A peer's word on a member, asked for by `suspicion`: taken only about a
/// member this node holds Suspect, and through foca's own precedence (a
/// Down wins, a newer incarnation wins), so it never decides anything
/// itself. It is not gossiped on: the others had their chance to hear it,
/// and passing on an old Down anew outran the rejoin of a member wrongly
/// declared down. A Down is taken only once `DOWNS_TAKEN` of the peers
/// asked hold it (`downs`, counted by the caller): after a wrong Down, most
/// peers soon hold the member's rejoined identity, and one that still held
/// the old Down made this node show a live member Dead. (netsim, 100
/// nodes, 15 % loss, 10 seeds: runs with a false death were 7 when one
/// peer's Down was taken and passed on, 7 when taken and not passed on, 3
/// now, 4 with no questions at all.) Whether it was taken.
fn take_word(foca: &mut SwimFoca, rt: &mut AccumulatingRuntime<SwimId>, held: HeldMember, downs: usize) -> bool {
    let suspect = foca.iter_membership_state().any(|m| m.id().addr == held.id.addr && m.state() == State::Suspect);
    if !suspect || (held.state == MemberState::Down && downs < DOWNS_TAKEN) {
        return false;
    }
    if let Err(e) =
        foca.apply_many(std::iter::once(Member::new(held.id, held.incarnation, held.state.into())), false, rt)
    {
        tracing::debug!("foca apply: {e}");
    }
    true
}

/// What a note that this node is held Suspect (`Node::tell_suspect`)
/// makes of it: the suspicion, for foca to refute (a higher incarnation,
/// gossiped), and the answer to its sender, alive at an incarnation above
/// the one it suspects (foca's own is at least that once it refuted). No
/// answer at the highest incarnation, where foca renews this node's
/// identity instead (the peer learns the new one from gossip); nothing
/// for a note of another state.
fn answer_suspicion(held: HeldMember) -> Option<(Member<SwimId>, Option<HeldMember>)> {
    if held.state != MemberState::Suspect {
        return None;
    }
    let suspicion = Member::new(held.id.clone(), held.incarnation, State::Suspect);
    let answer = held.incarnation.checked_add(1).map(|incarnation| HeldMember {
        id: held.id,
        incarnation,
        state: MemberState::Alive,
    });
    Some((suspicion, answer))
}

/// Copies of a buddy note and of its answer sent at once (each may be lost).
pub const BUDDY_COPIES: usize = 2;

/// Peers (of the `suspicion::ASKED` asked in one round) that must hold a
/// suspect Down for this node to take it.
pub const DOWNS_TAKEN: usize = 2;

/// How many times each update is piggybacked: 4·log10(n+1), as memberlist.
pub fn max_transmissions(members: usize) -> NonZeroU8 {
    let tx = ((members as f64 + 1.0).log10() * 4.0).ceil().clamp(3.0, 255.0);
    NonZeroU8::new(tx as u8).unwrap_or(NonZeroU8::MIN)
}

type SwimFoca = Foca<SwimId, PostcardCodec, StdRng, NoCustomBroadcast>;

/// The membership service under SWIM.
pub struct SwimMembership {
    pub(crate) handles: Handles,
    leaving_tx: watch::Sender<bool>,
    contact_tx: mpsc::UnboundedSender<SocketAddr>,
    task: JoinHandle<()>,
    watches: JoinHandle<()>,
    interval: Duration,
}

struct Inputs {
    info: watch::Receiver<NodeInfo>,
    statuses: watch::Receiver<Statuses>,
    leaving: watch::Receiver<bool>,
    extra: watch::Receiver<BTreeMap<String, String>>,
    evidence: mpsc::Receiver<Report>,
    contact: mpsc::UnboundedReceiver<SocketAddr>,
}

struct Outputs {
    view: watch::Sender<Arc<ClusterView>>,
    majority: watch::Sender<Option<Instant>>,
    targets: watch::Sender<Vec<liveness_watch::Target>>,
}

impl SwimMembership {
    pub async fn start(
        cfg: GossipConfig,
        info: NodeInfo,
        advertise: SocketAddr,
        net: (Arc<dyn Link>, Arc<dyn Liveness>),
        statuses: watch::Receiver<Statuses>,
        events: Arc<EventLog>,
    ) -> Result<SwimMembership, MembershipError> {
        let (link, liveness) = net;
        let id = SwimId::new(&info.name, info.generation, advertise);
        let seed = blake3::hash(format!("swim/{}/{}", info.name, info.generation).as_bytes());
        let mut seed_bytes = [0u8; 32];
        seed_bytes.copy_from_slice(seed.as_bytes());
        let foca = Foca::new(id, foca_config(&cfg, 1), StdRng::from_seed(seed_bytes), PostcardCodec);
        let (info_tx, info_rx) = watch::channel(info.clone());
        let (leaving_tx, leaving_rx) = watch::channel(false);
        let (extra_tx, extra_rx) = watch::channel(BTreeMap::new());
        let (contact_tx, contact_rx) = mpsc::unbounded_channel();
        let first = ClusterView { self_name: info.name.clone(), ..Default::default() };
        let (view_tx, view_rx) = watch::channel(Arc::new(first));
        let (evidence_tx, evidence_rx) = mpsc::channel(EVIDENCE_QUEUE);
        let (targets_tx, targets_rx) = watch::channel(Vec::new());
        let (majority_tx, majority_rx) = watch::channel(None);
        let tag = liveness_watch::cluster_tag(&cfg.cluster_id);
        let watches = liveness_watch::spawn(liveness, tag, targets_rx, evidence_tx, cfg.clock_ms);
        let interval = (cfg.gossip_interval / 2).max(Duration::from_millis(10));
        let node = Node {
            own: Own::new(&info.name, info.generation, advertise),
            book: Book::new(&info.name),
            foca,
            rt: AccumulatingRuntime::new(),
            timers: Vec::new(),
            link,
            piggy: Backlog::default(),
            rng: StdRng::seed_from_u64(u64::from_le_bytes(seed.as_bytes()[24..].try_into().unwrap_or_default())),
            acks: FxHashMap::default(),
            majority_memo: None,
            heard_from: FxHashMap::default(),
            down_since: FxHashMap::default(),
            suspicions: Suspicions::default(),
            ask_after: {
                let c = foca_config(&cfg, 1);
                c.suspect_to_down_after + c.probe_period
            },
            downs_told: FxHashMap::default(),
            stale_answered: FxHashMap::default(),
            memory: Memory::remembering(cfg.remembered.iter().cloned(), (cfg.clock)() + cfg.dead_node_grace.as_secs()),
            clock: ClockSync::starting_at(cfg.adjust_clock.as_ref().map_or(0, |a| a.initial)),
            dirty: true,
            pace: SyncPace::starting(Instant::now()),
            scan: true,
            tx: max_transmissions(1),
            known: 1,
            not_swim: Default::default(),
            last_scan: Vec::new(),
            cfg,
            events,
        };
        let inputs = Inputs {
            info: info_rx,
            statuses,
            leaving: leaving_rx,
            extra: extra_rx,
            evidence: evidence_rx,
            contact: contact_rx,
        };
        let outputs = Outputs { view: view_tx, majority: majority_tx, targets: targets_tx };
        let task = tokio::spawn(node.run(inputs, outputs, interval));
        Ok(SwimMembership {
            handles: Handles { view: view_rx, majority: majority_rx, info: info_tx, extra: extra_tx },
            leaving_tx,
            contact_tx,
            task,
            watches,
            interval: interval * 2,
        })
    }

    /// Announces this node to an address (a seed found by discovery).
    pub fn contact_sender(&self) -> mpsc::UnboundedSender<SocketAddr> {
        self.contact_tx.clone()
    }

    /// Announces a graceful leave: the stamp saying so is pushed to peers
    /// at once, then foca leaves the cluster.
    pub async fn leave(&self) {
        self.handles.info.send_modify(|i| i.schedulable = false);
        self.leaving_tx.send_replace(true);
        // The loop publishes the stamp, pushes it and leaves within a round.
        tokio::time::sleep(self.interval * 3).await;
    }

    pub fn abort(&self) {
        self.task.abort();
        self.watches.abort();
    }

    pub async fn shutdown(self) {
        self.task.abort();
        self.watches.abort();
    }
}

/// The loop's state.
struct Node {
    cfg: GossipConfig,
    events: Arc<EventLog>,
    own: Own,
    book: Book,
    foca: SwimFoca,
    rt: AccumulatingRuntime<SwimId>,
    timers: Vec<(Instant, Timer<SwimId>)>,
    link: Arc<dyn Link>,
    /// Stamps to pass on, piggybacked on foca's packets.
    piggy: Backlog,
    /// Picks the peer of each sync (seeded from the node's name and generation, as foca's).
    rng: StdRng,
    /// When each peer last answered this node's probe (or announce).
    acks: FxHashMap<String, Instant>,
    /// `majority_until`'s last deadline and what it read (the view,
    /// `known`); `None` when an ack came since.
    majority_memo: Option<(Weak<ClusterView>, usize, Option<Instant>)>,
    /// When each address last sent this node anything: a member foca holds
    /// Down that is heard from since (see `scan_members`) is alive
    /// (Suspect) in the view, not Dead.
    heard_from: FxHashMap<SocketAddr, Instant>,
    /// When this node last announced itself to a peer that addressed an
    /// older identity of it (see `answer_stale`).
    stale_answered: FxHashMap<SocketAddr, Instant>,
    /// When this node first saw each member Down, by address.
    down_since: FxHashMap<SocketAddr, Instant>,
    /// Suspects this node times itself (a Down it missed).
    suspicions: Suspicions,
    /// How long a suspicion lasts before this node asks about it: foca's
    /// suspicion time plus a probe period (from the config, fixed).
    ask_after: Duration,
    /// Suspects asked about in the current round: the peers that said Down.
    downs_told: FxHashMap<SocketAddr, Vec<SocketAddr>>,
    memory: Memory,
    clock: ClockSync,
    /// The view must be assembled again.
    dirty: bool,
    /// foca's member states must be read again.
    scan: bool,
    /// When this node next sends a random peer its versions.
    pace: SyncPace,
    /// foca's `max_transmissions` in force.
    tx: NonZeroU8,
    /// How many nodes count for the majority (the view's, as assembled).
    known: usize,
    /// Peers that sent something else than SWIM, or a frame kind this
    /// version does not know (warned once each).
    not_swim: std::collections::HashSet<SocketAddr>,
    /// What the last scan passed to the book, in foca's order: address,
    /// generation, bump and state of every member (see `scan_members`).
    last_scan: Vec<(SocketAddr, u64, u32, NodeState)>,
}

impl Node {
    async fn run(mut self, mut inputs: Inputs, out: Outputs, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut frozen = self.cfg.frozen.clone();
        let mut link_open = true;
        let mut reports = Vec::new();
        let mut seeds_until_active = Instant::now();
        let mut next_gossip = Instant::now();
        let mut last_published: LastInputs<(NodeInfo, bool, BTreeMap<String, String>)> = LastInputs::default();
        let mut left = false;
        let mut watched = 0;
        let mut watched_digest = 0;
        let mut scan_at = Instant::now();
        loop {
            let next_timer = self.timers.iter().map(|t| t.0).min();
            let mut ticked = false;
            tokio::select! {
                _ = tick.tick() => ticked = true,
                m = self.link.recv(), if link_open => match m {
                    Some((from, bytes)) => self.frame(from, &bytes),
                    None => link_open = false,
                },
                _ = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {}
                Some(r) = inputs.evidence.recv() => reports.push(r),
                Some(addr) = inputs.contact.recv() => self.announce(addr),
            }
            if let Some(f) = frozen.as_mut()
                && f.wait_for(|p| !*p).await.is_err()
            {
                frozen = None;
            }
            self.fire_timers();
            if !ticked {
                continue;
            }
            let now = Instant::now();
            // Until a peer answers, announce to the seeds once a second.
            if self.foca.num_members() == 0 && now >= seeds_until_active {
                seeds_until_active = now + Duration::from_secs(1);
                for s in self.cfg.seeds.clone() {
                    match tokio::net::lookup_host(s.as_str()).await {
                        Ok(addrs) => addrs.for_each(|a| self.announce(a)),
                        Err(e) => tracing::debug!(seed = %s, "cannot resolve seed: {e}"),
                    }
                }
            }
            while let Ok(r) = inputs.evidence.try_recv() {
                reports.push(r);
            }
            for (id, _) in
                take_reports(&mut reports, &mut self.clock, self.cfg.adjust_clock.as_ref(), watched, &mut self.memory)
            {
                self.declare_down(&id);
            }
            let info = inputs.info.borrow().clone();
            let pods = inputs.statuses.borrow().clone();
            let leaving = *inputs.leaving.borrow();
            let extra = inputs.extra.borrow().clone();
            if last_published.update((info.clone(), leaving, extra.clone()), &pods) {
                self.publish(&info, &pods, leaving, extra);
                self.dirty = true;
            }
            if leaving && !left {
                left = true;
                self.push_stamp();
                if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
                    tracing::debug!("foca leave: {e}");
                }
                self.drain();
            }
            for pull in self.book.pulls(now) {
                match pull {
                    Pull::Want(addr, want) => self.link.send(addr, wire::encode(&Frame::Want(want))),
                    Pull::Announce(addr) => self.announce(addr),
                }
            }
            // foca gossips on its own only while it has updates of its
            // own to spread; stamps waiting to be passed on get the same
            // rounds (`gossip_interval`, to as many members).
            if !self.piggy.is_empty() && self.foca.updates_backlog() == 0 && now >= next_gossip {
                next_gossip = now + self.cfg.gossip_interval;
                if let Err(e) = self.foca.gossip(&mut self.rt) {
                    tracing::debug!("foca gossip: {e}");
                }
                self.drain();
            }
            if self.pace.due(now)
                && let Some(addr) = self.book.sync_peer(self.rng.random::<u32>() as usize)
            {
                self.pace.sent(now);
                self.link.send(addr, wire::encode(&Frame::Sync(self.book.buckets(&self.own.stamp))));
            }
            if self.scan || now >= scan_at || self.suspicions.next_due().is_some_and(|t| now >= t) {
                scan_at = now + SCAN_EVERY;
                self.scan_members();
            }
            let view = out.view.borrow().clone();
            let view = if self.dirty {
                self.dirty = false;
                let changed = self.book.take_changed();
                let (view, changes, _malformed) = assemble(
                    Me { info: &info, pods: &pods, leaving },
                    Peers::Changed(&changed),
                    (self.cfg.clock)(),
                    &mut self.memory,
                );
                report_changes(&self.events, &info.name, changes);
                // The liveness watches follow the live membership only.
                if self.memory.alive_digest() != watched_digest {
                    watched_digest = self.memory.alive_digest();
                    let targets = watch_targets(&view, self.memory.ring());
                    self.clock.retain(|n| targets.iter().any(|t| t.name == n));
                    watched = targets.len();
                    out.targets.send_if_modified(|cur| {
                        let changed = *cur != targets;
                        if changed {
                            *cur = targets;
                        }
                        changed
                    });
                }
                self.known = self.memory.known();
                let view = Arc::new(view);
                out.view.send_if_modified(|cur| {
                    // Shares every unchanged entry with the last view: O(changes).
                    let changed = **cur != *view;
                    if changed {
                        *cur = view.clone();
                    }
                    changed
                });
                view
            } else {
                view
            };
            let majority = self.majority_until(&view, now);
            out.majority.send_if_modified(|cur| {
                let changed = *cur != majority;
                *cur = majority;
                changed
            });
        }
    }

    /// Handles one message from a peer.
    fn frame(&mut self, from: SocketAddr, bytes: &[u8]) {
        let decoded = wire::decode(bytes);
        if decoded.is_ok() {
            self.heard_from.insert(from, Instant::now());
        }
        match decoded {
            Err(e) => {
                // Another engine, or another version: said once per peer.
                let stranger = matches!(e, WireError::NotSwim | WireError::Kind(_));
                if stranger && self.not_swim.len() < 1024 && self.not_swim.insert(from) {
                    tracing::warn!(peer = %from, "{e}");
                } else {
                    tracing::debug!(peer = %from, "refused gossip message: {e}");
                }
            }
            Ok(Frame::Swim(data)) => self.swim_packet(from, &data),
            Ok(Frame::Stamped(data, stamps)) => {
                // Stamps count whatever foca makes of the packet (one to an
                // older identity of this node is dropped, payload and all).
                for s in &stamps {
                    if self.piggy.offer(s) {
                        self.dirty |= self.book.stamp(s);
                    }
                }
                self.swim_packet(from, &data);
            }
            Ok(Frame::Want(want)) => {
                for have in self.own.answer(&want) {
                    self.link.send(from, wire::encode(&Frame::Have(have)));
                }
            }
            Ok(Frame::Sync(theirs)) => {
                let start = self.rng.random::<u32>() as usize;
                let stamps: Vec<Stamp> =
                    self.book.differing_stamps(&self.own.stamp, &theirs, start).into_iter().cloned().collect();
                if !stamps.is_empty() {
                    let versions = stamps.iter().map(Stamp::version).collect();
                    self.link.send(from, wire::encode(&Frame::Versions(versions)));
                    self.link.send(from, wire::encode(&Frame::Stamps(stamps)));
                }
            }
            Ok(Frame::Versions(versions)) => {
                // An answer at all: the two books differ (a peer in step
                // sends none).
                self.book.versions_heard(&versions);
                self.pace.answered(Instant::now());
            }
            Ok(Frame::Stamps(stamps)) => {
                // A repair, not news to pass on: every peer of the sender
                // holds these already (not offered to the piggyback queue).
                // A stamp of a node not held makes this node announce to it.
                for s in &stamps {
                    self.dirty |= self.book.stamp(s);
                }
            }
            Ok(Frame::Query(id)) => {
                // The member of that address as foca holds it here (the
                // same identity, or the one that replaced it).
                let held = self.foca.iter_membership_state().find(|m| m.id().addr == id.addr).map(|m| HeldMember {
                    id: m.id().clone(),
                    incarnation: m.incarnation(),
                    state: m.state().into(),
                });
                if let Some(held) = held {
                    self.link.send(from, wire::encode(&Frame::Held(held)));
                }
            }
            // Buddy notes (`tell_suspect`): this node is held Suspect by
            // the sender, or the member the sender is tells it is alive.
            Ok(Frame::Held(held)) if held.id == *self.foca.identity() => self.suspected(from, held),
            Ok(Frame::Held(held)) if held.id.addr == from => self.refuted(held),
            Ok(Frame::Held(held)) => self.told(from, held),
            Ok(Frame::Have(have)) => {
                let name = have.stamp.name.clone();
                // Records are taken only from the node itself.
                if self.book.addr(&name).is_some_and(|a| a != from) {
                    tracing::debug!(peer = %from, node = %name, "refused records of another node");
                    return;
                }
                self.dirty |= self.book.stamp(&have.stamp);
                self.book.owner_answered(&name);
                if let Some(page) = have.page {
                    self.dirty |= self.book.page(&name, page);
                }
            }
        }
    }

    fn swim_packet(&mut self, from: SocketAddr, data: &[u8]) {
        self.answer_stale(data);
        if let Err(e) = self.foca.handle_data(data, &mut self.rt) {
            tracing::debug!(peer = %from, "refused SWIM packet: {e}");
        }
        self.drain();
    }

    /// A message to an older identity of this node (before a rejoin) is
    /// dropped by foca, payload and all, so its sender would go on probing
    /// a ghost and declare this node down. Announcing this identity to the
    /// sender teaches it the new one in one message (foca takes an
    /// announce's sender as alive), at most once per `STALE_ANSWER_EVERY`
    /// per peer. After a partition heals, when both sides rejoin at once,
    /// this is what lets two nodes that each hold the other's old identity
    /// meet again within a probe, not when gossip happens to reach them.
    fn answer_stale(&mut self, data: &[u8]) {
        let Ok(h) = Codec::<SwimId>::decode_header(&mut PostcardCodec, data) else { return };
        let me = self.foca.identity();
        if h.dst == *me || h.dst.addr != me.addr || h.message == Message::Announce || h.src.addr == me.addr {
            return;
        }
        let now = Instant::now();
        if self
            .stale_answered
            .get(&h.src.addr)
            .is_some_and(|at| now.saturating_duration_since(*at) < STALE_ANSWER_EVERY)
        {
            return;
        }
        self.stale_answered.insert(h.src.addr, now);
        if let Err(e) = self.foca.announce(h.src, &mut self.rt) {
            tracing::debug!("announce to a peer holding an old identity of this node: {e}");
        }
        self.drain();
    }

    fn announce(&mut self, addr: SocketAddr) {
        if let Err(e) = self.foca.announce(SwimId::seed(addr), &mut self.rt) {
            tracing::debug!(peer = %addr, "announce: {e}");
        }
        self.drain();
    }

    /// Fires foca's due timers.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        if !self.timers.iter().any(|t| t.0 <= now) {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers).into_iter().partition(|t| t.0 <= now);
        self.timers = later;
        for (_, t) in due {
            if let Err(e) = self.foca.handle_timer(t, &mut self.rt) {
                tracing::debug!("foca timer: {e}");
            }
        }
        self.drain();
    }

    /// Sends what foca queued, schedules its timers, reads its notifications.
    ///
    /// A member this node has just learned is Down is passed on at once
    /// (`Foca::gossip`, to a few random members) rather than at the next
    /// periodic gossip: each hop then costs a network delay, not up to a
    /// gossip interval, and the news reaches a large cluster in a few
    /// round trips (each node does this once per Down it learns, and the
    /// update's transmissions are foca's `max_transmissions` either way).
    fn drain(&mut self) {
        let now = Instant::now();
        let mut forwarded = false;
        loop {
            let mut stamps = Vec::new();
            while let Some((to, data)) = self.rt.to_send() {
                stamps.clear();
                self.piggy.fill(wire::MAX_SWIM_PACKET.saturating_sub(data.len()), self.tx.get(), &mut stamps);
                self.link.send(to.addr, wire::encode_stamped(&data, &stamps));
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                self.timers.push((now + after, timer));
            }
            let mut news = false;
            let mut failed = Vec::new();
            while let Some(n) = self.rt.to_notify() {
                match n {
                    OwnedNotification::ProbeFailed(_, id) => failed.push(id),
                    OwnedNotification::MemberDown(_) => {
                        self.scan = true;
                        news = true;
                    }
                    // A member up (or a newer identity of one) goes into the
                    // book at once, without a scan of every member: at 1,000
                    // nodes joining, scans on every one cost a tenth of a
                    // simulation. The scan each `SCAN_EVERY` still reads
                    // every member (a suspect among them).
                    OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                        self.dirty |= self.book.member(&id, NodeState::Ready);
                    }
                    OwnedNotification::Rejoin(id) => {
                        tracing::warn!(
                            bump = id.bump,
                            "the cluster had declared this node down (a pause, or a cut link): it rejoined"
                        );
                        self.scan = true;
                    }
                    OwnedNotification::Defunct => tracing::warn!("the cluster declared this node down"),
                    OwnedNotification::DataReceived(h) => {
                        if matches!(h.message, Message::Ack(_) | Message::ForwardedAck { .. } | Message::Feed) {
                            self.acks.insert(h.src.name.to_string(), now);
                            self.majority_memo = None;
                        }
                    }
                    _ => {}
                }
            }
            for id in failed {
                self.tell_suspect(id);
            }
            if !news || forwarded {
                break;
            }
            forwarded = true;
            if let Err(e) = self.foca.gossip(&mut self.rt) {
                tracing::debug!("foca gossip: {e}");
            }
        }
    }

    /// Reads every member's state from foca into the book.
    fn scan_members(&mut self) {
        self.scan = false;
        let mut alive = 0;
        let now = Instant::now();
        let dead_after = self.cfg.dead_after;
        self.heard_from.retain(|_, at| now.saturating_duration_since(*at) < dead_after);
        self.stale_answered.retain(|_, at| now.saturating_duration_since(*at) < STALE_ANSWER_EVERY);
        let mut down = FxHashMap::default();
        let mut suspects: Vec<(SwimId, foca::Incarnation)> = Vec::new();
        let mut states = Vec::with_capacity(self.last_scan.len());
        for m in self.foca.iter_membership_state() {
            let addr = m.id().addr;
            let state = match m.state() {
                State::Alive => NodeState::Ready,
                State::Suspect => {
                    suspects.push((m.id().clone(), m.incarnation()));
                    NodeState::Suspect
                }
                State::Down => {
                    let since = *self.down_since.get(&addr).unwrap_or(&now);
                    down.insert(addr, since);
                    // Declared down, yet it talked to this node since (past
                    // the frames already in flight): a partition has healed,
                    // or it was wrongly declared (it rejoins under a new bump
                    // within a round or two). Until then it is alive here,
                    // so no replica moves off a node that still runs it.
                    let heard = self.heard_from.get(&addr).is_some_and(|t| *t > since + IN_FLIGHT);
                    if heard { NodeState::Suspect } else { NodeState::Dead }
                }
            };
            alive += usize::from(state.alive());
            states.push((addr, m.id().generation, m.id().bump, state));
        }
        self.down_since = down;
        // Every member as the last scan passed it to the book, and the book
        // names every peer it holds: passing them again would change
        // nothing (`member` would find each as it is, `end_scan` nothing to
        // forget). Only the book's own changes come from elsewhere (a
        // member up, from foca's notifications, is a change here too). At
        // 1,000 nodes the scan's lookups each second were 31 % of a quiet
        // cluster's time.
        if states != self.last_scan || !self.book.all_named() {
            self.book.begin_scan();
            for (m, (_, _, _, state)) in self.foca.iter_membership_state().zip(&states) {
                self.dirty |= self.book.member(m.id(), *state);
            }
            self.dirty |= self.book.end_scan(now);
            self.last_scan = states;
        }
        let after = self.ask_after;
        self.downs_told.retain(|a, _| suspects.iter().any(|(id, _)| id.addr == *a));
        for id in self.suspicions.scan(suspects.into_iter(), now, after) {
            self.downs_told.insert(id.addr, Vec::new());
            // `ASKED` different peers (fewer in a smaller cluster), never
            // the suspect itself.
            let mut asked: Vec<SocketAddr> = Vec::with_capacity(ASKED);
            for _ in 0..ASKED * 4 {
                let pick = self.rng.random::<u32>() as usize;
                if let Some(peer) = self.book.sync_peer(pick).filter(|a| *a != id.addr && !asked.contains(a)) {
                    asked.push(peer);
                    if asked.len() == ASKED {
                        break;
                    }
                }
            }
            for peer in asked {
                self.link.send(peer, wire::encode(&Frame::Query(id.clone())));
            }
        }
        let tx = max_transmissions(alive + 1);
        if tx != self.tx {
            self.tx = tx;
            if let Err(e) = self.foca.set_config(foca_config(&self.cfg, alive + 1)) {
                tracing::debug!("foca config: {e}");
            }
        }
    }

    /// Tells a member this node's probe of it failed (foca now holds it
    /// Suspect): the buddy system of Lifeguard (memberlist's SWIM). The
    /// suspect otherwise learns of the suspicion only when gossip happens
    /// to bring it, and must refute within `suspect_to_down_after`; under
    /// loss it sometimes did not, and a live node was declared Down
    /// (netsim, lossy-network, 30 nodes: a probe lost on its direct and
    /// all three indirect paths; the suspect had heard nothing 1.7 s
    /// later). The note is a `Held` about the receiver itself.
    fn tell_suspect(&mut self, id: SwimId) {
        let Some(m) = self.foca.iter_membership_state().find(|m| *m.id() == id && m.state() == State::Suspect) else {
            return;
        };
        let note_addr = id.addr;
        let note = HeldMember { id, incarnation: m.incarnation(), state: MemberState::Suspect };
        let frame = wire::encode(&Frame::Held(note));
        for _ in 0..BUDDY_COPIES {
            self.link.send(note_addr, frame.clone());
        }
    }

    /// A peer holds this node Suspect (`tell_suspect`): foca refutes (a
    /// higher incarnation, gossiped), and the peer is told at once that
    /// this node is alive at an incarnation above the one it suspects.
    fn suspected(&mut self, from: SocketAddr, held: HeldMember) {
        let Some((suspicion, answer)) = answer_suspicion(held) else { return };
        if let Err(e) = self.foca.apply_many(std::iter::once(suspicion), true, &mut self.rt) {
            tracing::debug!("foca apply: {e}");
        }
        self.drain();
        if let Some(alive) = answer {
            let frame = wire::encode(&Frame::Held(alive));
            for _ in 0..BUDDY_COPIES {
                self.link.send(from, frame.clone());
            }
        }
    }

    /// A member this node holds Suspect says it is alive (its answer to
    /// `tell_suspect`): taken through foca's precedence like any word
    /// (`take_word`), so only a higher incarnation refutes the suspicion.
    fn refuted(&mut self, held: HeldMember) {
        if held.state == MemberState::Alive && take_word(&mut self.foca, &mut self.rt, held, 0) {
            self.drain();
            self.scan = true;
        }
    }

    /// A peer's answer to a `Query` (see `take_word`).
    fn told(&mut self, from: SocketAddr, held: HeldMember) {
        // Only answers to this node's questions count, and a Down only
        // once two different peers asked in one round hold it.
        let Some(downs) = self.downs_told.get_mut(&held.id.addr) else { return };
        if held.state == MemberState::Down && !downs.contains(&from) {
            downs.push(from);
        }
        let downs = downs.len();
        if take_word(&mut self.foca, &mut self.rt, held, downs) {
            self.drain();
            self.scan = true;
        }
    }

    /// A liveness watch found a peer's process gone: it is Down now.
    fn declare_down(&mut self, (name, generation): &Id) {
        let newest = self
            .foca
            .iter_membership_state()
            .filter(|m| m.id().name == *name && m.id().generation == *generation && m.state() != State::Down)
            .max_by_key(|m| m.id().bump)
            .cloned();
        if let Some(m) = newest {
            let down = Member::new(m.id().clone(), m.incarnation(), State::Down);
            if let Err(e) = self.foca.apply_many(std::iter::once(down), true, &mut self.rt) {
                tracing::debug!("foca apply: {e}");
            }
            self.drain();
            self.scan = true;
        }
    }

    /// Sets this node's records; a new stamp is gossiped.
    fn publish(&mut self, info: &NodeInfo, pods: &Statuses, leaving: bool, extra: BTreeMap<String, String>) {
        let mut all = extra;
        if let Ok(j) = serde_json::to_string(info) {
            all.insert(keys::INFO.to_string(), j);
        }
        for (id, s) in pods.iter() {
            if let Ok(j) = serde_json::to_string(&s.summary()) {
                all.insert(format!("{}{id}", keys::POD), j);
            }
        }
        if self.own.set(all, leaving) {
            self.piggy.offer(&self.own.stamp);
        }
        if let Some(section) = self.own.too_large {
            tracing::warn!(?section, "this node's records outgrew what peers may pull: its old records stay");
        }
    }

    /// Pushes this node's stamp to up to `PUSH_FANOUT` alive peers now (a
    /// graceful leave: they show Left without waiting for gossip).
    fn push_stamp(&mut self) {
        let frame = wire::encode(&Frame::Have(Have { stamp: self.own.stamp.clone(), page: None }));
        let peers: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).take(PUSH_FANOUT).collect();
        for p in peers {
            self.link.send(p, frame.clone());
        }
    }

    /// Until when fenced leases may be renewed (see the module doc).
    /// Answers older than `dead_after` are dropped first, so this costs
    /// the few peers probed lately, not the cluster; and it is worked out
    /// again only when an answer came or the view or `known` changed
    /// (called on every tick of the loop). Without a new answer the
    /// deadline cannot move: answers only age, and one that aged out
    /// could only have given a deadline already past.
    fn majority_until(&mut self, view: &Arc<ClusterView>, now: Instant) -> Option<Instant> {
        let dead_after = self.cfg.dead_after;
        let others_needed = (self.known / 2).min(ACK_QUORUM);
        if others_needed == 0 {
            return Some(now + dead_after);
        }
        if let Some((seen, known, until)) = &self.majority_memo
            && *known == self.known
            && std::ptr::eq(seen.as_ptr(), Arc::as_ptr(view))
        {
            return until.filter(|u| *u > now);
        }
        self.acks.retain(|_, at| now.saturating_duration_since(*at) < dead_after);
        let until = self.majority_of_acks(view, others_needed);
        self.majority_memo = Some((Arc::downgrade(view), self.known, until));
        until.filter(|u| *u > now)
    }

    /// The deadline the acks give (past or not), `None` if too few.
    fn majority_of_acks(&self, view: &ClusterView, others_needed: usize) -> Option<Instant> {
        majority_deadline(&self.acks, view, others_needed, self.cfg.dead_after)
    }
}

/// When the answers in `acks` (peer name -> when it last answered) stop
/// counting for a majority: `dead_after` past the `others_needed`-th latest
/// answer of a peer live in `view` (past or not); `None` without a quorum
/// or with too few such answers.
fn majority_deadline(
    acks: &FxHashMap<String, Instant>,
    view: &ClusterView,
    others_needed: usize,
    dead_after: Duration,
) -> Option<Instant> {
    if !view.quorum || others_needed == 0 {
        return None;
    }
    // Latest first; the view is read only until enough live peers are
    // found (it is searched by name: a few lookups, not one per answer).
    let mut heard: Vec<(Instant, &str)> = acks.iter().map(|(name, at)| (*at, name.as_str())).collect();
    heard.sort_unstable_by(|a, b| b.cmp(a));
    heard
        .into_iter()
        .filter(|(_, name)| *name != view.self_name && view.nodes.get(*name).is_some_and(|n| n.state.alive()))
        .nth(others_needed - 1)
        .map(|(at, _)| at + dead_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piggybacking_grows_with_the_log_of_the_cluster() {
        assert_eq!(max_transmissions(1).get(), 3);
        assert_eq!(max_transmissions(9).get(), 4);
        assert_eq!(max_transmissions(999).get(), 12);
        assert_eq!(max_transmissions(9_999).get(), 16);
    }

    fn cfg() -> GossipConfig {
        GossipConfig {
            cluster_id: "c".into(),
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 16.0,
            suspect_after: Duration::from_millis(800),
            dead_after: Duration::from_millis(2500),
            dead_node_grace: Duration::from_secs(600),
            seeds: vec![],
            clock: || 0,
            clock_ms: || 0,
            adjust_clock: None,
            remembered: vec![],
            frozen: None,
        }
    }

    #[test]
    fn foca_settings_follow_the_node_settings() {
        let c = foca_config(&cfg(), 999);
        assert_eq!(c.probe_period, Duration::from_millis(500));
        assert_eq!(c.probe_rtt, Duration::from_millis(200));
        assert_eq!(c.suspect_to_down_after, Duration::from_millis(1700));
        assert_eq!(c.max_transmissions.get(), 12);
        assert_eq!(c.remove_down_after, Duration::from_secs(600));
    }

    fn foca_with(me: &SwimId) -> SwimFoca {
        Foca::new(me.clone(), foca_config(&cfg(), 2), StdRng::seed_from_u64(1), PostcardCodec)
    }

    fn state_of(foca: &SwimFoca, id: &SwimId) -> Option<(State, u16)> {
        foca.iter_membership_state().find(|m| m.id() == id).map(|m| (m.state(), m.incarnation()))
    }

    /// A peer's answer about an overdue suspect: a Down it holds is taken,
    /// an Alive at the suspected incarnation is not (only a refutation,
    /// a newer one, clears a suspicion), and nothing is taken about a
    /// member this node does not hold Suspect.
    #[test]
    fn a_peers_word_is_taken_only_about_a_suspect_and_by_foca_precedence() {
        let me = SwimId::new("a", 1, "127.0.0.11:7421".parse().unwrap());
        let (b, c) = (
            SwimId::new("b", 1, "127.0.0.12:7421".parse().unwrap()),
            SwimId::new("c", 1, "127.0.0.13:7421".parse().unwrap()),
        );
        let mut foca = foca_with(&me);
        let mut rt = AccumulatingRuntime::new();
        let word = |id: &SwimId, incarnation, state| HeldMember { id: id.clone(), incarnation, state };
        foca.apply_many(
            [Member::new(b.clone(), 2, State::Suspect), Member::alive(c.clone())].into_iter(),
            true,
            &mut rt,
        )
        .unwrap();
        assert!(!take_word(&mut foca, &mut rt, word(&c, 0, MemberState::Down), 3), "c is not suspect here");
        assert_eq!(state_of(&foca, &c), Some((State::Alive, 0)));
        assert!(take_word(&mut foca, &mut rt, word(&b, 2, MemberState::Alive), 0));
        assert_eq!(state_of(&foca, &b), Some((State::Suspect, 2)), "not a refutation");
        assert!(!take_word(&mut foca, &mut rt, word(&b, 2, MemberState::Down), 1), "one peer's Down is not enough");
        assert_eq!(state_of(&foca, &b), Some((State::Suspect, 2)));
        assert!(take_word(&mut foca, &mut rt, word(&b, 2, MemberState::Down), 2));
        assert_eq!(state_of(&foca, &b), Some((State::Down, 2)));
        assert_eq!(foca.num_members(), 1);
        // A refutation is taken too.
        foca.apply_many(std::iter::once(Member::new(c.clone(), 0, State::Suspect)), true, &mut rt).unwrap();
        assert!(take_word(&mut foca, &mut rt, word(&c, 1, MemberState::Alive), 0));
        assert_eq!(state_of(&foca, &c), Some((State::Alive, 1)));
    }

    /// The buddy note: b, held Suspect by a, is told so directly; its
    /// foca refutes (a higher incarnation, to be gossiped) and its answer,
    /// taken by a as b's own word, clears the suspicion at once.
    #[test]
    fn a_suspect_told_directly_refutes_and_its_answer_clears_the_suspicion() {
        let a = SwimId::new("a", 1, "127.0.0.11:7421".parse().unwrap());
        let b = SwimId::new("b", 1, "127.0.0.12:7421".parse().unwrap());
        let (mut fa, mut fb) = (foca_with(&a), foca_with(&b));
        let (mut ra, mut rb) = (AccumulatingRuntime::new(), AccumulatingRuntime::new());
        fa.apply_many(std::iter::once(Member::new(b.clone(), 0, State::Suspect)), true, &mut ra).unwrap();
        fb.apply_many(std::iter::once(Member::alive(a.clone())), true, &mut rb).unwrap();
        while rb.to_send().is_some() {}
        let note = HeldMember { id: b.clone(), incarnation: 0, state: MemberState::Suspect };
        let (suspicion, answer) = answer_suspicion(note).expect("a suspicion to refute");
        fb.apply_many(std::iter::once(suspicion), true, &mut rb).unwrap();
        // b gossips at once; any message of b's now carries its new
        // incarnation, and refutes the suspicion where it arrives.
        let (to, packet) = rb.to_send().expect("b gossips its refutation");
        assert_eq!(to, a);
        let mut other = foca_with(&a);
        let mut ro = AccumulatingRuntime::new();
        other.apply_many(std::iter::once(Member::new(b.clone(), 0, State::Suspect)), true, &mut ro).unwrap();
        other.handle_data(&packet, &mut ro).unwrap();
        assert_eq!(state_of(&other, &b), Some((State::Alive, 1)), "b's gossip refutes");
        // The answer to the note does too, straight to the peer that told.
        let answer = answer.expect("an answer");
        assert_eq!((answer.incarnation, answer.state), (1, MemberState::Alive));
        assert!(take_word(&mut fa, &mut ra, answer, 0));
        assert_eq!(state_of(&fa, &b), Some((State::Alive, 1)), "the answer refutes");
        // A note of another state is not a suspicion; none is answered at
        // the highest incarnation.
        assert!(answer_suspicion(HeldMember { id: b.clone(), incarnation: 0, state: MemberState::Down }).is_none());
        let last = HeldMember { id: b, incarnation: u16::MAX, state: MemberState::Suspect };
        assert!(answer_suspicion(last).is_some_and(|(_, answer)| answer.is_none()));
    }

    /// What a watcher's evidence does: the member is Down in foca at once.
    #[test]
    fn evidence_declares_a_member_down() {
        let me = SwimId::new("a", 1, "127.0.0.11:7421".parse().unwrap());
        let b = SwimId::new("b", 1, "127.0.0.12:7421".parse().unwrap());
        let mut foca = foca_with(&me);
        let mut rt = AccumulatingRuntime::new();
        foca.apply_many(std::iter::once(Member::alive(b.clone())), true, &mut rt).unwrap();
        assert_eq!(foca.num_members(), 1);
        let m = foca.iter_membership_state().find(|m| m.id() == &b).cloned().unwrap();
        foca.apply_many(std::iter::once(Member::new(b.clone(), m.incarnation(), State::Down)), true, &mut rt).unwrap();
        let state = foca.iter_membership_state().find(|m| m.id() == &b).map(|m| m.state());
        assert_eq!(state, Some(State::Down));
        assert_eq!(foca.num_members(), 0);
        assert!(foca.updates_backlog() > 0, "the Down update is spread");
    }

    /// Fencing's deadline: the k-th latest answer of a live peer, not of
    /// this node or of a peer the view holds dead or does not hold.
    #[test]
    fn the_majority_deadline_counts_the_latest_answers_of_live_peers() {
        use crate::membership::view::{NodeInfo, NodeState, test_node};
        let mut view = ClusterView { self_name: "me".into(), quorum: true, ..Default::default() };
        for (name, state) in [("me", NodeState::Ready), ("a", NodeState::Ready), ("b", NodeState::Ready)] {
            view.nodes.insert(name.into(), test_node(NodeInfo { name: name.into(), ..Default::default() }, state));
        }
        for (name, state) in [("c", NodeState::Suspect), ("d", NodeState::Dead), ("e", NodeState::Ready)] {
            view.nodes.insert(name.into(), test_node(NodeInfo { name: name.into(), ..Default::default() }, state));
        }
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Latest first: me 9 (itself), d 8 (dead), x 7 (unknown), c 6, b 5, e 4, a 3.
        let acks: FxHashMap<String, Instant> = [("me", 9), ("d", 8), ("x", 7), ("c", 6), ("b", 5), ("e", 4), ("a", 3)]
            .into_iter()
            .map(|(n, s)| (n.to_string(), at(s)))
            .collect();
        let dead_after = Duration::from_secs(10);
        // A suspect is still alive: c, b, e, a count, in that order.
        assert_eq!(majority_deadline(&acks, &view, 1, dead_after), Some(at(6) + dead_after));
        assert_eq!(majority_deadline(&acks, &view, 3, dead_after), Some(at(4) + dead_after));
        assert_eq!(majority_deadline(&acks, &view, 4, dead_after), Some(at(3) + dead_after));
        assert_eq!(majority_deadline(&acks, &view, 5, dead_after), None, "too few live peers answered");
        view.quorum = false;
        assert_eq!(majority_deadline(&acks, &view, 1, dead_after), None, "no deadline without a quorum");
    }
}
