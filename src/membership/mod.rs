//! Membership: who is in the cluster, alive, and what each node runs.
//!
//! - `view`: the record each node gossips about itself and the assembled view;
//! - `assemble`: chitchat's raw state to the view (pure);
//! - `service`: runs chitchat and keeps the view fresh;
//! - `transport`: chitchat over QUIC.

pub mod assemble;
pub mod discovery;
pub mod service;
pub mod settle;
pub mod transport;
pub mod view;
