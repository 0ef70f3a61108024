//! The CronJob trigger of one node: the I/O around `placement::cron`. The
//! same loop runs the Job timers (`agent::job_timers`).
//!
//! It follows the plan this node obeys (which says which CronJobs it fires,
//! as owner or fallback) and the desired state, wakes at each scheduled
//! time it may have to fire, asks `placement::cron::decide` what to do, and
//! writes the outcome (the Job, Jobs to delete, the CronJob's record) in one
//! replicated transaction. A write that fails is retried at the next wake;
//! since the Job of a time is the same object whoever writes it, a retry or
//! a second node's write never makes a second Job.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::events::EventLog;
use crate::model::{Kind, Object, ObjectKey};
use crate::placement::cron::{self, Input, Role};
use crate::placement::plan::Plan;
use crate::state::apply::{plan_delete, put_made};
use crate::state::entry::kinds;
use crate::state::{Key, StateDb, Writer};

/// Settings of the trigger.
#[derive(Debug, Clone, Copy)]
pub struct CronSettings {
    /// How long after a time the fallback node fires it if no Job exists.
    pub fallback_delay: Duration,
    /// Unix milliseconds now (virtual in netsim).
    pub clock_ms: fn() -> u64,
}

/// Longest sleep between two decisions (the plan and state wake it sooner).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Shortest sleep (a decision that wants to run again at once waits this).
const MIN_SLEEP: Duration = Duration::from_millis(20);
/// Retry delay after a failed write.
pub(super) const RETRY: Duration = Duration::from_secs(1);

/// Runs the trigger until `shutdown` turns true.
pub async fn run(
    me: String,
    db: Arc<StateDb>,
    writer: Arc<dyn Writer>,
    mut plan: watch::Receiver<Arc<Plan>>,
    events: Arc<EventLog>,
    s: CronSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = db.subscribe();
    // Notices already said here: (CronJob uid, reason, scheduled time).
    let mut said: HashSet<(String, &'static str, i64)> = HashSet::new();
    loop {
        let current = plan.borrow_and_update().clone();
        let wake_ms = round(&me, &db, writer.as_ref(), &current, &events, &s, &mut said).await;
        let wake_ms = super::job_timers::round(&me, &db, writer.as_ref(), &current, &events, &s, wake_ms).await;
        // From the clock after the writes, so that their time is not overslept.
        let sleep = Duration::from_millis(wake_ms.saturating_sub((s.clock_ms)())).clamp(MIN_SLEEP, MAX_SLEEP);
        tokio::select! {
            r = plan.changed() => if r.is_err() { return },
            r = state.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One pass over the CronJobs this node fires; returns when to wake next
/// (unix milliseconds).
async fn round(
    me: &str,
    db: &StateDb,
    writer: &dyn Writer,
    plan: &Plan,
    events: &EventLog,
    s: &CronSettings,
    said: &mut HashSet<(String, &'static str, i64)>,
) -> u64 {
    let now_ms = (s.clock_ms)();
    let mut wake = now_ms + MAX_SLEEP.as_millis() as u64;
    let snapshot = db.snapshot();
    for o in snapshot.of_kind(Kind::CronJob) {
        let Object::CronJob(cj) = &o.object else { continue };
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let key = cron::trigger_key(&ns, &cj.metadata.name);
        let role = match plan.triggers.get(&key).and_then(|r| r.iter().position(|n| n == me)) {
            Some(0) => Role::Owner,
            Some(1) => Role::Fallback { delay: s.fallback_delay.as_secs().max(1) as i64 },
            _ => continue,
        };
        let jobs = cron::jobs_of(&snapshot, cj);
        let record = snapshot.cron_records.get(&(ns.clone(), cj.metadata.name.clone())).map(Arc::as_ref);
        let now = (now_ms / 1000) as i64;
        let d = cron::decide(&Input { cronjob: cj, record, jobs: &jobs, now, role, node: me });
        let mut changes = Vec::new();
        let mut failed = None;
        if let Some((_, job)) = &d.create {
            let mut job = job.clone();
            job.metadata.creation_timestamp = Some(crate::model::cron::rfc3339(now));
            let obj = Object::Job(job);
            // Written only if this node has not seen it: the same object
            // from another node may already be on its way.
            if snapshot.get(&obj.key()).is_none() {
                match put_made(&obj) {
                    Ok(c) => changes.push(c),
                    Err(e) => failed = Some(e.to_string()),
                }
            }
        }
        for name in &d.delete {
            let jk = ObjectKey { kind: Kind::Job, namespace: ns.clone(), name: name.clone() };
            if let Ok((_, c)) = plan_delete(&snapshot, &jk) {
                changes.extend(c);
            }
        }
        if let Some(r) = &d.record {
            match serde_json::to_vec(r) {
                Ok(b) => changes.push((Key::new(kinds::CRON_RECORD, ns.clone(), cj.metadata.name.clone()), Some(b))),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        if let Some(e) = failed {
            events.object(true, "CronJob", &ns, &cj.metadata.name, "FailedCreate", format!("cannot encode: {e}"));
            continue;
        }
        let written = if changes.is_empty() {
            true
        } else {
            match writer.write(changes).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(cronjob = %key, error = %e, "cannot write the CronJob's decision; retrying");
                    wake = wake.min((s.clock_ms)() + RETRY.as_millis() as u64);
                    false
                }
            }
        };
        if written {
            for n in d.notices {
                if said.insert((uid.clone(), n.reason, n.time)) {
                    events.object(n.warning, "CronJob", &ns, &cj.metadata.name, n.reason, n.message);
                }
            }
        }
        if let Some(t) = d.wake {
            wake = wake.min((t.max(0) as u64) * 1000);
        }
    }
    said.retain(|(_, _, t)| (*t as u64) * 1000 + 3_600_000 > now_ms);
    wake
}
