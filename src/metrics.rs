//! Prometheus metrics of a node (`GET /metrics`).
//!
//! Owns the registry and the counters other parts bump. Counters that other
//! modules already keep (state, membership) are registered here by reference,
//! so each number has one owner.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set `{reason="..."}`.
pub type ReasonLabels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub api_requests: Family<Vec<(String, String)>, Counter>,
    pub api_unauthorized: Counter,
    pub applies: Counter,
    pub pods_running: Gauge,
    pub nodes: Family<Vec<(String, String)>, Gauge>,
    pub peer_refused: Family<ReasonLabels, Counter>,
    pub gossip_bytes_sent: Counter<u64, AtomicU64>,
    pub gossip_bytes_received: Counter<u64, AtomicU64>,
    pub gossip_messages_sent: Counter,
    pub gossip_messages_received: Counter,
    pub sync_bytes_sent: Counter<u64, AtomicU64>,
    pub sync_bytes_received: Counter<u64, AtomicU64>,
    pub state_entries: Gauge,
    pub state_tombstones: Gauge,
    pub state_refused: Counter,
    pub ae_rounds: Counter,
    pub proxy_connections: Family<Vec<(String, String)>, Counter>,
    pub proxy_backend_connections: Family<Vec<(String, String)>, Counter>,
    pub proxy_udp_flows: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shoal");
        let m = Metrics {
            api_requests: Family::default(),
            api_unauthorized: Counter::default(),
            applies: Counter::default(),
            pods_running: Gauge::default(),
            nodes: Family::default(),
            peer_refused: Family::default(),
            gossip_bytes_sent: Counter::default(),
            gossip_bytes_received: Counter::default(),
            gossip_messages_sent: Counter::default(),
            gossip_messages_received: Counter::default(),
            sync_bytes_sent: Counter::default(),
            sync_bytes_received: Counter::default(),
            state_entries: Gauge::default(),
            state_tombstones: Gauge::default(),
            state_refused: Counter::default(),
            ae_rounds: Counter::default(),
            proxy_connections: Family::default(),
            proxy_backend_connections: Family::default(),
            proxy_udp_flows: Family::default(),
            registry: Registry::default(),
        };
        registry.register("api_requests", "API requests by method and status", m.api_requests.clone());
        registry.register(
            "api_unauthorized",
            "API requests refused for a missing or wrong token",
            m.api_unauthorized.clone(),
        );
        registry.register("applies", "Applies accepted by this node", m.applies.clone());
        registry.register("pods_running", "Pods this node runs", m.pods_running.clone());
        registry.register("nodes", "Nodes by state as seen by this node", m.nodes.clone());
        registry.register("peer_refused", "Peer connections or messages refused, by reason", m.peer_refused.clone());
        registry.register("gossip_bytes_sent", "Gossip payload bytes sent", m.gossip_bytes_sent.clone());
        registry.register("gossip_bytes_received", "Gossip payload bytes received", m.gossip_bytes_received.clone());
        registry.register("gossip_messages_sent", "Gossip messages sent", m.gossip_messages_sent.clone());
        registry.register("gossip_messages_received", "Gossip messages received", m.gossip_messages_received.clone());
        registry.register("sync_bytes_sent", "Desired-state replication bytes sent", m.sync_bytes_sent.clone());
        registry.register(
            "sync_bytes_received",
            "Desired-state replication bytes received",
            m.sync_bytes_received.clone(),
        );
        registry.register(
            "state_entries",
            "Entries in the desired-state map (tombstones included)",
            m.state_entries.clone(),
        );
        registry.register(
            "state_tombstones",
            "Tombstones (deleted objects) not yet collected",
            m.state_tombstones.clone(),
        );
        registry.register("state_refused", "Desired-state entries refused from peers", m.state_refused.clone());
        registry.register("anti_entropy_rounds", "Anti-entropy rounds this node started", m.ae_rounds.clone());
        registry.register(
            "proxy_backend_connections",
            "Proxied connections by service and backend pod",
            m.proxy_backend_connections.clone(),
        );
        registry.register(
            "proxy_connections",
            "Service proxy connections by service and outcome",
            m.proxy_connections.clone(),
        );
        registry.register(
            "proxy_udp_flows",
            "UDP service flows by service and outcome (new, retried, moved, backend_refused, refused, no_endpoints)",
            m.proxy_udp_flows.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a refused peer input.
    pub fn refused(&self, reason: &str) {
        self.peer_refused.get_or_create(&vec![("reason".to_string(), reason.to_string())]).inc();
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}
