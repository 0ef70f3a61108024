//! Node-to-node networking: QUIC with mutual TLS under a per-cluster CA.
//!
//! - `tls`: the cluster CA, node certificates, rustls configs, CA pinning;
//! - `token`: the join token format and checks (pure);
//! - `quic`: the endpoint, connections, bounded stream framing;
//! - `join`: the join protocol and token management;
//! - `liveness`: the liveness port (TCP) behind `membership::watch`.

pub mod join;
pub mod liveness;
pub mod quic;
pub mod tls;
pub mod token;
