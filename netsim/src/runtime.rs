//! The simulated host a node's pods run on, and the executor that the real
//! agent (Shoal's `agent::core` and `agent::driver`) drives on it.
//!
//! `Machine` is what runs on one simulated host. It outlives the `shoal`
//! process (an agent crash leaves its containers running, as with Docker)
//! and dies with the host (a crash). `SimExecutor` carries out the agent's
//! commands on it: a container takes a seeded random time to start and
//! `STOP_TIME` to stop; probes pass. One worker per agent applies commands
//! in order; while the node is paused nothing is applied and nothing is
//! answered, as with a stopped process, and all of it happens at resume.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::agent::core::{AdoptedContainer, AdoptedPod, Command, Input, ProbeOutcome};
use shoal::agent::driver::Executor;
use shoal::agent::runtime::{Exit, Keep};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::clock;

/// How long a stopping container takes to go.
pub const STOP_TIME: Duration = Duration::from_millis(100);

/// One container on a simulated host (simulated pods have one container).
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub template_hash: String,
    pub fenced: bool,
    /// Running, and Ready (simulated pods have no readiness probe), from then.
    pub running_at: Instant,
    pub started_unix: u64,
    pub stop_at: Option<Instant>,
    /// Which start this is (a late answer about an older one is dropped).
    pub attempt: u64,
}

impl Container {
    pub fn ready(&self, now: Instant) -> bool {
        self.stop_at.is_none() && now >= self.running_at
    }
}

/// What runs on one simulated host, by pod id.
#[derive(Debug, Default)]
pub struct Machine {
    pub containers: BTreeMap<String, Container>,
    attempts: u64,
    /// Where the host's agent hears of its containers (once it has asked
    /// for any): a lease watchdog's kill is told there.
    pub agent: Option<mpsc::Sender<Input>>,
}

impl Machine {
    /// Forgets containers that have finished stopping.
    pub fn prune(&mut self, now: Instant) {
        self.containers.retain(|_, c| c.stop_at.is_none_or(|t| t > now));
    }

    /// The lease watchdogs (`shoal::agent::lease`) of a host whose agent
    /// renews nothing: every running fenced container is killed now.
    /// Returns their ids.
    pub fn expire_leases(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (id, c) in self.containers.iter_mut() {
            if c.fenced && c.stop_at.is_none() {
                c.stop_at = Some(now);
                out.push(id.clone());
            }
        }
        out
    }

    /// Starts a copy of a pod behind the agents' backs (an injected fault).
    pub fn inject(&mut self, id: &str, template_hash: &str, fenced: bool, now: Instant) {
        self.attempts += 1;
        let c = Container {
            name: "c".into(),
            template_hash: template_hash.into(),
            fenced,
            running_at: now,
            started_unix: clock::unix_secs(),
            stop_at: None,
            attempt: self.attempts,
        };
        self.containers.insert(id.to_string(), c);
    }
}

pub type SharedMachine = Arc<Mutex<Machine>>;

fn lock(m: &SharedMachine) -> std::sync::MutexGuard<'_, Machine> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How simulated containers behave.
#[derive(Debug, Clone, Copy)]
pub struct SimTiming {
    pub start_min: Duration,
    pub start_max: Duration,
}

pub struct SimExecutor {
    machine: SharedMachine,
    paused: watch::Receiver<bool>,
    timing: SimTiming,
    seed: u64,
    queue: Option<mpsc::UnboundedSender<Command>>,
}

impl SimExecutor {
    pub fn new(machine: SharedMachine, paused: watch::Receiver<bool>, timing: SimTiming, seed: u64) -> SimExecutor {
        SimExecutor { machine, paused, timing, seed, queue: None }
    }
}

/// What one agent's worker keeps.
struct Worker {
    machine: SharedMachine,
    paused: watch::Receiver<bool>,
    inputs: mpsc::Sender<Input>,
    timing: SimTiming,
    rng: StdRng,
    /// Template and fencing of the pods it prepared.
    pods: BTreeMap<String, (String, String, bool)>,
}

impl Worker {
    /// Answers after `delay` of virtual time (later still if the node is
    /// paused then), unless `still` says the answer no longer applies.
    fn later(&self, delay: Duration, input: Input, still: impl Fn(&Machine) -> bool + Send + 'static) {
        let (machine, mut paused, inputs) = (self.machine.clone(), self.paused.clone(), self.inputs.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = paused.wait_for(|p| !*p).await;
            if still(&lock(&machine)) {
                let _ = inputs.send(input).await;
            }
        });
    }

    fn now(&self, input: Input) {
        self.later(Duration::ZERO, input, |_| true);
    }

    fn apply(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Prepare { id, pod } => {
                let name = pod.spec.containers.first().map_or("c".to_string(), |c| c.name.clone());
                self.pods.insert(id.clone(), (name, pod.template_hash.clone(), pod.fenced));
                self.now(Input::Prepared { id, ports: Vec::new() });
            }
            Command::Start { id, container } => {
                let (name, template_hash, fenced) = self.pods.get(&id).cloned().unwrap_or_default();
                let (lo, hi) = (self.timing.start_min.as_millis() as u64, self.timing.start_max.as_millis() as u64);
                let delay = Duration::from_millis(self.rng.random_range(lo..=hi.max(lo)));
                let attempt = {
                    let mut m = lock(&self.machine);
                    m.attempts += 1;
                    let attempt = m.attempts;
                    let c = Container {
                        name,
                        template_hash,
                        fenced,
                        running_at: now + delay,
                        started_unix: clock::unix_secs() + delay.as_secs(),
                        stop_at: None,
                        attempt,
                    };
                    m.containers.insert(id.clone(), c);
                    attempt
                };
                let key = id.clone();
                let input = Input::Started { id, container, container_id: format!("sim-{attempt}") };
                self.later(delay, input, move |m| {
                    m.containers.get(&key).is_some_and(|c| c.attempt == attempt && c.stop_at.is_none())
                });
            }
            Command::Stop { id, container, .. } => {
                if let Some(c) = lock(&self.machine).containers.get_mut(&id)
                    && c.stop_at.is_none()
                {
                    c.stop_at = Some(now + STOP_TIME);
                }
                self.later(STOP_TIME, Input::Exited { id, container, exit: Exit::from_code(0, Some(15)) }, |_| true);
            }
            Command::Probe { id, container, seq, .. } => {
                self.now(Input::Probed { id, container, seq, outcome: ProbeOutcome::Success });
            }
            Command::Cleanup { id } => {
                self.pods.remove(&id);
                self.now(Input::Cleaned { id });
            }
        }
    }
}

#[async_trait]
impl Executor for SimExecutor {
    /// Adopts the running containers of pods still desired (as the Docker
    /// runtime does) and stops every other container.
    async fn recover(&mut self, keep: &Keep) -> Vec<AdoptedPod> {
        let now = Instant::now();
        let mut m = lock(&self.machine);
        m.prune(now);
        let mut adopted = Vec::new();
        for (id, c) in m.containers.iter_mut() {
            let (ns, pod) = id.split_once('/').unwrap_or(("default", id));
            if c.ready(now) && keep(ns, pod, &c.template_hash) {
                let container = AdoptedContainer {
                    name: c.name.clone(),
                    container_id: format!("sim-{}", c.attempt),
                    started_at: c.started_unix,
                };
                adopted.push(AdoptedPod { id: id.clone(), containers: vec![container] });
            } else if c.stop_at.is_none() {
                c.stop_at = Some(now + STOP_TIME);
            }
        }
        adopted
    }

    fn execute(&mut self, cmd: Command, inputs: &mpsc::Sender<Input>) -> Option<Input> {
        let machine = self.machine.clone();
        let queue = self.queue.get_or_insert_with(|| {
            lock(&machine).agent = Some(inputs.clone());
            let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
            let mut w = Worker {
                machine: self.machine.clone(),
                paused: self.paused.clone(),
                inputs: inputs.clone(),
                timing: self.timing,
                rng: StdRng::seed_from_u64(self.seed),
                pods: BTreeMap::new(),
            };
            tokio::spawn(async move {
                while let Some(cmd) = rx.recv().await {
                    let _ = w.paused.wait_for(|p| !*p).await;
                    w.apply(cmd);
                }
            });
            tx
        });
        let _ = queue.send(cmd);
        None
    }
}
