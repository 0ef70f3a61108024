//! Wiring: one node = identity + state + membership + planner + agent + API.
//!
//! - `assembly`: the parts every node has, put together the same way for
//!   `shoal up` and for netsim (which passes its own clock, network and
//!   runtime);
//! - `start`: a real node, the edges around the assembly (QUIC and TLS, the
//!   API, the service proxy, DNS, discovery) and its shutdown;
//! - `identity`: what a node keeps in its data dir and knows of its host;
//! - `cluster`: admitting nodes (join tokens, the join service);
//! - `keys`: the cluster data keys between nodes (Secrets);
//! - `adapters`: trait implementations that join two parts;
//! - `liveness`: the liveness port over TCP (`membership::watch`'s side on
//!   a real node).

pub mod adapters;
pub mod assembly;
pub mod cluster;
pub mod identity;
pub mod keys;
pub mod liveness;
pub mod start;

use std::net::SocketAddr;

pub use assembly::{PLAN_DEBOUNCE, spawn_planner};
pub use identity::{agent_marker, token_path};
pub use start::Node;

/// Why a node could not start; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("data dir {dir} belongs to node {owner:?}; start with --name {owner} or use another --data-dir")]
    DataDirOwner { dir: String, owner: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::state::store::StoreError),
    #[error(
        "the desired-state store {path} cannot be read ({message}). It may be corrupt (a disk fault, a power cut on a card that lies about fsync). This node can rebuild it from its peers: start it again with --rebuild-state (the old file is kept as {path}.bad-<time>); on a single-node cluster restore the data dir from a backup instead"
    )]
    StoreUnreadable { path: String, message: String },
    #[error(
        "data dir {dir} was written by a newer Shoal (format {found}; this one reads up to {supported}); run that version, or start this one with another --data-dir"
    )]
    DataDirTooNew { dir: String, found: u32, supported: u32 },
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    Net(#[from] crate::net::quic::NetError),
    #[error(transparent)]
    Join(#[from] crate::net::join::JoinError),
    #[error("joining a cluster needs its join token: pass --token (run `shoal token` on a cluster node)")]
    NoJoinToken,
    #[error("--discover mdns found no node of this cluster on the LAN within 5 s; pass --join HOST:PORT")]
    NothingDiscovered,
    #[error("cannot write the first join token of the new cluster: {0}")]
    FirstToken(#[from] cluster::TokenWriteError),
    #[error("cluster data keys: {0}")]
    Keys(String),
    #[error(transparent)]
    Membership(#[from] crate::membership::service::MembershipError),
    #[error("cannot listen on {addr} for the API: {source} (is another node using it? pass --api-addr or --node-ip)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(
        "runtimes.docker is \"on\" but no Docker engine answers at {socket}; start it, fix runtimes.docker_socket, or use \"auto\""
    )]
    DockerRequired { socket: String },
    #[error(
        "cannot bind the DNS responder on {addr}: {source} (set proxy.dns_addr to a free address, or to \"\" to disable it)"
    )]
    DnsBind { addr: SocketAddr, source: std::io::Error },
}
