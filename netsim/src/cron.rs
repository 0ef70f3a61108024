//! What the observer counts of CronJobs: every scheduled time's Jobs.
//!
//! Every sample reads each live node's desired state and notes, per Job a
//! CronJob made, every (uid, writing node) it has been seen with. Two
//! writers of one Job mean the time was fired twice and collapsed into one
//! object; two uids would mean two different Jobs for one time (never
//! expected: the uid is derived from the CronJob and the time). At the end,
//! every scheduled time from the CronJob's creation up to a margin before
//! the end is run (a Job), reported missed (counted in the CronJob's
//! record), or silently missed, which is the failure to count.

use std::collections::{BTreeMap, BTreeSet};

use shoal::model::cron::{self, Schedule};
use shoal::model::{Kind, Object};

use crate::node::SimNode;

/// One Job of a CronJob, as seen over the run.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub cronjob: String,
    pub scheduled: i64,
    pub uids: BTreeSet<String>,
    pub writers: BTreeSet<String>,
    /// Seconds from the scheduled time to the first write seen (its stamp).
    pub delay: f64,
}

/// The CronJob figures of a run.
#[derive(Debug, Clone, Default)]
pub struct CronFigures {
    /// Scheduled times that were due.
    pub times: usize,
    /// Times with a Job.
    pub run: usize,
    /// Times fired by two or more nodes (collapsed into one Job).
    pub fired_twice: usize,
    /// Times with two different Jobs (must be 0).
    pub two_jobs: usize,
    /// Times reported missed (an event and the record) that did not run.
    pub reported_missed: usize,
    /// Times reported missed that did run (the reporting node had not seen
    /// their Job yet): a false report.
    pub false_misses: usize,
    /// Times neither run nor reported.
    pub silently_missed: usize,
    /// Trigger delay per run time, seconds.
    pub delays: Vec<f64>,
}

#[derive(Debug, Default)]
pub struct CronWatch {
    pub jobs: BTreeMap<(String, String), Seen>,
}

impl CronWatch {
    pub fn sample(&mut self, nodes: &[SimNode]) {
        for n in nodes.iter().filter(|n| n.up()) {
            let snap = n.db.snapshot();
            if snap.of_kind(Kind::CronJob).next().is_none() {
                continue;
            }
            for o in snap.of_kind(Kind::Job) {
                let Object::Job(j) = &o.object else { continue };
                let Some(owner) = j.metadata.owner_references.iter().find(|r| r.kind == "CronJob") else { continue };
                let Some(t) = cron::scheduled_time_of(&owner.name, &j.metadata.name) else { continue };
                let ns = j.metadata.namespace.clone().unwrap_or_default();
                let s = self.jobs.entry((ns, j.metadata.name.clone())).or_insert_with(|| Seen {
                    cronjob: owner.name.clone(),
                    scheduled: t,
                    delay: o.stamp.unix_secs() - t as f64,
                    ..Default::default()
                });
                s.uids.insert(j.metadata.uid.clone().unwrap_or_default());
                s.writers.insert(o.origin.clone());
                s.delay = s.delay.min(o.stamp.unix_secs() - t as f64);
            }
        }
    }

    /// The figures at the end, from the state of a live node: times due up
    /// to `upto` (unix seconds).
    pub fn figures(&self, nodes: &[SimNode], upto: i64) -> CronFigures {
        let mut f = CronFigures::default();
        let Some(n) = nodes.iter().find(|n| n.up()) else { return f };
        let snap = n.db.snapshot();
        for o in snap.of_kind(Kind::CronJob) {
            let Object::CronJob(cj) = &o.object else { continue };
            let Ok(schedule) = Schedule::of(cj) else { continue };
            let ns = cj.metadata.namespace.clone().unwrap_or_default();
            let created =
                cj.metadata.creation_timestamp.as_deref().and_then(shoal::placement::cron::parse_time).unwrap_or(upto);
            let reported: BTreeSet<i64> = snap
                .cron_records
                .get(&(ns.clone(), cj.metadata.name.clone()))
                .map(|r| r.recent_misses.iter().flat_map(|m| m.times.iter().copied()).collect())
                .unwrap_or_default();
            let mut t = created;
            while let Some(next) = schedule.next_after(t).filter(|x| *x <= upto) {
                f.times += 1;
                if let Some(s) = self.jobs.get(&(ns.clone(), cron::job_name(&cj.metadata.name, next))) {
                    f.run += 1;
                    f.fired_twice += usize::from(s.writers.len() > 1);
                    f.two_jobs += usize::from(s.uids.len() > 1);
                    f.delays.push(s.delay.max(0.0));
                    f.false_misses += usize::from(reported.contains(&next));
                } else if reported.contains(&next) {
                    f.reported_missed += 1;
                } else {
                    f.silently_missed += 1;
                }
                t = next;
            }
        }
        f
    }
}
