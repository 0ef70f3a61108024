//! What placement knows about a node: its capacity and constraints.
//!
//! The shared vocabulary between membership (which gossips it) and
//! placement (which uses it); pure data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::pods::{Resources, RuntimeKind};

/// What placement knows about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// What pods may request in total.
    pub allocatable: Resources,
    /// Relative capacity (by default the node's CPU in millicores).
    pub weight: u64,
    /// Shared with the node's gossiped record: a cluster's node list is
    /// rebuilt whenever a node joins, leaves or turns schedulable, and at
    /// 1,000 nodes copying every label map each time cost more than placing.
    pub labels: Arc<BTreeMap<String, String>>,
    pub runtimes: Arc<BTreeSet<RuntimeKind>>,
    pub max_pods: u32,
    /// Cordoned: it keeps the pods pinned to it, and takes no other.
    pub unschedulable: bool,
}

/// Maintenance of a node, kept in the desired state so that every node
/// agrees: cordoned (`unschedulable`), it keeps what runs there and takes
/// nothing new; draining, its replicas move away a few at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMaintenance {
    pub unschedulable: bool,
    #[serde(default)]
    pub draining: bool,
}

/// Maintenance records by node name; a persistent map so that snapshots of
/// the desired state share it.
pub type Maintenance = imbl::OrdMap<String, NodeMaintenance>;
