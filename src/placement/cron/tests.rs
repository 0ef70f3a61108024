use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::types::CronJobSpec;

/// 2026-12-02T10:00:00Z.
const T0: i64 = 1_796_205_600;

fn cronjob(schedule: &str, f: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    let mut cj = CronJob::default();
    cj.metadata.name = "backup".into();
    cj.metadata.namespace = Some("default".into());
    cj.metadata.uid = Some("cj-uid".into());
    cj.metadata.creation_timestamp = Some(cron::rfc3339(T0 - 30));
    cj.spec.schedule = schedule.into();
    cj.spec.job_template.spec.template.spec.restart_policy = Some("Never".into());
    f(&mut cj.spec);
    cj
}

fn input<'a>(cj: &'a CronJob, record: Option<&'a CronRecord>, jobs: &'a [JobInfo], now: i64, role: Role) -> Input<'a> {
    Input { cronjob: cj, record, jobs, now, role, node: "a" }
}

fn job(name: &str, scheduled: i64, state: JobState) -> JobInfo {
    JobInfo { name: name.into(), scheduled: Some(scheduled), started: scheduled, state, finished_at: None }
}

#[test]
fn the_owner_fires_a_time_when_it_comes_and_not_before() {
    let cj = cronjob("* * * * *", |_| {});
    let before = decide(&input(&cj, None, &[], T0 - 1, Role::Owner));
    assert!(before.create.is_none());
    assert_eq!(before.wake, Some(T0), "it wakes at the time");
    let at = decide(&input(&cj, None, &[], T0, Role::Owner));
    let (t, j) = at.create.expect("fires at the time");
    assert_eq!((t, j.metadata.name.as_str()), (T0, format!("backup-{}", T0 / 60).as_str()));
    assert_eq!(at.record.as_ref().and_then(|r| r.last_schedule), Some(T0));
    assert_eq!(at.wake, Some(T0 + 60));
    assert!(at.notices.iter().any(|n| n.reason == "SuccessfulCreate"));
}

#[test]
fn a_time_with_a_job_or_a_record_is_not_fired_again() {
    let cj = cronjob("* * * * *", |_| {});
    let jobs = [job("backup-x", T0, JobState::Active)];
    assert!(decide(&input(&cj, None, &jobs, T0 + 5, Role::Owner)).create.is_none());
    // The Job was deleted by the history limit; the record remembers.
    let rec = CronRecord { cronjob_uid: "cj-uid".into(), last_schedule: Some(T0), ..Default::default() };
    assert!(decide(&input(&cj, Some(&rec), &[], T0 + 5, Role::Owner)).create.is_none());
    // A record of an earlier CronJob of the same name does not count.
    let old = CronRecord { cronjob_uid: "other".into(), last_schedule: Some(T0), ..Default::default() };
    assert!(decide(&input(&cj, Some(&old), &[], T0 + 5, Role::Owner)).create.is_some());
}

#[test]
fn the_fallback_waits_its_delay_then_fires() {
    let cj = cronjob("* * * * *", |_| {});
    let fb = Role::Fallback { delay: 5 };
    let early = decide(&input(&cj, None, &[], T0 + 2, fb));
    assert!(early.create.is_none());
    assert_eq!(early.wake, Some(T0 + 5));
    assert!(decide(&input(&cj, None, &[], T0 + 5, fb)).create.is_some());
    let jobs = [job("b", T0, JobState::Active)];
    assert!(decide(&input(&cj, None, &jobs, T0 + 5, fb)).create.is_none(), "the owner fired it");
}

#[test]
fn a_time_past_its_deadline_is_reported_and_not_run() {
    let cj = cronjob("* * * * *", |s| s.starting_deadline_seconds = Some(10));
    let d = decide(&input(&cj, None, &[], T0 + 11, Role::Owner));
    assert!(d.create.is_none());
    let rec = d.record.expect("the miss is recorded");
    assert_eq!((rec.last_missed, rec.missed), (Some(T0), 1));
    let n = &d.notices[0];
    assert!(n.warning && n.reason == "MissSchedule" && n.message.contains("startingDeadlineSeconds"), "{n:?}");
    // Recorded, it is reported once.
    let again = decide(&input(&cj, Some(&rec), &[], T0 + 12, Role::Owner));
    assert!(again.notices.is_empty() && again.create.is_none());
    // Within the deadline it runs.
    assert!(decide(&input(&cj, None, &[], T0 + 10, Role::Owner)).create.is_some());
}

#[test]
fn only_the_latest_of_several_missed_times_runs_and_the_others_are_reported() {
    let cj = cronjob("* * * * *", |_| {});
    let rec = CronRecord { cronjob_uid: "cj-uid".into(), last_schedule: Some(T0), ..Default::default() };
    let d = decide(&input(&cj, Some(&rec), &[], T0 + 5 * 60 + 40, Role::Owner));
    let (t, _) = d.create.expect("the latest runs");
    assert_eq!(t, T0 + 300);
    let rec = d.record.unwrap();
    assert_eq!(rec.missed, 4, "four earlier times were missed");
    assert!(d.notices.iter().any(|n| n.reason == "MissSchedule" && n.message.starts_with("4 scheduled")));
    assert!(d.notices.iter().any(|n| n.reason == "LateSchedule"), "40 s late is said: {:?}", d.notices);
}

#[test]
fn forbid_waits_for_the_active_job_and_replace_deletes_it() {
    let active = [job("backup-1", T0 - 60, JobState::Active)];
    let forbid = cronjob("* * * * *", |s| s.concurrency_policy = Some("Forbid".into()));
    let d = decide(&input(&forbid, None, &active, T0, Role::Owner));
    assert!(d.create.is_none() && d.record.is_none(), "the time waits");
    assert_eq!(d.notices[0].reason, "JobAlreadyActive");
    let done = [job("backup-1", T0 - 60, JobState::Succeeded)];
    assert!(decide(&input(&forbid, None, &done, T0 + 20, Role::Owner)).create.is_some(), "it runs once the Job ends");
    let replace = cronjob("* * * * *", |s| s.concurrency_policy = Some("Replace".into()));
    let d = decide(&input(&replace, None, &active, T0, Role::Owner));
    assert!(d.create.is_some());
    assert_eq!(d.delete, vec!["backup-1".to_string()]);
    let allow = cronjob("* * * * *", |_| {});
    let d = decide(&input(&allow, None, &active, T0, Role::Owner));
    assert!(d.create.is_some() && d.delete.is_empty());
}

#[test]
fn suspended_runs_nothing_and_resumes_with_the_latest_time() {
    let cj = cronjob("* * * * *", |s| s.suspend = Some(true));
    assert!(decide(&input(&cj, None, &[], T0 + 200, Role::Owner)).create.is_none());
    let resumed = cronjob("* * * * *", |s| s.suspend = Some(false));
    assert_eq!(decide(&input(&resumed, None, &[], T0 + 200, Role::Owner)).create.map(|c| c.0), Some(T0 + 180));
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let cj = cronjob("* * * * *", |s| {
        s.successful_jobs_history_limit = Some(2);
        s.failed_jobs_history_limit = Some(0);
    });
    let jobs = [
        job("j1", T0 - 300, JobState::Succeeded),
        job("j2", T0 - 240, JobState::Failed),
        job("j3", T0 - 180, JobState::Succeeded),
        job("j4", T0 - 120, JobState::Succeeded),
        job("j5", T0 - 60, JobState::Active),
    ];
    let d = decide(&input(&cj, None, &jobs, T0 - 30, Role::Owner));
    assert_eq!(d.delete, vec!["j1".to_string(), "j2".to_string()]);
    assert!(decide(&input(&cj, None, &jobs, T0 - 30, Role::Fallback { delay: 5 })).delete.is_empty());
}

fn node(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        allocatable: Default::default(),
        weight: 1000,
        labels: Default::default(),
        runtimes: Default::default(),
        max_pods: 100,
        unschedulable: false,
    }
}

#[test]
fn ranks_are_the_same_everywhere_and_move_little() {
    let nodes: Vec<NodeSpec> = ["n1", "n2", "n3", "n4"].iter().map(|n| node(n)).collect();
    let r = rank("default/backup", &nodes);
    assert_eq!(r.len(), 2);
    assert_ne!(r[0], r[1]);
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(rank("default/backup", &reversed), r, "order of the nodes does not matter");
    // The fallback takes over when the owner leaves.
    let without: Vec<NodeSpec> = nodes.iter().filter(|n| n.name != r[0]).cloned().collect();
    assert_eq!(rank("default/backup", &without)[0], r[1]);
    assert_eq!(rank("x", &nodes[..1]).len(), 1);
    assert!(rank("x", &[]).is_empty());
}

/// One simulated node's turn: its role this step, whether it is up, and
/// how stale its view of the state is (in steps).
#[derive(Debug, Clone)]
struct Turn {
    role: u8,
    stale: usize,
}

/// The replicated state of the simulation: Jobs by name, and the record.
#[derive(Debug, Clone, Default)]
struct World {
    jobs: BTreeMap<String, (i64, String)>,
    record: Option<CronRecord>,
}

/// Runs `steps` of (seconds forward, each node's turn); returns the world,
/// the creations per time, how many writes of a Job met a different object
/// of the same name, and when an owner last decided.
fn simulate(cj: &CronJob, steps: &[(i64, Vec<Turn>)]) -> (World, BTreeMap<i64, usize>, usize, Option<i64>) {
    let mut history: Vec<World> = vec![World::default()];
    let mut now = T0 - 30;
    let mut creations: BTreeMap<i64, usize> = BTreeMap::new();
    let mut conflicts = 0;
    let mut last_owner = None;
    for (dt, turns) in steps {
        now += dt;
        let mut world = history.last().cloned().unwrap_or_default();
        for t in turns {
            let role = match t.role % 4 {
                0 => Role::Owner,
                1 => Role::Fallback { delay: 5 },
                _ => continue, // not a trigger node, or down
            };
            if role == Role::Owner && t.stale == 0 {
                last_owner = Some(now);
            }
            // A stale view: an earlier state, plus nothing of this step.
            let seen =
                if t.stale == 0 { world.clone() } else { history[history.len().saturating_sub(t.stale)].clone() };
            let jobs: Vec<JobInfo> = seen.jobs.iter().map(|(n, (s, _))| job(n, *s, JobState::Succeeded)).collect();
            let d = decide(&Input { cronjob: cj, record: seen.record.as_ref(), jobs: &jobs, now, role, node: "n" });
            if let Some((time, j)) = d.create {
                *creations.entry(time).or_default() += 1;
                let uid = j.metadata.uid.clone().unwrap_or_default();
                match world.jobs.get(&j.metadata.name) {
                    Some((_, u)) if *u != uid => conflicts += 1,
                    _ => {}
                }
                world.jobs.insert(j.metadata.name.clone(), (time, uid));
            }
            if let Some(r) = d.record {
                // Last writer wins, as the replicated state does.
                world.record = Some(r);
            }
        }
        history.push(world);
    }
    (history.pop().unwrap_or_default(), creations, conflicts, last_owner)
}

fn turns(stale: bool) -> impl Strategy<Value = Vec<(i64, Vec<Turn>)>> {
    let max_stale: usize = if stale { 3 } else { 0 };
    proptest::collection::vec(
        (
            1i64..50,
            proptest::collection::vec((0u8..4, 0..=max_stale).prop_map(|(role, stale)| Turn { role, stale }), 3),
        ),
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// With up-to-date views, under any order of owner changes and outages,
    /// every time fires at most once, and every time in the run is accounted
    /// for: run, or reported missed. None vanishes silently.
    #[test]
    fn every_time_fires_at_most_once_and_none_is_lost(steps in turns(false), deadline in proptest::option::of(5i64..200)) {
        let cj = cronjob("* * * * *", |s| s.starting_deadline_seconds = deadline);
        let (world, creations, conflicts, last_owner) = simulate(&cj, &steps);
        prop_assert_eq!(conflicts, 0);
        for (t, n) in &creations {
            prop_assert_eq!(*n, 1, "time {} fired {} times", t, n);
            prop_assert_eq!(t % 60, 0);
        }
        let record = world.record.clone().unwrap_or_default();
        let dealt = record.last_schedule.unwrap_or(i64::MIN).max(record.last_missed.unwrap_or(i64::MIN));
        let times = Schedule::of(&cj).unwrap().count_between(T0 - 30, dealt.max(T0 - 30)) as u64;
        prop_assert_eq!(creations.len() as u64 + record.missed, times, "run + missed = every time up to {}", dealt);
        // Liveness: when an owner last decided, every time due by then had
        // been dealt with.
        if let Some(at) = last_owner {
            let due = Schedule::of(&cj).unwrap().latest_at_or_before(at).filter(|t| *t > T0 - 30);
            prop_assert!(due.is_none_or(|t| dealt >= t), "time {:?} due at {} not dealt with (dealt {})", due, at, dealt);
        }
    }

    /// With stale views (a write not yet seen), a time may be fired by more
    /// than one node, but always as the same object: the state keeps one.
    #[test]
    fn stale_views_fire_the_same_object(steps in turns(true)) {
        let cj = cronjob("* * * * *", |_| {});
        let (world, creations, conflicts, _) = simulate(&cj, &steps);
        prop_assert_eq!(conflicts, 0);
        prop_assert_eq!(world.jobs.len(), creations.len(), "one object per time fired");
    }
}
