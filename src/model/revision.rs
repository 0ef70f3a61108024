//! Deployment revisions and rollout settings.
//!
//! Every pod template a Deployment has had is a revision, kept in the
//! desired state next to the Deployment (and shown as a ReplicaSet named
//! `<deployment>-<template hash>`): old pods keep running from it during a
//! rollout, and `rollout undo` goes back to it. Pods of a revision are named
//! `<deployment>-<hash>-<index>`, so the old and the new copy of one replica
//! can run side by side, even on one node.
//!
//! `RolloutParams` resolves a Deployment's strategy with Kubernetes' defaults
//! and rounding. Pure data and functions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::types::{DaemonSetSpec, DeploymentSpec, IntOrString, PodTemplateSpec};

/// Kubernetes' default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECS: u64 = 600;
/// Kubernetes' default `revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY: u32 = 10;
/// Kubernetes' default `maxSurge` and `maxUnavailable`, percent.
pub const DEFAULT_ROLLING_PERCENT: u32 = 25;
/// The annotation that carries a revision's number (as Kubernetes).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The annotation that carries why a revision was made.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The template annotation `rollout restart` sets (as kubectl).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// One pod template of a Deployment, stored in the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub deployment: String,
    /// The Deployment's uid: a re-created Deployment starts a new history.
    pub deployment_uid: String,
    /// The template hash (also in the name).
    pub hash: String,
    /// 1, 2, ...: the newest is the highest.
    pub revision: u64,
    pub template: PodTemplateSpec,
    /// RFC 3339, when this template became the Deployment's (again).
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    /// The kind of the owner: absent for a Deployment (a ReplicaSet),
    /// `DaemonSet` for a DaemonSet's (a ControllerRevision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_kind: Option<super::Kind>,
}

impl Revision {
    /// Whether this is a Deployment's revision (shown as a ReplicaSet).
    pub fn of_deployment(&self) -> bool {
        self.owner_kind.is_none_or(|k| k == super::Kind::Deployment)
    }

    /// The name it is stored under.
    pub fn key_name(&self) -> String {
        if self.of_deployment() {
            revision_name(&self.deployment, &self.hash)
        } else {
            daemonset_revision_name(&self.deployment, &self.hash)
        }
    }
}

/// Revisions keyed by (namespace, `<deployment>-<hash>`); a persistent map so
/// that snapshots of the desired state share it.
pub type Revisions = imbl::OrdMap<(String, String), Arc<Revision>>;

/// The revision stored in namespace `ns` under `key` (a [`Revision::key_name`])
/// if it belongs to the owner with `uid`: a revision left by a deleted owner
/// of the same name is not this one's.
pub fn lookup<'a>(revisions: &'a Revisions, ns: &str, key: String, uid: &str) -> Option<&'a Revision> {
    revisions.get(&(ns.to_string(), key)).map(Arc::as_ref).filter(|r| r.deployment_uid == uid)
}

/// The name of a revision (and of its ReplicaSet).
pub fn revision_name(deployment: &str, hash: &str) -> String {
    format!("{deployment}-{hash}")
}

/// The key a DaemonSet's revision is stored under: DaemonSets and
/// Deployments share the revision store, and `:` is in no object's name, so
/// a DaemonSet's revisions never meet a Deployment's of the same name.
pub fn daemonset_revision_name(daemonset: &str, hash: &str) -> String {
    format!("daemonset:{daemonset}-{hash}")
}

/// The name of replica `index` of a revision (`<deployment>-<hash>-<index>`,
/// the deployment's part shortened with a hash if that passes 63
/// characters).
pub fn pod_name(deployment: &str, hash: &str, index: u32) -> String {
    super::names::derived_pod_name(deployment, &format!("{hash}-{index}"))
}

/// What identifies a fenced replica across revisions: its owner's uid and
/// its pod id without the revision's hash (`<uid>:ns/<deployment>-<index>`),
/// so that a new revision's copy waits for the old revision's copy of the
/// same replica to end as it waits for the same pod elsewhere. The owner's
/// uid keeps apart pods whose names merely look alike (a CronJob `db`'s
/// `db-29123456-0` is no replica of Deployment `db`); other ids are their
/// own key.
pub fn fence_key(owner_uid: &str, id: &str) -> String {
    let split = id.rsplit_once('-').and_then(|(rest, index)| {
        let (prefix, hash) = rest.rsplit_once('-')?;
        let ok = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && !hash.is_empty()
            && hash.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| format!("{owner_uid}:{prefix}-{index}"))
    });
    split.unwrap_or_else(|| format!("{owner_uid}:{id}"))
}

/// Splits a pod name of `deployment` into (hash, index), if it is one.
pub fn parse_pod_name<'a>(deployment: &str, name: &'a str) -> Option<(&'a str, u32)> {
    let rest = super::names::pod_suffix(deployment, name)?;
    let (hash, index) = rest.rsplit_once('-')?;
    let ok = !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !hash.contains('-');
    ok.then_some(())?;
    Some((hash, index.parse().ok()?))
}

/// A Deployment's strategy, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutParams {
    pub replicas: u32,
    /// Stop every old pod before starting new ones.
    pub recreate: bool,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub min_ready_secs: u64,
    pub progress_deadline_secs: u64,
    pub paused: bool,
    pub history_limit: u32,
}

/// `v` (a number or a percentage of `replicas`) as a count; percentages
/// round up for surge and down for unavailability, as in Kubernetes.
fn resolve(v: Option<&IntOrString>, replicas: u32, round_up: bool) -> u32 {
    let pct = match v {
        Some(IntOrString::Int(i)) => return (*i).clamp(0, i64::from(u32::MAX)) as u32,
        Some(IntOrString::Str(s)) => s.trim_end_matches('%').parse::<u32>().unwrap_or(DEFAULT_ROLLING_PERCENT),
        None => DEFAULT_ROLLING_PERCENT,
    };
    let n = u64::from(replicas) * u64::from(pct.min(100));
    (if round_up { n.div_ceil(100) } else { n / 100 }) as u32
}

impl RolloutParams {
    pub fn of(spec: &DeploymentSpec) -> RolloutParams {
        let replicas = spec.replicas.unwrap_or(1).max(0) as u32;
        let st = spec.strategy.as_ref();
        let recreate = st.and_then(|s| s.kind.as_deref()) == Some("Recreate");
        let ru = st.and_then(|s| s.rolling_update.as_ref());
        let mut max_surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), replicas, true);
        let mut max_unavailable = resolve(ru.and_then(|r| r.max_unavailable.as_ref()), replicas, false);
        if max_surge == 0 && max_unavailable == 0 {
            // Kubernetes' fencepost rule: a rollout must be able to move.
            max_unavailable = 1;
        }
        if recreate {
            (max_surge, max_unavailable) = (0, replicas);
        }
        RolloutParams {
            replicas,
            recreate,
            max_surge,
            max_unavailable,
            min_ready_secs: spec.min_ready_seconds.unwrap_or(0).max(0) as u64,
            progress_deadline_secs: spec
                .progress_deadline_seconds
                .map_or(DEFAULT_PROGRESS_DEADLINE_SECS, |s| s.max(1) as u64),
            paused: spec.paused,
            history_limit: spec.revision_history_limit.map_or(DEFAULT_REVISION_HISTORY, |l| l.max(0) as u32),
        }
    }
}

impl RolloutParams {
    /// A DaemonSet over `nodes` eligible nodes: one slot per node, no surge,
    /// `maxUnavailable` (default 1, as Kubernetes) at a time; `OnDelete`
    /// keeps every old pod (a new one starts where the old one is gone).
    pub fn of_daemonset(spec: &DaemonSetSpec, nodes: u32) -> RolloutParams {
        let st = spec.update_strategy.as_ref();
        let on_delete = st.and_then(|s| s.kind.as_deref()) == Some("OnDelete");
        let ru = st.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_unavailable.as_ref());
        let max_unavailable = match ru {
            None => 1,
            Some(v) => resolve(Some(v), nodes, false).max(1),
        };
        RolloutParams {
            replicas: nodes,
            recreate: false,
            max_surge: 0,
            max_unavailable,
            min_ready_secs: spec.min_ready_seconds.unwrap_or(0).max(0) as u64,
            progress_deadline_secs: DEFAULT_PROGRESS_DEADLINE_SECS,
            paused: on_delete,
            history_limit: spec.revision_history_limit.map_or(DEFAULT_REVISION_HISTORY, |l| l.max(0) as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::types::{DeploymentStrategy, RollingUpdateDeployment};

    fn spec(replicas: i64, surge: Option<IntOrString>, unavail: Option<IntOrString>) -> DeploymentSpec {
        DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                kind: None,
                rolling_update: Some(RollingUpdateDeployment { max_surge: surge, max_unavailable: unavail }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_defaults_and_rounding() {
        let p = RolloutParams::of(&DeploymentSpec { replicas: Some(6), ..Default::default() });
        assert_eq!((p.max_surge, p.max_unavailable), (2, 1), "25% of 6: surge rounds up, unavailable down");
        let p = RolloutParams::of(&DeploymentSpec { replicas: Some(1), ..Default::default() });
        assert_eq!((p.max_surge, p.max_unavailable), (1, 0));
        let p = RolloutParams::of(&spec(10, Some(IntOrString::Str("10%".into())), Some(IntOrString::Int(3))));
        assert_eq!((p.max_surge, p.max_unavailable), (1, 3));
        let p = RolloutParams::of(&spec(3, Some(IntOrString::Int(0)), Some(IntOrString::Str("10%".into()))));
        assert_eq!((p.max_surge, p.max_unavailable), (0, 1), "both would be 0: one may be unavailable");
        assert_eq!((p.progress_deadline_secs, p.history_limit, p.min_ready_secs), (600, 10, 0));
        let mut r = DeploymentSpec { replicas: Some(4), ..Default::default() };
        r.strategy = Some(DeploymentStrategy { kind: Some("Recreate".into()), rolling_update: None });
        let p = RolloutParams::of(&r);
        assert!(p.recreate);
        assert_eq!((p.max_surge, p.max_unavailable), (0, 4));
    }

    #[test]
    fn pod_names_carry_the_revision() {
        let n = pod_name("web", "8cbba3f733", 3);
        assert_eq!(n, "web-8cbba3f733-3");
        assert_eq!(parse_pod_name("web", &n), Some(("8cbba3f733", 3)));
        assert_eq!(parse_pod_name("web", "web-api-8cbba3f733-3"), None, "another deployment's pod");
        assert_eq!(parse_pod_name("web-api", "web-api-8cbba3f733-3"), Some(("8cbba3f733", 3)));
        assert_eq!(parse_pod_name("web", "web-3"), None);
        // A long Deployment name: the pod name is shortened, and still parses.
        let long = "a-deployment-name-longer-than-kubernetes-would-fit-into-a-pod-name";
        let n = pod_name(long, "8cbba3f733", 12);
        assert!(n.len() <= 63, "{n}");
        assert_eq!(parse_pod_name(long, &n), Some(("8cbba3f733", 12)));
    }

    #[test]
    fn daemonsets_update_one_node_at_a_time_by_default() {
        let p = RolloutParams::of_daemonset(&DaemonSetSpec::default(), 5);
        assert_eq!((p.replicas, p.max_surge, p.max_unavailable, p.paused), (5, 0, 1, false));
        let mut s = DaemonSetSpec {
            update_strategy: Some(crate::model::types::DaemonSetUpdateStrategy {
                kind: None,
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: None,
                    max_unavailable: Some(IntOrString::Str("50%".into())),
                }),
            }),
            ..Default::default()
        };
        assert_eq!(RolloutParams::of_daemonset(&s, 5).max_unavailable, 2, "50% of 5 rounds down");
        assert_eq!(RolloutParams::of_daemonset(&s, 1).max_unavailable, 1, "never 0");
        s.update_strategy =
            Some(crate::model::types::DaemonSetUpdateStrategy { kind: Some("OnDelete".into()), rolling_update: None });
        assert!(RolloutParams::of_daemonset(&s, 5).paused, "OnDelete replaces a pod only once it is gone");
    }

    #[test]
    fn a_fenced_replica_is_one_across_revisions() {
        assert_eq!(fence_key("u", "default/db-3f2a9c01bd-0"), "u:default/db-0");
        assert_eq!(fence_key("u", "default/db-77aa000111-0"), fence_key("u", "default/db-3f2a9c01bd-0"));
        assert_ne!(fence_key("u", "default/db-3f2a9c01bd-1"), fence_key("u", "default/db-3f2a9c01bd-0"));
        assert_eq!(fence_key("u", "default/agent-n1"), "u:default/agent-n1");
        assert_eq!(fence_key("u", "default/job-0"), "u:default/job-0");
        // A CronJob `db`'s pod has a name like a replica of Deployment `db`,
        // and another owner.
        assert_ne!(fence_key("cron-job-uid", "default/db-29123456-0"), fence_key("u", "default/db-3f2a9c01bd-0"));
    }
}
