//! A Job's timers without a leader: `activeDeadlineSeconds` and
//! `ttlSecondsAfterFinished`. Pure.
//!
//! **Who acts.** Like a CronJob's trigger, each Job with a timer has a
//! keeper and a fallback, ranked by rendezvous hashing over the placement
//! nodes (`cron::rank` of `job:<namespace>/<name>`), so every node agrees
//! on them without asking. The keeper acts when the time comes; the
//! fallback acts `delay` seconds later if nothing has been written meanwhile
//! (the keeper died or was cut off).
//!
//! **Twice is harmless.** The deadline's outcome is one record per Job
//! ([`JobEnd`], keyed by the Job's name, stamped with its uid): two nodes
//! that both write it write the same fact. The TTL deletes the Job of the
//! uid it saw; a second delete finds nothing.
//!
//! **The deadline.** A Job not finished `activeDeadlineSeconds` after it
//! started (its creationTimestamp) fails with `DeadlineExceeded`, as in
//! Kubernetes: every node reading the record stops its pods. A Job that
//! finishes first is never failed by it.
//!
//! **A running Job pod stays.** A Job pod is work in progress: moving it
//! restarts it from scratch. So a Job pod that a live, schedulable node
//! reports running is pinned there ([`stay`]), as Kubernetes never moves
//! a running pod; placement decides only where pods that run nowhere go.
#![deny(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};

use super::NodeSpec;
use super::cron::{Role, parse_time, rank};
use crate::membership::view::ClusterView;
use crate::model::pods::{DesiredPod, JobEnd, JobFacts, job_finished_at, job_progress};
use crate::model::status::ContainerState;
use crate::model::{Job, Kind};
use crate::state::Snapshot;

/// The Job pods of `desired` that a live node not under maintenance
/// reports running (not stopping), each with that node (the first by name
/// if two report it, during a handoff). O(pods reported).
pub fn stay(snapshot: &Snapshot, view: &ClusterView, desired: &[DesiredPod]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let jobs: BTreeSet<String> = desired.iter().filter(|d| d.owner.kind == Kind::Job).map(DesiredPod::id).collect();
    if jobs.is_empty() {
        return out;
    }
    for (name, n) in &view.nodes {
        if !n.state.alive() || snapshot.maintenance.get(name.as_str()).is_some_and(|m| m.unschedulable) {
            continue;
        }
        for (id, s) in n.pods.iter() {
            let running =
                !s.terminating && s.containers.iter().any(|c| !matches!(c.state, ContainerState::Terminated { .. }));
            if running && jobs.contains(id) {
                out.entry(id.clone()).or_insert_with(|| name.to_string());
            }
        }
    }
    out
}

/// How old a Job whose CronJob is gone must be before it is deleted (so
/// that a Job that arrived before its CronJob is not taken for an orphan).
pub const ORPHAN_GRACE_SECS: i64 = 60;

/// Whether `job` was made by a CronJob that is known to be gone, at least
/// [`ORPHAN_GRACE_SECS`] after the Job was made: a Job written by a
/// trigger just as its CronJob was deleted elsewhere. Kubernetes' garbage
/// collector deletes such dependents; here the Job's keeper does.
///
/// Gone means proven, not merely absent here (a node still catching up
/// may have the Job before the CronJob): the CronJob's name holds another
/// uid, or `deleted(namespace, name)` says this node holds its tombstone.
pub fn orphaned(job: &Job, snapshot: &Snapshot, now: i64, deleted: &dyn Fn(&str, &str) -> bool) -> bool {
    let Some(owner) = job.metadata.owner_references.iter().find(|r| r.kind == Kind::CronJob.as_str()) else {
        return false;
    };
    let ns = job.metadata.namespace.as_deref().unwrap_or_default();
    let key = crate::model::ObjectKey { kind: Kind::CronJob, namespace: ns.to_string(), name: owner.name.clone() };
    let gone = match snapshot.get(&key) {
        Some(o) => o.object.meta().uid.as_deref() != Some(owner.uid.as_str()),
        None => deleted(ns, &owner.name),
    };
    let created = job.metadata.creation_timestamp.as_deref().and_then(parse_time).unwrap_or(now);
    gone && now.saturating_sub(created) >= ORPHAN_GRACE_SECS
}

/// Kubernetes' reason and message for a Job past its deadline.
pub const DEADLINE_REASON: &str = "DeadlineExceeded";
pub const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";

/// The key a Job's keepers are ranked by.
pub fn keeper_key(namespace: &str, name: &str) -> String {
    format!("job:{namespace}/{name}")
}

/// The keeper and the fallback of Job `name` in `namespace`.
pub fn keepers(namespace: &str, name: &str, nodes: &[NodeSpec]) -> Vec<String> {
    rank(&keeper_key(namespace, name), nodes)
}

/// Whether a Job has a timer at all (only those have keepers).
pub fn has_timer(job: &Job) -> bool {
    job.spec.active_deadline_seconds.is_some() || job.spec.ttl_seconds_after_finished.is_some()
}

/// What one decision knows.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub job: &'a Job,
    pub facts: JobFacts<'a>,
    /// Unix seconds.
    pub now: i64,
    pub role: Role,
    /// This node (written into the record).
    pub node: &'a str,
}

/// What to write, and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The Job failed past its deadline: write this record.
    pub end: Option<JobEnd>,
    /// The Job's TTL after it finished has passed: delete it.
    pub delete: bool,
    /// Unix seconds of the next time this Job needs a decision.
    pub wake: Option<i64>,
}

/// The decision for one Job at `now`.
pub fn decide(i: &Input<'_>) -> Decision {
    let spec = &i.job.spec;
    let delay = match i.role {
        Role::Owner => 0,
        Role::Fallback { delay } => delay.max(0),
    };
    let progress = job_progress(i.job, i.facts);
    let mut d = Decision::default();
    if !progress.finished() {
        let (Some(secs), Some(started)) =
            (spec.active_deadline_seconds, i.job.metadata.creation_timestamp.as_deref().and_then(parse_time))
        else {
            return d;
        };
        let due = started.saturating_add(secs).saturating_add(delay);
        if i.now >= due {
            d.end = Some(JobEnd {
                job_uid: i.job.metadata.uid.clone().unwrap_or_default(),
                reason: DEADLINE_REASON.into(),
                message: DEADLINE_MESSAGE.into(),
                at: crate::model::cron::rfc3339(i.now),
                node: i.node.to_string(),
            });
            d.wake = ttl_due(i.job, i.now, delay);
        } else {
            d.wake = Some(due);
        }
        return d;
    }
    let finished = job_finished_at(i.job, i.facts).as_deref().and_then(parse_time);
    if let (Some(ttl), Some(f)) = (spec.ttl_seconds_after_finished, finished) {
        let due = f.saturating_add(ttl).saturating_add(delay);
        if i.now >= due {
            d.delete = true;
        } else {
            d.wake = Some(due);
        }
    }
    d
}

/// When a Job that ended at `ended` is due for deletion, if it has a TTL.
fn ttl_due(job: &Job, ended: i64, delay: i64) -> Option<i64> {
    job.spec.ttl_seconds_after_finished.map(|t| ended.saturating_add(t).saturating_add(delay))
}

#[cfg(test)]
mod tests;
