use proptest::prelude::*;

use super::*;
use crate::model::pods::{JobEnds, PodResult, Results, job_pod_name};

/// 2026-12-02T10:00:00Z.
const T0: i64 = 1_796_205_600;

fn job(f: impl FnOnce(&mut crate::model::types::JobSpec)) -> Job {
    let mut j = Job::default();
    j.metadata.name = "train".into();
    j.metadata.namespace = Some("default".into());
    j.metadata.uid = Some("job-uid".into());
    j.metadata.creation_timestamp = Some(crate::model::cron::rfc3339(T0));
    j.spec.completions = Some(2);
    j.spec.template.spec.restart_policy = Some("Never".into());
    f(&mut j.spec);
    j
}

fn succeeded(results: &mut Results, index: u32, at: i64) {
    results.insert(
        ("default".into(), job_pod_name("train", index)),
        PodResult {
            job_uid: "job-uid".into(),
            succeeded: true,
            finished_at: crate::model::cron::rfc3339(at),
            ..Default::default()
        },
    );
}

fn decide_at(j: &Job, results: &Results, ends: &JobEnds, now: i64, role: Role) -> Decision {
    decide(&Input { job: j, facts: JobFacts { results, ends }, now, role, node: "a" })
}

#[test]
fn the_deadline_fails_an_unfinished_job_at_its_time_and_not_before() {
    let j = job(|s| s.active_deadline_seconds = Some(10));
    let (r, e) = (Results::new(), JobEnds::new());
    let before = decide_at(&j, &r, &e, T0 + 9, Role::Owner);
    assert_eq!(before, Decision { wake: Some(T0 + 10), ..Default::default() });
    let at = decide_at(&j, &r, &e, T0 + 10, Role::Owner);
    let end = at.end.expect("the keeper fails it at its deadline");
    assert_eq!((end.reason.as_str(), end.job_uid.as_str()), (DEADLINE_REASON, "job-uid"));
    assert!(!at.delete);
    // The fallback waits its delay, then writes the same fact.
    let fb = Role::Fallback { delay: 5 };
    assert_eq!(decide_at(&j, &r, &e, T0 + 10, fb).end, None);
    assert_eq!(decide_at(&j, &r, &e, T0 + 10, fb).wake, Some(T0 + 15));
    assert!(decide_at(&j, &r, &e, T0 + 15, fb).end.is_some());
}

#[test]
fn a_job_that_finished_first_is_never_failed_by_its_deadline() {
    let j = job(|s| s.active_deadline_seconds = Some(10));
    let mut r = Results::new();
    succeeded(&mut r, 0, T0 + 3);
    succeeded(&mut r, 1, T0 + 4);
    assert_eq!(decide_at(&j, &r, &JobEnds::new(), T0 + 100, Role::Owner), Decision::default());
}

#[test]
fn once_its_end_is_recorded_the_job_is_failed_and_its_pods_stop() {
    let j = job(|s| s.active_deadline_seconds = Some(10));
    let r = Results::new();
    let mut ends = JobEnds::new();
    let end = decide_at(&j, &r, &ends, T0 + 10, Role::Owner).end.unwrap();
    ends.insert(("default".into(), "train".into()), std::sync::Arc::new(end));
    let facts = JobFacts { results: &r, ends: &ends };
    let p = job_progress(&j, facts);
    assert_eq!(p.failure().map(|f| f.reason), Some(DEADLINE_REASON.to_string()));
    assert!(p.active().is_empty(), "no pod runs past the deadline");
    assert!(crate::model::pods::desired_pods([&crate::model::Object::Job(j.clone())], facts).is_empty());
    // Nothing more to write: the second writer finds it done.
    assert_eq!(decide_at(&j, &r, &ends, T0 + 11, Role::Owner), Decision::default());
    // An end of an earlier Job of the same name does not count.
    let mut again = j.clone();
    again.metadata.uid = Some("new-uid".into());
    assert!(!job_progress(&again, facts).failed());
}

#[test]
fn the_ttl_deletes_a_finished_job_after_it_ended() {
    let j = job(|s| s.ttl_seconds_after_finished = Some(30));
    let mut r = Results::new();
    let e = JobEnds::new();
    succeeded(&mut r, 0, T0 + 3);
    assert_eq!(decide_at(&j, &r, &e, T0 + 1000, Role::Owner), Decision::default(), "not finished: kept");
    succeeded(&mut r, 1, T0 + 5);
    assert_eq!(decide_at(&j, &r, &e, T0 + 34, Role::Owner).wake, Some(T0 + 35));
    assert!(decide_at(&j, &r, &e, T0 + 35, Role::Owner).delete);
    let fb = Role::Fallback { delay: 5 };
    assert!(!decide_at(&j, &r, &e, T0 + 35, fb).delete);
    assert!(decide_at(&j, &r, &e, T0 + 40, fb).delete);
    // ttlSecondsAfterFinished: 0 deletes it as soon as it finished.
    let zero = job(|s| s.ttl_seconds_after_finished = Some(0));
    assert!(decide_at(&zero, &r, &e, T0 + 5, Role::Owner).delete);
}

#[test]
fn a_job_failed_by_its_deadline_is_deleted_ttl_after_its_end() {
    let j = job(|s| {
        s.active_deadline_seconds = Some(10);
        s.ttl_seconds_after_finished = Some(60);
    });
    let r = Results::new();
    let mut ends = JobEnds::new();
    let d = decide_at(&j, &r, &ends, T0 + 12, Role::Owner);
    assert_eq!(d.wake, Some(T0 + 72), "it looks again when the TTL is due");
    ends.insert(("default".into(), "train".into()), std::sync::Arc::new(d.end.unwrap()));
    assert!(!decide_at(&j, &r, &ends, T0 + 71, Role::Owner).delete);
    assert!(decide_at(&j, &r, &ends, T0 + 72, Role::Owner).delete);
}

proptest! {
    /// Whatever the order in which nodes look (keeper or fallback, early or
    /// late), the record they write for one Job is the same fact, and no
    /// one writes it before the deadline.
    #[test]
    fn every_writer_agrees_and_none_is_early(
        deadline in 1i64..600,
        looks in proptest::collection::vec((0i64..1200, any::<bool>(), 0i64..30), 1..20),
    ) {
        let j = job(|s| s.active_deadline_seconds = Some(deadline));
        let (r, e) = (Results::new(), JobEnds::new());
        for (at, owner, delay) in looks {
            let role = if owner { Role::Owner } else { Role::Fallback { delay } };
            let d = decide_at(&j, &r, &e, T0 + at, role);
            let due = T0 + deadline + if owner { 0 } else { delay };
            prop_assert_eq!(d.end.is_some(), T0 + at >= due);
            if let Some(end) = d.end {
                prop_assert_eq!((end.reason.as_str(), end.job_uid.as_str()), (DEADLINE_REASON, "job-uid"));
            } else {
                prop_assert_eq!(d.wake, Some(due));
            }
        }
    }
}

#[test]
fn a_running_job_pod_stays_on_the_node_that_runs_it() {
    use crate::membership::view::{NodeInfo, NodeState, NodeView};
    use crate::model::pods::{OwnerRef, job_pod};
    use crate::model::status::{ContainerStatus, PodStatus};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let j = job(|_| {});
    let owner = OwnerRef { kind: crate::model::Kind::Job, name: "train".into(), uid: "job-uid".into() };
    let desired: Vec<_> = (0..2)
        .map(|i| job_pod("default", owner.clone(), i, &crate::model::pods::Template::of(&j.spec.template), "h", false))
        .collect();
    let status = |state: ContainerState, terminating: bool| PodStatus {
        namespace: "default".into(),
        name: "train-0".into(),
        terminating,
        containers: vec![ContainerStatus { name: "c".into(), state, ..Default::default() }],
        ..Default::default()
    };
    let running = ContainerState::Running { started_at: 1 };
    let done = ContainerState::Terminated { exit_code: 0, reason: "Completed".into(), signal: None, finished_at: 2 };
    let mut view = ClusterView::default();
    for (node, st, alive) in [
        ("b", status(running.clone(), false), true),
        ("c", status(running.clone(), false), false),
        ("a", status(done, false), true),
        ("d", status(running, true), true),
    ] {
        view.nodes.insert(
            node.into(),
            NodeView {
                info: Arc::new(NodeInfo { name: node.into(), ..Default::default() }),
                state: if alive { NodeState::Ready } else { NodeState::Dead },
                since: 0,
                pods: crate::model::status::peer_pods(&BTreeMap::from([("default/train-0".to_string(), st)])),
                state_digest: Default::default(),
                extra: Default::default(),
            },
        );
    }
    let snapshot = Snapshot::default();
    // Only b runs it: a finished it, c is dead, d is stopping it.
    assert_eq!(stay(&snapshot, &view, &desired), BTreeMap::from([("default/train-0".to_string(), "b".to_string())]));
    // Not a Job's pod: placement decides as before.
    let mut other = desired.clone();
    for d in &mut other {
        d.owner.kind = crate::model::Kind::Deployment;
    }
    assert!(stay(&snapshot, &view, &other).is_empty());
}

#[test]
fn a_job_whose_cronjob_is_gone_is_an_orphan_after_a_grace() {
    use crate::model::types::OwnerReference;
    let mut j = job(|_| {});
    j.metadata.owner_references.push(OwnerReference {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        name: "nightly".into(),
        uid: "cj-uid".into(),
        ..Default::default()
    });
    let empty = Snapshot::default();
    let deleted = |_: &str, name: &str| name == "nightly";
    let unknown = |_: &str, _: &str| false;
    assert!(!orphaned(&j, &empty, T0 + ORPHAN_GRACE_SECS - 1, &deleted), "young: it may have been made just now");
    assert!(orphaned(&j, &empty, T0 + ORPHAN_GRACE_SECS, &deleted));
    assert!(
        !orphaned(&j, &empty, T0 + 1000, &unknown),
        "absent but not known deleted: this node may still be catching up"
    );
    assert!(!orphaned(&job(|_| {}), &empty, T0 + 1000, &deleted), "a Job made by hand has no owner");
}

#[test]
fn a_jobs_pod_is_found_by_its_id_for_a_plan_made_elsewhere() {
    use crate::placement::deployments::pod_by_id;
    let j = job(|s| s.completions = Some(3));
    let mut snapshot = Snapshot::default();
    let obj = crate::model::Object::Job(j.clone());
    snapshot.objects.insert(
        obj.key(),
        std::sync::Arc::new(crate::state::StoredObject { object: obj, stamp: Default::default(), origin: "a".into() }),
    );
    let name = job_pod_name("train", 2);
    let p = pod_by_id(&snapshot, &format!("default/{name}")).expect("the Job's pod");
    assert_eq!((p.name.as_str(), p.owner.kind), (name.as_str(), crate::model::Kind::Job));
    assert!(pod_by_id(&snapshot, "default/other-2").is_none());
    assert!(pod_by_id(&snapshot, &format!("prod/{name}")).is_none());
    assert!(pod_by_id(&snapshot, "default/train-x").is_none());
}
