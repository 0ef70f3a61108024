//! Membership: who is in the cluster, alive, and what each node runs.
//!
//! - `view`: the record each node gossips about itself and the assembled view;
//! - `assemble`: chitchat's raw state to the view (pure);
//! - `detector`: the failure detector: Ready, Suspect or Dead (pure);
//! - `clock`: the cluster's time, from peers' clocks (pure);
//! - `watch`: liveness watches of a few peers' endpoints;
//! - `echo`: how recently peers heard this node, from their digests;
//! - `shared`: peers' records parsed once per process, shared;
//! - `engine`: the service a node runs, chitchat or SWIM, behind one type;
//! - `service`: runs chitchat and keeps the view fresh;
//! - `swim`: SWIM membership (foca), for clusters far past a homelab;
//! - `transport`: chitchat over QUIC.

pub mod assemble;
pub mod clock;
pub mod detector;
pub mod discovery;
pub mod echo;
pub mod engine;
pub mod last_inputs;
pub mod service;
pub mod settle;
pub mod shared;
pub mod swim;
pub mod transport;
pub mod view;
pub mod watch;
