//! Services: sender-side load balancing on every node.
//!
//! - `endpoints`: which Ready pods back a service (pure);
//! - `balance`: power of two choices over peak-EWMA cost (pure);
//! - `server`: the per-node TCP proxy on each service's node port;
//! - `dns`: the `NAME.NAMESPACE.svc.shoal` responder;
//! - `env`: service environment variables for pods.

pub mod balance;
pub mod dns;
pub mod endpoints;
pub mod env;
pub mod server;
