//! The membership service: runs chitchat (scuttlebutt gossip with a
//! phi-accrual failure detector) over a `Transport`, publishes this node's
//! small records (identity, capacity, pod statuses), and assembles the
//! `ClusterView` every few milliseconds.
//!
//! Time comes from tokio (virtual in netsim); the transport is QUIC on a real
//! node and a simulated network in netsim. Graceful leave sets a `left` key
//! and pushes it to every live peer at once, so peers see Left without waiting
//! for the failure detector.

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

use super::assemble::{Me, Memory, RawNode, Rules, assemble, keys};
use super::view::{ClusterView, NodeInfo};
use crate::events::EventLog;
use crate::model::status::Statuses;

/// Settings of the gossip layer.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    pub suspect_after: Duration,
    pub dead_node_grace: Duration,
    pub seeds: Vec<String>,
    /// Unix seconds now (the system clock, or virtual time in netsim).
    pub clock: fn() -> u64,
}

pub struct Membership {
    handle: Option<Arc<ChitchatHandle>>,
    chitchat: Arc<Mutex<chitchat::Chitchat>>,
    view_rx: watch::Receiver<Arc<ClusterView>>,
    info_tx: watch::Sender<NodeInfo>,
    leaving_tx: watch::Sender<bool>,
    extra_tx: watch::Sender<BTreeMap<String, String>>,
    task: JoinHandle<()>,
    interval: Duration,
}

struct Published {
    pods: HashMap<String, String>,
    info: String,
    left: bool,
    extra: BTreeMap<String, String>,
}

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

impl Membership {
    pub async fn start(
        cfg: GossipConfig,
        info: NodeInfo,
        advertise: SocketAddr,
        transport: &dyn Transport,
        statuses: watch::Receiver<Statuses>,
        events: Arc<EventLog>,
    ) -> Result<Membership, MembershipError> {
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
        let handle = spawn_chitchat(cc, vec![(keys::INFO.to_string(), info_json.clone())], transport)
            .await
            .map_err(|e| MembershipError::Start(e.to_string()))?;
        let chitchat = handle.chitchat();
        let (info_tx, info_rx) = watch::channel(info.clone());
        let (leaving_tx, leaving_rx) = watch::channel(false);
        let (extra_tx, extra_rx) = watch::channel(BTreeMap::new());
        let first = ClusterView { self_name: info.name.clone(), ..Default::default() };
        let (view_tx, view_rx) = watch::channel(Arc::new(first));
        let tick = (cfg.gossip_interval / 2).max(Duration::from_millis(10));
        let task = tokio::spawn(refresh_loop(
            chitchat.clone(),
            cfg,
            tick,
            Inputs { info: info_rx, statuses, leaving: leaving_rx, extra: extra_rx },
            view_tx,
            events,
            Published { pods: HashMap::new(), info: info_json, left: false, extra: BTreeMap::new() },
        ));
        Ok(Membership {
            handle: Some(Arc::new(handle)),
            chitchat,
            view_rx,
            info_tx,
            leaving_tx,
            extra_tx,
            task,
            interval: tick * 2,
        })
    }

    pub fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_rx.clone()
    }

    /// A handle to update this node's record from another task.
    pub fn info_sender(&self) -> watch::Sender<NodeInfo> {
        self.info_tx.clone()
    }

    /// A function that sets extra keys from another task.
    pub fn key_setter(&self) -> impl Fn(&str, String) + Send + 'static {
        let tx = self.extra_tx.clone();
        move |key, value| {
            tx.send_if_modified(|m| m.insert(key.to_string(), value.clone()).as_ref() != Some(&value));
        }
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
        self.info_tx.send_modify(|i| i.schedulable = false);
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
        if let Some(h) = &self.handle {
            h.abort();
        }
    }

    pub async fn shutdown(mut self) {
        self.task.abort();
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
}

async fn refresh_loop(
    chitchat: Arc<Mutex<chitchat::Chitchat>>,
    cfg: GossipConfig,
    tick: Duration,
    inputs: Inputs,
    view_tx: watch::Sender<Arc<ClusterView>>,
    events: Arc<EventLog>,
    mut published: Published,
) {
    let mut memory = Memory::default();
    // (Fx hashing: these are looked up for every node on every round.)
    let mut heartbeats: FxHashMap<ChitchatId, (u64, Instant)> = FxHashMap::default();
    // Parsed records per node id, refreshed only when its state changes.
    let mut parsed: FxHashMap<ChitchatId, (u64, Arc<super::assemble::Records>)> = FxHashMap::default();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rules = Rules { suspect_after: cfg.suspect_after };
    // What the last assembly was built from: when nothing the view depends on
    // changed, the round costs one walk and no allocation.
    let mut last_inputs: Option<(u64, NodeInfo)> = None;
    loop {
        interval.tick().await;
        let info = inputs.info.borrow().clone();
        let pods = inputs.statuses.borrow().clone();
        let leaving = *inputs.leaving.borrow();
        let extra = inputs.extra.borrow().clone();
        let now = Instant::now();
        let now_unix = (cfg.clock)();
        let raw: Vec<RawNode> = {
            let mut c = chitchat.lock().await;
            publish(&mut c, &info, &pods, leaving, &extra, &mut published);
            let live: FxHashSet<&ChitchatId> = c.live_nodes().collect();
            let me = c.self_chitchat_id();
            let mut fp = rustc_hash::FxHasher::default();
            (now_unix, leaving, Arc::as_ptr(&pods)).hash(&mut fp);
            let mut present = 0;
            for (id, st) in c.node_states().iter().filter(|(id, _)| *id != me) {
                present += 1;
                let hb_num = u64::from(st.heartbeat());
                let last_heartbeat = match heartbeats.get_mut(id) {
                    Some(e) => {
                        if e.0 != hb_num {
                            *e = (hb_num, now);
                        }
                        e.1
                    }
                    None => {
                        heartbeats.insert(id.clone(), (hb_num, now));
                        now
                    }
                };
                let version = st.max_version();
                let records = match parsed.get(id) {
                    Some((v, r)) if *v == version => r.clone(),
                    _ => {
                        let r = Arc::new(super::assemble::parse_records(st.key_values()));
                        parsed.insert(id.clone(), (version, r.clone()));
                        r
                    }
                };
                let suspect = now.saturating_duration_since(last_heartbeat) > rules.suspect_after;
                (id, live.contains(id), Arc::as_ptr(&records), suspect).hash(&mut fp);
            }
            let fp = fp.finish();
            if heartbeats.len() > present {
                let ids: FxHashSet<&ChitchatId> = c.node_states().keys().collect();
                heartbeats.retain(|id, _| ids.contains(id));
                parsed.retain(|id, _| ids.contains(id));
            }
            if last_inputs.as_ref().is_some_and(|(f, i)| *f == fp && *i == info) {
                continue;
            }
            last_inputs = Some((fp, info.clone()));
            c.node_states()
                .iter()
                .filter(|(id, _)| *id != me)
                .filter_map(|(id, _)| {
                    let records = parsed.get(id)?.1.clone();
                    Some(RawNode {
                        name: id.node_id.to_string(),
                        generation: id.generation_id,
                        live: live.contains(id),
                        records,
                        last_heartbeat: heartbeats.get(id)?.1,
                    })
                })
                .collect()
        };
        let (view, changes, _malformed) =
            assemble(Me { info: &info, pods: &pods, leaving }, &raw, rules, now, now_unix, &mut memory);
        for ch in changes {
            if ch.node == info.name && ch.from.is_none() {
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

/// Writes this node's keys that changed since the last round.
fn publish(
    c: &mut chitchat::Chitchat,
    info: &NodeInfo,
    pods: &Statuses,
    leaving: bool,
    extra: &BTreeMap<String, String>,
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
        let Ok(j) = serde_json::to_string(s) else { continue };
        if p.pods.get(id) != Some(&j) {
            st.set(format!("{}{id}", keys::POD), &j);
            p.pods.insert(id.clone(), j);
        }
    }
    let gone: Vec<String> = p.pods.keys().filter(|id| !pods.contains_key(*id)).cloned().collect();
    for id in gone {
        st.delete(&format!("{}{id}", keys::POD));
        p.pods.remove(&id);
    }
}
