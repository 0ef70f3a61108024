//! Node-to-node networking: QUIC with mutual TLS under a per-cluster CA.
//!
//! - `tls`: the cluster CA, node certificates, rustls configs, CA pinning;
//! - `token`: the join token format and checks (pure);
//! - `quic`: the endpoint, connections, bounded stream framing;
//! - `join`: the join protocol and token management;
//! - `vip`, `nat`: LoadBalancer addresses, and the nftables table of the
//!   kernel path of `externalTrafficPolicy: Local`.

pub mod join;
pub mod nat;
pub mod quic;
pub mod tls;
pub mod token;
pub mod vip;

/// `api_plain_http`: who may use plain HTTP on the API port (which speaks
/// HTTPS with a certificate of the cluster CA in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PlainHttp {
    /// Clients on this host (loopback) only: a token sent in clear never
    /// leaves the machine.
    #[default]
    Loopback,
    /// Nobody: HTTPS only.
    Off,
    /// Anyone: tokens cross the network in clear. An explicit opt-in,
    /// warned about at start.
    Any,
}

impl PlainHttp {
    /// Whether a plain-HTTP client at `peer` is served.
    pub fn allows(self, peer: std::net::IpAddr) -> bool {
        match self {
            PlainHttp::Off => false,
            PlainHttp::Any => true,
            PlainHttp::Loopback => peer.is_loopback() || peer.to_canonical().is_loopback(),
        }
    }
}
