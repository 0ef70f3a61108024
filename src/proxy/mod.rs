//! Services: sender-side load balancing on every node.
//!
//! - `endpoints`: which Ready pods back a service (pure).

pub mod endpoints;
