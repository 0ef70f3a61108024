//! Joining a cluster: the protocol and its client.
//!
//! `join(seeds, token, name)` connects to a seed with the CA pinned by the
//! token (nothing secret is sent before the server proves it holds that CA),
//! presents the token, and receives its node identity, the API token and the
//! current peers. The server side, which checks tokens against the desired
//! state, is wiring (`node::cluster`): it joins the network to the state.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::quic::{NetError, join_request};
use super::tls::Identity;
use super::token::JoinToken;

/// Version of the join protocol.
pub const VERSION: u32 = 1;

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
