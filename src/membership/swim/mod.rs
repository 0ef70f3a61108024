//! SWIM membership (`--membership swim`): foca's SWIM with suspicion over
//! the node's gossip transport, for clusters far past a homelab.
//!
//! Per-node cost does not grow with the cluster: a node probes one peer a
//! period, changes ride on those probes (foca's piggybacking, and ours for
//! stamps), and only a small `Stamp` per node spreads that way. The records themselves (a
//! node's summary and its pods' statuses) are pulled from the node by
//! those that lack them, so an idle cluster sends nothing but probes.
//!
//! - `id`: a node's SWIM identity;
//! - `link`: the bytes to and from peers (QUIC, or netsim);
//! - `wire`: the frames and their encoding;
//! - `piggyback`: the stamps waiting to ride on foca's packets (pure);
//! - `book`: peers' records, and what to pull (pure);
//! - `suspicion`: suspects this node times itself (pure);
//! - `service`: runs foca and keeps the view fresh.

pub mod book;
pub mod id;
pub mod link;
pub mod pace;
pub mod piggyback;
pub mod service;
pub mod suspicion;
pub mod wire;
