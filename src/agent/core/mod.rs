//! The agent's decisions as one state machine without I/O: the kubelet's
//! brain, shared by `shoal up` and netsim.
//!
//! It owns the local pod table, the restart back-off of every container,
//! probe schedules and thresholds, Job outcome accounting, the handoff and
//! linger timers, and what this node reports about its pods. It takes
//! `Input`s (the plan changed, a pod was prepared, a container started or
//! exited, a probe answered, a tick) stamped with `Now`, and returns
//! `Effect`s (prepare, start, stop, probe, clean up; report the statuses;
//! record a Job result; log an event). It reads no clock, spawns nothing and
//! touches no runtime: the real agent (`driver` with the process and Docker
//! `exec`utor) and netsim's simulated runtime drive this same code, so what
//! netsim tests is what a node runs.
//!
//! - `decide`: reconcile decisions over the whole table (start, stop, handoff);
//! - `pod`: the lifecycle of one pod and its containers;
//! - `jobs`: what a Job pod's exits add to its recorded outcome;
//! - `backoff`, `probe`: the restart and probe-threshold rules.
#![deny(clippy::disallowed_methods)]

pub mod backoff;
pub mod decide;
mod jobs;
mod pod;
pub mod probe;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::Backoff;
use decide::{Action, Handoff, Local, StopReason, decide};
use pod::Pod;

use crate::agent::runtime::Exit;
use crate::model::pods::{DesiredPod, PodResult};
use crate::model::status::{PodStatus, PortMapping, Statuses};
use crate::placement::plan::Plan;

/// When an input happens: a monotonic instant for timers, unix seconds for
/// what the statuses report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub unix: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Readiness,
    Liveness,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
        }
    }
}

/// What one probe check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    Failure(String),
    /// The check cannot be made at all (a named port the container does not
    /// declare): the probe is dropped for this run of the container.
    Unavailable(String),
}

/// A container a previous run of this node left running, taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedContainer {
    pub name: String,
    pub container_id: String,
    /// Unix seconds.
    pub started_at: u64,
}

/// A pod whose containers were adopted after a restart of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedPod {
    pub id: String,
    pub containers: Vec<AdoptedContainer>,
}

/// Something that happened; `container` is the index in the pod's spec.
#[derive(Debug, Clone)]
pub enum Input {
    /// The plan (desired pods, owners, view) changed.
    Plan(Arc<Plan>),
    /// The first input of a run: the plan, and the pods whose containers
    /// recovery took over from a previous run of this node (from this plan's
    /// desired pods). They are adopted before anything is started afresh.
    Recovered {
        plan: Arc<Plan>,
        adopted: Vec<AdoptedPod>,
    },
    /// The pod's directory, volumes and ports are ready.
    Prepared {
        id: String,
        ports: Vec<PortMapping>,
    },
    /// The pod cannot run here (no such runtime, a volume or port error).
    PrepareFailed {
        id: String,
        reason: String,
        message: String,
    },
    Started {
        id: String,
        container: usize,
        container_id: String,
    },
    /// The runtime could not start the container (image pull, bad command...).
    StartFailed {
        id: String,
        container: usize,
        reason: String,
        message: String,
    },
    Exited {
        id: String,
        container: usize,
        exit: Exit,
    },
    /// The result of the probe check numbered `seq`.
    Probed {
        id: String,
        container: usize,
        seq: u64,
        outcome: ProbeOutcome,
    },
    /// The pod's resources are released: it is gone from this node.
    Cleaned {
        id: String,
    },
    /// Time passed (timers: back-off, probes, handoff, linger).
    Tick,
    /// The node stops: stop every pod with its grace period.
    Shutdown,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Create the pod's directory and volumes, allocate its host ports
    /// (claiming those of adopted containers); answer `Prepared`.
    Prepare { id: String, pod: DesiredPod },
    /// Start the container; answer `Started` or `StartFailed`, then `Exited`.
    Start { id: String, container: usize },
    /// Stop it (SIGTERM, kill after `grace`); answer `Exited`.
    Stop { id: String, container: usize, grace: Duration },
    /// Run one check with `timeout`; answer `Probed` with `seq`.
    Probe { id: String, container: usize, kind: ProbeKind, seq: u64, container_id: String, timeout: Duration },
    /// Release the pod's ports and remove its files; answer `Cleaned`.
    Cleanup { id: String },
}

/// A Kubernetes-style event about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub warning: bool,
    pub namespace: String,
    pub name: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Run(Command),
    /// The statuses of every pod on this node changed: publish them.
    Report(Statuses),
    /// Record a Job pod's outcome in the desired state.
    Record {
        namespace: String,
        name: String,
        result: PodResult,
    },
    Event(PodEvent),
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub node: String,
    /// The node IP pods report (`status.hostIP`).
    pub host_ip: String,
    pub backoff: Backoff,
    pub handoff: Handoff,
}

/// Effects collected while handling one input.
#[derive(Debug, Default)]
pub(crate) struct Out(Vec<Effect>);

impl Out {
    fn run(&mut self, c: Command) {
        self.0.push(Effect::Run(c));
    }
    fn event(&mut self, warning: bool, d: &DesiredPod, reason: impl Into<String>, message: impl Into<String>) {
        self.0.push(Effect::Event(PodEvent {
            warning,
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            reason: reason.into(),
            message: message.into(),
        }));
    }
}

/// The agent's state machine.
#[derive(Debug)]
pub struct AgentCore {
    cfg: CoreConfig,
    plan: Arc<Plan>,
    pods: BTreeMap<String, Pod>,
    /// Pods not to start again before the instant (a failed Job pod's retry).
    waiting: BTreeMap<String, Instant>,
    /// The outcome this node last recorded per Job pod: the replicated copy
    /// may lag behind, and a failure must never be counted from a stale base.
    recorded: BTreeMap<String, PodResult>,
    reported: Statuses,
    /// The pod table changed since the last report (a pod came or went).
    table_changed: bool,
    shutting_down: bool,
}

impl AgentCore {
    pub fn new(cfg: CoreConfig) -> AgentCore {
        AgentCore {
            cfg,
            plan: Arc::default(),
            pods: BTreeMap::new(),
            waiting: BTreeMap::new(),
            recorded: BTreeMap::new(),
            reported: Arc::default(),
            table_changed: false,
            shutting_down: false,
        }
    }

    /// Handles one input at `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Effect> {
        let mut out = Out::default();
        let mut reconcile = false;
        match input {
            Input::Plan(p) => {
                self.plan = p;
                self.recorded.retain(|id, _| self.plan.desired.contains_key(id));
                reconcile = true;
            }
            Input::Recovered { plan, adopted } => {
                self.plan = plan;
                for a in adopted {
                    self.adopt(a, now, &mut out);
                }
                reconcile = true;
            }
            Input::Prepared { id, ports } => {
                if let Some(p) = self.pods.get_mut(&id) {
                    p.prepared(ports, now, &mut out);
                }
            }
            Input::PrepareFailed { id, reason, message } => {
                if let Some(p) = self.pods.get_mut(&id) {
                    p.prepare_failed(reason, message, now, &mut out);
                }
            }
            Input::Started { id, container, container_id } => {
                if let Some(p) = self.pods.get_mut(&id) {
                    p.started(container, container_id, now, &mut out);
                }
            }
            Input::StartFailed { id, container, reason, message } => {
                let signal = self
                    .pods
                    .get_mut(&id)
                    .and_then(|p| p.start_failed(container, reason, message, now, &self.cfg.backoff, &mut out));
                if let Some(s) = signal {
                    reconcile |= self.job_signal(&id, s, now, &mut out);
                }
            }
            Input::Exited { id, container, exit } => {
                let signals =
                    self.pods.get_mut(&id).map(|p| p.exited(container, exit, now, &self.cfg.backoff, &mut out));
                for s in signals.into_iter().flatten() {
                    reconcile |= self.job_signal(&id, s, now, &mut out);
                }
            }
            Input::Probed { id, container, seq, outcome } => {
                if let Some(p) = self.pods.get_mut(&id) {
                    p.probed(container, seq, outcome, now, &mut out);
                }
            }
            Input::Cleaned { id } => {
                if self.pods.get(&id).is_some_and(|p| p.cleaning) {
                    self.pods.remove(&id);
                    self.table_changed = true;
                    reconcile = true;
                }
            }
            Input::Tick => reconcile = true,
            Input::Shutdown => {
                self.shutting_down = true;
                for p in self.pods.values_mut() {
                    let grace = p.desired.grace;
                    p.stop(grace, &mut out);
                }
            }
        }
        // Timers are checked on every input, so that after handling an input
        // at `now` nothing due at or before `now` is left undone.
        for p in self.pods.values_mut() {
            p.timers(now, &mut out);
        }
        if !self.shutting_down && (reconcile || self.reconcile_due(now)) {
            self.reconcile(now, &mut out);
        }
        for p in self.pods.values_mut().filter(|p| p.can_clean()) {
            p.cleaning = true;
            out.run(Command::Cleanup { id: p.desired.id() });
        }
        self.report(&mut out);
        out.0
    }

    /// The earliest instant after `now` at which a `Tick` has something to
    /// do (the driver sleeps until then, or its periodic tick).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.pods
            .values()
            .flat_map(|p| p.deadlines(self.cfg.handoff))
            .chain(self.waiting.values().copied())
            .filter(|t| *t > now)
            .min()
    }

    /// A handoff, linger or retry timer has passed: decisions may change.
    fn reconcile_due(&self, now: Now) -> bool {
        self.waiting.values().any(|t| *t <= now.at)
            || self.pods.values().any(|p| {
                !p.stopping
                    && (p.handoff_since.is_some_and(|t| t + self.cfg.handoff.timeout <= now.at)
                        || p.ready_elsewhere_since.is_some_and(|t| t + self.cfg.handoff.linger <= now.at))
            })
    }

    /// No pod left on this node (after a shutdown: every pod stopped and
    /// cleaned up).
    pub fn is_idle(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The statuses as last reported.
    pub fn statuses(&self) -> &Statuses {
        &self.reported
    }

    fn start_pod(&mut self, d: DesiredPod, adopted: Option<Vec<AdoptedContainer>>, now: Now, out: &mut Out) {
        let id = d.id();
        if adopted.is_some() {
            out.event(false, &d, "Adopted", "took over its running containers after a restart of this node");
        } else {
            out.event(false, &d, "Scheduled", format!("running on {}", self.cfg.node));
        }
        out.run(Command::Prepare { id: id.clone(), pod: d.clone() });
        self.pods.insert(id, Pod::new(d, &self.cfg, adopted, now));
        self.table_changed = true;
    }

    fn adopt(&mut self, a: AdoptedPod, now: Now, out: &mut Out) {
        if self.pods.contains_key(&a.id) {
            return;
        }
        // Recovery adopts only pods the plan it was given still desires.
        if let Some(d) = self.plan.desired.get(&a.id).cloned() {
            self.start_pod(d, Some(a.containers), now, out);
        }
    }

    fn reconcile(&mut self, now: Now, out: &mut Out) {
        self.waiting.retain(|_, t| *t > now.at);
        let locals: BTreeMap<String, Local> = self
            .pods
            .iter()
            .map(|(id, p)| {
                let l = Local {
                    template_hash: p.desired.template_hash.clone(),
                    fence: crate::model::revision::fence_key(&p.desired.owner.uid, id),
                    stopping: p.stopping,
                    handoff_since: p.handoff_since,
                    ready_elsewhere_since: p.ready_elsewhere_since,
                };
                (id.clone(), l)
            })
            .collect();
        let plan = self.plan.clone();
        for a in decide(&plan, &self.cfg.node, &locals, &self.waiting, now.at, self.cfg.handoff) {
            match a {
                Action::Start(id) => {
                    if let Some(d) = plan.desired.get(&id) {
                        self.start_pod(d.clone(), None, now, out);
                    }
                }
                Action::Stop(id, reason) => {
                    if let Some(p) = self.pods.get_mut(&id) {
                        let warning = matches!(reason, StopReason::HandoffTimeout | StopReason::Fenced);
                        out.event(warning, &p.desired, "Stopping", reason.message());
                        let grace = p.desired.grace;
                        p.stop(grace, out);
                    }
                }
                Action::SeenReadyElsewhere(id) => {
                    if let Some(p) = self.pods.get_mut(&id) {
                        p.ready_elsewhere_since = Some(now.at);
                    }
                }
                Action::BeginHandoff(id) => {
                    if let Some(p) = self.pods.get_mut(&id) {
                        p.handoff_since = Some(now.at);
                        let owner = plan.owners.get(&id).map_or("no node", |n| n.as_str());
                        out.event(
                            false,
                            &p.desired,
                            "Handoff",
                            format!("now owned by {owner}; keeps running until it is ready there"),
                        );
                    }
                }
            }
        }
    }

    /// Reports the statuses when they changed.
    fn report(&mut self, out: &mut Out) {
        let mut dirty = std::mem::take(&mut self.table_changed);
        for p in self.pods.values_mut() {
            dirty |= p.settle_status();
        }
        if !dirty {
            return;
        }
        let map: BTreeMap<String, PodStatus> = self.pods.iter().map(|(id, p)| (id.clone(), p.status.clone())).collect();
        if *self.reported != map {
            self.reported = Arc::new(map);
            out.0.push(Effect::Report(self.reported.clone()));
        }
    }
}
