//! What placement knows about a node: its capacity and constraints.
//!
//! The shared vocabulary between membership (which gossips it) and
//! placement (which uses it); pure data.

use std::collections::{BTreeMap, BTreeSet};

use super::pods::{Resources, RuntimeKind};

/// What placement knows about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// What pods may request in total.
    pub allocatable: Resources,
    /// Relative capacity (by default the node's CPU in millicores).
    pub weight: u64,
    pub labels: BTreeMap<String, String>,
    pub runtimes: BTreeSet<RuntimeKind>,
    pub max_pods: u32,
    /// Cordoned: it keeps the pods pinned to it, and takes no other.
    pub unschedulable: bool,
}
