//! Joining a cluster, and the join tokens that allow it.
//!
//! Client: `join(seeds, token, name)` connects to a seed with the CA pinned
//! by the token (nothing secret is sent before the server proves it holds
//! that CA), presents the token, and receives its node identity, the API
//! token and the current peers. Server: `JoinService` checks the token
//! against its record in the desired state and issues the identity; any node
//! can admit, as every node holds the CA.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::quic::{Handler, NetError, join_request};
use super::tls::Identity;
use super::token::{JoinToken, Refused, TokenRecord, check};
use crate::membership::view::ClusterView;
use crate::metrics::Metrics;
use crate::state::entry::kinds;
use crate::state::{Key, StateDb, Writer};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub enum JoinMsg {
    Request { version: u32, token: String, node_name: String },
    Accepted(Box<Accepted>),
    Refused { reason: String },
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Accepted {
    pub identity: Identity,
    pub api_token: String,
    /// Gossip addresses of the nodes alive now.
    pub peers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Token(#[from] super::token::TokenError),
    #[error("the cluster refused to admit this node: {0}")]
    Refused(String),
    #[error("could not reach any node to join ({0})")]
    Unreachable(String),
}

/// Joins through the first seed that answers.
pub async fn join(seeds: &[String], token: &str, node_name: &str) -> Result<Accepted, JoinError> {
    let t = JoinToken::parse(token)?;
    let req = postcard::to_allocvec(&JoinMsg::Request {
        version: VERSION,
        token: token.trim().to_string(),
        node_name: node_name.to_string(),
    })
    .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let mut errors = Vec::new();
    for seed in seeds {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(seed).await {
            Ok(a) => a.collect(),
            Err(e) => {
                errors.push(format!("{seed}: {e}"));
                continue;
            }
        };
        for addr in addrs {
            match join_request(addr, &t.ca_hash, &req).await {
                Ok(bytes) => match postcard::from_bytes::<JoinMsg>(&bytes) {
                    Ok(JoinMsg::Accepted(a)) => return Ok(*a),
                    Ok(JoinMsg::Refused { reason }) => return Err(JoinError::Refused(reason)),
                    _ => errors.push(format!("{addr}: unexpected answer")),
                },
                Err(NetError::Connect { message, .. }) if message.contains("CA does not match") => {
                    return Err(JoinError::Refused(format!(
                        "{addr} belongs to another cluster: its CA does not match the hash in the join token"
                    )));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    Err(JoinError::Unreachable(errors.join("; ")))
}

/// The record key of a token id.
pub fn token_key(id: &str) -> Key {
    Key::new(kinds::JOIN_TOKEN, "", id)
}

/// The stored record of a token id.
pub fn token_record(db: &StateDb, id: &str) -> Option<TokenRecord> {
    db.get(&token_key(id)).and_then(|e| e.value).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Admits nodes presenting a valid token.
pub struct JoinService {
    pub identity: Identity,
    pub db: Arc<StateDb>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub api_token: String,
    pub metrics: Arc<Metrics>,
}

impl JoinService {
    fn decide(&self, request: &[u8], peer: SocketAddr) -> JoinMsg {
        let refuse = |reason: String| {
            self.metrics.refused("join");
            tracing::warn!(%peer, %reason, "join refused");
            JoinMsg::Refused { reason }
        };
        let Ok(JoinMsg::Request { version, token, node_name }) = postcard::from_bytes::<JoinMsg>(request) else {
            return refuse("malformed join request".into());
        };
        if version != VERSION {
            return refuse(format!("join protocol version {version} is not supported (this node speaks {VERSION})"));
        }
        let Ok(t) = JoinToken::parse(&token) else { return refuse("malformed join token".into()) };
        if let Err(r) = check(&t, token_record(&self.db, &t.id).as_ref(), crate::membership::service::system_unix()) {
            return refuse(r.to_string());
        }
        if let Err(m) = crate::model::names::dns_label(&node_name, 63) {
            return refuse(format!("node name: {m}"));
        }
        let view = self.view.borrow().clone();
        if let Some(n) = view.nodes.get(&node_name).filter(|n| n.state.alive()) {
            return refuse(format!(
                "node name {node_name:?} is used by a live node at {}; start this one with another --name",
                n.info.gossip_addr
            ));
        }
        let identity = match self.identity.for_node(&node_name) {
            Ok(i) => i,
            Err(e) => return refuse(format!("cannot issue a certificate: {e}")),
        };
        let peers = view.nodes.values().filter(|n| n.state.alive()).map(|n| n.info.gossip_addr.clone()).collect();
        tracing::info!(%peer, node = %node_name, "admitted a node");
        JoinMsg::Accepted(Box::new(Accepted { identity, api_token: self.api_token.clone(), peers }))
    }
}

#[async_trait]
impl Handler for JoinService {
    async fn handle(&self, peer: SocketAddr, request: Vec<u8>) -> Vec<u8> {
        postcard::to_allocvec(&self.decide(&request, peer)).unwrap_or_default()
    }
}

/// Creates, rotates and reads join tokens (the API's `/shoal/v1/token`).
pub struct Tokens {
    pub ca_hash: String,
    pub db: Arc<StateDb>,
    pub writer: Arc<dyn Writer>,
}

/// Key holding the current default token in plain text, so that any node
/// can print it (`shoal token`); only cluster members can read it.
const CURRENT: &str = "current";

impl Tokens {
    fn record(t: &JoinToken, ttl_secs: u64) -> TokenRecord {
        let now = crate::membership::service::system_unix();
        TokenRecord {
            secret_hash: t.secret_hash(),
            expires_at: if ttl_secs == 0 { 0 } else { now + ttl_secs },
            rotated: false,
            created_at: now,
        }
    }

    /// The current default token.
    pub fn current(&self) -> Option<String> {
        self.db
            .get(&Key::new(kinds::JOIN_TOKEN, "", CURRENT))
            .and_then(|e| e.value)
            .and_then(|v| String::from_utf8(v).ok())
    }

    /// Writes a new default token, marking the previous one rotated.
    pub async fn rotate(&self) -> Result<String, String> {
        let t = JoinToken::generate(&self.ca_hash);
        let mut changes = vec![
            (token_key(&t.id), Some(serde_json::to_vec(&Self::record(&t, 0)).map_err(|e| e.to_string())?)),
            (Key::new(kinds::JOIN_TOKEN, "", CURRENT), Some(t.to_string().into_bytes())),
        ];
        if let Some(old) = self.current().and_then(|s| JoinToken::parse(&s).ok())
            && let Some(mut r) = token_record(&self.db, &old.id)
        {
            r.rotated = true;
            changes.push((token_key(&old.id), Some(serde_json::to_vec(&r).map_err(|e| e.to_string())?)));
        }
        self.writer.write(changes).await.map_err(|e| e.to_string())?;
        Ok(t.to_string())
    }

    /// An extra token valid for `ttl_secs`; only its hash is stored.
    pub async fn create(&self, ttl_secs: u64) -> Result<String, String> {
        let t = JoinToken::generate(&self.ca_hash);
        let rec = serde_json::to_vec(&Self::record(&t, ttl_secs.max(1))).map_err(|e| e.to_string())?;
        self.writer.write(vec![(token_key(&t.id), Some(rec))]).await.map_err(|e| e.to_string())?;
        Ok(t.to_string())
    }
}

#[async_trait]
impl crate::api::server::ClusterOps for Tokens {
    fn join_token(&self) -> Option<String> {
        self.current()
    }
    async fn rotate_join_token(&self) -> Result<String, String> {
        self.rotate().await
    }
    async fn create_join_token(&self, ttl_secs: u64) -> Result<String, String> {
        self.create(ttl_secs).await
    }
}

/// Whether the refusal says the token expired or was rotated (for tests).
pub fn is_stale_token(reason: &str) -> bool {
    reason == Refused::Expired.to_string() || reason == Refused::Rotated.to_string()
}
