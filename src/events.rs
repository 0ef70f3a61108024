//! What happened on this node, for `shoal get events` and `describe`.
//!
//! A bounded ring of recent events (pod starts, kills, back-offs, probe
//! failures, node status changes as this node observed them). Events are
//! this node's observations; nothing here is replicated.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Most events kept per node.
pub const MAX_EVENTS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    /// `Pod`, `Node`...
    pub object_kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub message: String,
    /// Node that observed it.
    pub node: String,
}

pub struct EventLog {
    node: String,
    ring: Mutex<VecDeque<Event>>,
}

impl EventLog {
    pub fn new(node: &str) -> EventLog {
        EventLog { node: node.to_string(), ring: Mutex::new(VecDeque::new()) }
    }

    fn push(&self, kind: &str, reason: &str, object_kind: &str, namespace: &str, name: &str, message: String) {
        let e = Event {
            time_ms: crate::util::unix_millis(),
            kind: kind.into(),
            reason: reason.into(),
            object_kind: object_kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            message,
            node: self.node.clone(),
        };
        if kind == "Warning" {
            tracing::warn!(object = %format!("{object_kind}/{namespace}/{name}"), reason, "{}", e.message);
        } else {
            tracing::info!(object = %format!("{object_kind}/{namespace}/{name}"), reason, "{}", e.message);
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() >= MAX_EVENTS {
            ring.pop_front();
        }
        ring.push_back(e);
    }

    pub fn pod(&self, warning: bool, namespace: &str, name: &str, reason: &str, message: impl Into<String>) {
        self.push(if warning { "Warning" } else { "Normal" }, reason, "Pod", namespace, name, message.into());
    }

    /// An event on any object (`CronJob`...).
    pub fn object(&self, warning: bool, kind: &str, namespace: &str, name: &str, reason: &str, message: String) {
        self.push(if warning { "Warning" } else { "Normal" }, reason, kind, namespace, name, message);
    }

    /// Node events live in the `default` namespace, as in Kubernetes.
    pub fn node(&self, warning: bool, name: &str, reason: &str, message: impl Into<String>) {
        self.push(
            if warning { "Warning" } else { "Normal" },
            reason,
            "Node",
            crate::model::DEFAULT_NAMESPACE,
            name,
            message.into(),
        );
    }

    /// Events matching a filter, oldest first.
    pub fn list(&self, filter: impl Fn(&Event) -> bool) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().filter(|e| filter(e)).cloned().collect()
    }
}
