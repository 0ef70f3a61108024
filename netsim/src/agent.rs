//! A simulated kubelet: Shoal's real reconcile decisions (`agent::decide`),
//! with containers that take a random (seeded) time to become Ready and a
//! short time to stop. It publishes pod statuses through the node's real
//! membership, exactly as the real agent does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal::agent::Statuses;
use shoal::agent::decide::{Action, Handoff, Local, Plan, decide};
use shoal::agent::status::{ContainerState, ContainerStatus, Phase, PodStatus};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a stopping container takes to go.
pub const STOP_TIME: Duration = Duration::from_millis(100);
/// The agent's reconcile period (besides every plan change).
pub const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct SimPod {
    pub template_hash: String,
    pub ready_at: Instant,
    pub stop_at: Option<Instant>,
    pub handoff_since: Option<Instant>,
    pub ready_elsewhere_since: Option<Instant>,
    pub fenced: bool,
}

impl SimPod {
    pub fn ready(&self, now: Instant) -> bool {
        self.stop_at.is_none() && now >= self.ready_at
    }
}

/// What runs on a node (read by the observer).
#[derive(Debug, Default)]
pub struct AgentState {
    pub pods: BTreeMap<String, SimPod>,
    /// The node is paused: its agent does nothing (its containers run on).
    pub frozen: bool,
}

pub struct AgentSettings {
    pub me: String,
    pub start_min: Duration,
    pub start_max: Duration,
    pub handoff: Handoff,
    pub seed: u64,
}

fn status(me: &str, id: &str, p: &SimPod, now: Instant) -> PodStatus {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    let ready = p.ready(now);
    PodStatus {
        namespace: ns.to_string(),
        name: name.to_string(),
        node: me.to_string(),
        template_hash: p.template_hash.clone(),
        phase: Phase::Running,
        ready,
        host_ip: String::new(),
        terminating: p.stop_at.is_some(),
        containers: vec![ContainerStatus {
            name: "c".into(),
            ready,
            state: ContainerState::Running { started_at: 0 },
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Runs until the plan channel closes (the node crashed).
pub async fn run(
    s: AgentSettings,
    mut plan_rx: watch::Receiver<Arc<Plan>>,
    state: Arc<Mutex<AgentState>>,
    status_tx: watch::Sender<Statuses>,
) {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let waiting = BTreeMap::new();
    loop {
        tokio::select! {
            r = plan_rx.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let plan = plan_rx.borrow_and_update().clone();
        let now = Instant::now();
        let statuses = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if st.frozen {
                continue;
            }
            st.pods.retain(|_, p| p.stop_at.is_none_or(|t| t > now));
            let locals: BTreeMap<String, Local> = st
                .pods
                .iter()
                .map(|(id, p)| {
                    (
                        id.clone(),
                        Local {
                            template_hash: p.template_hash.clone(),
                            stopping: p.stop_at.is_some(),
                            handoff_since: p.handoff_since.map(Into::into),
                            ready_elsewhere_since: p.ready_elsewhere_since.map(Into::into),
                        },
                    )
                })
                .collect();
            for a in decide(&plan, &s.me, &locals, &waiting, now.into(), s.handoff) {
                match a {
                    Action::Start(id) => {
                        let Some(d) = plan.desired.get(&id) else { continue };
                        let ms = rng.random_range(
                            s.start_min.as_millis() as u64
                                ..=s.start_max.as_millis().max(s.start_min.as_millis()) as u64,
                        );
                        st.pods.insert(
                            id,
                            SimPod {
                                template_hash: d.template_hash.clone(),
                                ready_at: now + Duration::from_millis(ms),
                                stop_at: None,
                                handoff_since: None,
                                ready_elsewhere_since: None,
                                fenced: d.fenced,
                            },
                        );
                    }
                    Action::Stop(id, _) => {
                        if let Some(p) = st.pods.get_mut(&id) {
                            p.stop_at = Some(now + STOP_TIME);
                        }
                    }
                    Action::BeginHandoff(id) => {
                        if let Some(p) = st.pods.get_mut(&id) {
                            p.handoff_since = Some(now);
                        }
                    }
                    Action::SeenReadyElsewhere(id) => {
                        if let Some(p) = st.pods.get_mut(&id) {
                            p.ready_elsewhere_since = Some(now);
                        }
                    }
                }
            }
            st.pods.iter().map(|(id, p)| (id.clone(), status(&s.me, id, p, now))).collect::<BTreeMap<_, _>>()
        };
        status_tx.send_if_modified(|cur| {
            if **cur == statuses {
                false
            } else {
                *cur = Arc::new(statuses);
                true
            }
        });
    }
}
