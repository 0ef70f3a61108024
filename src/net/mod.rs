//! Node-to-node networking: QUIC with mutual TLS under a per-cluster CA.
//!
//! - `tls`: the cluster CA, node certificates, rustls configs, CA pinning;
//! - `token`: the join token format and checks (pure);
//! - `quic`: the endpoint, connections, bounded stream framing;
//! - `join`: the join protocol and token management.

pub mod join;
pub mod quic;
pub mod tls;
pub mod token;
