//! CronJob triggers without a leader. Pure.
//!
//! **Who fires.** Every CronJob has a ranked pair of trigger nodes, chosen
//! like a pod's owner (rendezvous hashing over the placement nodes), so
//! every node computes the same pair from the same view: the first fires
//! each scheduled time at that time; the second, the fallback, fires it
//! only if no Job for it has appeared `fallback_delay` later (the first was
//! stuck, or died before its write spread).
//!
//! **Exactly once.** A time fires at most once per CronJob because the Job
//! for time `t` is one object, named `<cronjob>-<t in minutes>` with a uid
//! derived from (CronJob, t) (`model::cron::job_for`): two nodes that both
//! fire `t` (an owner change, a partition, a write that spread late) write
//! the same Job, and the replicated state keeps one. A time is dealt with
//! once it has a Job or is recorded in the CronJob's [`CronRecord`] (the
//! latest time run and the latest missed, which outlive Jobs deleted by the
//! history limits).
//!
//! **Decisions**, as Kubernetes' CronJob controller makes them: only the
//! latest time due is run (earlier ones missed meanwhile are reported); a
//! time later than `startingDeadlineSeconds` is reported missed and not
//! run; a time run late with no deadline says so; `Forbid` waits while a
//! Job is active, `Replace` deletes the active ones; `suspend` runs nothing;
//! finished Jobs beyond the history limits are deleted.
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use super::{NodeSpec, mix, seed};
use crate::model::cron::{self, Concurrency, CronRecord, Miss, Schedule};
use crate::model::pods::{JobFacts, job_finished_at, job_progress};
use crate::model::{CronJob, Job, Kind, Object};
use crate::state::Snapshot;

/// Nodes that fire a CronJob: the trigger owner, then its fallback.
pub type Triggers = BTreeMap<String, Vec<String>>;

/// Default `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`.
pub const DEFAULT_SUCCESSFUL_HISTORY: i64 = 3;
pub const DEFAULT_FAILED_HISTORY: i64 = 1;
/// A time run this long (seconds) after it with no `startingDeadlineSeconds`
/// is reported as late.
pub const LATE_NOTICE_SECS: i64 = 30;

/// The trigger key of a CronJob (`<namespace>/<name>`).
pub fn trigger_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The two nodes (fewer if there are fewer) that fire the CronJob `key`,
/// best first: rendezvous hashing, so a node joining or leaving moves only
/// the CronJobs it wins or held.
pub fn rank(key: &str, nodes: &[NodeSpec]) -> Vec<String> {
    let k = seed(key.as_bytes());
    let mut scored: Vec<(u64, &str)> =
        nodes.iter().map(|n| (mix(k ^ seed(n.name.as_bytes())), n.name.as_str())).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(2).map(|(_, n)| n.to_string()).collect()
}

/// The trigger nodes of every CronJob of `snapshot` over `nodes`.
pub fn triggers(snapshot: &Snapshot, nodes: &[NodeSpec]) -> Triggers {
    snapshot
        .of_kind(Kind::CronJob)
        .map(|o| {
            let m = o.object.meta();
            let key = trigger_key(m.namespace.as_deref().unwrap_or_default(), &m.name);
            let r = rank(&key, nodes);
            (key, r)
        })
        .collect()
}

/// This node's part in firing a CronJob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It fires each time when it comes.
    Owner,
    /// It fires a time only if no Job for it exists `delay` seconds later.
    Fallback { delay: i64 },
}

/// Where one Job of a CronJob stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Active,
    Succeeded,
    Failed,
}

/// One Job of a CronJob, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub name: String,
    /// Its scheduled time; `None` for a Job made by hand.
    pub scheduled: Option<i64>,
    /// When it started (its scheduled time, else its creationTimestamp).
    pub started: i64,
    pub state: JobState,
    /// When its last pod finished (RFC 3339), once it is finished.
    pub finished_at: Option<String>,
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// The Jobs of CronJob `cj` (those naming it, by uid, as their owner),
/// oldest first.
pub fn jobs_of(snapshot: &Snapshot, cj: &CronJob) -> Vec<JobInfo> {
    let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
    let uid = cj.metadata.uid.as_deref().unwrap_or_default();
    let mut out: Vec<JobInfo> = snapshot
        .of_kind(Kind::Job)
        .filter_map(|o| if let Object::Job(j) = &o.object { Some(j) } else { None })
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns) && cron::owned_by(j, uid))
        .map(|j| job_info(j, snapshot.job_facts()))
        .collect();
    out.sort_by(|a, b| (a.started, &a.name).cmp(&(b.started, &b.name)));
    out
}

fn job_info(j: &Job, facts: JobFacts<'_>) -> JobInfo {
    let scheduled = j.metadata.annotations.get(cron::SCHEDULED_TIMESTAMP_ANNOTATION).and_then(|t| parse_time(t));
    let created = j.metadata.creation_timestamp.as_deref().and_then(parse_time).unwrap_or(0);
    let p = job_progress(j, facts);
    let state = if p.complete() {
        JobState::Succeeded
    } else if p.failed() {
        JobState::Failed
    } else {
        JobState::Active
    };
    let finished_at = (state != JobState::Active).then(|| job_finished_at(j, facts)).flatten();
    JobInfo { name: j.metadata.name.clone(), scheduled, started: scheduled.unwrap_or(created), state, finished_at }
}

/// What one decision knows.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub cronjob: &'a CronJob,
    pub record: Option<&'a CronRecord>,
    /// The CronJob's Jobs, oldest first ([`jobs_of`]).
    pub jobs: &'a [JobInfo],
    /// Unix seconds now.
    pub now: i64,
    pub role: Role,
    /// This node's name (for the record of a miss).
    pub node: &'a str,
}

/// Something worth an event on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// The scheduled time it is about (so that it is said once).
    pub time: i64,
}

/// What to do for one CronJob now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The Job to create for a scheduled time (with its creationTimestamp
    /// left for the writer to fill in).
    pub create: Option<(i64, Job)>,
    /// Jobs to delete (`Replace`, history limits).
    pub delete: Vec<String>,
    /// The CronJob's record, when it changes.
    pub record: Option<CronRecord>,
    pub notices: Vec<Notice>,
    /// When to decide again at the latest (unix seconds).
    pub wake: Option<i64>,
}

/// The latest time already dealt with: run (a Job exists or the record says
/// so), missed, or before the CronJob existed.
fn dealt_with(inp: &Input<'_>, uid: &str) -> i64 {
    let created = inp.cronjob.metadata.creation_timestamp.as_deref().and_then(parse_time).unwrap_or(inp.now);
    let rec = inp.record.filter(|r| r.cronjob_uid == uid);
    let from_record =
        rec.map_or(i64::MIN, |r| r.last_schedule.unwrap_or(i64::MIN).max(r.last_missed.unwrap_or(i64::MIN)));
    let from_jobs = inp.jobs.iter().filter_map(|j| j.scheduled).max().unwrap_or(i64::MIN);
    created.max(from_record).max(from_jobs)
}

/// Decides what CronJob `inp.cronjob` does now. Pure: the same input gives
/// the same decision on every node.
pub fn decide(inp: &Input<'_>) -> Decision {
    let cj = inp.cronjob;
    let mut d = Decision::default();
    let Ok(schedule) = Schedule::of(cj) else { return d };
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let now = inp.now;
    let last = dealt_with(inp, &uid);
    let mut record = inp
        .record
        .filter(|r| r.cronjob_uid == uid)
        .cloned()
        .unwrap_or(CronRecord { cronjob_uid: uid.clone(), ..Default::default() });
    let next = schedule.next_after(now.max(last));
    d.wake = next;
    if inp.role == Role::Owner {
        d.delete = beyond_history(cj, inp.jobs);
    }
    let due = schedule.latest_at_or_before(now).filter(|t| *t > last);
    let Some(t) = due else { return d };
    if cj.spec.suspend == Some(true) {
        // Suspended: nothing runs; on resume the latest time due runs if
        // its deadline allows, as in Kubernetes.
        return d;
    }
    if let Role::Fallback { delay } = inp.role
        && now < t + delay
    {
        d.wake = Some(t + delay);
        return d;
    }
    let earlier = schedule.count_between(last, t).saturating_sub(1);
    let when = cron::rfc3339(t);
    // The times a report covers: the earlier ones skipped, and `t` itself
    // when it is missed too.
    let skipped = |with_t: bool| {
        let mut v = Vec::new();
        let mut x = last;
        while let Some(n) = schedule.next_after(x).filter(|n| *n < t && v.len() < cron::MAX_MISS_TIMES) {
            v.push(n);
            x = n;
        }
        if with_t {
            v.push(t);
        }
        v
    };
    let miss = |record: &mut CronRecord, count: u64, times: Vec<i64>, message: String| {
        record.missed += count;
        let node = inp.node.to_string();
        record.recent_misses.push(Miss { scheduled: t, count, times, reported: now, message, node });
        let extra = record.recent_misses.len().saturating_sub(cron::MAX_RECENT_MISSES);
        record.recent_misses.drain(..extra);
    };
    if let Some(deadline) = cj.spec.starting_deadline_seconds
        && now > t + deadline
    {
        let message = format!(
            "missed scheduled time {when}: it is {}s later, past startingDeadlineSeconds ({deadline}s); not run{}",
            now - t,
            if earlier > 0 { format!(" ({earlier} earlier time(s) missed too)") } else { String::new() }
        );
        miss(&mut record, 1 + earlier as u64, skipped(true), message.clone());
        record.last_missed = Some(t);
        d.notices.push(Notice { warning: true, reason: "MissSchedule", message, time: t });
        d.record = Some(record);
        return d;
    }
    let active: Vec<&JobInfo> = inp.jobs.iter().filter(|j| j.state == JobState::Active).collect();
    match Concurrency::parse(cj.spec.concurrency_policy.as_deref()).unwrap_or_default() {
        Concurrency::Forbid if !active.is_empty() => {
            // Kubernetes waits: the time runs when the active Job ends, if
            // its deadline has not passed by then.
            d.notices.push(Notice {
                warning: false,
                reason: "JobAlreadyActive",
                message: format!(
                    "not starting the job for {when}: {} is still running and concurrencyPolicy is Forbid",
                    active.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
                time: t,
            });
            d.wake = cj.spec.starting_deadline_seconds.map(|s| t + s + 1).or(next);
            return d;
        }
        Concurrency::Replace => {
            for j in &active {
                if !d.delete.contains(&j.name) {
                    d.delete.push(j.name.clone());
                }
            }
        }
        _ => {}
    }
    if earlier > 0 {
        let message = format!(
            "{earlier} scheduled time(s) between {} and {when} were missed (no node could run them); running only the latest",
            cron::rfc3339(last)
        );
        miss(&mut record, earlier as u64, skipped(false), message.clone());
        d.notices.push(Notice { warning: true, reason: "MissSchedule", message, time: t });
    }
    let job = cron::job_for(cj, t, String::new());
    let late = now - t;
    if late > LATE_NOTICE_SECS {
        d.notices.push(Notice {
            warning: true,
            reason: "LateSchedule",
            message: format!("started job {} {late}s after its scheduled time {when}", job.metadata.name),
            time: t,
        });
    }
    d.notices.push(Notice {
        warning: false,
        reason: "SuccessfulCreate",
        message: format!("Created job {}", job.metadata.name),
        time: t,
    });
    record.last_schedule = Some(t);
    d.record = Some(record);
    d.create = Some((t, job));
    d
}

/// Finished Jobs beyond `successfulJobsHistoryLimit` and
/// `failedJobsHistoryLimit`, oldest first.
fn beyond_history(cj: &CronJob, jobs: &[JobInfo]) -> Vec<String> {
    let keep_ok = cj.spec.successful_jobs_history_limit.unwrap_or(DEFAULT_SUCCESSFUL_HISTORY).max(0) as usize;
    let keep_failed = cj.spec.failed_jobs_history_limit.unwrap_or(DEFAULT_FAILED_HISTORY).max(0) as usize;
    let mut out = Vec::new();
    for (state, keep) in [(JobState::Succeeded, keep_ok), (JobState::Failed, keep_failed)] {
        let of: Vec<&JobInfo> = jobs.iter().filter(|j| j.state == state).collect();
        out.extend(of.iter().take(of.len().saturating_sub(keep)).map(|j| j.name.clone()));
    }
    out
}

#[cfg(test)]
mod tests;
