//! The agent core, told as stories: scripted inputs at given times, and the
//! effects and statuses that must follow.
#![allow(clippy::disallowed_methods)] // a base instant; every later time is scripted

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::decide::Handoff;
use super::{
    AdoptedContainer, AdoptedPod, AgentCore, Command, CoreConfig, Effect, Input, Now, ProbeKind, ProbeOutcome,
};
use crate::agent::runtime::Exit;
use crate::membership::view::{ClusterView, NodeInfo, NodeState, NodeView};
use crate::model::parse::{SourceFile, parse_files};
use crate::model::pods::{DesiredPod, PodResult, Results, desired_pods};
use crate::model::status::{ContainerState, Phase, PodStatus};
use crate::model::validate::Context;
use crate::placement::plan::Plan;

const ME: &str = "me";

/// A core and a virtual clock.
struct Story {
    core: AgentCore,
    t0: Instant,
    t: Duration,
}

impl Story {
    fn new() -> Story {
        let cfg = CoreConfig {
            node: ME.into(),
            host_ip: "127.0.0.11".into(),
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
                reset_after: Duration::from_secs(60),
            },
            handoff: Handoff { timeout: Duration::from_secs(30), linger: Duration::from_secs(1) },
        };
        Story { core: AgentCore::new(cfg), t0: Instant::now(), t: Duration::ZERO }
    }

    fn now(&self) -> Now {
        Now { at: self.t0 + self.t, unix: 1_000_000 + self.t.as_secs() }
    }

    /// Moves the clock to `secs` after the start.
    fn at(&mut self, secs: f64) -> &mut Story {
        self.t = Duration::from_secs_f64(secs);
        self
    }

    fn send(&mut self, input: Input) -> Vec<Effect> {
        let now = self.now();
        self.core.handle(input, now)
    }

    fn tick(&mut self) -> Vec<Effect> {
        self.send(Input::Tick)
    }

    fn status(&self, id: &str) -> Option<PodStatus> {
        self.core.statuses().get(id).cloned()
    }

    /// Runs the usual answers to a fresh pod: prepared, container started.
    fn bring_up(&mut self, id: &str) {
        let fx = self.send(Input::Prepared { id: id.into(), ports: Vec::new() });
        assert!(runs(&fx).contains(&Command::Start { id: id.into(), container: 0 }), "{fx:?}");
        self.send(Input::Started { id: id.into(), container: 0, container_id: "c1".into() });
    }

    fn next_deadline_secs(&self) -> Option<f64> {
        self.core.next_deadline(self.now().at).map(|d| (d - self.t0).as_secs_f64())
    }
}

fn runs(fx: &[Effect]) -> Vec<Command> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Run(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn events(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Event(e) => Some(e.reason.clone()),
            _ => None,
        })
        .collect()
}

fn records(fx: &[Effect]) -> Vec<PodResult> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Record { result, .. } => Some(result.clone()),
            _ => None,
        })
        .collect()
}

fn pods_of(yaml: &str, results: &Results) -> Vec<DesiredPod> {
    let out = parse_files(&[SourceFile { name: "t.yaml".into(), content: yaml.into() }], &Context::default(), None);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let objects: Vec<_> = out
        .objects
        .into_iter()
        .map(|p| {
            let mut o = p.object;
            o.meta_mut().uid = Some("uid-1".into());
            o
        })
        .collect();
    desired_pods(&objects, crate::model::pods::JobFacts { results, ends: &crate::model::pods::JobEnds::new() })
}

/// A plan with `pods` owned as given (`None`: nobody), with a view where
/// `ready` lists (owner, pod id, template hash) reported Ready.
fn plan(
    pods: &[DesiredPod],
    owner: &dyn Fn(&DesiredPod) -> Option<&'static str>,
    ready: &[(&str, &str, &str)],
) -> Arc<Plan> {
    let mut view = ClusterView { self_name: ME.into(), quorum: true, ..Default::default() };
    for node in [ME, "other"] {
        let statuses: BTreeMap<String, PodStatus> = ready
            .iter()
            .filter(|(n, _, _)| *n == node)
            .map(|(_, id, h)| {
                (id.to_string(), PodStatus { ready: true, template_hash: h.to_string(), ..Default::default() })
            })
            .collect();
        view.nodes.insert(
            node.into(),
            NodeView {
                info: Arc::new(NodeInfo { name: node.into(), ..Default::default() }),
                state: NodeState::Ready,
                since: 0,
                pods: crate::model::status::peer_pods(&statuses),
                state_digest: Default::default(),
                extra: Default::default(),
            },
        );
    }
    Arc::new(Plan {
        desired: pods.iter().cloned().collect(),
        owners: Arc::new(pods.iter().filter_map(|p| owner(p).map(|o| (p.id(), o.into()))).collect()),
        view: Arc::new(view),
        quorum: true,
        stable: true,
        ..Default::default()
    })
}

fn mine(_: &DesiredPod) -> Option<&'static str> {
    Some(ME)
}

fn theirs(_: &DesiredPod) -> Option<&'static str> {
    Some("other")
}

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, command: [serve]}]\n";

#[test]
fn a_crash_loop_backs_off_doubling_up_to_the_cap_and_a_long_run_resets_it() {
    let mut s = Story::new();
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    let fx = s.send(Input::Plan(plan(&pods, &mine, &[])));
    assert!(matches!(runs(&fx)[..], [Command::Prepare { .. }]), "{fx:?}");
    assert_eq!(events(&fx), ["Scheduled"]);
    s.bring_up(&id);
    assert!(s.status(&id).is_some_and(|p| p.ready && p.phase == Phase::Running));
    // Crashes right after each start: 1, 2, 4, 8, 8 s.
    let mut t = 0.0;
    for want in [1.0, 2.0, 4.0, 8.0, 8.0] {
        t += 0.5;
        let fx = s.at(t).send(Input::Exited { id: id.clone(), container: 0, exit: Exit::from_code(1, None) });
        assert!(runs(&fx).is_empty(), "no restart before the back-off: {fx:?}");
        assert_eq!(events(&fx), ["BackOff"]);
        let st = s.status(&id).unwrap();
        assert!(
            matches!(&st.containers[0].state, ContainerState::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
        assert!(!st.ready);
        assert_eq!(s.next_deadline_secs(), Some(t + want), "back-off after a crash at {t}");
        assert!(runs(&s.at(t + want - 0.01).tick()).is_empty());
        t += want;
        assert_eq!(runs(&s.at(t).tick()), [Command::Start { id: id.clone(), container: 0 }]);
        s.send(Input::Started { id: id.clone(), container: 0, container_id: "c2".into() });
    }
    assert_eq!(s.status(&id).unwrap().containers[0].restart_count, 5);
    // A run longer than reset_after starts the count over.
    t += 61.0;
    s.at(t).send(Input::Exited { id: id.clone(), container: 0, exit: Exit::from_code(1, None) });
    assert_eq!(s.next_deadline_secs(), Some(t + 1.0));
}

const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, command: [work]}]\n";

#[test]
fn a_failed_job_pod_is_counted_once_and_retried_after_a_back_off_from_a_fresh_pod() {
    let mut s = Story::new();
    let pods = pods_of(JOB, &Results::new());
    let id = "default/j-0";
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.bring_up(id);
    let fx = s.at(2.0).send(Input::Exited { id: id.into(), container: 0, exit: Exit::from_code(3, None) });
    let r = records(&fx);
    assert_eq!(r.len(), 1, "{fx:?}");
    assert_eq!((r[0].failures, r[0].succeeded, r[0].exit_code, r[0].node.as_str()), (1, false, Some(3), ME));
    assert_eq!(r[0].job_uid, "uid-1");
    assert_eq!(s.status(id).unwrap().phase, Phase::Failed);
    // The failed pod is cleaned up, and not started again before the back-off.
    let cleanup = runs(&fx);
    assert_eq!(cleanup, [Command::Cleanup { id: id.into() }]);
    assert!(runs(&s.at(2.1).send(Input::Cleaned { id: id.into() })).is_empty());
    assert!(s.status(id).is_none());
    assert!(runs(&s.at(2.9).tick()).is_empty(), "waits out the back-off (1 s)");
    assert!(matches!(runs(&s.at(3.0).tick())[..], [Command::Prepare { .. }]));
    s.bring_up(id);
    // The replicated record has not come back yet: the count still grows.
    let fx = s.at(4.0).send(Input::Exited { id: id.into(), container: 0, exit: Exit::from_code(3, None) });
    assert_eq!(records(&fx)[0].failures, 2);
    assert_eq!(s.next_deadline_secs(), Some(6.0), "second back-off: 2 s");
    // Once the record says the Job is past its limit, the pod is not desired.
    let mut results = Results::new();
    results.insert(("default".into(), "j-0".into()), records(&fx)[0].clone());
    let mut failed_out = records(&fx)[0].clone();
    failed_out.failures = 3;
    results.insert(("default".into(), "j-0".into()), failed_out);
    let gone = pods_of(JOB, &results);
    assert!(gone.is_empty(), "past backoffLimit: no pod");
    s.at(4.1).send(Input::Cleaned { id: id.into() });
    assert!(runs(&s.at(7.0).send(Input::Plan(plan(&gone, &mine, &[])))).is_empty());
}

#[test]
fn job_successes_and_in_place_failures_are_recorded() {
    let on_failure = JOB.replace("restartPolicy: Never", "restartPolicy: OnFailure");
    let mut s = Story::new();
    let pods = pods_of(&on_failure, &Results::new());
    let id = "default/j-0";
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.bring_up(id);
    // OnFailure: each failed run counts, the container restarts in place.
    let fx = s.at(1.0).send(Input::Exited { id: id.into(), container: 0, exit: Exit::from_code(1, None) });
    assert_eq!(records(&fx).iter().map(|r| r.failures).collect::<Vec<_>>(), [1]);
    assert_eq!(runs(&s.at(2.0).tick()), [Command::Start { id: id.into(), container: 0 }]);
    s.send(Input::Started { id: id.into(), container: 0, container_id: "c2".into() });
    let fx = s.at(3.0).send(Input::Exited { id: id.into(), container: 0, exit: Exit::from_code(0, None) });
    let r = records(&fx);
    assert_eq!((r.len(), r[0].succeeded, r[0].failures), (1, true, 1), "{fx:?}");
    assert_eq!(s.status(id).unwrap().phase, Phase::Succeeded);
    assert!(runs(&fx).is_empty(), "a succeeded pod stays until the Job no longer wants it");
}

#[test]
fn make_before_break_handoff() {
    let mut s = Story::new();
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    let hash = pods[0].template_hash.clone();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.bring_up(&id);
    // Placement moves the pod: it keeps running until the new copy is Ready.
    let fx = s.at(1.0).send(Input::Plan(plan(&pods, &theirs, &[])));
    assert!(runs(&fx).is_empty(), "{fx:?}");
    assert_eq!(events(&fx), ["Handoff"]);
    assert!(runs(&s.at(5.0).tick()).is_empty(), "still serving while the new owner starts");
    // Ready there with another template does not count.
    assert!(runs(&s.send(Input::Plan(plan(&pods, &theirs, &[("other", id.as_str(), "old")])))).is_empty());
    // Ready there with this template: lingers, then stops.
    assert!(runs(&s.at(6.0).send(Input::Plan(plan(&pods, &theirs, &[("other", id.as_str(), &hash)])))).is_empty());
    assert_eq!(s.next_deadline_secs(), Some(7.0), "the linger ends at 7 s");
    assert!(runs(&s.at(6.9).tick()).is_empty());
    let fx = s.at(7.0).tick();
    assert_eq!(runs(&fx), [Command::Stop { id: id.clone(), container: 0, grace: Duration::from_secs(30) }]);
    assert_eq!(events(&fx), ["Stopping", "Killing"]);
    assert!(s.status(&id).unwrap().terminating);
    let fx = s.at(7.5).send(Input::Exited { id: id.clone(), container: 0, exit: Exit::from_code(0, Some(15)) });
    assert_eq!(runs(&fx), [Command::Cleanup { id: id.clone() }]);
    assert!(s.status(&id).is_some(), "reported terminating until its files are gone");
    let fx = s.send(Input::Cleaned { id: id.clone() });
    assert!(matches!(&fx[..], [Effect::Report(r)] if r.is_empty()), "{fx:?}");
}

#[test]
fn a_handoff_that_never_completes_times_out() {
    let mut s = Story::new();
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.bring_up(&id);
    s.at(1.0).send(Input::Plan(plan(&pods, &theirs, &[])));
    assert_eq!(s.next_deadline_secs(), Some(31.0));
    let fx = s.at(31.0).tick();
    assert!(matches!(runs(&fx)[..], [Command::Stop { .. }]), "{fx:?}");
}

#[test]
fn a_fenced_pod_stops_at_once_and_starts_only_when_no_copy_runs_elsewhere() {
    let fenced = WEB.replace("  replicas: 1\n", "  replicas: 1\n  fencing: Majority\n");
    let mut s = Story::new();
    let pods = pods_of(&fenced, &Results::new());
    let id = pods[0].id();
    assert!(pods[0].fenced);
    let mut p = (*plan(&pods, &mine, &[])).clone();
    p.fenced_elsewhere.insert(id.clone());
    assert!(runs(&s.send(Input::Plan(Arc::new(p.clone())))).is_empty(), "an old copy still runs elsewhere");
    p.fenced_elsewhere.clear();
    p.stable = false;
    assert!(runs(&s.send(Input::Plan(Arc::new(p.clone())))).is_empty(), "membership just changed");
    p.stable = true;
    assert!(matches!(runs(&s.send(Input::Plan(Arc::new(p.clone()))))[..], [Command::Prepare { .. }]));
    s.bring_up(&id);
    // This node loses its majority: the fenced pod stops at once, no handoff.
    p.quorum = false;
    let fx = s.at(1.0).send(Input::Plan(Arc::new(p)));
    assert_eq!(runs(&fx), [Command::Stop { id: id.clone(), container: 0, grace: Duration::from_secs(30) }]);
    // Moved to another node: also at once.
    let mut s = Story::new();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.bring_up(&id);
    let fx = s.at(1.0).send(Input::Plan(plan(&pods, &theirs, &[])));
    assert!(matches!(runs(&fx)[..], [Command::Stop { .. }]), "{fx:?}");
    assert!(events(&fx).contains(&"Stopping".to_string()));
}

#[test]
fn adopted_containers_are_taken_over_without_a_restart() {
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    let adopted = AdoptedPod {
        id: id.clone(),
        containers: vec![AdoptedContainer { name: "c".into(), container_id: "abc".into(), started_at: 42 }],
    };
    // Owned elsewhere since this node restarted.
    let mut s2 = Story::new();
    let fx = s2.send(Input::Recovered { plan: plan(&pods, &theirs, &[]), adopted: vec![adopted.clone()] });
    assert!(matches!(runs(&fx)[..], [Command::Prepare { .. }]), "{fx:?}");
    assert_eq!(events(&fx), ["Adopted", "Handoff"], "owned elsewhere now: handed off make-before-break");
    let fx = s2.send(Input::Prepared { id: id.clone(), ports: Vec::new() });
    assert!(runs(&fx).is_empty(), "no second start: {fx:?}");
    let st = s2.status(&id).unwrap();
    assert!(st.ready);
    assert_eq!(st.containers[0].container_id, "abc");
    assert!(matches!(st.containers[0].state, ContainerState::Running { started_at: 42 }));
    // On a node that still owns it: adopted, and not started a second time.
    let mut s3 = Story::new();
    let fx = s3.send(Input::Recovered { plan: plan(&pods, &mine, &[]), adopted: vec![adopted] });
    assert_eq!(events(&fx), ["Adopted"]);
    assert_eq!(runs(&fx).len(), 1, "one Prepare, no fresh start: {fx:?}");
    assert!(runs(&s3.send(Input::Prepared { id: id.clone(), ports: Vec::new() })).is_empty());
}

const PROBED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: c\n        command: [serve]\n        ports: [{containerPort: 8080}]\n        readinessProbe: {httpGet: {port: 8080}, periodSeconds: 2}\n        livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 3, failureThreshold: 2}\n";

fn probe(fx: &[Effect], want: ProbeKind) -> Option<u64> {
    runs(fx).into_iter().find_map(|c| match c {
        Command::Probe { kind, seq, .. } if kind == want => Some(seq),
        _ => None,
    })
}

#[test]
fn probes_gate_readiness_and_a_failing_liveness_probe_restarts_the_container() {
    let mut s = Story::new();
    let pods = pods_of(PROBED, &Results::new());
    let id = pods[0].id();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.send(Input::Prepared { id: id.clone(), ports: Vec::new() });
    let fx = s.send(Input::Started { id: id.clone(), container: 0, container_id: "c1".into() });
    assert!(!s.status(&id).unwrap().ready, "not ready before its readiness probe passes");
    let r = probe(&fx, ProbeKind::Readiness).expect("readiness probe at once (no initial delay)");
    let l = probe(&fx, ProbeKind::Liveness).expect("liveness probe at once");
    s.send(Input::Probed { id: id.clone(), container: 0, seq: r, outcome: ProbeOutcome::Success });
    assert!(s.status(&id).unwrap().ready);
    s.send(Input::Probed { id: id.clone(), container: 0, seq: l, outcome: ProbeOutcome::Failure("refused".into()) });
    assert_eq!(s.next_deadline_secs(), Some(2.0), "next readiness check after its period");
    let r2 = probe(&s.at(2.0).tick(), ProbeKind::Readiness).unwrap();
    // A stale answer (an older check) changes nothing.
    s.send(Input::Probed { id: id.clone(), container: 0, seq: r, outcome: ProbeOutcome::Failure("late".into()) });
    s.send(Input::Probed { id: id.clone(), container: 0, seq: r2, outcome: ProbeOutcome::Success });
    assert!(s.status(&id).unwrap().ready);
    // The second liveness failure in a row kills it, to be restarted.
    let l2 = probe(&s.at(3.0).tick(), ProbeKind::Liveness).unwrap();
    let fx = s.send(Input::Probed {
        id: id.clone(),
        container: 0,
        seq: l2,
        outcome: ProbeOutcome::Failure("refused".into()),
    });
    assert_eq!(events(&fx), ["Unhealthy", "Killing"]);
    assert_eq!(runs(&fx), [Command::Stop { id: id.clone(), container: 0, grace: Duration::from_secs(30) }]);
    let fx = s.at(3.5).send(Input::Exited { id: id.clone(), container: 0, exit: Exit::from_code(0, Some(15)) });
    assert_eq!(events(&fx), ["BackOff"], "killed by its probe: restarts even after exit 0");
    assert_eq!(runs(&s.at(4.5).tick()), [Command::Start { id: id.clone(), container: 0 }]);
}

#[test]
fn a_pod_deleted_while_it_starts_is_stopped_once_it_has_and_then_cleaned_up() {
    let mut s = Story::new();
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.send(Input::Prepared { id: id.clone(), ports: Vec::new() });
    let fx = s.at(0.5).send(Input::Plan(plan(&[], &mine, &[])));
    assert_eq!(runs(&fx), [Command::Stop { id: id.clone(), container: 0, grace: Duration::from_secs(30) }]);
    // The start completes anyway; the runtime then applies the stop.
    assert!(runs(&s.send(Input::Started { id: id.clone(), container: 0, container_id: "c1".into() })).is_empty());
    let fx = s.send(Input::Exited { id: id.clone(), container: 0, exit: Exit::from_code(0, Some(15)) });
    assert_eq!(runs(&fx), [Command::Cleanup { id: id.clone() }]);
    // A replacement never starts while the old copy holds the pod's files.
    assert!(runs(&s.send(Input::Plan(plan(&pods, &mine, &[])))).is_empty());
    let fx = s.send(Input::Cleaned { id: id.clone() });
    assert!(matches!(runs(&fx)[..], [Command::Prepare { .. }]), "{fx:?}");
}

#[test]
fn shutdown_stops_every_pod_and_the_core_goes_idle() {
    let mut s = Story::new();
    let pods = pods_of(&WEB.replace("replicas: 1", "replicas: 2"), &Results::new());
    let ids: Vec<String> = pods.iter().map(DesiredPod::id).collect();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    s.bring_up(&ids[0]);
    s.bring_up(&ids[1]);
    let fx = s.send(Input::Shutdown);
    assert_eq!(runs(&fx).len(), 2);
    assert!(s.core.shutting_down() && !s.core.is_idle());
    assert!(runs(&s.send(Input::Plan(plan(&pods, &mine, &[])))).is_empty(), "no new start while shutting down");
    for id in &ids {
        s.send(Input::Exited { id: id.into(), container: 0, exit: Exit::from_code(0, Some(15)) });
        s.send(Input::Cleaned { id: id.into() });
    }
    assert!(s.core.is_idle());
}

#[test]
fn a_pod_that_cannot_be_prepared_says_why_and_waits() {
    let mut s = Story::new();
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    let fx = s.send(Input::PrepareFailed { id: id.clone(), reason: "VolumeError".into(), message: "no disk".into() });
    assert!(runs(&fx).is_empty());
    let st = s.status(&id).unwrap();
    assert_eq!((st.reason.as_str(), st.phase), ("VolumeError", Phase::Pending));
    assert_eq!(st.display_status(), "VolumeError");
    let fx = s.send(Input::Plan(plan(&[], &mine, &[])));
    assert_eq!(runs(&fx), [Command::Cleanup { id: id.clone() }], "deleted: nothing runs, clean up at once");
}

#[test]
fn a_pod_missing_its_configmap_waits_and_is_prepared_again_until_it_appears() {
    let mut s = Story::new();
    let pods = pods_of(WEB, &Results::new());
    let id = pods[0].id();
    s.send(Input::Plan(plan(&pods, &mine, &[])));
    let why = "configmap \"app\" not found in namespace \"default\"".to_string();
    let fx = s.at(0.5).send(Input::PrepareFailed {
        id: id.clone(),
        reason: "CreateContainerConfigError".into(),
        message: why.clone(),
    });
    assert_eq!(events(&fx), ["CreateContainerConfigError"]);
    let st = s.status(&id).unwrap();
    assert_eq!(
        (st.phase, st.reason.as_str(), st.message.as_str()),
        (Phase::Pending, "CreateContainerConfigError", why.as_str())
    );
    assert!(
        matches!(&st.containers[0].state, ContainerState::Waiting { reason, message } if reason == "CreateContainerConfigError" && *message == why)
    );
    assert_eq!(s.next_deadline_secs(), Some(2.5), "tried again 2 s later");
    assert!(runs(&s.at(2.4).tick()).is_empty());
    assert!(matches!(runs(&s.at(2.5).tick())[..], [Command::Prepare { .. }]));
    // Still missing: the same warning is not said again.
    let fx = s.at(2.6).send(Input::PrepareFailed {
        id: id.clone(),
        reason: "CreateContainerConfigError".into(),
        message: why,
    });
    assert!(events(&fx).is_empty(), "{fx:?}");
    assert!(matches!(runs(&s.at(4.6).tick())[..], [Command::Prepare { .. }]));
    // It appeared: the pod starts.
    s.at(4.7).bring_up(&id);
    assert_eq!(s.status(&id).unwrap().phase, Phase::Running);
    // Another failure (no runtime) does not mend by waiting: no retry.
    let mut s2 = Story::new();
    s2.send(Input::Plan(plan(&pods, &mine, &[])));
    s2.send(Input::PrepareFailed { id: id.clone(), reason: "RuntimeUnavailable".into(), message: "no docker".into() });
    assert!(runs(&s2.at(60.0).tick()).is_empty());
}
