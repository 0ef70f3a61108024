//! CronJob schedules and the Jobs they make.
//!
//! Owns: parsing a schedule (croner: Vixie cron's five fields and the
//! `@hourly` family, no seconds field) in a time zone (jiff, with the tz
//! database bundled in the binary so every node agrees on zone rules), the
//! scheduled times between two instants, and the Job a CronJob makes for one
//! time. That Job is a pure function of (CronJob, time): its name is
//! `<cronjob>-<time in minutes>` as in Kubernetes and its uid is derived
//! from the CronJob's uid and the time, so two nodes that both fire one time
//! write the same object, which the replicated state collapses into one.
//!
//! Times are unix seconds; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use super::types::{CronJob, Job, Manifest, ObjectMeta, OwnerReference};
use super::{Invalid, Kind};

/// The annotation Kubernetes puts on a CronJob's Job: its scheduled time.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// The annotation on a Job made by `create job --from=cronjob/NAME`.
pub const INSTANTIATE_ANNOTATION: &str = "cronjob.kubernetes.io/instantiate";
/// Longest CronJob name: its Jobs add `-` and up to 11 digits of minutes
/// and must stay a 63-character label value (`job-name`), as in Kubernetes.
pub const MAX_CRONJOB_NAME: usize = 52;
/// Most scheduled times counted between two decisions; a longer gap (a
/// cluster down for weeks under `* * * * *`) reports "more than this".
pub const MAX_COUNTED_TIMES: usize = 1000;

/// `concurrencyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Concurrency {
    #[default]
    Allow,
    Forbid,
    Replace,
}

impl Concurrency {
    pub fn parse(s: Option<&str>) -> Result<Concurrency, Invalid> {
        match s {
            None | Some("Allow") => Ok(Concurrency::Allow),
            Some("Forbid") => Ok(Concurrency::Forbid),
            Some("Replace") => Ok(Concurrency::Replace),
            Some(other) => Err(Invalid(format!("must be Allow, Forbid or Replace (got {other:?})"))),
        }
    }
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: jiff::tz::TimeZone,
}

/// Parses `schedule` alone (no zone): the error names what is wrong.
fn parse_cron(schedule: &str) -> Result<croner::Cron, Invalid> {
    let s = schedule.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err(Invalid("a time zone in the schedule is not supported: set spec.timeZone instead".into()));
    }
    if s.to_ascii_lowercase().starts_with("@every") {
        return Err(Invalid("@every is not supported: write the interval as a cron field (*/5 * * * *)".into()));
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    parser.parse(s).map_err(|e| {
        Invalid(format!(
            "invalid schedule {schedule:?} ({e}): use five fields, minute hour day-of-month month day-of-week \
             (\"*/5 * * * *\", \"0 3 * * MON\"), or @hourly, @daily, @weekly, @monthly, @yearly"
        ))
    })
}

/// The time zone named `name`; UTC when absent.
fn parse_zone(name: Option<&str>) -> Result<jiff::tz::TimeZone, Invalid> {
    match name {
        None => Ok(jiff::tz::TimeZone::UTC),
        Some(n) if n.eq_ignore_ascii_case("local") => Err(Invalid(
            "must name a zone (Local would differ between nodes): use an IANA name such as Europe/Berlin or UTC".into(),
        )),
        Some(n) => jiff::tz::TimeZone::get(n)
            .map_err(|_| Invalid(format!("unknown time zone {n:?}: use an IANA name such as Europe/Berlin or UTC"))),
    }
}

impl Schedule {
    /// Parses a schedule; the two errors are for `spec.schedule` and
    /// `spec.timeZone` respectively.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, (Option<Invalid>, Option<Invalid>)> {
        match (parse_cron(schedule), parse_zone(time_zone)) {
            (Ok(cron), Ok(tz)) => Ok(Schedule { cron, tz }),
            (c, z) => Err((c.err(), z.err())),
        }
    }

    /// The schedule of a CronJob.
    pub fn of(cj: &CronJob) -> Result<Schedule, Invalid> {
        Schedule::parse(&cj.spec.schedule, cj.spec.time_zone.as_deref())
            .map_err(|(c, z)| c.or(z).unwrap_or_else(|| Invalid("invalid schedule".into())))
    }

    fn zoned(&self, unix: i64) -> Option<jiff::Zoned> {
        jiff::Timestamp::from_second(unix).ok().map(|t| t.to_zoned(self.tz.clone()))
    }

    /// The first scheduled time strictly after `unix`.
    pub fn next_after(&self, unix: i64) -> Option<i64> {
        let z = self.zoned(unix)?;
        self.cron.find_next_occurrence(&z, false).ok().map(|n| n.timestamp().as_second())
    }

    /// The latest scheduled time at or before `unix`.
    pub fn latest_at_or_before(&self, unix: i64) -> Option<i64> {
        let z = self.zoned(unix)?;
        self.cron.find_previous_occurrence(&z, true).ok().map(|n| n.timestamp().as_second())
    }

    /// How many scheduled times lie in `(after, upto]`, counting at most
    /// [`MAX_COUNTED_TIMES`].
    pub fn count_between(&self, after: i64, upto: i64) -> usize {
        let mut n = 0;
        let mut t = after;
        while n < MAX_COUNTED_TIMES {
            match self.next_after(t) {
                Some(next) if next <= upto => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }
}

/// The name of the Job a CronJob makes for `time` (unix seconds).
pub fn job_name(cronjob: &str, time: i64) -> String {
    format!("{cronjob}-{}", time.div_euclid(60))
}

/// The scheduled time of Job `job` of CronJob `cronjob`, if it is one of
/// its scheduled Jobs (a name made by [`job_name`]).
pub fn scheduled_time_of(cronjob: &str, job: &str) -> Option<i64> {
    let rest = job.strip_prefix(cronjob)?.strip_prefix('-')?;
    if rest.is_empty() || rest.len() > 12 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse::<i64>().ok().map(|m| m * 60)
}

/// A uid derived from `parts`: the same on every node.
fn derived_uid(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    crate::util::uuid_of(b, 5)
}

/// Whether Job `job` belongs to the CronJob with `uid`.
pub fn owned_by(job: &Job, uid: &str) -> bool {
    job.metadata.owner_references.iter().any(|r| r.kind == Kind::CronJob.as_str() && r.uid == uid)
}

/// RFC 3339 (UTC) of unix seconds.
pub fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map(|t| t.to_string()).unwrap_or_default()
}

/// The Job CronJob `cj` makes for scheduled time `time`: named and
/// identified by (CronJob, time) alone. `created` is its creationTimestamp.
pub fn job_for(cj: &CronJob, time: i64, created: String) -> Job {
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let name = job_name(&cj.metadata.name, time);
    let job_uid = derived_uid(&[b"cronjob", uid.as_bytes(), &time.to_le_bytes()]);
    let mut annotations = cj.spec.job_template.metadata.annotations.clone();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), rfc3339(time));
    instance(cj, name, job_uid, annotations, created)
}

/// A Job made now from `cj` by hand (`create job --from=cronjob/NAME`).
pub fn manual_job(cj: &CronJob, name: &str) -> Job {
    let mut annotations = cj.spec.job_template.metadata.annotations.clone();
    annotations.insert(INSTANTIATE_ANNOTATION.into(), "manual".into());
    let mut j = instance(cj, name.to_string(), String::new(), annotations, String::new());
    j.metadata.uid = None;
    j.metadata.creation_timestamp = None;
    j.metadata.generation = None;
    j
}

fn instance(
    cj: &CronJob,
    name: String,
    uid: String,
    annotations: std::collections::BTreeMap<String, String>,
    created: String,
) -> Job {
    Manifest {
        api_version: Kind::Job.api_version().into(),
        kind: Kind::Job.as_str().into(),
        metadata: ObjectMeta {
            name,
            namespace: cj.metadata.namespace.clone(),
            labels: cj.spec.job_template.metadata.labels.clone(),
            annotations,
            uid: Some(uid),
            resource_version: None,
            generation: Some(1),
            creation_timestamp: Some(created),
            owner_references: vec![OwnerReference {
                api_version: Kind::CronJob.api_version().into(),
                kind: Kind::CronJob.as_str().into(),
                name: cj.metadata.name.clone(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
        },
        spec: cj.spec.job_template.spec.clone(),
    }
}

/// What the cluster remembers of a CronJob between its Jobs (stored under
/// its name): the latest time that was dealt with, run or missed. Jobs are
/// deleted by the history limits, so they alone cannot say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRecord {
    pub cronjob_uid: String,
    /// Latest scheduled time a Job was made for (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule: Option<i64>,
    /// Latest scheduled time reported missed (not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed: Option<i64>,
    /// Scheduled times missed so far (not run), as reported.
    #[serde(default)]
    pub missed: u64,
    /// The latest misses, newest last: (scheduled time, reported at, why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_misses: Vec<Miss>,
}

/// One missed time, as `describe` and the events show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Miss {
    /// The scheduled time the report is about (the latest, if several).
    pub scheduled: i64,
    /// How many times it reports (that one and earlier ones skipped).
    #[serde(default)]
    pub count: u64,
    /// The times it reports, oldest first (at most [`MAX_MISS_TIMES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<i64>,
    pub reported: i64,
    pub message: String,
    pub node: String,
}

/// Misses kept in a record.
pub const MAX_RECENT_MISSES: usize = 10;
/// Times listed in one miss report.
pub const MAX_MISS_TIMES: usize = 60;

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-02T10:00:00Z.
    const T0: i64 = 1_796_205_600;

    #[test]
    fn five_fields_and_nicknames_parse_and_step() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(s.next_after(T0), Some(T0 + 300));
        assert_eq!(s.next_after(T0 + 1), Some(T0 + 300));
        assert_eq!(s.latest_at_or_before(T0 + 299), Some(T0));
        assert_eq!(s.count_between(T0, T0 + 3600), 12);
        let h = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(h.next_after(T0), Some(T0 + 3600));
        let d = Schedule::parse("@daily", None).unwrap();
        assert_eq!(d.next_after(T0), Some(T0 + 14 * 3600));
        assert!(Schedule::parse("@weekly", None).is_ok());
        assert!(Schedule::parse("@monthly", None).is_ok());
        assert!(Schedule::parse("@yearly", None).is_ok());
        assert!(Schedule::parse("0 3 * * MON", None).is_ok());
    }

    #[test]
    fn a_time_zone_moves_the_times() {
        // 03:00 in Berlin (UTC+1 in December) is 02:00 UTC.
        let s = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
        let next = s.next_after(T0).unwrap();
        assert_eq!(next % 86_400, 2 * 3600);
        let utc = Schedule::parse("0 3 * * *", None).unwrap();
        assert_eq!(utc.next_after(T0).unwrap() % 86_400, 3 * 3600);
    }

    #[test]
    fn bad_schedules_and_zones_say_what_to_write() {
        for bad in ["* * * *", "61 * * * *", "* * * * * *", "@often", "", "TZ=UTC * * * * *", "@every 5m"] {
            let Err((Some(e), None)) = Schedule::parse(bad, None) else { panic!("{bad:?} parsed") };
            assert!(!e.0.is_empty(), "{bad:?}");
        }
        let Err((None, Some(z))) = Schedule::parse("* * * * *", Some("Mars/Olympus")) else { panic!() };
        assert!(z.0.contains("Mars/Olympus") && z.0.contains("IANA"), "{}", z.0);
        assert!(Schedule::parse("* * * * *", Some("Local")).is_err());
    }

    #[test]
    fn job_names_carry_the_minute_and_parse_back() {
        assert_eq!(job_name("backup", T0), format!("backup-{}", T0 / 60));
        assert_eq!(scheduled_time_of("backup", &job_name("backup", T0)), Some(T0));
        assert_eq!(scheduled_time_of("backup", "backup-x"), None);
        assert_eq!(scheduled_time_of("backup", "backups-1"), None);
        assert_eq!(scheduled_time_of("backup", "backup-"), None);
    }

    #[test]
    fn the_job_of_a_time_is_the_same_on_every_node() {
        let mut cj = CronJob::default();
        cj.metadata.name = "backup".into();
        cj.metadata.namespace = Some("default".into());
        cj.metadata.uid = Some("u-1".into());
        let a = job_for(&cj, T0, "x".into());
        let b = job_for(&cj, T0, "y".into());
        assert_eq!(a.metadata.uid, b.metadata.uid, "the uid depends on (cronjob, time) alone");
        assert_ne!(a.metadata.uid, job_for(&cj, T0 + 60, "x".into()).metadata.uid);
        cj.metadata.uid = Some("u-2".into());
        assert_ne!(a.metadata.uid, job_for(&cj, T0, "x".into()).metadata.uid, "a recreated CronJob's Jobs differ");
        assert!(owned_by(&a, "u-1") && !owned_by(&a, "u-2"));
        assert_eq!(a.metadata.annotations[SCHEDULED_TIMESTAMP_ANNOTATION], "2026-12-02T10:00:00Z");
    }
}
