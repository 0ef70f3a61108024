//! What a Job pod's exits add to its recorded outcome (`PodResult`), and the
//! retry of a failed pod under `restartPolicy: Never`.
//!
//! A failure is counted once: an in-place restart (`OnFailure`) when its
//! container fails, a pod under `Never` when it ends Failed. The count is
//! added to the larger of the replicated record and what this node last
//! wrote, so a record that has not come back through the desired state yet
//! never makes a failure vanish.

use super::{AgentCore, Now, Out};
use crate::model::Kind;
use crate::model::pods::{PodResult, RestartPolicy};
use crate::model::status::Phase;

/// What a pod's containers did that a Job counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobSignal {
    /// A container failed (or could not start) and restarts in place.
    ContainerFailed { exit_code: i32 },
    /// Every container ended for good.
    Finished { phase: Phase, exit_code: i32 },
}

/// RFC 3339 of unix seconds.
fn rfc3339(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl AgentCore {
    /// The outcome so far of Job pod `id`: the larger of the replicated
    /// record and this node's last write, for the Job's current uid.
    fn base_result(&self, id: &str, namespace: &str, name: &str, job_uid: &str) -> PodResult {
        let known = self.plan.results.get(&(namespace.to_string(), name.to_string())).filter(|r| r.job_uid == job_uid);
        let mine = self.recorded.get(id).filter(|r| r.job_uid == job_uid);
        match (known, mine) {
            (Some(k), Some(m)) => {
                let mut r = if m.failures >= k.failures { m.clone() } else { k.clone() };
                r.succeeded = k.succeeded || m.succeeded;
                r
            }
            (Some(r), None) | (None, Some(r)) => r.clone(),
            (None, None) => PodResult { job_uid: job_uid.to_string(), ..Default::default() },
        }
    }

    /// Accounts for `signal` of pod `id` if it belongs to a Job. Returns true
    /// when the pod was stopped to be retried later (decisions change).
    pub(super) fn job_signal(&mut self, id: &str, signal: JobSignal, now: Now, out: &mut Out) -> bool {
        let Some(pod) = self.pods.get(id) else { return false };
        let d = &pod.desired;
        if d.owner.kind != Kind::Job {
            return false;
        }
        let mut r = self.base_result(id, &d.namespace, &d.name, &d.owner.uid);
        let (count_failure, succeeded, failed_pod, code) = match (signal, d.restart_policy) {
            (JobSignal::ContainerFailed { exit_code }, RestartPolicy::OnFailure) => (true, false, false, exit_code),
            (JobSignal::Finished { phase, exit_code }, policy) => {
                let failed = phase == Phase::Failed;
                (failed && policy == RestartPolicy::Never, phase == Phase::Succeeded, failed, exit_code)
            }
            (JobSignal::ContainerFailed { .. }, _) => (false, false, false, 0),
        };
        if !count_failure && !succeeded {
            return false;
        }
        if count_failure {
            r.failures = r.failures.saturating_add(1);
        }
        r.succeeded |= succeeded;
        r.exit_code = Some(code);
        r.node = self.cfg.node.clone();
        r.finished_at = rfc3339(now.unix);
        let failures = r.failures;
        self.recorded.insert(id.to_string(), r.clone());
        out.0.push(super::Effect::Record { namespace: d.namespace.clone(), name: d.name.clone(), result: r });
        if !failed_pod {
            return false;
        }
        // Under Never, a failed pod is replaced by a fresh one after a
        // back-off, as long as the Job has retries left.
        if let Some(p) = self.pods.get_mut(id) {
            p.stop(std::time::Duration::ZERO, out);
        }
        self.waiting.insert(id.to_string(), now.at + self.cfg.backoff.delay(failures.max(1)));
        true
    }
}
