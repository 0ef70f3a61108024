//! The real executor: carries out the agent core's commands with the node's
//! runtimes (`process`, `docker`). One task per running container owns its
//! runtime handle and waits for it to exit or to be told to stop; probes and
//! clean-ups run as short tasks. Every answer goes back to the agent loop as
//! an `Input`. No decision is made here.
//!
//! - `prepare`: a pod's directory, volumes, ports, environment and launch;
//! - `checks`: one probe check (HTTP, TCP, exec);
//! - `config_files`: the files of `configMap` volumes, updated in place.

pub mod checks;
pub mod config_files;
pub mod prepare;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use super::attach::{Containers, Entry};
use super::core::{AdoptedContainer, AdoptedPod, Command, Input, ProbeKind, ProbeOutcome};
use super::driver::Executor;
use super::runtime::{Adopted, ExecTarget, Keep, Launch, Running, Runtime};
use crate::model::pods::DesiredPod;
use prepare::{PodCtx, Prepared};

/// What the executor holds for one pod.
struct PodIo {
    desired: DesiredPod,
    runtime: Arc<dyn Runtime>,
    prep: Arc<Prepared>,
    /// Per container: its environment.
    envs: Vec<prepare::Env>,
    /// Per container: the stop signal of its task, while it has one.
    stops: Vec<Option<watch::Sender<Option<Duration>>>>,
}

pub struct RuntimeExecutor {
    ctx: Arc<PodCtx>,
    pods: BTreeMap<String, PodIo>,
    /// Containers recovery adopted, until their pod is prepared.
    adopted: BTreeMap<String, Vec<Adopted>>,
    /// The grace of adopted containers held while their pod waits for a
    /// ConfigMap or Secret (stopped with it if the pod goes first).
    held: BTreeMap<String, Duration>,
}

impl RuntimeExecutor {
    pub fn new(ctx: Arc<PodCtx>) -> RuntimeExecutor {
        RuntimeExecutor { ctx, pods: BTreeMap::new(), adopted: BTreeMap::new(), held: BTreeMap::new() }
    }

    fn prepare(&mut self, id: String, desired: DesiredPod, inputs: &mpsc::Sender<Input>) -> Input {
        let adopted = self.adopted.remove(&id).unwrap_or_default();
        self.held.remove(&id);
        let Some(runtime) = self.ctx.runtimes.get(&desired.runtime).cloned() else {
            stop_all(adopted, desired.grace);
            let message = format!("this node has no {} runtime", desired.runtime.as_str());
            return Input::PrepareFailed { id, reason: "RuntimeUnavailable".into(), message };
        };
        let prep = match prepare::prepare(&desired, &self.ctx, &adopted) {
            Ok(p) => Arc::new(p),
            Err(e) if e.reason == crate::model::config::CONFIG_ERROR && !adopted.is_empty() => {
                // Containers that ran before this node restarted keep
                // running while what they read is missing here (a Secret
                // whose key has not arrived yet): the retry adopts them.
                tracing::warn!(pod = %id, reason = e.reason, message = %e.message, "adopted containers keep running while the pod waits");
                self.held.insert(id.clone(), desired.grace);
                self.adopted.insert(id.clone(), adopted);
                return Input::PrepareFailed { id, reason: e.reason.into(), message: e.message };
            }
            Err(e) => {
                stop_all(adopted, desired.grace);
                return Input::PrepareFailed { id, reason: e.reason.into(), message: e.message };
            }
        };
        let envs: Vec<prepare::Env> = desired
            .spec
            .containers
            .iter()
            .map(|c| prepare::container_env(&desired, c, &self.ctx, &prep, c.image.is_some()))
            .collect();
        let mut stops: Vec<Option<watch::Sender<Option<Duration>>>> = vec![None; desired.spec.containers.len()];
        let mut leftover = Vec::new();
        for mut a in adopted {
            let Some(i) = desired.spec.containers.iter().position(|c| c.name == a.container) else {
                leftover.push(a);
                continue;
            };
            if let Some(follow) = a.follow.take() {
                follow(prepare::log_sink(&self.ctx, &desired, &a.container));
            }
            let (tx, rx) = watch::channel(None);
            stops[i] = Some(tx);
            let c = &desired.spec.containers[i];
            let reg = Registration::new(&self.ctx.containers, c, &envs[i], &prep);
            tokio::spawn(supervise(Begin::Adopted(a.running), id.clone(), i, runtime.clone(), rx, inputs.clone(), reg));
        }
        // Adopted containers no longer in the spec are stopped.
        stop_all(leftover, desired.grace);
        let ports = prep.ports.clone();
        self.pods.insert(id.clone(), PodIo { desired, runtime, prep, envs, stops });
        Input::Prepared { id, ports }
    }

    fn start(&mut self, id: String, i: usize, inputs: &mpsc::Sender<Input>) -> Option<Input> {
        let Some(p) = self.pods.get_mut(&id) else {
            let message = "the pod was not prepared on this node".to_string();
            return Some(Input::StartFailed { id, container: i, reason: "CreateContainerError".into(), message });
        };
        let (c, env) = (p.desired.spec.containers.get(i)?, p.envs.get(i)?);
        let launch = prepare::launch(&self.ctx, &p.desired, c, &p.prep, env.vars.clone(), &env.lookup);
        let (tx, rx) = watch::channel(None);
        p.stops[i] = Some(tx);
        let reg = Registration::new(&self.ctx.containers, c, env, &p.prep);
        tokio::spawn(supervise(Begin::Launch(Box::new(launch)), id, i, p.runtime.clone(), rx, inputs.clone(), reg));
        None
    }

    fn probe(&self, cmd: Command, inputs: &mpsc::Sender<Input>) -> Option<Input> {
        let Command::Probe { id, container: i, kind, seq, container_id, timeout } = cmd else { return None };
        let p = self.pods.get(&id)?;
        let (c, env) = (p.desired.spec.containers.get(i)?, p.envs.get(i)?);
        let spec = match kind {
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
        }?;
        let Some(check) = prepare::probe_check(spec, self.ctx.node_ip, &p.prep, c, &env.lookup) else {
            let outcome = ProbeOutcome::Unavailable("its port is not one the container declares".into());
            return Some(Input::Probed { id, container: i, seq, outcome });
        };
        let target = ExecTarget { container_id, env: env.vars.clone(), workdir: Some(p.prep.pod_dir.clone()) };
        let (runtime, inputs) = (p.runtime.clone(), inputs.clone());
        tokio::spawn(async move {
            let outcome = match checks::run_check(&check, timeout, &runtime, &target).await {
                Ok(()) => ProbeOutcome::Success,
                Err(e) => ProbeOutcome::Failure(e.to_string()),
            };
            let _ = inputs.send(Input::Probed { id, container: i, seq, outcome }).await;
        });
        None
    }

    fn clean_up(&mut self, id: String, inputs: &mpsc::Sender<Input>) -> Option<Input> {
        if let Some(grace) = self.held.remove(&id) {
            stop_all(self.adopted.remove(&id).unwrap_or_default(), grace);
        }
        let Some(p) = self.pods.remove(&id) else { return Some(Input::Cleaned { id }) };
        let (ctx, inputs) = (self.ctx.clone(), inputs.clone());
        tokio::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || prepare::clean_up(&ctx, &p.desired, Some(&p.prep))).await;
            let _ = inputs.send(Input::Cleaned { id }).await;
        });
        None
    }
}

/// Stops containers nobody will supervise.
fn stop_all(adopted: Vec<Adopted>, grace: Duration) {
    for mut a in adopted {
        tokio::spawn(async move {
            a.running.stop(grace).await;
        });
    }
}

/// Where a container is listed while it runs, for `exec`.
struct Registration {
    containers: Containers,
    name: String,
    env: Vec<(String, String)>,
    workdir: std::path::PathBuf,
}

impl Registration {
    fn new(
        containers: &Containers,
        c: &crate::model::types::Container,
        env: &prepare::Env,
        prep: &Prepared,
    ) -> Registration {
        Registration {
            containers: containers.clone(),
            name: c.name.clone(),
            env: env.vars.clone(),
            workdir: prep.pod_dir.clone(),
        }
    }
}

enum Begin {
    Launch(Box<Launch>),
    Adopted(Box<dyn Running>),
}

/// One container's task: starts it (unless adopted), then waits for it to
/// exit or for a stop, and says what happened.
async fn supervise(
    begin: Begin,
    id: String,
    container: usize,
    runtime: Arc<dyn Runtime>,
    mut stop: watch::Receiver<Option<Duration>>,
    inputs: mpsc::Sender<Input>,
    reg: Registration,
) {
    let mut running = match begin {
        Begin::Adopted(r) => r,
        Begin::Launch(launch) => match runtime.start(*launch).await {
            Ok(r) => {
                let _ = inputs.send(Input::Started { id: id.clone(), container, container_id: r.id() }).await;
                r
            }
            Err(e) => {
                let _ = inputs.send(Input::StartFailed { id, container, reason: e.reason, message: e.message }).await;
                return;
            }
        },
    };
    let container_id = running.id();
    let target = ExecTarget { container_id: container_id.clone(), env: reg.env, workdir: Some(reg.workdir) };
    reg.containers.insert(&id, &reg.name, Entry { runtime: runtime.clone(), target });
    let asked = *stop.borrow();
    let exit = match asked {
        Some(grace) => running.stop(grace).await,
        None => {
            // (A closed stop channel means nobody can stop it any more: wait.)
            let asked = tokio::select! {
                exit = running.wait() => Err(exit),
                r = stop.wait_for(|v| v.is_some()) => Ok(r.ok().and_then(|v| *v)),
            };
            match asked {
                Err(exit) => exit,
                Ok(Some(grace)) => running.stop(grace).await,
                Ok(None) => running.wait().await,
            }
        }
    };
    reg.containers.remove(&id, &reg.name, &container_id);
    let _ = inputs.send(Input::Exited { id, container, exit }).await;
}

#[async_trait]
impl Executor for RuntimeExecutor {
    async fn recover(&mut self, keep: &Keep) -> Vec<AdoptedPod> {
        for rt in self.ctx.runtimes.values() {
            match rt.recover(keep).await {
                Ok(adopted) => {
                    for a in adopted {
                        let id = format!("{}/{}", a.namespace, a.pod);
                        tracing::info!(pod = %id, container = %a.container, "adopted running container");
                        self.adopted.entry(id).or_default().push(a);
                    }
                }
                Err(e) => tracing::warn!(runtime = rt.kind().as_str(), error = %e, "recovery failed"),
            }
        }
        self.adopted
            .iter()
            .map(|(id, cs)| AdoptedPod {
                id: id.clone(),
                containers: cs
                    .iter()
                    .map(|a| AdoptedContainer {
                        name: a.container.clone(),
                        container_id: a.running.id(),
                        started_at: a.started_at,
                    })
                    .collect(),
            })
            .collect()
    }

    fn execute(&mut self, cmd: Command, inputs: &mpsc::Sender<Input>) -> Option<Input> {
        match cmd {
            Command::Prepare { id, pod } => Some(self.prepare(id, pod, inputs)),
            Command::Start { id, container } => self.start(id, container, inputs),
            Command::Stop { id, container, grace } => {
                if let Some(tx) = self.pods.get(&id).and_then(|p| p.stops.get(container)).and_then(Option::as_ref) {
                    let _ = tx.send(Some(grace));
                }
                None
            }
            cmd @ Command::Probe { .. } => self.probe(cmd, inputs),
            Command::Cleanup { id } => self.clean_up(id, inputs),
        }
    }
}
