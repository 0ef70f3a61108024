//! The lifecycle of one pod on this node and of each of its containers, as
//! pure transitions: prepared, started, exited (restart after a back-off or
//! done), probed, stopped, cleaned up. Every transition updates the status
//! the node reports and says what the runtime must do next.

use std::time::{Duration, Instant};

use super::backoff::{AfterExit, Backoff, after_exit};
use super::decide::Handoff;
use super::jobs::JobSignal;
use super::probe::{Timing, Tracker};
use super::{AdoptedContainer, Command, CoreConfig, Now, Out, ProbeKind, ProbeOutcome};
use crate::agent::runtime::Exit;
use crate::model::pods::DesiredPod;
use crate::model::status::{ContainerState, ContainerStatus, Phase, PodStatus, PortMapping};

/// How soon a pod whose ConfigMap or key is missing is prepared again.
pub(super) const CONFIG_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// `Prepare` sent, no answer yet.
    Preparing,
    Prepared,
    /// Preparing failed: the pod waits, with the reason in its status, until
    /// it is stopped, or until `retry_prepare` for a failure that can mend
    /// (a ConfigMap it needs appears).
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Run {
    /// Not started yet (the pod is being prepared).
    Idle,
    /// `Start` sent; `stop`: a stop was asked for meanwhile.
    Starting { stop: bool },
    Running {
        since: Instant,
        /// Killed by this node for a failed liveness probe (restarts).
        forced: bool,
        /// Being stopped for good.
        stopping: bool,
    },
    /// Waiting to be restarted.
    BackOff { until: Instant },
    /// Ended for good (by its restart policy, or stopped).
    Done,
}

#[derive(Debug, Clone)]
pub(super) struct ProbeState {
    kind: ProbeKind,
    timing: Timing,
    tracker: Tracker,
    next: Instant,
    /// The check in flight (its number), if any.
    in_flight: Option<u64>,
    /// Dropped for this run of the container.
    off: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Ctr {
    run: Run,
    /// Consecutive failed starts and crashes (the back-off count).
    consecutive: u32,
    adopted: Option<AdoptedContainer>,
    probes: Vec<ProbeState>,
}

#[derive(Debug, Clone)]
pub(super) struct Pod {
    pub(super) desired: DesiredPod,
    pub(super) status: PodStatus,
    pub(super) stage: Stage,
    pub(super) stopping: bool,
    /// `Cleanup` sent.
    pub(super) cleaning: bool,
    /// When this node stopped owning it (handoff started).
    pub(super) handoff_since: Option<Instant>,
    /// When the new owner was first seen reporting it Ready.
    pub(super) ready_elsewhere_since: Option<Instant>,
    /// When to prepare it again after a failure that can mend.
    retry_prepare: Option<Instant>,
    containers: Vec<Ctr>,
    /// Every container ended for good (reported once).
    finished: bool,
    /// The last non-zero exit code of a container that ended for good.
    last_code: i32,
    next_probe_seq: u64,
    dirty: bool,
}

impl Pod {
    pub(super) fn new(desired: DesiredPod, cfg: &CoreConfig, adopted: Option<Vec<AdoptedContainer>>, now: Now) -> Pod {
        let mut adopted = adopted.unwrap_or_default();
        let spec = desired.spec.clone();
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let probes = [(ProbeKind::Readiness, &c.readiness_probe), (ProbeKind::Liveness, &c.liveness_probe)]
                    .into_iter()
                    .filter_map(|(kind, p)| {
                        let timing = Timing::of(p.as_ref()?);
                        let tracker = Tracker::new(kind == ProbeKind::Liveness);
                        Some(ProbeState { kind, timing, tracker, next: now.at, in_flight: None, off: true })
                    })
                    .collect();
                let mine = adopted.iter().position(|a| a.name == c.name).map(|i| adopted.swap_remove(i));
                Ctr { run: Run::Idle, consecutive: 0, adopted: mine, probes }
            })
            .collect();
        let status = PodStatus {
            namespace: desired.namespace.clone(),
            name: desired.name.clone(),
            node: cfg.node.clone(),
            owner_uid: desired.owner.uid.clone(),
            template_hash: desired.template_hash.clone(),
            phase: Phase::Pending,
            host_ip: cfg.host_ip.clone(),
            started_at: now.unix,
            containers: spec
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_else(|| c.command.join(" ")),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Pod {
            desired,
            status,
            stage: Stage::Preparing,
            stopping: false,
            cleaning: false,
            handoff_since: None,
            ready_elsewhere_since: None,
            retry_prepare: None,
            containers,
            finished: false,
            last_code: 0,
            next_probe_seq: 0,
            dirty: true,
        }
    }

    fn id(&self) -> String {
        self.desired.id()
    }

    fn name_of(&self, i: usize) -> &str {
        self.desired.spec.containers.get(i).map_or("?", |c| c.name.as_str())
    }

    /// The status, marked changed.
    fn st(&mut self) -> &mut PodStatus {
        self.dirty = true;
        &mut self.status
    }

    fn cstatus(&mut self, i: usize, f: impl FnOnce(&mut ContainerStatus)) {
        if let Some(c) = self.st().containers.get_mut(i) {
            f(c);
        }
    }

    /// Recomputes phase and readiness if the status changed; says whether it did.
    pub(super) fn settle_status(&mut self) -> bool {
        if std::mem::take(&mut self.dirty) {
            recompute(&mut self.status);
            true
        } else {
            false
        }
    }

    pub(super) fn prepared(&mut self, ports: Vec<PortMapping>, now: Now, out: &mut Out) {
        if self.stage != Stage::Preparing {
            return;
        }
        self.stage = Stage::Prepared;
        self.st().ports = ports;
        let stopping = self.stopping;
        for i in 0..self.containers.len() {
            match self.containers[i].adopted.take() {
                Some(a) => self.running(i, a.container_id, a.started_at, now, out),
                None if !stopping => self.start(i, out),
                None => self.containers[i].run = Run::Done,
            }
        }
        if stopping {
            // Stopped while it was being prepared: adopted containers run
            // and must be stopped too.
            self.stopping = false;
            self.stop(self.desired.grace, out);
        }
    }

    pub(super) fn prepare_failed(&mut self, reason: String, message: String, now: Now, out: &mut Out) {
        if self.stage != Stage::Preparing {
            return;
        }
        self.stage = Stage::Broken;
        // What it references may appear: try again (said once per message).
        let mends = reason == crate::model::config::CONFIG_ERROR;
        self.retry_prepare = mends.then_some(now.at + CONFIG_RETRY);
        if !mends || self.status.message != message {
            out.event(true, &self.desired, reason.clone(), message.clone());
        }
        let st = self.st();
        st.reason = reason.clone();
        st.message = message.clone();
        for c in &mut st.containers {
            c.state = ContainerState::Waiting { reason: reason.clone(), message: message.clone() };
        }
        for c in &mut self.containers {
            c.run = if self.stopping { Run::Done } else { Run::Idle };
        }
    }

    fn start(&mut self, i: usize, out: &mut Out) {
        if let Some(img) = self.desired.spec.containers.get(i).and_then(|c| c.image.clone()) {
            self.cstatus(i, |c| {
                c.state =
                    ContainerState::Waiting { reason: "ContainerCreating".into(), message: format!("starting {img}") }
            });
        }
        self.containers[i].run = Run::Starting { stop: false };
        out.run(Command::Start { id: self.id(), container: i });
    }

    /// The container runs (just started, or adopted): status, probes.
    fn running(&mut self, i: usize, container_id: String, started_at: u64, now: Now, out: &mut Out) {
        let name = self.name_of(i).to_string();
        out.event(false, &self.desired, "Started", format!("started container {name} ({container_id})"));
        let has_readiness = self.containers[i].probes.iter().any(|p| p.kind == ProbeKind::Readiness);
        self.cstatus(i, |c| {
            c.state = ContainerState::Running { started_at };
            c.ready = !has_readiness;
            c.container_id = container_id;
        });
        let c = &mut self.containers[i];
        c.run = Run::Running { since: now.at, forced: false, stopping: false };
        for p in &mut c.probes {
            p.tracker = Tracker::new(p.kind == ProbeKind::Liveness);
            p.next = now.at + p.timing.initial_delay;
            p.in_flight = None;
            p.off = false;
        }
    }

    pub(super) fn started(&mut self, i: usize, container_id: String, now: Now, out: &mut Out) {
        let Some(Run::Starting { stop }) = self.containers.get(i).map(|c| c.run) else { return };
        self.running(i, container_id, now.unix, now, out);
        if stop {
            // The stop was sent while it started; the runtime applies it now.
            self.containers[i].run = Run::Running { since: now.at, forced: false, stopping: true };
            self.cstatus(i, |c| c.ready = false);
        }
    }

    pub(super) fn start_failed(
        &mut self,
        i: usize,
        reason: String,
        message: String,
        now: Now,
        backoff: &Backoff,
        out: &mut Out,
    ) -> Option<JobSignal> {
        let Some(Run::Starting { stop }) = self.containers.get(i).map(|c| c.run) else { return None };
        let name = self.name_of(i).to_string();
        out.event(true, &self.desired, reason.clone(), format!("container {name}: {message}"));
        self.cstatus(i, |c| c.state = ContainerState::Waiting { reason, message });
        let c = &mut self.containers[i];
        c.consecutive += 1;
        c.run = if stop || self.stopping {
            Run::Done
        } else {
            Run::BackOff { until: now.at + backoff.delay(c.consecutive) }
        };
        Some(JobSignal::ContainerFailed { exit_code: -1 })
    }

    pub(super) fn exited(
        &mut self,
        i: usize,
        exit: Exit,
        now: Now,
        backoff: &Backoff,
        out: &mut Out,
    ) -> Vec<JobSignal> {
        let Some(run) = self.containers.get(i).map(|c| c.run) else { return Vec::new() };
        let terminated = ContainerState::Terminated {
            exit_code: exit.code,
            reason: if exit.oom_killed { "OOMKilled".into() } else { exit.reason.clone() },
            signal: exit.signal,
            finished_at: now.unix,
        };
        let (since, forced) = match run {
            Run::Running { stopping: true, .. } | Run::Starting { .. } => {
                // Stopped on purpose (or stopped before it ever ran).
                self.containers[i].run = Run::Done;
                self.cstatus(i, |c| {
                    c.ready = false;
                    c.state = terminated;
                });
                return Vec::new();
            }
            Run::Running { since, forced, .. } => (since, forced),
            Run::Idle | Run::BackOff { .. } | Run::Done => return Vec::new(),
        };
        for p in &mut self.containers[i].probes {
            p.in_flight = None;
            p.off = true;
        }
        let c = &mut self.containers[i];
        let ran_for = now.at.saturating_duration_since(since);
        let failed = exit.code != 0 || forced;
        let mut signals = Vec::new();
        match after_exit(self.desired.restart_policy, exit.code, forced, ran_for, c.consecutive, backoff) {
            AfterExit::Restart { delay, consecutive } => {
                c.consecutive = consecutive;
                c.run = Run::BackOff { until: now.at + delay };
                if failed {
                    signals.push(JobSignal::ContainerFailed { exit_code: exit.code });
                }
                let name = self.name_of(i).to_string();
                let secs = delay.as_secs_f64();
                out.event(
                    true,
                    &self.desired,
                    "BackOff",
                    format!("back-off {secs:.1}s restarting container {name} (exit code {})", exit.code),
                );
                self.cstatus(i, |c| {
                    c.ready = false;
                    c.last_state = Some(terminated);
                    c.restart_count += 1;
                    c.state = ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!("back-off {secs:.1}s restarting failed container {name}"),
                    };
                });
            }
            AfterExit::Done => {
                c.run = Run::Done;
                if exit.code != 0 {
                    self.last_code = exit.code;
                }
                self.cstatus(i, |c| {
                    c.ready = false;
                    c.state = terminated;
                });
                if !self.stopping && !self.finished && self.containers.iter().all(|c| c.run == Run::Done) {
                    self.finished = true;
                    recompute(&mut self.status);
                    signals.push(JobSignal::Finished { phase: self.status.phase, exit_code: self.last_code });
                }
            }
        }
        signals
    }

    pub(super) fn probed(&mut self, i: usize, seq: u64, outcome: ProbeOutcome, now: Now, out: &mut Out) {
        let Some(c) = self.containers.get_mut(i) else { return };
        let Run::Running { forced: false, stopping: false, .. } = c.run else { return };
        let Some(p) = c.probes.iter_mut().find(|p| p.in_flight == Some(seq)) else { return };
        p.in_flight = None;
        p.next = now.at + p.timing.period;
        let kind = p.kind;
        let (ok, why) = match outcome {
            ProbeOutcome::Success => (true, String::new()),
            ProbeOutcome::Failure(why) => (false, why),
            ProbeOutcome::Unavailable(why) => {
                p.off = true;
                let name = self.name_of(i).to_string();
                out.event(
                    true,
                    &self.desired,
                    "Unhealthy",
                    format!("{} probe of {name} cannot run: {why}", kind.as_str()),
                );
                return;
            }
        };
        let timing = p.timing;
        let healthy = p.tracker.record(ok, &timing);
        match kind {
            ProbeKind::Readiness => {
                if self.status.containers.get(i).is_some_and(|s| s.ready != healthy) {
                    self.cstatus(i, |s| s.ready = healthy);
                }
            }
            ProbeKind::Liveness if !healthy => {
                let name = self.name_of(i).to_string();
                out.event(true, &self.desired, "Unhealthy", format!("liveness probe failed: {why}"));
                out.event(
                    false,
                    &self.desired,
                    "Killing",
                    format!("container {name} failed liveness probe, will be restarted"),
                );
                self.cstatus(i, |s| s.ready = false);
                let c = &mut self.containers[i];
                if let Run::Running { since, .. } = c.run {
                    c.run = Run::Running { since, forced: true, stopping: false };
                }
                for p in &mut c.probes {
                    p.off = true;
                }
                out.run(Command::Stop { id: self.id(), container: i, grace: self.desired.grace });
            }
            ProbeKind::Liveness => {}
        }
    }

    /// Restarts whose back-off ended, probes that are due.
    pub(super) fn timers(&mut self, now: Now, out: &mut Out) {
        if self.stage == Stage::Broken && !self.stopping && self.retry_prepare.is_some_and(|t| t <= now.at) {
            self.retry_prepare = None;
            self.stage = Stage::Preparing;
            out.run(Command::Prepare { id: self.id(), pod: self.desired.clone() });
        }
        for i in 0..self.containers.len() {
            match self.containers[i].run {
                Run::BackOff { until } if until <= now.at && !self.stopping => self.start(i, out),
                Run::Running { forced: false, stopping: false, .. } => {
                    let container_id =
                        self.status.containers.get(i).map(|c| c.container_id.clone()).unwrap_or_default();
                    for k in 0..self.containers[i].probes.len() {
                        let p = &self.containers[i].probes[k];
                        if p.off || p.in_flight.is_some() || p.next > now.at {
                            continue;
                        }
                        let (kind, timeout) = (p.kind, p.timing.timeout);
                        self.next_probe_seq += 1;
                        let seq = self.next_probe_seq;
                        self.containers[i].probes[k].in_flight = Some(seq);
                        let id = self.id();
                        out.run(Command::Probe {
                            id,
                            container: i,
                            kind,
                            seq,
                            container_id: container_id.clone(),
                            timeout,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// When this pod next needs a tick: restarts, probes, handoff timers.
    pub(super) fn deadlines(&self, h: Handoff) -> impl Iterator<Item = Instant> + '_ {
        let restarts = self.containers.iter().filter_map(|c| match c.run {
            Run::BackOff { until } if !self.stopping => Some(until),
            _ => None,
        });
        let probes = self
            .containers
            .iter()
            .filter(|c| matches!(c.run, Run::Running { forced: false, stopping: false, .. }))
            .flat_map(|c| c.probes.iter().filter(|p| !p.off && p.in_flight.is_none()).map(|p| p.next));
        let handoff = (!self.stopping)
            .then(|| [self.handoff_since.map(|t| t + h.timeout), self.ready_elsewhere_since.map(|t| t + h.linger)])
            .into_iter()
            .flatten()
            .flatten();
        let retry = self.retry_prepare.filter(|_| !self.stopping && self.stage == Stage::Broken);
        restarts.chain(probes).chain(handoff).chain(retry)
    }

    /// Stops the pod for good: every container that runs gets `Stop`.
    pub(super) fn stop(&mut self, grace: Duration, out: &mut Out) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.st().terminating = true;
        let id = self.id();
        for i in 0..self.containers.len() {
            match self.containers[i].run {
                Run::Running { since, forced, stopping: false } => {
                    let name = self.name_of(i).to_string();
                    out.event(false, &self.desired, "Killing", format!("stopping container {name}"));
                    self.cstatus(i, |c| c.ready = false);
                    self.containers[i].run = Run::Running { since, forced, stopping: true };
                    out.run(Command::Stop { id: id.clone(), container: i, grace });
                }
                Run::Starting { stop: false } => {
                    self.containers[i].run = Run::Starting { stop: true };
                    out.run(Command::Stop { id: id.clone(), container: i, grace });
                }
                Run::Idle | Run::BackOff { .. } => self.containers[i].run = Run::Done,
                Run::Running { stopping: true, .. } | Run::Starting { stop: true } | Run::Done => {}
            }
        }
    }

    /// Stopping, nothing runs any more, and the runtime has answered the
    /// prepare: its resources can go.
    pub(super) fn can_clean(&self) -> bool {
        self.stopping
            && !self.cleaning
            && self.stage != Stage::Preparing
            && self.containers.iter().all(|c| matches!(c.run, Run::Done | Run::Idle))
    }
}

/// Derives pod phase and readiness from container states.
pub(super) fn recompute(s: &mut PodStatus) {
    s.ready = !s.containers.is_empty() && s.containers.iter().all(|c| c.ready);
    let any_running = s.containers.iter().any(|c| matches!(c.state, ContainerState::Running { .. }));
    let all_terminated = s.containers.iter().all(|c| matches!(c.state, ContainerState::Terminated { .. }));
    let ever_started = s
        .containers
        .iter()
        .any(|c| c.restart_count > 0 || !matches!(c.state, ContainerState::Waiting { .. }) || c.last_state.is_some());
    s.phase = if all_terminated && !s.containers.is_empty() {
        if s.containers.iter().all(|c| matches!(c.state, ContainerState::Terminated { exit_code: 0, .. })) {
            Phase::Succeeded
        } else {
            Phase::Failed
        }
    } else if any_running || ever_started {
        Phase::Running
    } else {
        Phase::Pending
    };
}
