//! Pod and container status as a node reports it (and gossips it).
//!
//! Owns the shape only; the agent fills it in, membership carries it,
//! placement and the proxy read it, the API renders it in Kubernetes' JSON.
//!
//! What every node must know of a peer's pod and what it can ask for are
//! split here: a node gossips each status as its `summary` (phase,
//! readiness, restarts, ports: what placement, rollouts, the proxy and a
//! `get pods` row read), and keeps the details (container ids, images,
//! messages, last states) to itself; the API asks the node that runs a pod
//! for them (`api::details`).

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

    /// What a node gossips of this status: the same record without the
    /// details only the API shows (container ids and images, messages, last
    /// states), which the API fetches from the node that runs the pod. Every
    /// field a decision reads stays, and the shape is the same, so a node of
    /// an earlier version reads it. A change to details alone gossips
    /// nothing.
    pub fn summary(&self) -> PodStatus {
        let mut s = self.clone();
        s.message.clear();
        for c in &mut s.containers {
            c.image.clear();
            c.container_id.clear();
            c.last_state = None;
            if let ContainerState::Waiting { message, .. } = &mut c.state {
                message.clear();
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detailed() -> PodStatus {
        PodStatus {
            namespace: "default".into(),
            name: "web-0".into(),
            node: "a".into(),
            owner_uid: "u-1".into(),
            template_hash: "h1".into(),
            phase: Phase::Running,
            ready: false,
            reason: "CrashLoopBackOff".into(),
            message: "back-off 40s restarting failed container web".into(),
            host_ip: "127.0.0.11".into(),
            ports: vec![PortMapping {
                name: "http".into(),
                container_port: 80,
                host_port: 30123,
                protocol: Protocol::Tcp,
            }],
            started_at: 1_700_000_000,
            containers: vec![
                ContainerStatus {
                    name: "web".into(),
                    ready: false,
                    restart_count: 3,
                    state: ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: "back-off 40s".into(),
                    },
                    last_state: Some(ContainerState::Terminated {
                        exit_code: 1,
                        reason: "Error".into(),
                        signal: None,
                        finished_at: 1_700_000_100,
                    }),
                    image: "python3 -m http.server $(PORT) --bind $(SHOAL_NODE_IP)".into(),
                    container_id: "0123456789abcdef".repeat(4),
                },
                ContainerStatus {
                    name: "side".into(),
                    ready: true,
                    restart_count: 0,
                    state: ContainerState::Running { started_at: 1_700_000_001 },
                    ..Default::default()
                },
            ],
            terminating: false,
        }
    }

    #[test]
    fn a_summary_keeps_what_decisions_and_rows_read_and_drops_the_details() {
        let full = detailed();
        let s = full.summary();
        // What placement, rollouts, handoffs, the proxy and a `get pods` row read.
        assert_eq!(s.id(), full.id());
        assert_eq!((s.phase, s.ready, s.terminating), (full.phase, full.ready, full.terminating));
        assert_eq!(
            (&s.owner_uid, &s.template_hash, &s.node, &s.host_ip),
            (&full.owner_uid, &full.template_hash, &full.node, &full.host_ip)
        );
        assert_eq!((&s.ports, s.started_at, s.restarts()), (&full.ports, full.started_at, 3));
        assert_eq!(s.display_status(), full.display_status());
        assert_eq!(
            s.containers.iter().map(|c| (&c.name, c.ready)).collect::<Vec<_>>(),
            [(&"web".to_string(), false), (&"side".to_string(), true)]
        );
        assert_eq!(s.containers[1].state, full.containers[1].state);
        // The details stay with the node that runs the pod.
        assert!(
            s.message.is_empty()
                && s.containers
                    .iter()
                    .all(|c| c.image.is_empty() && c.container_id.is_empty() && c.last_state.is_none())
        );
        assert_eq!(
            s.containers[0].state,
            ContainerState::Waiting { reason: "CrashLoopBackOff".into(), message: String::new() }
        );
        // Smaller on the wire, and read by the same parser (an earlier node's too).
        let (fj, sj) = (serde_json::to_string(&full).unwrap(), serde_json::to_string(&s).unwrap());
        assert!(sj.len() * 3 < fj.len() * 2, "summary {} B, full {} B", sj.len(), fj.len());
        assert_eq!(serde_json::from_str::<PodStatus>(&sj).unwrap(), s);
        // A change to details alone leaves the summary as it was: nothing to gossip.
        let mut later = full.clone();
        later.message = "back-off 80s restarting failed container web".into();
        later.containers[0].container_id = "f".repeat(64);
        assert_eq!(later.summary(), s);
    }
}
