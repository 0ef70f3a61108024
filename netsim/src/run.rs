//! One simulated run: boot the nodes, play the timeline, sample, check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shoal::model::parse::{SourceFile, parse_files};
use shoal::model::validate::Context;
use shoal::state::Writer;
use shoal::state::apply::{Mode as ApplyMode, plan_apply};

use crate::clock;
use crate::net::SimNet;
use crate::node::{Ctx, Mode, SimNode};
use crate::observer::Observer;
use crate::scenario::{Action, Scenario, Workload};

/// Sampling period of the observer.
pub const SAMPLE: Duration = Duration::from_millis(100);

/// The span at the end of a run over which traffic at rest is measured.
pub const QUIET: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub nodes: usize,
    pub seed: u64,
    pub mode: Mode,
}

pub struct RunResult {
    pub config: RunConfig,
    pub observer: Observer,
    pub bytes_per_node_sec: f64,
    /// The same over the run's last `QUIET` (none when a step falls in it).
    pub quiet_bytes_per_node_sec: Option<f64>,
    pub messages_per_node_sec: f64,
    pub oversized: u64,
    pub max_syn_bytes: u64,
    pub wall: Duration,
    pub log: Vec<(f64, String)>,
}

/// One step of the timeline.
#[derive(Debug, Clone)]
enum Step {
    /// Apply a workload with these replicas (None: as it is now) and a new
    /// template version (false: the same).
    Apply(Workload, Option<u32>, bool),
    Crash(String),
    AgentCrash(String),
    Boot(String),
    /// A node of a mass join boots for the first time.
    Join(String),
    Inject(String),
    Pause(String),
    Resume(String),
    Partition(String),
    Heal,
}

/// The CronJobs of a cron workload (Jobs of one pod that runs on).
fn cronjobs_yaml(w: &Workload, schedule: &str) -> String {
    let deadline = w.starting_deadline_seconds.map(|d| format!("  startingDeadlineSeconds: {d}\n")).unwrap_or_default();
    (0..w.cronjobs.max(1))
        .map(|i| {
            format!(
                "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {n}-{i:02}}}\nspec:\n  schedule: '{schedule}'\n  successfulJobsHistoryLimit: 100\n{deadline}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: c, command: [sim], resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]\n---\n",
                n = w.name
            )
        })
        .collect()
}

fn deployment_yaml(w: &Workload, replicas: u32, version: u32) -> String {
    if let Some(s) = &w.schedule {
        return cronjobs_yaml(w, s);
    }
    let fencing = if w.fenced { "  fencing: Majority\n" } else { "" };
    let mut strategy = String::new();
    if w.max_surge.is_some() || w.max_unavailable.is_some() {
        let v = |x: &Option<String>, k: &str| {
            x.as_ref().map(|x| format!("{k}: {}", if x.ends_with('%') { format!("'{x}'") } else { x.clone() }))
        };
        let parts: Vec<String> =
            [v(&w.max_surge, "maxSurge"), v(&w.max_unavailable, "maxUnavailable")].into_iter().flatten().collect();
        strategy = format!("  strategy: {{rollingUpdate: {{{}}}}}\n", parts.join(", "));
    }
    let min_ready =
        if w.min_ready_seconds > 0 { format!("  minReadySeconds: {}\n", w.min_ready_seconds) } else { String::new() };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {n}}}\nspec:\n  replicas: {replicas}\n{fencing}{strategy}{min_ready}  selector: {{matchLabels: {{app: {n}}}}}\n  template:\n    metadata: {{labels: {{app: {n}}}}}\n    spec:\n      containers: [{{name: c, command: [sim], env: [{{name: VERSION, value: '{version}'}}], resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]\n",
        n = w.name
    )
}

/// Picks the nodes an event targets (seeded).
fn pick(spec: &str, candidates: &[String], rng: &mut StdRng) -> Vec<String> {
    let mut c = candidates.to_vec();
    c.shuffle(rng);
    let n = c.len();
    let k = match spec {
        "one" => 1,
        "third" => n / 3,
        "half" => n / 2,
        "all" => n,
        name => return c.into_iter().filter(|x| x == name).collect(),
    };
    c.truncate(k.max(1).min(n));
    c
}

/// Whether runs leave their simulated cluster in memory when they end
/// (see `leave_clusters_at_exit`).
static LEAVE: AtomicBool = AtomicBool::new(false);

/// From now on, a run that ends leaves its simulated cluster (nodes,
/// network, runtime) allocated rather than freeing it piece by piece: for
/// a process that exits once its runs are reported, where the system
/// takes the memory back at once (at 1,000 nodes the frees took 6 s of
/// a 3-minute run). Tests do not call it: their runs free what they used.
pub fn leave_clusters_at_exit() {
    LEAVE.store(true, Ordering::Relaxed);
}

pub fn run(cfg: RunConfig) -> RunResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let (result, cluster) = rt.block_on(simulate(cfg));
    if LEAVE.load(Ordering::Relaxed) {
        std::mem::forget(cluster);
        std::mem::forget(rt);
    }
    result
}

/// Runs each configuration on its own thread, `jobs` at a time; results in
/// the order of `configs`.
pub fn run_all(configs: Vec<RunConfig>, jobs: usize) -> Vec<RunResult> {
    let queue = Mutex::new(configs.into_iter().enumerate().collect::<std::collections::VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let Some((i, cfg)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else { return };
                    let r = run(cfg);
                    done.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// What a run leaves behind: its simulated cluster.
type Cluster = (Vec<SimNode>, SimNet, Ctx);

async fn simulate(cfg: RunConfig) -> (RunResult, Cluster) {
    let wall = WallInstant::now();
    clock::start();
    let sc = &cfg.scenario;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let net = SimNet::new(cfg.seed, sc.network.clone());
    // The cluster, then the nodes of a mass join (booted at their turn).
    let joining = sc.join.as_ref().map_or(0, |j| j.nodes);
    let total = cfg.nodes + joining;
    let mut nodes: Vec<SimNode> = (0..total).map(|i| SimNode::new(i, sc.capacities[i % sc.capacities.len()])).collect();
    let ctx = Ctx {
        net: net.clone(),
        timing: sc.timing.clone(),
        mode: cfg.mode,
        seeds: nodes.iter().take(3).map(|n| n.addr.to_string()).collect(),
        seed: cfg.seed,
        members: nodes.iter().map(|n| n.name.clone()).collect(),
    };
    for n in nodes.iter_mut().take(cfg.nodes) {
        n.boot(&ctx).await;
    }
    // The timeline: workload applies and expanded events, in order.
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    if let Some(j) = &sc.join {
        for (k, n) in nodes[cfg.nodes..].iter().enumerate() {
            steps.push((j.boot_at(k), Step::Join(n.name.clone())));
        }
    }
    for w in &sc.workload {
        let r = if w.replicas_per_node > 0 { w.replicas_per_node * cfg.nodes as u32 } else { w.replicas };
        steps.push((w.at, Step::Apply(w.clone(), Some(r), false)));
    }
    // Events pick among the first nodes (joiners may not be up yet).
    let names: Vec<String> = nodes.iter().take(cfg.nodes).map(|n| n.name.clone()).collect();
    for e in &sc.events {
        // `next`: each repetition takes the next node of one seeded order.
        let mut order = names.clone();
        order.shuffle(&mut rng);
        for k in 0..e.repeat.max(1) {
            let at = e.at + e.every * k;
            let targets = if e.nodes == "next" {
                vec![order[k as usize % order.len()].clone()]
            } else {
                pick(&e.nodes, &names, &mut rng)
            };
            match e.action {
                Action::Crash => steps.extend(targets.into_iter().map(|t| (at, Step::Crash(t)))),
                Action::Restart => steps.extend(targets.into_iter().map(|t| (at, Step::Boot(t)))),
                Action::CrashRestart => {
                    for t in targets {
                        steps.push((at, Step::Crash(t.clone())));
                        steps.push((at + e.down_for, Step::Boot(t)));
                    }
                }
                Action::AgentCrash => steps.extend(targets.into_iter().map(|t| (at, Step::AgentCrash(t)))),
                Action::AgentCrashRestart => {
                    for t in targets {
                        steps.push((at, Step::AgentCrash(t.clone())));
                        steps.push((at + e.down_for, Step::Boot(t)));
                    }
                }
                Action::Inject => steps.push((at, Step::Inject(e.fault.clone()))),
                Action::Pause => {
                    for t in targets {
                        steps.push((at, Step::Pause(t.clone())));
                        steps.push((at + e.down_for, Step::Resume(t)));
                    }
                }
                Action::Partition => steps.push((at, Step::Partition(e.partition.clone()))),
                Action::Heal => steps.push((at, Step::Heal)),
                Action::Scale | Action::Update => {
                    if let Some(w) = sc.workload.iter().find(|w| w.name == e.deployment) {
                        let update = e.action == Action::Update;
                        steps.push((at, Step::Apply(w.clone(), (!update).then_some(e.replicas), update)));
                    }
                }
            }
        }
    }
    steps.sort_by_key(|(at, _)| *at);
    let mut observer = Observer::default();
    // Each workload's replicas and template version as last applied.
    let mut specs: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let acked = observer.acked.clone();
    let mut log = Vec::new();
    let grace = sc.timing.handoff_timeout + sc.timing.handoff_linger + Duration::from_secs(2);
    let mut next = 0;
    let mut t = Duration::ZERO;
    let progress = std::env::var_os("NETSIM_PROGRESS").is_some();
    // Traffic in the last QUIET of the run, when no step falls in it (and
    // the last one is QUIET further back): the cost of a cluster at rest.
    let last_step = steps.last().map_or(Duration::ZERO, |s| s.0);
    let quiet_from = sc.duration.saturating_sub(QUIET);
    let mut quiet_start: Option<u64> = None;
    let measure_quiet = quiet_from >= last_step + QUIET;
    while t <= sc.duration {
        if measure_quiet && quiet_start.is_none() && t >= quiet_from {
            quiet_start = Some(net.traffic().values().map(|t| t.sent_bytes).sum());
        }
        while next < steps.len() && steps[next].0 <= t {
            let step = steps[next].1.clone();
            next += 1;
            apply_step(step, &mut nodes, &ctx, &net, &mut rng, &mut observer, &acked, &mut log, &mut specs, t).await;
        }
        for n in nodes.iter_mut() {
            n.enforce_leases(t, sc.timing.fence_lease);
        }
        observer.sample(&nodes, &net, t, SAMPLE, grace);
        if progress && t.subsec_millis() < SAMPLE.as_millis() as u32 {
            eprintln!("t={:>4}s wall={:>6.1}s", t.as_secs(), wall.elapsed().as_secs_f64());
        }
        tokio::time::sleep(SAMPLE).await;
        t = clock::elapsed();
    }
    if sc.duration > sc.last_fault() + Duration::from_secs(20) {
        observer.final_checks(&nodes);
        // Times up to 20 s before the end have had time to fire (or be
        // reported) through any fallback.
        observer.cron_checks(&nodes, (clock::unix_secs() as i64) - 20);
    }
    let traffic = net.traffic();
    let secs = sc.duration.as_secs_f64().max(1.0);
    // Per node of the whole cluster (a mass join's nodes counted from the start).
    let n = total as f64;
    let bytes: u64 = traffic.values().map(|t| t.sent_bytes).sum();
    let msgs: u64 = traffic.values().map(|t| t.sent_messages).sum();
    let oversized: u64 = traffic.values().map(|t| t.oversized).sum();
    let max_syn_bytes = traffic.values().map(|t| t.max_syn_bytes).max().unwrap_or(0);
    let quiet_bytes_per_node_sec = quiet_start.map(|b0| (bytes - b0) as f64 / n / QUIET.as_secs_f64());
    for node in nodes.iter_mut() {
        node.crash(&net);
    }
    let result = RunResult {
        config: cfg.clone(),
        observer,
        bytes_per_node_sec: bytes as f64 / n / secs,
        quiet_bytes_per_node_sec,
        messages_per_node_sec: msgs as f64 / n / secs,
        oversized,
        max_syn_bytes,
        wall: wall.elapsed(),
        log,
    };
    (result, (nodes, net, ctx))
}

#[allow(clippy::too_many_arguments)]
async fn apply_step(
    step: Step,
    nodes: &mut [SimNode],
    ctx: &Ctx,
    net: &SimNet,
    rng: &mut StdRng,
    observer: &mut Observer,
    acked: &Arc<Mutex<Vec<shoal::state::Key>>>,
    log: &mut Vec<(f64, String)>,
    specs: &mut BTreeMap<String, (u32, u32)>,
    t: Duration,
) {
    let ts = t.as_secs_f64();
    match step {
        Step::Apply(w, replicas, update) => {
            let spec = specs.entry(w.name.clone()).or_insert((0, 1));
            if let Some(r) = replicas {
                spec.0 = r;
            }
            if update {
                spec.1 += 1;
                observer.updates.push(crate::observer::Update::new(&w.name, spec.0, t, nodes));
            }
            let (replicas, version) = *spec;
            let up: Vec<usize> =
                (0..nodes.len()).filter(|i| nodes[*i].up() && nodes[*i].paused_until.is_none()).collect();
            let Some(&i) = up.get(rng.random_range(0..up.len().max(1))) else { return };
            let n = &nodes[i];
            let Some(l) = &n.live else { return };
            let out = parse_files(
                &[SourceFile { name: "sim".into(), content: deployment_yaml(&w, replicas, version) }],
                &Context::default(),
                None,
            );
            let Ok((_, changes)) = plan_apply(&n.db.snapshot(), out.objects, n.db.now(), ApplyMode::Apply) else {
                return;
            };
            let keys: Vec<shoal::state::Key> = changes.iter().map(|(k, _)| k.clone()).collect();
            let (writer, acked, k2) = (l.writer.clone(), acked.clone(), keys.clone());
            tokio::spawn(async move {
                if writer.write(changes).await.is_ok() {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).extend(k2);
                }
            });
            let before = keys.iter().map(|k| n.db.get(k).map(|e| e.stamp)).collect();
            observer.writes.push(crate::observer::Write {
                at: t,
                via: i,
                keys: keys.clone(),
                before,
                stamps: None,
                converged: None,
            });
            let what = if update {
                format!("update {} to version {version}", w.name)
            } else {
                format!("apply {} replicas={replicas}", w.name)
            };
            log.push((ts, format!("{what} via {}", n.name)));
        }
        Step::Crash(ref name) | Step::AgentCrash(ref name) if nodes.iter().any(|n| n.name == *name && n.up()) => {
            let agent_only = matches!(step, Step::AgentCrash(_));
            let name = name.clone();
            let Some(n) = nodes.iter_mut().find(|n| n.name == name) else { return };
            let generation = n.live.as_ref().map_or(0, |l| l.generation);
            if agent_only {
                n.agent_crash(net);
            } else {
                n.crash(net);
            }
            observer.crashes.push(crate::observer::Crash {
                node: name.clone(),
                generation,
                at: t,
                detected: None,
                rescheduled: None,
                replicas: false,
            });
            log.push((ts, format!("{} {name}", if agent_only { "agent-crash" } else { "crash" })));
        }
        Step::Crash(_) | Step::AgentCrash(_) => {}
        Step::Inject(fault) => {
            let what = inject(&fault, nodes, rng);
            log.push((ts, format!("inject {fault}: {what}")));
        }
        Step::Boot(name) => {
            if let Some(n) = nodes.iter_mut().find(|n| n.name == name && !n.up()) {
                let orphans = n.host_up && !n.machine.lock().unwrap_or_else(|p| p.into_inner()).containers.is_empty();
                n.boot(ctx).await;
                observer.disturbed.insert(name.clone(), t);
                if orphans {
                    observer.returns.push(crate::observer::Return { node: name.clone(), at: t, clean: None });
                }
                log.push((ts, format!("restart {name}")));
            }
        }
        Step::Join(name) => {
            let witnesses: Vec<usize> =
                nodes.iter().filter(|n| n.up() && n.paused_until.is_none()).map(|n| n.index).collect();
            if let Some(n) = nodes.iter_mut().find(|n| n.name == name && !n.up()) {
                n.boot(ctx).await;
                let generation = n.live.as_ref().map_or(0, |l| l.generation);
                observer.disturbed.insert(name.clone(), t);
                observer.joins.push(crate::observer::Joined {
                    node: name.clone(),
                    generation,
                    at: t,
                    witnesses,
                    seen: None,
                    learned: None,
                    lacking: Vec::new(),
                });
                log.push((ts, format!("join {name}")));
            }
        }
        Step::Pause(name) => {
            if let Some(n) = nodes.iter_mut().find(|n| n.name == name && n.up()) {
                n.set_paused(net, true, t);
                log.push((ts, format!("pause {name}")));
            }
        }
        Step::Resume(name) => {
            if let Some(n) = nodes.iter_mut().find(|n| n.name == name && n.up()) {
                n.set_paused(net, false, t);
                observer.disturbed.insert(name.clone(), t);
                log.push((ts, format!("resume {name}")));
            }
        }
        Step::Partition(kind) => {
            let mut addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.addr).collect();
            addrs.shuffle(rng);
            let cut = match kind.as_str() {
                "split-half" => addrs.len() / 2,
                _ => 1,
            };
            let (a, b) = addrs.split_at(cut);
            net.block(a, b);
            if kind != "asymmetric" {
                net.block(b, a);
            }
            log.push((ts, format!("partition {kind}: {} | {}", a.len(), b.len())));
        }
        Step::Heal => {
            net.heal();
            observer.last_heal = t;
            log.push((ts, "heal".into()));
        }
    }
}

/// Breaks an invariant behind every agent's back (see `Action::Inject`);
/// says what it did.
fn inject(fault: &str, nodes: &mut [SimNode], rng: &mut StdRng) -> String {
    let now = tokio::time::Instant::now();
    let live: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].up()).collect();
    match fault {
        "duplicate-fenced" => {
            // A running fenced replica, and another host to copy it to.
            for &i in &live {
                let found = {
                    let m = nodes[i].machine.lock().unwrap_or_else(|p| p.into_inner());
                    m.containers.iter().find(|(_, c)| c.fenced && c.ready(now)).map(|(id, c)| (id.clone(), c.clone()))
                };
                let Some((id, c)) = found else { continue };
                let Some(&j) = live.iter().find(|j| **j != i) else { break };
                nodes[j].machine.lock().unwrap_or_else(|p| p.into_inner()).inject(&id, &c.template_hash, true, now);
                return format!("a second copy of {id} (running on {}) started on {}", nodes[i].name, nodes[j].name);
            }
            "no running fenced replica to copy".into()
        }
        "lose-write" => {
            let Some(&i) = live.get(rng.random_range(0..live.len().max(1))) else { return "no live node".into() };
            let key = nodes[i].db.snapshot().objects.keys().next().map(shoal::state::object_key);
            let Some(key) = key else { return "no object to lose".into() };
            match nodes[i].db.write(vec![(key.clone(), None)]) {
                Ok(_) => format!("{key} tombstoned on {} without a delete", nodes[i].name),
                Err(e) => format!("cannot tombstone {key}: {e}"),
            }
        }
        other => format!("unknown fault {other}"),
    }
}
