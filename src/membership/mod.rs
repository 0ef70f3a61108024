//! Membership: who is in the cluster, alive, and what each node runs.
//!
//! - `view`: the node record each node gossips and the assembled cluster view.

pub mod view;
