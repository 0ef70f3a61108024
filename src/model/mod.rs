//! The vocabulary every layer shares: manifests, kinds, quantities,
//! validation, the pods a Deployment or Job asks for, pod and container
//! status, and what placement knows of a node.
//!
//! Pure data and pure functions only: nothing in `model` touches the network,
//! the disk or the clock.
#![deny(clippy::disallowed_methods)]

pub mod config;
pub mod cron;
pub mod names;
pub mod node;
pub mod parse;
pub mod pods;
pub mod pool;
pub mod quantity;
pub mod revision;
pub mod status;
pub mod types;
pub mod validate;
pub mod yaml;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use types::{ConfigMap, CronJob, DaemonSet, Deployment, Job, Namespace, ObjectMeta, Secret, Service};

/// What is wrong with a value, in words a user can act on (the caller adds
/// which field it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Namespace every cluster has, and the default for namespaced objects.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds a user can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    Deployment,
    Job,
    Service,
    DaemonSet,
    CronJob,
    ConfigMap,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Namespace,
        Kind::Deployment,
        Kind::Job,
        Kind::Service,
        Kind::DaemonSet,
        Kind::CronJob,
        Kind::ConfigMap,
        Kind::Secret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Deployment => "Deployment",
            Kind::Job => "Job",
            Kind::Service => "Service",
            Kind::DaemonSet => "DaemonSet",
            Kind::CronJob => "CronJob",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Service | Kind::ConfigMap | Kind::Secret => "v1",
            Kind::Deployment | Kind::DaemonSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
        }
    }

    /// Lower-case plural, as in REST paths and `shoal get`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Deployment => "deployments",
            Kind::Job => "jobs",
            Kind::Service => "services",
            Kind::DaemonSet => "daemonsets",
            Kind::CronJob => "cronjobs",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
        }
    }

    /// The REST path of this kind's objects: in namespace `ns`, or across
    /// all namespaces (`/apis/batch/v1/namespaces/default/cronjobs`).
    pub fn rest_path(self, ns: Option<&str>) -> String {
        let group = self.api_version();
        let prefix = if group == "v1" { "/api/v1".to_string() } else { format!("/apis/{group}") };
        match ns {
            Some(ns) if self.namespaced() => format!("{prefix}/namespaces/{ns}/{}", self.plural()),
            _ => format!("{prefix}/{}", self.plural()),
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace)
    }

    /// Parses a kind as written in a manifest (`kind: Deployment`).
    pub fn from_manifest(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Parses a kind as typed on the command line: singular, plural or
    /// kubectl's short name, any case (`deploy`, `svc`, `ns`).
    pub fn from_cli(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase();
        let s = s.split('.').next().unwrap_or(&s).to_string();
        Some(match s.as_str() {
            "namespace" | "namespaces" | "ns" => Kind::Namespace,
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "job" | "jobs" => Kind::Job,
            "service" | "services" | "svc" => Kind::Service,
            "daemonset" | "daemonsets" | "ds" => Kind::DaemonSet,
            "cronjob" | "cronjobs" | "cj" => Kind::CronJob,
            "configmap" | "configmaps" | "cm" => Kind::ConfigMap,
            "secret" | "secrets" => Kind::Secret,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind, namespace (empty for cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.plural(), self.name)
        } else {
            write!(f, "{}/{} (namespace {})", self.kind.plural(), self.name, self.namespace)
        }
    }
}

/// An object of one of the supported kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Deployment(Deployment),
    Job(Job),
    Service(Service),
    DaemonSet(DaemonSet),
    CronJob(CronJob),
    ConfigMap(ConfigMap),
    Secret(Secret),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Deployment(_) => Kind::Deployment,
            Object::Job(_) => Kind::Job,
            Object::Service(_) => Kind::Service,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::CronJob(_) => Kind::CronJob,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::Job(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::DaemonSet(o) => &mut o.metadata,
            Object::CronJob(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let kind = self.kind();
        ObjectKey {
            kind,
            namespace: if kind.namespaced() {
                self.meta().namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
            } else {
                String::new()
            },
            name: self.meta().name.clone(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Object::Namespace(o) => serde_json::to_value(o),
            Object::Deployment(o) => serde_json::to_value(o),
            Object::Job(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::DaemonSet(o) => serde_json::to_value(o),
            Object::CronJob(o) => serde_json::to_value(o),
            Object::ConfigMap(o) => serde_json::to_value(o),
            Object::Secret(o) => serde_json::to_value(o),
        };
        // Serializing plain data structs into a Value cannot fail.
        v.unwrap_or(serde_json::Value::Null)
    }

    /// The part of the object a user declares: what "unchanged" compares.
    pub fn declared(&self) -> serde_json::Value {
        let mut v = self.to_json();
        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for k in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
                meta.remove(k);
            }
        }
        v
    }

    /// The `spec` alone: a change to it bumps `metadata.generation`.
    pub fn spec_json(&self) -> serde_json::Value {
        self.to_json().get("spec").cloned().unwrap_or(serde_json::Value::Null)
    }
}
