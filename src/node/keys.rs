//! The cluster data keys between nodes, and what the agent reads through
//! them. Wiring: the keys (`state::keys`) joined to the network.
//!
//! Nodes exchange key rings (JSON) on QUIC streams of kind `Keys`, which the
//! network accepts only on mutually authenticated peer connections (a
//! certificate of the cluster CA): a node sends its ring, the peer merges
//! it and answers with its own, and the node merges that. Rings merge by
//! union, so any order of exchanges converges. A node exchanges with one
//! live peer every 20 s, with every live peer at once when it lacks a key
//! it needs (a Secret it cannot open, a write with no key), and every
//! second while it holds no key and the cluster holds Secrets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::exec::prepare::ConfigSource;
use crate::api::secrets::KeyPeers;
use crate::membership::view::ClusterView;
use crate::metrics::Metrics;
use crate::model::Kind;
use crate::model::config::{ConfigError, Source, Values};
use crate::net::quic::{Handler, Net, StreamKind};
use crate::state::StateDb;
use crate::state::keys::DataKeys;
use crate::state::seal::KeyRing;

/// How often a node that holds its keys checks one peer for news.
const PERIOD: Duration = Duration::from_secs(20);
/// How often a node without a key it needs asks every peer.
const WANTING: Duration = Duration::from_secs(1);
/// How long one exchange may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Answers peers' exchanges: merges their ring, answers with ours.
pub struct KeysHandler {
    pub keys: Arc<DataKeys>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Handler for KeysHandler {
    async fn handle(&self, peer: SocketAddr, request: Vec<u8>) -> Vec<u8> {
        match serde_json::from_slice::<KeyRing>(&request) {
            Ok(theirs) => {
                match self.keys.merge(&theirs) {
                    Ok(true) => tracing::info!(%peer, keys = ?self.keys.ring(), "received data keys from a peer"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(%peer, error = %e, "cannot save the data keys a peer sent"),
                }
                serde_json::to_vec(&self.keys.ring()).unwrap_or_default()
            }
            Err(e) => {
                self.metrics.refused("keys");
                tracing::warn!(%peer, error = %e, "refused a malformed data key exchange");
                Vec::new()
            }
        }
    }
}

/// Exchanges this node's ring with its peers.
pub struct KeyExchange {
    pub net: Arc<Net>,
    pub keys: Arc<DataKeys>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub db: Arc<StateDb>,
}

impl KeyExchange {
    fn live_peers(&self) -> Vec<SocketAddr> {
        let v = self.view.borrow().clone();
        v.nodes
            .values()
            .filter(|n| n.state.alive() && n.info.name != v.self_name)
            .filter_map(|n| n.info.gossip_addr.parse().ok())
            .collect()
    }

    /// One exchange with `peer`; whether it answered.
    async fn with(&self, peer: SocketAddr) -> bool {
        let Ok(req) = serde_json::to_vec(&self.keys.ring()) else { return false };
        let answer = tokio::time::timeout(TIMEOUT, self.net.request(peer, StreamKind::Keys, &req)).await;
        let bytes = match answer {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "data key exchange failed");
                return false;
            }
            Err(_) => return false,
        };
        match serde_json::from_slice::<KeyRing>(&bytes) {
            Ok(theirs) => {
                match self.keys.merge(&theirs) {
                    Ok(true) => tracing::info!(%peer, keys = ?self.keys.ring(), "received data keys from a peer"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(%peer, error = %e, "cannot save the data keys a peer sent"),
                }
                true
            }
            Err(_) => {
                tracing::warn!(%peer, "a peer answered a data key exchange with garbage");
                false
            }
        }
    }

    /// Exchanges with the given peers at once; returns how many answered.
    async fn with_each(&self, peers: &[SocketAddr]) -> usize {
        let mut set = tokio::task::JoinSet::new();
        for p in peers.iter().copied() {
            let me = KeyExchange {
                net: self.net.clone(),
                keys: self.keys.clone(),
                view: self.view.clone(),
                db: self.db.clone(),
            };
            set.spawn(async move { me.with(p).await });
        }
        let mut answered = 0;
        while let Some(r) = set.join_next().await {
            answered += usize::from(r.unwrap_or(false));
        }
        answered
    }

    /// Whether this node needs keys it does not hold: none at all while
    /// the cluster holds Secrets, or one a stored Secret names.
    fn lacking(&self) -> bool {
        let snap = self.db.snapshot();
        let mut secrets = snap.of_kind(Kind::Secret).peekable();
        if self.keys.usable() == 0 {
            return secrets.peek().is_some();
        }
        secrets.any(|o| match &o.object {
            crate::model::Object::Secret(s) => s.sealed.as_ref().is_some_and(|x| !self.keys.holds(&x.key)),
            _ => false,
        })
    }

    /// Runs the exchanges until `shutdown`.
    pub fn spawn(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                let wanting = self.lacking();
                let wait = if wanting { WANTING } else { PERIOD };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.keys.wanted() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                let peers = self.live_peers();
                if peers.is_empty() {
                    continue;
                }
                if self.lacking() {
                    self.with_each(&peers).await;
                } else {
                    n += 1;
                    let p = peers[(n as usize) % peers.len()];
                    self.with(p).await;
                }
            }
        })
    }
}

#[async_trait]
impl KeyPeers for KeyExchange {
    async fn exchange_all(&self) -> (usize, usize) {
        let peers = self.live_peers();
        (self.with_each(&peers).await, peers.len())
    }
}

/// What pods read ConfigMaps and Secrets through: the desired state, with
/// Secrets opened by this node's data keys (an error, retried by the
/// agent, while the key has not arrived).
pub fn config_source(db: Arc<StateDb>, keys: Arc<DataKeys>) -> ConfigSource {
    Box::new(move |source, ns, name| lookup(&db, &keys, source, ns, name))
}

/// One lookup of `config_source`.
pub fn lookup(
    db: &StateDb,
    keys: &DataKeys,
    source: Source,
    ns: &str,
    name: &str,
) -> Result<Option<Arc<Values>>, ConfigError> {
    let snap = db.snapshot();
    match source {
        Source::ConfigMap => Ok(snap.config_map(ns, name).map(|c| Arc::new(Values::of_config_map(&c)))),
        Source::Secret => {
            let Some(s) = snap.secret(ns, name) else { return Ok(None) };
            keys.open_secret(s)
                .map(|d| Some(Arc::new(Values::of_secret(d))))
                .map_err(|e| ConfigError(format!("secret {ns}/{name} cannot be read on this node: {e}")))
        }
    }
}
