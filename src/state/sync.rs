//! Replication of the desired state between nodes: the responder, the
//! anti-entropy loop, and the writer that acknowledges only once enough
//! nodes hold a write durably.
//!
//! I/O goes through the `Rpc` trait (QUIC on a real node, a simulated
//! network in netsim); what to send and what to merge comes from `protocol`
//! and `merge`, and every remote entry is validated by `StateDb`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imbl::ordmap::DiffItem;
use tokio::sync::watch;

use super::protocol::{self, SyncMsg};
use super::writer::{WriteError, Writer};
use super::{Entry, Key, StateDb};
use crate::membership::view::{ClusterView, NodeView};
use crate::model::node::NodeName;

/// Most peers an eager push goes to; the rest learn by anti-entropy.
pub const MAX_PUSH_FANOUT: usize = 16;

/// A request could not reach a peer, or got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RpcError(pub String);

/// A request/response channel to a peer's replication service (QUIC on a
/// node, the simulated network in netsim).
#[async_trait]
pub trait Rpc: Send + Sync {
    async fn call(&self, peer: SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, RpcError>;
}

/// Why an anti-entropy round with a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{peer}: {source}")]
    Unreachable { peer: SocketAddr, source: RpcError },
    #[error("{peer}: {message}")]
    Refused { peer: SocketAddr, message: String },
    #[error("{peer}: malformed reply: {message}")]
    Malformed { peer: SocketAddr, message: String },
    #[error("{peer}: unexpected reply to {request}")]
    Unexpected { peer: SocketAddr, request: &'static str },
    #[error(transparent)]
    Run(#[from] super::db::RunError),
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
}

/// Answers peers' replication messages.
pub struct SyncService {
    pub db: Arc<StateDb>,
}

impl SyncService {
    /// Answers one message. Malformed input gets an `Error` reply (and is
    /// counted by the caller); nothing is applied from it.
    pub fn answer(&self, request: &[u8]) -> SyncMsg {
        Self::answer_with(&self.db, request)
    }

    fn answer_with(db: &StateDb, request: &[u8]) -> SyncMsg {
        let msg = match protocol::decode(request) {
            Ok(m) => m,
            Err(e) => {
                db.counters.remote_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return SyncMsg::Error { message: e.to_string() };
            }
        };
        match msg {
            SyncMsg::Push { entries } => {
                let n = entries.len() as u32;
                match db.merge_remote(entries) {
                    Ok(out) => {
                        SyncMsg::PushAck { applied: n - out.refused.len() as u32, refused: out.refused.len() as u32 }
                    }
                    Err(e) => SyncMsg::Error { message: format!("cannot store: {e}") },
                }
            }
            SyncMsg::Digest { layout, root, .. } => {
                if layout != protocol::layout() {
                    return SyncMsg::Error { message: format!("unknown bucket layout {layout}") };
                }
                if db.summary().0 == root { SyncMsg::InSync } else { SyncMsg::Buckets { buckets: db.bucket_digests() } }
            }
            SyncMsg::Stamps { buckets, stamps } => {
                if buckets.iter().any(|b| *b as usize >= super::digest::BUCKETS) {
                    return SyncMsg::Error { message: "bucket index out of range".into() };
                }
                let keys: Vec<Key> = db.stamps_in_buckets(&buckets).into_iter().map(|(k, _)| k).collect();
                let mine = db.entries_for(&keys).into_iter().map(|e| (e.key.clone(), e)).collect();
                let (send, want, stale) = protocol::diff(&stamps, &mine, db.watermark());
                let (entries, truncated) = protocol::take_bounded(send);
                SyncMsg::Diff { entries, want, stale, watermark: db.watermark(), truncated }
            }
            other => SyncMsg::Error { message: format!("unexpected message {:?}", std::mem::discriminant(&other)) },
        }
    }
}

impl SyncService {
    /// Answers one encoded request with an encoded reply (off the async
    /// threads when the store is on disk).
    pub async fn handle(&self, request: Vec<u8>) -> Vec<u8> {
        let reply = super::db::run(&self.db, move |db| SyncService::answer_with(db, &request))
            .await
            .unwrap_or_else(|e| SyncMsg::Error { message: e.to_string() });
        protocol::encode(&reply)
    }
}

async fn call(rpc: &dyn Rpc, peer: SocketAddr, m: &SyncMsg) -> Result<SyncMsg, SyncError> {
    let b = rpc.call(peer, protocol::encode(m)).await.map_err(|source| SyncError::Unreachable { peer, source })?;
    match protocol::decode(&b) {
        Ok(SyncMsg::Error { message }) => Err(SyncError::Refused { peer, message }),
        Ok(m) => Ok(m),
        Err(e) => Err(SyncError::Malformed { peer, message: e.to_string() }),
    }
}

/// Outcome of one anti-entropy round.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// More differences remain (a message limit was hit).
    pub more: bool,
}

/// One anti-entropy round with `peer`.
pub async fn anti_entropy(db: &Arc<StateDb>, rpc: &dyn Rpc, peer: SocketAddr) -> Result<Round, SyncError> {
    db.counters.ae_rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (root, entries) = db.summary();
    let reply =
        call(rpc, peer, &SyncMsg::Digest { layout: protocol::layout(), root, entries, watermark: db.watermark() })
            .await?;
    let theirs = match reply {
        SyncMsg::InSync => return Ok(Round::default()),
        SyncMsg::Buckets { buckets } => buckets,
        _ => return Err(SyncError::Unexpected { peer, request: "Digest" }),
    };
    let differing = {
        let mine = db.bucket_digests();
        mine.iter().zip(&theirs).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i as u16).collect::<Vec<_>>()
    };
    let mut stamps = db.stamps_in_buckets(&differing);
    let more_stamps = stamps.len() > protocol::MAX_ENTRIES_PER_MESSAGE * 8;
    stamps.truncate(protocol::MAX_ENTRIES_PER_MESSAGE * 8);
    let (entries, want, stale, watermark, truncated) =
        match call(rpc, peer, &SyncMsg::Stamps { buckets: differing, stamps }).await? {
            SyncMsg::Diff { entries, want, stale, watermark, truncated } => {
                (entries, want, stale, watermark, truncated)
            }
            _ => return Err(SyncError::Unexpected { peer, request: "Stamps" }),
        };
    let mut round = Round { more: truncated || more_stamps };
    let (merged, dropped) = super::db::run(db, move |db| {
        let dropped = db.drop_beyond_horizon(&stale, watermark)?;
        db.merge_remote(entries).map(|m| (m, dropped))
    })
    .await??;
    if dropped > 0 {
        tracing::debug!(%peer, dropped, "dropped entries past the tombstone horizon");
    }
    if !merged.refused.is_empty() {
        tracing::warn!(%peer, refused = merged.refused.len(), "refused entries from a peer during anti-entropy");
    }
    let (push, more_push) = protocol::take_bounded(db.entries_for(&want));
    round.more |= more_push;
    if !push.is_empty() {
        call(rpc, peer, &SyncMsg::Push { entries: push }).await?;
    }
    Ok(round)
}

/// Alive peers' (name, gossip address, state-digest key), this node excluded.
fn peers(view: &ClusterView) -> Vec<(String, SocketAddr)> {
    view.nodes
        .values()
        .filter(|n| n.state.alive() && n.info.name != view.self_name)
        .filter_map(|n| n.info.gossip_addr.parse().ok().map(|a| (n.info.name.clone(), a)))
        .collect()
}

/// The peers anti-entropy picks from, gathered from one view for one
/// digest of this node's, and followed from view to view by what changed
/// between them: at rest a round walks no view at all (in a cluster of
/// thousands, what keeps a round cheap), and while views change a round
/// costs what changed (a pass over every node at each change was 2 % of a
/// 1,000-node netsim run).
#[derive(Default)]
struct Candidates {
    view: Option<Arc<ClusterView>>,
    mine: String,
    /// Alive peers whose gossiped digest differs from `mine` (few, but
    /// while a write spreads), in name order.
    differing: BTreeMap<NodeName, SocketAddr>,
    /// How many alive peers there are.
    alive: usize,
}

impl Candidates {
    /// The peer of anti-entropy round `round`: a random alive peer whose
    /// gossiped digest differs from `mine`; when none does, every 5th round
    /// a random alive peer (an in-sync check covers digests gossip has not
    /// carried yet).
    fn pick(
        &mut self,
        view: &Arc<ClusterView>,
        mine: &str,
        round: u64,
        rng: &mut impl rand::Rng,
    ) -> Option<SocketAddr> {
        self.follow(view, mine);
        if !self.differing.is_empty() {
            return self.differing.values().nth(rng.random_range(0..self.differing.len())).copied();
        }
        if !round.is_multiple_of(5) || self.alive == 0 {
            return None;
        }
        let i = rng.random_range(0..self.alive);
        alive_peers(view).nth(i)?.info.gossip_addr.parse().ok()
    }

    /// Brings the candidates to `view` and `mine`: by what changed since
    /// the last view, or afresh for another digest of this node's.
    fn follow(&mut self, view: &Arc<ClusterView>, mine: &str) {
        let last = match self.view.take() {
            Some(last) if self.mine == mine && last.self_name == view.self_name => last,
            _ => {
                *self = Candidates::of(view, mine);
                return;
            }
        };
        if !Arc::ptr_eq(&last, view) {
            for d in last.nodes.diff(&view.nodes) {
                let (name, old, new) = match d {
                    DiffItem::Add(name, n) => (name, None, Some(n)),
                    DiffItem::Remove(name, o) => (name, Some(o), None),
                    DiffItem::Update { old: (name, o), new: (_, n) } => (name, Some(o), Some(n)),
                };
                if old.is_some_and(|o| is_peer(o, view)) {
                    self.alive -= 1;
                    self.differing.remove(name);
                }
                if let Some(n) = new.filter(|n| is_peer(n, view)) {
                    self.alive += 1;
                    if let Some(addr) = differs(n, mine) {
                        self.differing.insert(name.clone(), addr);
                    }
                }
            }
        }
        self.view = Some(view.clone());
    }

    fn of(view: &Arc<ClusterView>, mine: &str) -> Candidates {
        let mut c = Candidates { view: Some(view.clone()), mine: mine.to_string(), ..Default::default() };
        for (name, n) in view.nodes.iter().filter(|(_, n)| is_peer(n, view)) {
            c.alive += 1;
            if let Some(addr) = differs(n, mine) {
                c.differing.insert(name.clone(), addr);
            }
        }
        c
    }
}

/// An alive node of `view` other than this one.
fn is_peer(n: &NodeView, view: &ClusterView) -> bool {
    n.state.alive() && n.info.name != view.self_name
}

/// The gossip address of a peer whose gossiped digest differs from `mine`.
fn differs(n: &NodeView, mine: &str) -> Option<SocketAddr> {
    (!n.state_digest.is_empty() && *n.state_digest != *mine).then(|| n.info.gossip_addr.parse().ok()).flatten()
}

/// The alive nodes of `view` but this one.
fn alive_peers(view: &ClusterView) -> impl Iterator<Item = &NodeView> {
    view.nodes.values().filter(|n| is_peer(n, view))
}

/// Runs anti-entropy every `interval` with a random alive peer (preferring
/// peers whose gossiped digest differs from ours), and keeps going at once
/// while a round reports more to do. Also collects old tombstones.
pub async fn run_anti_entropy(
    db: Arc<StateDb>,
    rpc: Arc<dyn Rpc>,
    view: watch::Receiver<Arc<ClusterView>>,
    interval: Duration,
    horizon: Duration,
    seed: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    let mut candidates = Candidates::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        n += 1;
        if n % 10 == 1 {
            let now = db.now().time;
            let cutoff = now.saturating_sub(uhlc::NTP64::from(horizon).as_u64());
            match super::db::run(&db, move |db| db.collect_tombstones(cutoff)).await {
                Ok(Ok(k)) if k > 0 => tracing::info!(collected = k, "collected tombstones older than the horizon"),
                Ok(Err(e)) => tracing::warn!(error = %e, "tombstone collection failed"),
                _ => {}
            }
        }
        let v = view.borrow().clone();
        let mine = hex_root(&db);
        let Some(pick) = candidates.pick(&v, &mine, n, &mut rng) else { continue };
        for _ in 0..100 {
            match anti_entropy(&db, rpc.as_ref(), pick).await {
                Ok(r) if r.more => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(peer = %pick, error = %e, "anti-entropy round failed");
                    break;
                }
            }
        }
    }
}

/// The short digest a node gossips about its state.
pub fn hex_root(db: &StateDb) -> String {
    let (root, n) = db.summary();
    format!("{}:{n}", &blake3::Hash::from(root).to_hex()[..16])
}

/// Writes durably here, then on `write_replicas - 1` alive peers before
/// acknowledging. A node with no alive peer acknowledges alone (a one-node
/// cluster, or the last node standing: the write spreads when peers return).
pub struct ReplicatedWriter {
    /// Orders pushes (seeded in netsim).
    pub rng: std::sync::Mutex<rand::rngs::StdRng>,
    pub db: Arc<StateDb>,
    pub rpc: Arc<dyn Rpc>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub write_replicas: u32,
    pub timeout: Duration,
}

#[async_trait]
impl Writer for ReplicatedWriter {
    async fn write(&self, changes: Vec<(Key, Option<Vec<u8>>)>) -> Result<Vec<Entry>, WriteError> {
        let entries = super::db::run(&self.db, move |db| db.write(changes)).await??;
        let mut targets = peers(&self.view.borrow());
        if targets.is_empty() {
            return Ok(entries);
        }
        // Random order so that pushes spread the load.
        {
            use rand::Rng;
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            for i in (1..targets.len()).rev() {
                targets.swap(i, rng.random_range(0..=i));
            }
        }
        targets.truncate(MAX_PUSH_FANOUT);
        let need = (self.write_replicas.saturating_sub(1) as usize).min(targets.len());
        let (tx, mut rx) = tokio::sync::mpsc::channel(targets.len());
        let msg = protocol::encode(&SyncMsg::Push { entries: entries.clone() });
        for (_, addr) in targets {
            let (rpc, msg, tx) = (self.rpc.clone(), msg.clone(), tx.clone());
            tokio::spawn(async move {
                let ok = match rpc.call(addr, msg).await.map(|b| protocol::decode(&b)) {
                    Ok(Ok(SyncMsg::PushAck { refused: 0, .. })) => true,
                    other => {
                        tracing::debug!(peer = %addr, reply = ?other.map(|r| r.map(|m| std::mem::discriminant(&m))), "push not acknowledged");
                        false
                    }
                };
                let _ = tx.send(ok).await;
            });
        }
        drop(tx);
        let mut acks = 0;
        let deadline = tokio::time::Instant::now() + self.timeout;
        while acks < need {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(true)) => acks += 1,
                Ok(Some(false)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if acks < need {
            return Err(WriteError::Replicas {
                reached: 1 + acks as u32,
                wanted: self.write_replicas,
                timeout: self.timeout,
            });
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;

    use super::*;
    use crate::membership::view::{NodeInfo, NodeState, NodeView};

    fn view(peers: &[(&str, NodeState, &str)]) -> ClusterView {
        let mut v = ClusterView { self_name: "me".into(), ..Default::default() };
        for (i, (name, state, digest)) in peers.iter().enumerate() {
            let info =
                NodeInfo { name: (*name).into(), gossip_addr: format!("127.0.0.{}:7421", i + 1), ..Default::default() };
            let node = NodeView {
                info: Arc::new(info),
                state: *state,
                since: 0,
                pods: Default::default(),
                state_digest: (*digest).into(),
                extra: Default::default(),
            };
            v.nodes.insert((*name).into(), node);
        }
        v
    }

    #[test]
    fn anti_entropy_picks_a_live_peer_that_differs_and_at_rest_checks_one_every_fifth_round() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut c = Candidates::default();
        let v = Arc::new(view(&[
            ("me", NodeState::Ready, "x"),
            ("same", NodeState::Ready, "mine"),
            ("differs", NodeState::Ready, "other"),
            ("dead", NodeState::Dead, "other"),
            ("unknown", NodeState::Ready, ""),
        ]));
        let differs: SocketAddr = "127.0.0.3:7421".parse().unwrap();
        for round in 1..50 {
            assert_eq!(c.pick(&v, "mine", round, &mut rng), Some(differs), "round {round}");
        }
        // This node's digest moved to the other's: now `same` differs.
        let same: SocketAddr = "127.0.0.2:7421".parse().unwrap();
        assert_eq!(c.pick(&v, "other", 1, &mut rng), Some(same), "the peers are gathered again for a new digest");
        // Everyone agrees: only every fifth round, and any live peer but this node.
        let v = Arc::new(view(&[
            ("me", NodeState::Ready, "x"),
            ("a", NodeState::Ready, "mine"),
            ("b", NodeState::Suspect, "mine"),
            ("c", NodeState::Dead, "mine"),
        ]));
        let mut seen = std::collections::BTreeSet::new();
        for round in 1..200 {
            let pick = c.pick(&v, "mine", round, &mut rng);
            assert_eq!(pick.is_some(), round % 5 == 0, "round {round}");
            seen.extend(pick);
        }
        let live: std::collections::BTreeSet<SocketAddr> =
            ["127.0.0.2:7421", "127.0.0.3:7421"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(seen, live, "both live peers are checked, never this node or a dead one");
        assert_eq!(c.pick(&Arc::new(view(&[("me", NodeState::Ready, "x")])), "mine", 5, &mut rng), None);
    }

    #[test]
    fn candidates_followed_from_view_to_view_equal_those_gathered_afresh() {
        use rand::Rng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead, NodeState::Left];
        let digests = ["", "mine", "other", "third"];
        let mut v = view(&[("me", NodeState::Ready, "mine")]);
        let mut c = Candidates::default();
        let (mut mine, mut followed) = ("mine", 0);
        for step in 0..3_000 {
            // A few nodes change between two views (a big change now and then).
            let changes = if rng.random_bool(0.05) { 40 } else { rng.random_range(0..4) };
            for _ in 0..changes {
                let name = format!("n{}", rng.random_range(0..60));
                if rng.random_bool(0.2) {
                    v.nodes.remove(name.as_str());
                    continue;
                }
                let state = states[rng.random_range(0..states.len())];
                let digest = digests[rng.random_range(0..digests.len())];
                let one = view(&[(name.as_str(), state, digest)]);
                let mut n = one.nodes.get(name.as_str()).unwrap().clone();
                let mut info = (*n.info).clone();
                info.gossip_addr = format!("127.0.1.{}:7421", rng.random_range(1..200));
                n.info = Arc::new(info);
                v.nodes.insert(name.as_str().into(), n);
            }
            if rng.random_bool(0.02) {
                mine = digests[rng.random_range(1..digests.len())];
            }
            let shared = Arc::new(v.clone());
            followed += usize::from(c.view.as_ref().is_some_and(|l| c.mine == mine && !Arc::ptr_eq(l, &shared)));
            c.follow(&shared, mine);
            let fresh = Candidates::of(&shared, mine);
            assert_eq!(c.alive, fresh.alive, "step {step}: alive peers");
            assert_eq!(c.differing, fresh.differing, "step {step}: differing peers");
            assert!(Arc::ptr_eq(c.view.as_ref().unwrap(), &shared));
        }
        assert!(followed > 2_000, "most steps followed a change ({followed})");
    }
}
