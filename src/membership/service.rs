//! The membership service: runs chitchat (scuttlebutt gossip) over a
//! `Transport`, publishes this node's small records (identity, capacity,
//! pod statuses, its claims against dead peers), drives the failure
//! detector (`detector`) and the liveness watches (`watch`), and assembles
//! the `ClusterView` every tick.
//!
//! Time comes from tokio (virtual in netsim); the transport is QUIC on a real
//! node and a simulated network in netsim, as are the liveness watches.
//! chitchat's own phi-accrual detector only chooses whom it gossips with;
//! node states come from `detector`. Graceful leave sets a `left` key and
//! pushes it to every live peer at once, so peers see Left without waiting
//! for the failure detector; a new claim, and this node waking from a
//! pause, are pushed the same way.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, spawn_chitchat};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::assemble::{Me, Memory, Peers, RawNode, Records, assemble, keys};
use super::clock::ClockSync;
use super::detector::{Detector, DetectorConfig, Id, encode_claim};
use super::echo::{Beats, Heard, Opened};
use super::view::{ClusterView, NodeInfo};
use super::watch::{self as liveness_watch, Liveness, Report, Target};
use crate::events::EventLog;
use crate::model::status::Statuses;

/// Applies a new correction (ms) of this node's clock (see `clock`),
/// starting from the correction `initial` already in force.
#[derive(Clone)]
pub struct ClockAdjust {
    pub apply: Arc<dyn Fn(i64) + Send + Sync>,
    pub initial: i64,
}

impl std::fmt::Debug for ClockAdjust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockAdjust")
    }
}

/// The channels an engine shares with the rest of the node.
#[derive(Clone)]
pub struct Handles {
    /// The view, kept fresh.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Until when this node may renew fenced pods' leases (`None`: not now).
    pub majority: watch::Receiver<Option<Instant>>,
    /// This node's record, updated from other tasks.
    pub info: watch::Sender<NodeInfo>,
    /// This node's extra keys, set from other tasks.
    pub extra: watch::Sender<BTreeMap<String, String>>,
}

/// Settings of the gossip layer.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub cluster_id: String,
    pub gossip_interval: Duration,
    /// chitchat's phi threshold: only whom it gossips with.
    pub phi_threshold: f64,
    pub suspect_after: Duration,
    pub dead_after: Duration,
    pub dead_node_grace: Duration,
    pub seeds: Vec<String>,
    /// Unix seconds now (the system clock, or virtual time in netsim).
    pub clock: fn() -> u64,
    /// Unix milliseconds now (the same clock).
    pub clock_ms: fn() -> u64,
    /// Sets the correction of this node's clock to the cluster's time
    /// (`membership::clock`); `None`: the clock is not corrected (netsim).
    pub adjust_clock: Option<ClockAdjust>,
    /// The members this node knew before it started (its data dir): they
    /// count toward the majority until heard from, or `dead_node_grace`.
    pub remembered: Vec<String>,
    /// netsim's frozen host: while true, the membership loop runs no code,
    /// as a stopped process would not (a real node passes `None`: a real
    /// pause stops the whole process).
    pub frozen: Option<watch::Receiver<bool>>,
}

pub struct ChitchatMembership {
    handle: Option<Arc<ChitchatHandle>>,
    chitchat: Arc<Mutex<chitchat::Chitchat>>,
    pub(crate) handles: Handles,
    leaving_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
    watches: JoinHandle<()>,
    interval: Duration,
}

struct Published {
    pods: HashMap<String, String>,
    info: String,
    left: bool,
    extra: BTreeMap<String, String>,
    claims: HashMap<String, String>,
}

/// Evidence queued from the liveness watches to the detector.
pub const EVIDENCE_QUEUE: usize = 256;

/// Most peers a new claim, or this node's return from a pause, is pushed
/// to at once (every peer, up to this size; the rest hear of it through
/// gossip, from several claimants that each push to a different part).
pub const PUSH_FANOUT: usize = 32;

/// Why gossip could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot encode this node's record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot start gossip: {0}")]
    Start(String),
}

/// Heartbeat intervals the failure detector keeps per peer (chitchat
/// preallocates them: 8 bytes each). 100 intervals are 20 s of history at the
/// default gossip interval, plenty for a stable mean, and 0.8 KB per peer
/// instead of chitchat's default 8 KB (8 MB per node at 1,000 peers).
pub const PHI_WINDOW: usize = 100;

impl ChitchatMembership {
    pub async fn start(
        cfg: GossipConfig,
        info: NodeInfo,
        advertise: SocketAddr,
        net: (&dyn Transport, Arc<dyn Liveness>),
        statuses: watch::Receiver<Statuses>,
        events: Arc<EventLog>,
    ) -> Result<ChitchatMembership, MembershipError> {
        let (transport, liveness) = net;
        let id = ChitchatId::new(info.name.clone(), info.generation, advertise);
        let fd = FailureDetectorConfig {
            phi_threshold: cfg.phi_threshold,
            sampling_window_size: PHI_WINDOW,
            max_interval: Duration::from_secs(10),
            initial_interval: cfg.gossip_interval,
            dead_node_grace_period: cfg.dead_node_grace,
        };
        let cc = ChitchatConfig {
            chitchat_id: id,
            cluster_id: cfg.cluster_id.clone(),
            gossip_interval: cfg.gossip_interval,
            listen_addr: advertise,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config: fd,
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let info_json = serde_json::to_string(&info)?;
        let heard = Heard::default();
        let opened = Opened::open(transport, advertise, cc.chitchat_id.clone(), heard.clone())
            .await
            .map_err(|e| MembershipError::Start(e.to_string()))?;
        let handle = spawn_chitchat(cc, vec![(keys::INFO.to_string(), info_json.clone())], &opened)
            .await
            .map_err(|e| MembershipError::Start(e.to_string()))?;
        let chitchat = handle.chitchat();
        let (info_tx, info_rx) = watch::channel(info.clone());
        let (leaving_tx, leaving_rx) = watch::channel(false);
        let (extra_tx, extra_rx) = watch::channel(BTreeMap::new());
        let first = ClusterView { self_name: info.name.clone(), ..Default::default() };
        let (view_tx, view_rx) = watch::channel(Arc::new(first));
        let tick = (cfg.gossip_interval / 2).max(Duration::from_millis(10));
        let (evidence_tx, evidence_rx) = tokio::sync::mpsc::channel(EVIDENCE_QUEUE);
        let (targets_tx, targets_rx) = watch::channel(Vec::new());
        let (majority_tx, majority_rx) = watch::channel(None);
        let tag = liveness_watch::cluster_tag(&cfg.cluster_id);
        let watches = liveness_watch::spawn(liveness, tag, targets_rx, evidence_tx, cfg.clock_ms);
        let handle = Arc::new(handle);
        let task = tokio::spawn(refresh_loop(
            Driver {
                chitchat: chitchat.clone(),
                handle: handle.clone(),
                cfg,
                tick,
                view_tx,
                events,
                targets_tx,
                majority_tx,
                heard,
            },
            Inputs { info: info_rx, statuses, leaving: leaving_rx, extra: extra_rx, evidence: evidence_rx },
            Published {
                pods: HashMap::new(),
                info: info_json,
                left: false,
                extra: BTreeMap::new(),
                claims: HashMap::new(),
            },
        ));
        Ok(ChitchatMembership {
            handle: Some(handle),
            chitchat,
            handles: Handles { view: view_rx, majority: majority_rx, info: info_tx, extra: extra_tx },
            leaving_tx,
            task,
            watches,
            interval: tick * 2,
        })
    }

    /// A function that gossips with an address now (peers found by
    /// discovery): one SYN makes the two nodes known to each other.
    pub fn contact_handle(&self) -> impl Fn(SocketAddr) + Send + 'static {
        let h = self.handle.clone();
        move |addr| {
            if let Some(h) = &h {
                let _ = h.gossip(addr);
            }
        }
    }

    /// Announces a graceful leave: peers see Left within a round trip.
    pub async fn leave(&self) {
        self.handles.info.send_modify(|i| i.schedulable = false);
        self.leaving_tx.send_replace(true);
        // Let the refresher write the key, then push it to every peer now.
        tokio::time::sleep(self.interval).await;
        let peers: Vec<SocketAddr> = {
            let c = self.chitchat.lock().await;
            let me = c.self_chitchat_id().clone();
            c.live_nodes().filter(|id| **id != me).map(|id| id.gossip_advertise_addr).collect()
        };
        if let Some(h) = &self.handle {
            for p in peers {
                let _ = h.gossip(p);
            }
        }
        tokio::time::sleep(self.interval * 2).await;
    }

    /// Stops at once, as a crash would (netsim): no leave, no goodbye.
    pub fn abort(&self) {
        self.task.abort();
        self.watches.abort();
        if let Some(h) = &self.handle {
            h.abort();
        }
    }

    pub async fn shutdown(mut self) {
        self.task.abort();
        self.watches.abort();
        if let Some(h) = self.handle.take() {
            let _ = h.initiate_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), h.termination_watcher()).await;
        }
    }
}

struct Inputs {
    info: watch::Receiver<NodeInfo>,
    statuses: watch::Receiver<Statuses>,
    leaving: watch::Receiver<bool>,
    extra: watch::Receiver<BTreeMap<String, String>>,
    evidence: tokio::sync::mpsc::Receiver<Report>,
}

/// What the refresh loop drives.
struct Driver {
    chitchat: Arc<Mutex<chitchat::Chitchat>>,
    handle: Arc<ChitchatHandle>,
    cfg: GossipConfig,
    tick: Duration,
    view_tx: watch::Sender<Arc<ClusterView>>,
    events: Arc<EventLog>,
    targets_tx: watch::Sender<Vec<Target>>,
    majority_tx: watch::Sender<Option<Instant>>,
    /// What peers' digests say of this node's heartbeat (`echo`).
    heard: Heard,
}

/// Most peers gossiped with in one tick to stay in touch with a majority
/// both ways (see `Detector::refresh`).
pub const REFRESH_FANOUT: usize = 2;

async fn refresh_loop(d: Driver, mut inputs: Inputs, mut published: Published) {
    let Driver { chitchat, handle, cfg, tick, view_tx, events, targets_tx, majority_tx, heard } = d;
    let mut beats = Beats::new(cfg.dead_after * 2);
    let forget_at = (cfg.clock)() + cfg.dead_node_grace.as_secs();
    let mut memory = Memory::remembering(cfg.remembered.iter().cloned(), forget_at);
    let mut detector =
        Detector::new(DetectorConfig { tick, suspect_after: cfg.suspect_after, dead_after: cfg.dead_after });
    // Parsed records per node id, refreshed only when its state changes.
    // (Fx hashing: these are looked up for every node on every round.)
    let mut parsed: FxHashMap<ChitchatId, (u64, Arc<Records>)> = FxHashMap::default();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frozen = cfg.frozen.clone();
    // What the last assembly was built from: when nothing the view depends on
    // changed, the round costs one walk and no allocation.
    let mut last_inputs: Option<(u64, NodeInfo)> = None;
    let mut evidence = Vec::new();
    let mut clock = ClockSync::starting_at(cfg.adjust_clock.as_ref().map_or(0, |a| a.initial));
    // How many peers this node watches: it decides on its clock with a
    // sample of each.
    let mut watched = 0;
    // Where this node's pushes start in the sorted peers: claimants of one
    // peer push to different parts of a large cluster.
    let mut pushes: usize = liveness_watch::ring_key(&inputs.info.borrow().name) as usize;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            Some(e) = inputs.evidence.recv() => evidence.push(e),
        }
        if let Some(f) = frozen.as_mut()
            && f.wait_for(|p| !*p).await.is_err()
        {
            frozen = None;
        }
        let now = Instant::now();
        let paused = detector.tick(now);
        let heard_now = std::mem::take(&mut *heard.lock().unwrap_or_else(|p| p.into_inner()));
        while let Ok(e) = inputs.evidence.try_recv() {
            evidence.push(e);
        }
        for (id, e) in take_reports(&mut evidence, &mut clock, cfg.adjust_clock.as_ref(), watched, &mut memory) {
            detector.evidence(&id, e);
        }
        if let Some(p) = paused {
            tracing::warn!(
                "this node was paused for {:.1}s (stopped, stalled or swapping): its peers' silence meanwhile is not held against them",
                p.as_secs_f64()
            );
        }
        let info = inputs.info.borrow().clone();
        let pods = inputs.statuses.borrow().clone();
        let leaving = *inputs.leaving.borrow();
        let extra = inputs.extra.borrow().clone();
        let now_unix = (cfg.clock)();
        let prev = view_tx.borrow().clone();
        let claims: HashMap<String, String> =
            detector.claims().into_iter().map(|(n, g)| (n.to_string(), encode_claim(g))).collect();
        let new_claim = claims.iter().any(|(n, c)| published.claims.get(n) != Some(c));
        let (raw, fp, push_to) = {
            let mut c = chitchat.lock().await;
            publish(&mut c, &info, &pods, leaving, &extra, &claims, &mut published);
            let me = c.self_chitchat_id().clone();
            beats.sample(u64::from(c.self_node_state().heartbeat()), now);
            let mut present = 0;
            for (id, st) in c.node_states().iter().filter(|(id, _)| **id != me) {
                present += 1;
                let key = (id.node_id.to_string(), id.generation_id);
                detector.heartbeat(&key, u64::from(st.heartbeat()));
                if let Some(at) = heard_now.get(&id.gossip_advertise_addr).and_then(|h| beats.date(*h)) {
                    detector.heard_by(&key, at);
                }
                let version = st.max_version();
                if parsed.get(id).is_none_or(|(v, _)| *v != version) {
                    parsed.insert(id.clone(), (version, Arc::new(super::assemble::parse_records(st.key_values()))));
                }
            }
            if detector.len() > present || parsed.len() > present {
                let ids: FxHashSet<&ChitchatId> = c.node_states().keys().collect();
                let gens: FxHashSet<(&str, u64)> = ids.iter().map(|i| (&*i.node_id, i.generation_id)).collect();
                detector.retain(|(n, g)| gens.contains(&(n.as_str(), *g)));
                parsed.retain(|id, _| ids.contains(id));
            }
            // Other nodes' claims, by the peer generation they name.
            let mut against: FxHashMap<(&str, u64), Vec<&str>> = FxHashMap::default();
            for (id, (_, r)) in parsed.iter().filter(|(id, _)| id.node_id != me.node_id) {
                for (peer, generation) in &r.claims {
                    against.entry((peer.as_str(), *generation)).or_default().push(&*id.node_id);
                }
            }
            let mut fp = rustc_hash::FxHasher::default();
            // The statuses by address: a newer map given a freed address
            // is taken for the old one until the next second (see
            // `last_inputs`, which SWIM uses). Keeping the `Arc` here made
            // tests/daemonset.rs's rolling update have two pods down at
            // once in 2 of 5 runs (0 of 12 as is): not understood yet.
            (now_unix, leaving, Arc::as_ptr(&pods)).hash(&mut fp);
            let mut raw = Vec::with_capacity(present);
            // A generation superseded by a newer one of the same node is gone:
            // judging it would only tell of its death again (a node started
            // after it died sees its last heartbeats arrive from several
            // peers, takes that for life, and marks it Dead anew).
            let mut newest: FxHashMap<&str, u64> = FxHashMap::default();
            for id in parsed.keys() {
                let g = newest.entry(&*id.node_id).or_default();
                *g = (*g).max(id.generation_id);
            }
            // How many nodes could observe a peer: the alive ones in the last
            // view; on a node that has no view yet (it just started), every
            // node gossip tells of, so that one claim cannot kill a peer
            // before this node knows how many could have claimed it.
            let alive_before = if prev.nodes.len() <= 1 {
                newest.keys().filter(|n| **n != &*me.node_id).count() + 1
            } else {
                prev.nodes.values().filter(|n| n.state.alive()).count().max(1)
            };
            for (id, (_, records)) in parsed.iter() {
                if newest.get(&*id.node_id).is_some_and(|g| *g > id.generation_id) {
                    continue;
                }
                let key: Id = (id.node_id.to_string(), id.generation_id);
                let mut claimants: Vec<&str> =
                    against.get(&(&*id.node_id, id.generation_id)).cloned().unwrap_or_default();
                claimants.sort_unstable();
                claimants.dedup();
                let was_alive = prev.nodes.get(&*id.node_id).is_some_and(|n| n.state.alive());
                let observers = alive_before - usize::from(was_alive);
                let Some(j) = detector.judge(&key, &claimants, observers) else { continue };
                (id, j.state, Arc::as_ptr(records)).hash(&mut fp);
                raw.push(RawNode { name: key.0, generation: key.1, state: j.state, records: records.clone() });
            }
            let push_to: Vec<SocketAddr> = if new_claim || paused.is_some() {
                let alive = |id: &ChitchatId| {
                    prev.nodes
                        .get(&*id.node_id)
                        .is_some_and(|n| n.state.alive() && n.info.generation == id.generation_id)
                };
                c.node_states().keys().filter(|id| **id != me && alive(id)).map(|id| id.gossip_advertise_addr).collect()
            } else {
                Vec::new()
            };
            (raw, fp.finish(), push_to)
        };
        push(&handle, push_to, &mut pushes);
        refresh(&handle, &detector, &view_tx.borrow(), memory.remembered.len());
        if last_inputs.as_ref().is_some_and(|(f, i)| *f == fp && *i == info) {
            majority_tx.send_replace(majority_until(&detector, &view_tx.borrow(), memory.remembered.len()));
            continue;
        }
        last_inputs = Some((fp, info.clone()));
        let (view, changes, _malformed) =
            assemble(Me { info: &info, pods: &pods, leaving }, Peers::All(&raw), now_unix, &mut memory);
        report_changes(&events, &info.name, changes);
        let targets = watch_targets(&view, memory.ring());
        clock.retain(|n| targets.iter().any(|t| t.name == n));
        watched = targets.len();
        targets_tx.send_if_modified(|cur| {
            if *cur == targets {
                false
            } else {
                *cur = targets;
                true
            }
        });
        majority_tx.send_replace(majority_until(&detector, &view, memory.remembered.len()));
        view_tx.send_if_modified(|cur| {
            if **cur == view {
                false
            } else {
                *cur = Arc::new(view);
                true
            }
        });
    }
}

/// Applies the clock samples among `reports` (a new correction when the
/// peers agree this clock is off) and returns the evidence among them.
pub(crate) fn take_reports(
    reports: &mut Vec<Report>,
    clock: &mut ClockSync,
    adjust: Option<&ClockAdjust>,
    watched: usize,
    memory: &mut Memory,
) -> Vec<(Id, super::detector::Evidence)> {
    let mut evidence = Vec::new();
    for r in reports.drain(..) {
        match r {
            Report::Evidence(id, e) => {
                tracing::info!(node = %id.0, generation = id.1, evidence = ?e, "liveness watch: the peer's process is gone");
                evidence.push((id, e));
            }
            Report::Clock { peer, peer_ms, sent_ms, heard_ms } => clock.sample(&peer, peer_ms, sent_ms, heard_ms),
        }
    }
    if let Some(adjust) = adjust
        && let Some(a) = clock.decide(watched)
    {
        (adjust.apply)(a.correction);
        // Times kept from before the step are moved with the clock.
        memory.shift(a.step / 1000);
        let (secs, dir) = ((a.correction as f64 / 1000.0).abs(), if a.correction < 0 { "ahead of" } else { "behind" });
        tracing::warn!(
            "this host's clock is {secs:.1} s {dir} its peers' (the median of the {} it watches): Shoal now runs on the cluster's time (state stamps, CronJob times, token expiry); set the host's clock right (NTP)",
            a.peers
        );
    }
    evidence
}

/// Logs the view's node state changes as events (this node's own first
/// appearance is not news).
pub(crate) fn report_changes(events: &EventLog, me: &str, changes: Vec<super::assemble::Change>) {
    for ch in changes {
        if ch.node == me && ch.from.is_none() {
            continue;
        }
        let warn = matches!(ch.to, super::view::NodeState::Dead | super::view::NodeState::Suspect);
        let msg = match ch.from {
            Some(f) => {
                format!("node {} is {} (was {}), generation {}", ch.node, ch.to.as_str(), f.as_str(), ch.generation)
            }
            None => format!("node {} joined: {}, generation {}", ch.node, ch.to.as_str(), ch.generation),
        };
        events.node(warn, &ch.node, ch.to.as_str(), msg);
    }
}

/// Until when this node may renew fenced pods' leases: it has a majority
/// in its view, and heard from one lately on the real clock. The majority
/// is of the same nodes as the view's: those in it that have not left, and
/// the `remembered` members not heard from since this node started.
fn majority_until(detector: &Detector, view: &ClusterView, remembered: usize) -> Option<Instant> {
    if !view.quorum {
        return None;
    }
    let known = view.nodes.values().filter(|n| n.state != super::view::NodeState::Left).count() + remembered;
    let peers: Vec<Id> = view
        .nodes
        .values()
        .filter(|n| n.state.alive() && n.info.name != view.self_name)
        .map(|n| (n.info.name.clone(), n.info.generation))
        .collect();
    detector.majority_until(peers.iter(), known)
}

/// Gossips now with the peers least recently in touch both ways, when too
/// few of a majority are fresh (`Detector::refresh`).
fn refresh(handle: &ChitchatHandle, detector: &Detector, view: &ClusterView, remembered: usize) {
    let known = view.nodes.values().filter(|n| n.state != super::view::NodeState::Left).count() + remembered;
    let alive: Vec<(Id, &str)> = view
        .nodes
        .values()
        .filter(|n| n.state.alive() && n.info.name != view.self_name)
        .map(|n| ((n.info.name.clone(), n.info.generation), n.info.gossip_addr.as_str()))
        .collect();
    let ids: Vec<&Id> = alive.iter().map(|(id, _)| id).collect();
    for id in detector.refresh(ids.into_iter(), known, REFRESH_FANOUT) {
        if let Some(addr) = alive.iter().find(|(i, _)| i == id).and_then(|(_, a)| a.parse::<SocketAddr>().ok()) {
            let _ = handle.gossip(addr);
        }
    }
}

/// Gossips with up to `PUSH_FANOUT` of `peers` now (a new claim, or this
/// node back from a pause), rotating through them over successive pushes.
fn push(handle: &ChitchatHandle, mut peers: Vec<SocketAddr>, pushes: &mut usize) {
    if peers.is_empty() {
        return;
    }
    peers.sort_unstable();
    let n = peers.len();
    for i in 0..n.min(PUSH_FANOUT) {
        let _ = handle.gossip(peers[(*pushes + i) % n]);
    }
    *pushes = pushes.wrapping_add(PUSH_FANOUT);
}

/// The peers this node watches (see `watch`), from its view.
pub(crate) fn watch_targets(view: &ClusterView, ring: &liveness_watch::Ring) -> Vec<Target> {
    ring.targets(&view.self_name)
        .into_iter()
        .filter_map(|name| {
            let n = view.nodes.get(name)?;
            Some(Target {
                name: name.to_string(),
                generation: n.info.generation,
                addr: n.info.gossip_addr.parse().ok()?,
            })
        })
        .collect()
}

/// Writes this node's keys that changed since the last round.
fn publish(
    c: &mut chitchat::Chitchat,
    info: &NodeInfo,
    pods: &Statuses,
    leaving: bool,
    extra: &BTreeMap<String, String>,
    claims: &HashMap<String, String>,
    p: &mut Published,
) {
    let st = c.self_node_state();
    if let Ok(j) = serde_json::to_string(info)
        && j != p.info
    {
        st.set(keys::INFO, &j);
        p.info = j;
    }
    if leaving && !p.left {
        st.set(keys::LEFT, "1");
        p.left = true;
    }
    for (k, v) in extra {
        if p.extra.get(k) != Some(v) {
            st.set(k, v);
        }
    }
    p.extra = extra.clone();
    for (id, s) in pods.iter() {
        let Ok(j) = serde_json::to_string(&s.summary()) else { continue };
        if p.pods.get(id) != Some(&j) {
            st.set(format!("{}{id}", keys::POD), &j);
            p.pods.insert(id.clone(), j);
        }
    }
    for (peer, c) in claims {
        if p.claims.get(peer) != Some(c) {
            st.set(format!("{}{peer}", keys::DOWN), c);
        }
    }
    for peer in p.claims.keys().filter(|n| !claims.contains_key(*n)) {
        st.delete(&format!("{}{peer}", keys::DOWN));
    }
    p.claims = claims.clone();
    let gone: Vec<String> = p.pods.keys().filter(|id| !pods.contains_key(*id)).cloned().collect();
    for id in gone {
        st.delete(&format!("{}{id}", keys::POD));
        p.pods.remove(&id);
    }
}
