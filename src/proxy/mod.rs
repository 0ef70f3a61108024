//! Services: sender-side load balancing on every node.
//!
//! - `endpoints`: which Ready pods back a service (pure);
//! - `balance`: power of two choices over peak-EWMA cost (pure);
//! - `affinity`: `sessionAffinity: ClientIP` pins (pure);
//! - `locality`: whether a client runs on this host, for the `Local`
//!   traffic policies;
//! - `nat`: the kernel path of `externalTrafficPolicy: Local` (pure);
//! - `server`: the per-node proxy on each service's node port (TCP);
//! - `flows`: which backend each UDP client flow goes to (pure);
//! - `udp`: the UDP relay on UDP service ports;
//! - `dns`: the `NAME.NAMESPACE.svc.shoal` responder;
//! - `env`: service environment variables for pods.

pub mod affinity;
pub mod balance;
pub mod dns;
pub mod endpoints;
pub mod env;
pub mod flows;
pub mod lb;
pub mod locality;
pub mod nat;
pub mod proxyproto;
pub mod server;
pub mod udp;
