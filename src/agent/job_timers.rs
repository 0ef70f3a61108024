//! The Job timers of one node (`activeDeadlineSeconds`,
//! `ttlSecondsAfterFinished`): the I/O around `placement::jobs`, run in the
//! same loop as the CronJob trigger (`agent::cron`).
//!
//! For every Job with a timer that this node keeps (as keeper or fallback),
//! it asks `placement::jobs::decide` and writes the outcome: the Job's end
//! record, or the Job's deletion. It also deletes the Jobs whose CronJob is
//! gone (`placement::jobs::orphaned`). A write that fails is retried at the next
//! wake; a second node writing the same end, or deleting a Job already
//! gone, changes nothing.

use crate::events::EventLog;
use crate::model::Object;
use crate::model::pods::JobEnd;
use crate::placement::cron::Role;
use crate::placement::jobs::{self, Input};
use crate::placement::plan::Plan;
use crate::state::apply::plan_delete;
use crate::state::entry::kinds;
use crate::state::{Key, StateDb, Writer};

use super::cron::{CronSettings, RETRY};

/// One pass over the Jobs this node keeps; returns when to wake next
/// (unix milliseconds), at most `latest`.
pub(super) async fn round(
    me: &str,
    db: &StateDb,
    writer: &dyn Writer,
    plan: &Plan,
    events: &EventLog,
    s: &CronSettings,
    latest: u64,
) -> u64 {
    let mut wake = latest;
    let snapshot = db.snapshot();
    let now_ms = (s.clock_ms)();
    let now = (now_ms / 1000) as i64;
    for o in snapshot.of_kind(crate::model::Kind::Job) {
        let Object::Job(j) = &o.object else { continue };
        let tombstone = |ns: &str, name: &str| {
            db.get(&Key::new(crate::model::Kind::CronJob.as_str(), ns.to_string(), name.to_string()))
                .is_some_and(|e| e.is_tombstone())
        };
        let orphan = !j.metadata.owner_references.is_empty() && jobs::orphaned(j, &snapshot, now, &tombstone);
        if !jobs::has_timer(j) && !orphan {
            continue;
        }
        let ns = j.metadata.namespace.clone().unwrap_or_default();
        let name = &j.metadata.name;
        let role = match jobs::keepers(&ns, name, &plan.nodes).iter().position(|n| n == me) {
            Some(0) => Role::Owner,
            Some(1) => Role::Fallback { delay: s.fallback_delay.as_secs().max(1) as i64 },
            _ => continue,
        };
        let mut d = jobs::decide(&Input { job: j, facts: snapshot.job_facts(), now, role, node: me });
        if orphan {
            tracing::info!(job = %name, namespace = %ns, "deleted: the CronJob that made it is gone");
            d = jobs::Decision { delete: true, ..Default::default() };
        }
        let mut changes = Vec::new();
        if let Some(end) = &d.end {
            match serde_json::to_vec::<JobEnd>(end) {
                Ok(b) => changes.push((Key::new(kinds::JOB_END, ns.clone(), name.clone()), Some(b))),
                Err(e) => tracing::warn!(job = %name, error = %e, "cannot encode the Job's end"),
            }
        }
        if d.delete
            && let Ok((_, c)) = plan_delete(&snapshot, &o.object.key())
        {
            changes.extend(c);
        }
        if let Some(t) = d.wake {
            wake = wake.min((t.max(0) as u64) * 1000);
        }
        if changes.is_empty() {
            continue;
        }
        if let Err(e) = writer.write(changes).await {
            tracing::warn!(job = %name, error = %e, "cannot write the Job's timer decision; retrying");
            wake = wake.min((s.clock_ms)() + RETRY.as_millis() as u64);
            continue;
        }
        // Said by the node that wrote it (the record is written once).
        if let Some(end) = &d.end {
            events.object(true, "Job", &ns, name, &end.reason, end.message.clone());
        }
        if d.delete {
            tracing::info!(job = %name, namespace = %ns, "deleted: ttlSecondsAfterFinished has passed since it finished");
        }
    }
    wake
}
