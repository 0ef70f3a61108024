//! Admitting nodes: the server side of the join protocol, and the join
//! tokens it checks, kept in the desired state.
//!
//! Wiring: it joins the network (a QUIC stream handler) to the desired
//! state (token records) and membership (which names are taken, who the
//! peers are). Any node can admit, as every node holds the CA.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::membership::view::ClusterView;
use crate::metrics::Metrics;
use crate::net::join::{Accepted, JoinMsg, VERSION};
use crate::net::quic::Handler;
use crate::net::tls::Identity;
use crate::net::token::{JoinToken, TokenRecord, check};
use crate::state::entry::kinds;
use crate::state::{Key, StateDb, WriteError, Writer};
use crate::util::unix_secs;

/// Why a join token could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TokenWriteError {
    #[error("cannot encode the token record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
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
        if let Err(r) = check(&t, token_record(&self.db, &t.id).as_ref(), unix_secs()) {
            return refuse(r.to_string());
        }
        if let Err(m) = crate::model::names::dns_label(&node_name, 63) {
            return refuse(format!("node name: {m}"));
        }
        let view = self.view.borrow().clone();
        if let Some(n) = view.nodes.get(node_name.as_str()).filter(|n| n.state.alive()) {
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
        let now = unix_secs();
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
    pub async fn rotate(&self) -> Result<String, TokenWriteError> {
        let t = JoinToken::generate(&self.ca_hash);
        let mut changes = vec![
            (token_key(&t.id), Some(serde_json::to_vec(&Self::record(&t, 0))?)),
            (Key::new(kinds::JOIN_TOKEN, "", CURRENT), Some(t.to_string().into_bytes())),
        ];
        if let Some(old) = self.current().and_then(|s| JoinToken::parse(&s).ok())
            && let Some(mut r) = token_record(&self.db, &old.id)
        {
            r.rotated = true;
            changes.push((token_key(&old.id), Some(serde_json::to_vec(&r)?)));
        }
        self.writer.write(changes).await?;
        Ok(t.to_string())
    }

    /// An extra token valid for `ttl_secs`; only its hash is stored.
    pub async fn create(&self, ttl_secs: u64) -> Result<String, TokenWriteError> {
        let t = JoinToken::generate(&self.ca_hash);
        let rec = serde_json::to_vec(&Self::record(&t, ttl_secs.max(1)))?;
        self.writer.write(vec![(token_key(&t.id), Some(rec))]).await?;
        Ok(t.to_string())
    }
}
