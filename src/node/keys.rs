//! The cluster data keys between nodes, and what the agent reads through
//! them. Wiring: the keys (`state::keys`) joined to the network.
//!
//! Nodes exchange key rings (JSON) on QUIC streams of kind `Keys`, which the
//! network accepts only on mutually authenticated peer connections (a
//! certificate of the cluster CA): a node sends its ring, the peer merges
//! it and answers with its own, and the node merges that. Rings merge by
//! union, so any order of exchanges converges. Each side also says how
//! many of its Secrets each key seals, so that a retirement can wait until
//! no node holds a Secret sealed with an old key. A node exchanges with one
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
use crate::api::secrets::{KeyPeers, PeerAnswer, PeerKeys};
use crate::membership::view::{ClusterView, NodeState};
use crate::metrics::Metrics;
use crate::model::Kind;
use crate::model::config::{ConfigError, Source, Values};
use crate::net::quic::{Handler, Net, StreamKind};
use crate::state::StateDb;
use crate::state::keys::{DataKeys, KeyNews, sealed_with};
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
    pub db: Arc<StateDb>,
    pub metrics: Arc<Metrics>,
}

/// This node's news: its ring and what its Secrets are sealed with.
fn news(keys: &DataKeys, db: &StateDb) -> Vec<u8> {
    let n = KeyNews { ring: keys.ring(), sealed_with: sealed_with(&db.snapshot()) };
    serde_json::to_vec(&n).unwrap_or_default()
}

fn take(keys: &DataKeys, peer: SocketAddr, ring: &KeyRing) {
    match keys.merge(ring) {
        Ok(true) => tracing::info!(%peer, keys = ?keys.ring(), "received data keys from a peer"),
        Ok(false) => {}
        Err(e) => tracing::error!(%peer, error = %e, "cannot save the data keys a peer sent"),
    }
}

#[async_trait]
impl Handler for KeysHandler {
    async fn handle(&self, peer: SocketAddr, request: Vec<u8>) -> Vec<u8> {
        match serde_json::from_slice::<KeyNews>(&request) {
            Ok(theirs) => {
                take(&self.keys, peer, &theirs.ring);
                news(&self.keys, &self.db)
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
    /// The other nodes: (name, address), the live ones only or every
    /// member that has not left.
    fn peers(&self, live_only: bool) -> Vec<(String, SocketAddr)> {
        let v = self.view.borrow().clone();
        v.nodes
            .values()
            .filter(|n| n.info.name != v.self_name)
            .filter(|n| if live_only { n.state.alive() } else { n.state != NodeState::Left })
            .filter_map(|n| Some((n.info.name.clone(), n.info.gossip_addr.parse().ok()?)))
            .collect()
    }

    fn live_peers(&self) -> Vec<SocketAddr> {
        self.peers(true).into_iter().map(|(_, a)| a).collect()
    }

    /// One exchange with `peer`; its news, if it answered.
    async fn with(&self, peer: SocketAddr) -> Option<KeyNews> {
        let req = news(&self.keys, &self.db);
        let answer = tokio::time::timeout(TIMEOUT, self.net.request(peer, StreamKind::Keys, &req)).await;
        let bytes = match answer {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "data key exchange failed");
                return None;
            }
            Err(_) => return None,
        };
        match serde_json::from_slice::<KeyNews>(&bytes) {
            Ok(theirs) => {
                take(&self.keys, peer, &theirs.ring);
                Some(theirs)
            }
            Err(_) => {
                tracing::warn!(%peer, "a peer answered a data key exchange with garbage");
                None
            }
        }
    }

    /// Exchanges with the given peers at once; what each answered.
    async fn with_each(&self, peers: Vec<(String, SocketAddr)>) -> Vec<(String, Option<KeyNews>)> {
        let mut set = tokio::task::JoinSet::new();
        for (name, p) in peers {
            let me = KeyExchange {
                net: self.net.clone(),
                keys: self.keys.clone(),
                view: self.view.clone(),
                db: self.db.clone(),
            };
            set.spawn(async move { (name, me.with(p).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(x) = r {
                out.push(x);
            }
        }
        out
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
                    self.with_each(self.peers(true)).await;
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
    async fn exchange(&self, every_member: bool) -> Vec<PeerAnswer> {
        self.with_each(self.peers(!every_member))
            .await
            .into_iter()
            .map(|(node, news)| PeerAnswer {
                node,
                answer: news.map(|n| PeerKeys {
                    usable: n
                        .ring
                        .keys
                        .iter()
                        .filter(|(_, k)| k.material.is_some())
                        .map(|(id, _)| id.clone())
                        .collect(),
                    sealed_with: n.sealed_with,
                }),
            })
            .collect()
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
