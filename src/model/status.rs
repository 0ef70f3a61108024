//! Pod and container status as a node reports it (and gossips it).
//!
//! Owns the shape only; the agent fills it in, membership carries it,
//! placement and the proxy read it, the API renders it in Kubernetes' JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::types::Protocol;

/// Statuses of the pods one node runs, by pod id.
pub type Statuses = Arc<BTreeMap<String, PodStatus>>;

/// Statuses of the pods a peer runs, by pod id, as the cluster view holds
/// them. Each one is boxed: a map of a few large values would allocate room
/// for eleven per node of the tree, and every node holds every peer's.
pub type PeerPods = Arc<BTreeMap<String, Arc<PodStatus>>>;

/// Pod statuses boxed as the cluster view holds them.
pub fn peer_pods(pods: &BTreeMap<String, PodStatus>) -> PeerPods {
    Arc::new(pods.iter().map(|(id, st)| (id.clone(), Arc::new(st.clone()))).collect())
}

/// Kubernetes pod phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Unknown => "Unknown",
        }
    }
}

/// State of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    Waiting {
        reason: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    Running {
        /// Unix seconds.
        started_at: u64,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// Unix seconds.
        finished_at: u64,
    },
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState::Waiting { reason: "ContainerCreating".into(), message: String::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub ready: bool,
    pub restart_count: u32,
    pub state: ContainerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    /// Image, or the command for process containers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Runtime id (pid or Docker container id).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
}

/// A port a pod listens on: name, declared container port, host port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub container_port: u16,
    pub host_port: u16,
    /// TCP unless said (a container port declared for both TCP and UDP has
    /// one mapping of each, with the same host port).
    #[serde(default, skip_serializing_if = "Protocol::is_tcp")]
    pub protocol: Protocol,
}

/// Status of one pod on the node that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub owner_uid: String,
    pub template_hash: String,
    pub phase: Phase,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub host_ip: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Unix seconds when the pod was started on this node.
    pub started_at: u64,
    pub containers: Vec<ContainerStatus>,
    /// The node is stopping this pod (handed off or deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminating: bool,
}

impl PodStatus {
    pub fn id(&self) -> String {
        crate::model::pods::pod_id(&self.namespace, &self.name)
    }

    pub fn restarts(&self) -> u32 {
        self.containers.iter().map(|c| c.restart_count).sum()
    }

    /// kubectl's STATUS column: a waiting or terminated reason when there is
    /// one, else the phase.
    pub fn display_status(&self) -> String {
        if self.terminating {
            return "Terminating".into();
        }
        for c in &self.containers {
            if let ContainerState::Waiting { reason, .. } = &c.state
                && (reason != "ContainerCreating" || self.phase == Phase::Pending)
            {
                return reason.clone();
            }
        }
        if matches!(self.phase, Phase::Failed | Phase::Running) {
            for c in &self.containers {
                if let ContainerState::Terminated { reason, .. } = &c.state
                    && (self.phase == Phase::Failed || reason != "Completed")
                {
                    return reason.clone();
                }
            }
        }
        if self.phase == Phase::Succeeded {
            return "Completed".into();
        }
        if !self.reason.is_empty() {
            return self.reason.clone();
        }
        self.phase.as_str().to_string()
    }
}
