//! The agent (Shoal's kubelet): runs the pods this node owns.
//!
//! - `decide`: pure reconcile decisions (start, stop, handoff);
//! - `pod`: the supervisor of one pod (containers, restarts, probes);
//! - `backoff`, `probe`: pure restart and probe-threshold rules;
//! - `runtime` (trait), `process` and `docker`: how containers run;
//! - `logs`, `ports`, `status`: log files, host ports, reported status.
//!
//! The agent loop owns the set of pod supervisors. It reads the `Plan`
//! (desired pods and their owners), acts on `decide`'s verdict, publishes pod
//! statuses, and records Job pod outcomes in the desired state.

pub mod backoff;
pub mod decide;
pub mod docker;
pub mod logs;
pub mod pod;
pub mod ports;
pub mod probe;
pub mod process;
pub mod runtime;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc, watch};

use decide::{Action, Local, Plan, StopReason, decide};
use pod::{PodCtx, PodEvent, PodHandle};
use runtime::Adopted;
use status::{Phase, PodStatus};

use crate::model::pods::PodResult;

/// Pod events waiting for the agent loop.
const POD_EVENT_QUEUE: usize = 256;

/// Statuses of the pods this node runs, by pod id.
pub type Statuses = Arc<BTreeMap<String, PodStatus>>;

/// Where the agent records Job pod outcomes (the replicated desired state).
#[async_trait]
pub trait ResultSink: Send + Sync {
    /// The current record of a pod (to add to its failure count).
    fn current(&self, namespace: &str, name: &str) -> Option<PodResult>;
    async fn record(&self, namespace: &str, name: &str, result: PodResult) -> Result<(), String>;
}

/// Settings of the agent loop.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// How long a pod this node no longer owns keeps running while its new
    /// owner has not reported it Ready.
    pub handoff_timeout: Duration,
    /// How long the old copy keeps serving after the new one is Ready.
    pub handoff_linger: Duration,
}

pub struct Agent {
    ctx: Arc<PodCtx>,
    cfg: AgentConfig,
    pods: BTreeMap<String, PodHandle>,
    stopping: Vec<PodHandle>,
    waiting: BTreeMap<String, Instant>,
    changed: Arc<Notify>,
    events_tx: mpsc::Sender<PodEvent>,
    events_rx: mpsc::Receiver<PodEvent>,
    status_tx: watch::Sender<Statuses>,
    results: Arc<dyn ResultSink>,
    adopted: BTreeMap<String, Vec<Adopted>>,
}

impl Agent {
    /// The channel the agent publishes pod statuses on.
    pub fn status_channel() -> (watch::Sender<Statuses>, watch::Receiver<Statuses>) {
        watch::channel(Arc::new(BTreeMap::new()))
    }

    pub fn new(
        ctx: Arc<PodCtx>,
        cfg: AgentConfig,
        results: Arc<dyn ResultSink>,
        status_tx: watch::Sender<Statuses>,
    ) -> Agent {
        let (events_tx, events_rx) = mpsc::channel(POD_EVENT_QUEUE);
        Agent {
            ctx,
            cfg,
            pods: BTreeMap::new(),
            stopping: Vec::new(),
            waiting: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            events_tx,
            events_rx,
            status_tx,
            results,
            adopted: BTreeMap::new(),
        }
    }

    /// Takes over what a previous run of this node left behind. Containers
    /// of pods still desired (same template) are adopted and get a supervisor
    /// at once; reconciling then keeps those this node owns and hands the
    /// others off make-before-break. Everything else is removed.
    pub async fn recover(&mut self, plan: &Plan) {
        let wanted: BTreeMap<String, String> =
            plan.desired.iter().map(|(id, d)| (id.clone(), d.template_hash.clone())).collect();
        let keep = move |ns: &str, pod: &str, hash: &str| wanted.get(&format!("{ns}/{pod}")).is_some_and(|h| h == hash);
        for rt in self.ctx.runtimes.values() {
            match rt.recover(&keep).await {
                Ok(adopted) => {
                    for a in adopted {
                        tracing::info!(pod = %format!("{}/{}", a.namespace, a.pod), container = %a.container, "adopted running container");
                        self.adopted.entry(format!("{}/{}", a.namespace, a.pod)).or_default().push(a);
                    }
                }
                Err(e) => {
                    tracing::warn!(runtime = rt.kind().as_str(), error = %e, "recovery failed")
                }
            }
        }
        for (id, adopted) in std::mem::take(&mut self.adopted) {
            let Some(d) = plan.desired.get(&id) else { continue };
            self.ctx.events.pod(
                false,
                &d.namespace,
                &d.name,
                "Adopted",
                "took over its running containers after a restart of this node",
            );
            let h =
                PodHandle::spawn(d.clone(), self.ctx.clone(), self.changed.clone(), self.events_tx.clone(), adopted);
            self.pods.insert(id, h);
        }
    }

    /// Pods this node runs; those still stopping count too, so that a
    /// replacement never starts while the old copy holds the pod's files.
    fn locals(&self) -> BTreeMap<String, Local> {
        let mut out: BTreeMap<String, Local> = self
            .stopping
            .iter()
            .filter(|h| !h.is_finished())
            .map(|h| {
                (
                    h.desired.id(),
                    Local {
                        template_hash: h.desired.template_hash.clone(),
                        stopping: true,
                        handoff_since: None,
                        ready_elsewhere_since: None,
                    },
                )
            })
            .collect();
        for (id, h) in &self.pods {
            out.insert(
                id.clone(),
                Local {
                    template_hash: h.desired.template_hash.clone(),
                    stopping: h.stopping,
                    handoff_since: h.handoff_since,
                    ready_elsewhere_since: h.ready_elsewhere_since,
                },
            );
        }
        out
    }

    fn reconcile(&mut self, plan: &Plan) {
        let now = Instant::now();
        self.waiting.retain(|_, t| *t > now);
        self.stopping.retain(|h| !h.is_finished());
        let actions = decide(
            plan,
            &self.ctx.node_name,
            &self.locals(),
            &self.waiting,
            now,
            decide::Handoff { timeout: self.cfg.handoff_timeout, linger: self.cfg.handoff_linger },
        );
        for a in actions {
            match a {
                Action::Start(id) => {
                    let Some(d) = plan.desired.get(&id) else {
                        continue;
                    };
                    let adopted = self.adopted.remove(&id).unwrap_or_default();
                    self.ctx.events.pod(
                        false,
                        &d.namespace,
                        &d.name,
                        "Scheduled",
                        format!("running on {}", self.ctx.node_name),
                    );
                    let h = PodHandle::spawn(
                        d.clone(),
                        self.ctx.clone(),
                        self.changed.clone(),
                        self.events_tx.clone(),
                        adopted,
                    );
                    self.pods.insert(id, h);
                }
                Action::Stop(id, reason) => {
                    if let Some(mut h) = self.pods.remove(&id) {
                        let level = matches!(reason, StopReason::HandoffTimeout | StopReason::Fenced);
                        self.ctx.events.pod(level, &h.desired.namespace, &h.desired.name, "Stopping", reason.message());
                        let grace = h.desired.grace;
                        h.stop(grace);
                        self.stopping.push(h);
                    }
                }
                Action::SeenReadyElsewhere(id) => {
                    if let Some(h) = self.pods.get_mut(&id) {
                        h.ready_elsewhere_since = Some(now);
                    }
                }
                Action::BeginHandoff(id) => {
                    if let Some(h) = self.pods.get_mut(&id) {
                        h.handoff_since = Some(now);
                        let owner = plan.owners.get(&id).cloned().unwrap_or_else(|| "no node".into());
                        self.ctx.events.pod(
                            false,
                            &h.desired.namespace,
                            &h.desired.name,
                            "Handoff",
                            format!("now owned by {owner}; keeps running until it is ready there"),
                        );
                    }
                }
            }
        }
        self.stopping.retain(|h| !h.is_finished());
        self.changed.notify_one();
    }

    fn publish(&self) {
        let mut map = BTreeMap::new();
        for (id, h) in &self.pods {
            map.insert(id.clone(), h.snapshot());
        }
        for h in &self.stopping {
            if !h.is_finished() {
                let s = h.snapshot();
                map.entry(s.id()).or_insert(s);
            }
        }
        self.status_tx.send_if_modified(|cur| {
            if **cur == map {
                false
            } else {
                *cur = Arc::new(map);
                true
            }
        });
    }

    async fn on_event(&mut self, e: PodEvent) {
        let (id, failed, finished_phase, code) = match &e {
            PodEvent::ContainerFailed { id, exit_code } => (id.clone(), true, None, *exit_code),
            PodEvent::Finished { id, phase, exit_code } => {
                (id.clone(), *phase == Phase::Failed, Some(*phase), *exit_code)
            }
        };
        let Some(h) = self.pods.get(&id) else { return };
        if h.desired.owner.kind != crate::model::Kind::Job {
            return;
        }
        let (ns, name) = (h.desired.namespace.clone(), h.desired.name.clone());
        let mut r = self
            .results
            .current(&ns, &name)
            .filter(|r| r.job_uid == h.desired.owner.uid)
            .unwrap_or_else(|| PodResult { job_uid: h.desired.owner.uid.clone(), ..Default::default() });
        // An in-place restart (OnFailure) was already counted when its
        // container failed; a Finished(Failed) under Never counts once.
        let count_failure = match (&e, h.desired.restart_policy) {
            (PodEvent::ContainerFailed { .. }, crate::model::pods::RestartPolicy::OnFailure) => true,
            (PodEvent::Finished { .. }, crate::model::pods::RestartPolicy::Never) => failed,
            _ => false,
        };
        if count_failure {
            r.failures = r.failures.saturating_add(1);
        }
        if finished_phase == Some(Phase::Succeeded) {
            r.succeeded = true;
        }
        if !count_failure && finished_phase != Some(Phase::Succeeded) {
            return;
        }
        r.exit_code = Some(code);
        r.node = self.ctx.node_name.clone();
        r.finished_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let failures = r.failures;
        if let Err(err) = self.results.record(&ns, &name, r).await {
            tracing::warn!(pod = %id, error = %err, "cannot record job pod result");
        }
        if finished_phase == Some(Phase::Failed) {
            // Under Never, a failed pod is replaced by a fresh one after a
            // back-off, as long as the Job has retries left.
            if let Some(mut h) = self.pods.remove(&id) {
                h.stop(Duration::ZERO);
                self.stopping.push(h);
            }
            self.waiting.insert(id, Instant::now() + self.ctx.backoff.delay(failures.max(1)));
        }
    }

    /// Runs until `shutdown` turns true; then stops every pod (SIGTERM, then
    /// kill after each pod's grace period) and returns.
    pub async fn run(mut self, mut plan_rx: watch::Receiver<Arc<Plan>>, mut shutdown: watch::Receiver<bool>) {
        let plan = plan_rx.borrow_and_update().clone();
        self.recover(&plan).await;
        self.reconcile(&plan);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        enum Ev {
            Plan,
            PlanGone,
            Pod(PodEvent),
            Changed,
            Tick,
            Shutdown,
        }
        loop {
            let ev = tokio::select! {
                r = plan_rx.changed() => if r.is_ok() { Ev::Plan } else { Ev::PlanGone },
                Some(e) = self.events_rx.recv() => Ev::Pod(e),
                _ = self.changed.notified() => Ev::Changed,
                _ = tick.tick() => Ev::Tick,
                _ = shutdown.wait_for(|s| *s) => Ev::Shutdown,
            };
            match ev {
                Ev::Plan => {
                    let plan = plan_rx.borrow_and_update().clone();
                    self.reconcile(&plan);
                }
                Ev::Pod(e) => {
                    self.on_event(e).await;
                    let plan = plan_rx.borrow().clone();
                    self.reconcile(&plan);
                }
                Ev::Changed => self.publish(),
                Ev::Tick => {
                    let plan = plan_rx.borrow().clone();
                    self.reconcile(&plan);
                    self.publish();
                }
                Ev::PlanGone | Ev::Shutdown => break,
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(mut self) {
        for (_, mut h) in std::mem::take(&mut self.pods) {
            let grace = h.desired.grace;
            h.stop(grace);
            self.stopping.push(h);
        }
        self.publish();
        for h in std::mem::take(&mut self.stopping) {
            h.join().await;
        }
        self.publish();
    }
}
