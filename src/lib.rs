//! Shoal: a container orchestrator with no master node.
//!
//! Every node runs the same binary and the same parts: `membership` (gossip
//! over QUIC), `state` (the desired state as a CRDT), `placement` (a pure
//! function from live nodes and desired state to owners), `agent` (runs the
//! pods this node owns), `proxy` (sender-side balancing) and `api` (HTTP/JSON).
//! `node` wires them together. See DESIGN.md and README.md.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod events;
pub mod fuzz;
pub mod membership;
pub mod metrics;
pub mod model;
pub mod net;
pub mod node;
pub mod placement;
pub mod proxy;
pub mod state;
pub mod util;
