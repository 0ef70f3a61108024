//! The agent task: feeds the `core` its inputs (plan changes, runtime
//! answers, ticks), carries out its effects, and owns nothing else.
//!
//! The runtime side is an `Executor`: the real one runs processes and Docker
//! containers (`exec`), netsim's simulates them. Both are driven by this one
//! loop and the one core, so a node and a simulated node decide alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use super::core::{AdoptedPod, AgentCore, Command, Effect, Input, Now};
use super::runtime::Keep;
use crate::events::EventLog;
use crate::model::pods::PodResult;
use crate::model::status::Statuses;
use crate::placement::plan::Plan;

/// Runtime answers waiting for the agent loop.
pub const INPUT_QUEUE: usize = 256;
/// Job results waiting to be written (in order) to the desired state.
pub const RESULT_QUEUE: usize = 64;

/// Why a Job pod's outcome could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("cannot record the result of pod {namespace}/{name}: {message}")]
pub struct RecordError {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// Where the agent records Job pod outcomes (the replicated desired state).
#[async_trait]
pub trait ResultSink: Send + Sync {
    async fn record(&self, namespace: &str, name: &str, result: PodResult) -> Result<(), RecordError>;
}

/// What carries out the core's commands.
#[async_trait]
pub trait Executor: Send + 'static {
    /// Called once, before anything else: takes over what a previous run of
    /// this node left running. Adopts the containers of pods `keep` accepts
    /// (`keep(namespace, pod, template_hash)`) and returns them; removes
    /// the rest.
    async fn recover(&mut self, keep: &Keep) -> Vec<AdoptedPod>;
    /// Starts carrying out `cmd`. Its answer comes back on `inputs`, or at
    /// once as the return value (it must never wait for the agent loop,
    /// which is the one reading `inputs`).
    fn execute(&mut self, cmd: Command, inputs: &mpsc::Sender<Input>) -> Option<Input>;
}

/// Where the agent's other effects go.
pub struct Sinks {
    pub statuses: watch::Sender<Statuses>,
    pub results: Arc<dyn ResultSink>,
    pub events: Arc<EventLog>,
}

/// Settings of the loop.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Reconcile at least this often (besides every plan change and timer).
    pub tick: Duration,
    /// Unix seconds now (the system clock; virtual in netsim).
    pub unix: fn() -> u64,
}

/// The channel the agent publishes pod statuses on.
pub fn status_channel() -> (watch::Sender<Statuses>, watch::Receiver<Statuses>) {
    watch::channel(Arc::default())
}

fn now(cfg: &DriverConfig) -> Now {
    // tokio's clock: real on a node, virtual (paused) in netsim.
    Now { at: tokio::time::Instant::now().into_std(), unix: (cfg.unix)() }
}

/// Writes Job results one at a time, in the order the core produced them.
fn spawn_result_writer(sink: Arc<dyn ResultSink>) -> (mpsc::Sender<Effect>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Effect>(RESULT_QUEUE);
    let task = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let Effect::Record { namespace, name, result } = e
                && let Err(err) = sink.record(&namespace, &name, result).await
            {
                tracing::warn!(error = %err, "cannot record job pod result");
            }
        }
    });
    (tx, task)
}

/// Runs the agent until `shutdown` turns true (or the plan channel closes),
/// then stops every pod (SIGTERM, kill after each pod's grace period) and
/// returns once all are gone.
pub async fn run<E: Executor>(
    mut core: AgentCore,
    mut exec: E,
    mut plan_rx: watch::Receiver<Arc<Plan>>,
    mut shutdown: watch::Receiver<bool>,
    sinks: Sinks,
    cfg: DriverConfig,
) {
    let (tx, mut rx) = mpsc::channel::<Input>(INPUT_QUEUE);
    let (results, writer) = spawn_result_writer(sinks.results.clone());
    let plan = plan_rx.borrow_and_update().clone();
    let wanted: BTreeMap<String, String> =
        plan.desired.iter().map(|(id, d)| (id.clone(), d.template_hash.clone())).collect();
    let keep = move |ns: &str, pod: &str, hash: &str| wanted.get(&format!("{ns}/{pod}")).is_some_and(|h| h == hash);
    let adopted = exec.recover(&keep).await;
    let mut pending: Vec<Input> = vec![Input::Recovered { plan, adopted }];
    let mut plan_open = true;
    loop {
        while !pending.is_empty() {
            for input in std::mem::take(&mut pending) {
                for effect in core.handle(input, now(&cfg)) {
                    match effect {
                        Effect::Run(cmd) => pending.extend(exec.execute(cmd, &tx)),
                        Effect::Report(s) => {
                            sinks.statuses.send_if_modified(|cur| {
                                let changed = *cur != s;
                                *cur = s;
                                changed
                            });
                        }
                        e @ Effect::Record { .. } => {
                            let _ = results.send(e).await;
                        }
                        Effect::Event(e) => sinks.events.pod(e.warning, &e.namespace, &e.name, &e.reason, e.message),
                    }
                }
            }
        }
        if core.shutting_down() && core.is_idle() {
            break;
        }
        let t = now(&cfg).at;
        let deadline = core.next_deadline(t).map_or(t + cfg.tick, |d| d.min(t + cfg.tick));
        let input = tokio::select! {
            r = plan_rx.changed(), if plan_open => match r {
                Ok(()) => Input::Plan(plan_rx.borrow_and_update().clone()),
                Err(_) => {
                    plan_open = false;
                    Input::Shutdown
                }
            },
            Some(i) = rx.recv() => i,
            _ = tokio::time::sleep_until(deadline.into()) => Input::Tick,
            _ = shutdown.wait_for(|s| *s), if !core.shutting_down() => Input::Shutdown,
        };
        pending.push(input);
    }
    drop(results);
    let _ = writer.await;
}
