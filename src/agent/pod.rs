//! The supervisor of one pod on this node: prepares its directory, volumes
//! and ports, runs each container (restarts with backoff, probes), keeps its
//! status, and tears everything down when told to stop.
//!
//! One task per pod plus one per container. The pod task owns the pod's
//! resources; container tasks own their runtime handles. Decisions (restart
//! or not, how long to wait, probe thresholds) come from `backoff` and
//! `probe`; this file is the I/O around them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::{AfterExit, Backoff, after_exit};
use super::logs::{self, LogLimits, LogSink};
use super::ports::PortAllocator;
use super::probe::{Check, Timing, Tracker, run_check};
use super::runtime::{Adopted, ExecTarget, Exit, Launch, Mount, Runtime};
use super::status::{ContainerState, ContainerStatus, Phase, PodStatus, PortMapping, unix_now};
use crate::events::EventLog;
use crate::model::pods::{DesiredPod, RuntimeKind};
use crate::model::types::{Container, IntOrString, Probe};

/// Extra environment for the pods of a namespace (service discovery).
pub type NamespaceEnv = Box<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;

/// What every pod on this node shares.
pub struct PodCtx {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub generation: u64,
    pub data_dir: PathBuf,
    pub backoff: Backoff,
    pub log_limits: LogLimits,
    pub ports: PortAllocator,
    pub runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>>,
    pub events: Arc<EventLog>,
    /// Extra environment for every pod of a namespace (service discovery).
    pub namespace_env: NamespaceEnv,
}

impl PodCtx {
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
}

/// What a pod reports to the agent besides status changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// A container of the pod failed and will be restarted in place
    /// (counts toward a Job's backoffLimit).
    ContainerFailed { id: String, exit_code: i32 },
    /// Every container has ended for good.
    Finished { id: String, phase: Phase, exit_code: i32 },
}

/// The agent's handle on a running pod.
pub struct PodHandle {
    pub desired: DesiredPod,
    pub status: Arc<Mutex<PodStatus>>,
    stop_tx: watch::Sender<Option<Duration>>,
    join: JoinHandle<()>,
    pub stopping: bool,
    /// When this node stopped owning the pod (handoff started).
    pub handoff_since: Option<Instant>,
    /// When the new owner was first seen reporting it Ready.
    pub ready_elsewhere_since: Option<Instant>,
}

impl PodHandle {
    /// Starts supervising `desired`; `adopted` are containers already running
    /// from a previous run of this node.
    pub fn spawn(
        desired: DesiredPod,
        ctx: Arc<PodCtx>,
        changed: Arc<Notify>,
        events: mpsc::Sender<PodEvent>,
        adopted: Vec<Adopted>,
    ) -> PodHandle {
        let status = Arc::new(Mutex::new(PodStatus {
            namespace: desired.namespace.clone(),
            name: desired.name.clone(),
            node: ctx.node_name.clone(),
            owner_uid: desired.owner.uid.clone(),
            template_hash: desired.template_hash.clone(),
            phase: Phase::Pending,
            host_ip: ctx.node_ip.to_string(),
            started_at: unix_now(),
            containers: desired
                .spec
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_else(|| c.command.join(" ")),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }));
        let (stop_tx, stop_rx) = watch::channel(None);
        let cell = Cell { status: status.clone(), changed };
        let join = tokio::spawn(run_pod(desired.clone(), ctx, cell, stop_rx, events, adopted));
        PodHandle { desired, status, stop_tx, join, stopping: false, handoff_since: None, ready_elsewhere_since: None }
    }

    /// Asks the pod to stop (SIGTERM, then kill after `grace`).
    pub fn stop(&mut self, grace: Duration) {
        self.stopping = true;
        self.status.lock().unwrap_or_else(|p| p.into_inner()).terminating = true;
        let _ = self.stop_tx.send(Some(grace));
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the pod task to end.
    pub async fn join(self) {
        let _ = self.join.await;
    }

    pub fn snapshot(&self) -> PodStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
struct Cell {
    status: Arc<Mutex<PodStatus>>,
    changed: Arc<Notify>,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut PodStatus)) {
        {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            recompute(&mut s);
        }
        self.changed.notify_one();
    }
    fn container(&self, i: usize, f: impl FnOnce(&mut ContainerStatus)) {
        self.update(|s| {
            if let Some(c) = s.containers.get_mut(i) {
                f(c);
            }
        });
    }
}

/// Derives pod phase and readiness from container states.
fn recompute(s: &mut PodStatus) {
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

/// Kubernetes' `$(VAR)` expansion: known variables are replaced, `$$` is a
/// literal `$`, anything else is left as written.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                    i += end + 3;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Upper-cased, `-` → `_`: `http-alt` → `HTTP_ALT`.
pub fn env_suffix(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

struct Prepared {
    pod_dir: PathBuf,
    ports: Vec<PortMapping>,
    volumes: BTreeMap<String, PathBuf>,
}

fn prepare(desired: &DesiredPod, ctx: &PodCtx, adopted: &[Adopted]) -> Result<Prepared, (String, String)> {
    let pod_dir = ctx.pods_dir().join(format!("{}_{}", desired.namespace, desired.name));
    std::fs::create_dir_all(&pod_dir)
        .map_err(|e| ("CreatePodDirError".into(), format!("{}: {e}", pod_dir.display())))?;
    let mut volumes = BTreeMap::new();
    for v in &desired.spec.volumes {
        if v.empty_dir.is_some() {
            let p = pod_dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&p).map_err(|e| ("VolumeError".into(), format!("emptyDir {}: {e}", v.name)))?;
            volumes.insert(v.name.clone(), p);
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.kind.as_deref() {
                Some("DirectoryOrCreate") => std::fs::create_dir_all(&p)
                    .map_err(|e| ("VolumeError".into(), format!("hostPath {}: {e}", h.path)))?,
                Some("FileOrCreate") => {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(|e| ("VolumeError".into(), format!("hostPath {}: {e}", h.path)))?;
                }
                Some("Directory") if !p.is_dir() => {
                    return Err(("VolumeError".into(), format!("hostPath {} is not a directory on this node", h.path)));
                }
                Some("File") if !p.is_file() => {
                    return Err(("VolumeError".into(), format!("hostPath {} is not a file on this node", h.path)));
                }
                _ => {}
            }
            volumes.insert(v.name.clone(), p);
        }
    }
    let previous: BTreeMap<u16, u16> =
        adopted.iter().flat_map(|a| a.ports.iter().map(|p| (p.container_port, p.host_port))).collect();
    let mut ports = Vec::new();
    for c in &desired.spec.containers {
        for p in &c.ports {
            let cp = p.container_port as u16;
            let host = match previous.get(&cp) {
                Some(h) => {
                    ctx.ports.claim(*h);
                    *h
                }
                None => match ctx.ports.allocate(None) {
                    Ok(h) => h,
                    Err(e) => {
                        for m in &ports {
                            let m: &PortMapping = m;
                            ctx.ports.release(m.host_port);
                        }
                        return Err(("PortAllocationError".into(), e));
                    }
                },
            };
            ports.push(PortMapping { name: p.name.clone().unwrap_or_default(), container_port: cp, host_port: host });
        }
    }
    Ok(Prepared { pod_dir, ports, volumes })
}

fn container_env(
    desired: &DesiredPod,
    c: &Container,
    ctx: &PodCtx,
    prep: &Prepared,
    docker: bool,
) -> (Vec<(String, String)>, BTreeMap<String, String>) {
    let mut env: Vec<(String, String)> = vec![
        ("SHOAL_NODE_NAME".into(), ctx.node_name.clone()),
        ("SHOAL_NODE_IP".into(), ctx.node_ip.to_string()),
        ("SHOAL_POD_NAME".into(), desired.name.clone()),
        ("SHOAL_POD_NAMESPACE".into(), desired.namespace.clone()),
    ];
    if !docker {
        env.push(("SHOAL_POD_DIR".into(), prep.pod_dir.display().to_string()));
        for (name, path) in &prep.volumes {
            env.push((format!("SHOAL_VOLUME_{}", env_suffix(name)), path.display().to_string()));
        }
    }
    let own: Vec<&PortMapping> =
        prep.ports.iter().filter(|m| c.ports.iter().any(|p| p.container_port as u16 == m.container_port)).collect();
    let port_value = |m: &PortMapping| if docker { m.container_port } else { m.host_port }.to_string();
    if let Some(first) = own.first() {
        env.push(("PORT".into(), port_value(first)));
    }
    for m in &prep.ports {
        if !m.name.is_empty() {
            env.push((format!("SHOAL_PORT_{}", env_suffix(&m.name)), port_value(m)));
        }
    }
    env.extend((ctx.namespace_env)(&desired.namespace));
    let mut vars: BTreeMap<String, String> = env.iter().cloned().collect();
    for e in &c.env {
        let v = expand(&e.value, &vars);
        vars.insert(e.name.clone(), v.clone());
        env.push((e.name.clone(), v));
    }
    (env, vars)
}

fn resolve_port(port: &IntOrString, prep: &Prepared, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => {
            let p = u16::try_from(*p).ok()?;
            let declared = c.ports.iter().any(|cp| cp.container_port as u16 == p);
            Some(if declared {
                prep.ports.iter().find(|m| m.container_port == p).map(|m| m.host_port).unwrap_or(p)
            } else {
                p
            })
        }
        IntOrString::Str(name) => prep.ports.iter().find(|m| &m.name == name).map(|m| m.host_port),
    }
}

fn probe_check(
    p: &Probe,
    ip: IpAddr,
    prep: &Prepared,
    c: &Container,
    vars: &BTreeMap<String, String>,
) -> Option<Check> {
    if let Some(h) = &p.http_get {
        let port = resolve_port(&h.port, prep, c)?;
        return Some(Check::Http {
            addr: SocketAddr::new(ip, port),
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(t) = &p.tcp_socket {
        return Some(Check::Tcp { addr: SocketAddr::new(ip, resolve_port(&t.port, prep, c)?) });
    }
    p.exec.as_ref().map(|e| Check::Exec { command: e.command.iter().map(|s| expand(s, vars)).collect() })
}

async fn run_pod(
    desired: DesiredPod,
    ctx: Arc<PodCtx>,
    cell: Cell,
    mut stop_rx: watch::Receiver<Option<Duration>>,
    events: mpsc::Sender<PodEvent>,
    adopted: Vec<Adopted>,
) {
    let id = desired.id();
    let Some(runtime) = ctx.runtimes.get(&desired.runtime).cloned() else {
        cell.update(|s| {
            s.reason = "RuntimeUnavailable".into();
            s.message = format!("this node has no {} runtime", desired.runtime.as_str());
        });
        let _ = stop_rx.wait_for(|v| v.is_some()).await;
        return;
    };
    let prep = match prepare(&desired, &ctx, &adopted) {
        Ok(p) => p,
        Err((reason, message)) => {
            ctx.events.pod(true, &desired.namespace, &desired.name, &reason, &message);
            cell.update(|s| {
                s.reason = reason.clone();
                s.message = message.clone();
                for c in &mut s.containers {
                    c.state = ContainerState::Waiting { reason: reason.clone(), message: message.clone() };
                }
            });
            let _ = stop_rx.wait_for(|v| v.is_some()).await;
            return;
        }
    };
    let prep = Arc::new(prep);
    cell.update(|s| s.ports = prep.ports.clone());
    let mut adopted: BTreeMap<String, Adopted> = adopted.into_iter().map(|a| (a.container.clone(), a)).collect();
    let (done_tx, mut done_rx) = mpsc::channel::<(usize, Option<Exit>)>(desired.spec.containers.len().max(1));
    let mut tasks = Vec::new();
    for (i, c) in desired.spec.containers.iter().enumerate() {
        let job = ContainerJob {
            index: i,
            desired: desired.clone(),
            container: c.clone(),
            ctx: ctx.clone(),
            prep: prep.clone(),
            runtime: runtime.clone(),
            cell: cell.clone(),
            stop_rx: stop_rx.clone(),
            events: events.clone(),
            adopted: adopted.remove(&c.name),
        };
        let done = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let exit = job.run().await;
            let _ = done.send((i, exit)).await;
        }));
    }
    drop(done_tx);
    // Leftover adopted containers (no longer in the spec) are stopped.
    for (_, mut a) in adopted {
        a.running.stop(desired.grace).await;
    }
    let mut finished = 0;
    let mut last_code = 0;
    while let Some((_, exit)) = done_rx.recv().await {
        finished += 1;
        if let Some(e) = exit
            && e.code != 0
        {
            last_code = e.code;
        }
        if finished == tasks.len() && stop_rx.borrow().is_none() {
            let phase = cell.status.lock().unwrap_or_else(|p| p.into_inner()).phase;
            let _ = events.send(PodEvent::Finished { id: id.clone(), phase, exit_code: last_code }).await;
        }
    }
    // All container tasks are done: either they finished for good, or a stop
    // was requested and they stopped their containers.
    if stop_rx.borrow().is_none() {
        let _ = stop_rx.wait_for(|v| v.is_some()).await;
    }
    for m in &prep.ports {
        ctx.ports.release(m.host_port);
    }
    for c in &desired.spec.containers {
        logs::remove_logs(&logs::log_path(&ctx.logs_dir(), &desired.namespace, &desired.name, &c.name), ctx.log_limits);
    }
    if let Err(e) = std::fs::remove_dir_all(&prep.pod_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(pod = %id, error = %e, "cannot remove pod directory");
    }
}

struct ContainerJob {
    index: usize,
    desired: DesiredPod,
    container: Container,
    ctx: Arc<PodCtx>,
    prep: Arc<Prepared>,
    runtime: Arc<dyn Runtime>,
    cell: Cell,
    stop_rx: watch::Receiver<Option<Duration>>,
    events: mpsc::Sender<PodEvent>,
    adopted: Option<Adopted>,
}

enum ProbeMsg {
    Ready(bool),
    Unhealthy(String),
}

impl ContainerJob {
    fn stopping(&self) -> Option<Duration> {
        *self.stop_rx.borrow()
    }

    /// Waits for `d` unless a stop comes first; true when stopped.
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.stop_rx.wait_for(|v| v.is_some()) => true,
        }
    }

    fn launch(&self, env: Vec<(String, String)>, vars: &BTreeMap<String, String>) -> Launch {
        let c = &self.container;
        let d = &self.desired;
        let mounts = c
            .volume_mounts
            .iter()
            .filter_map(|m| {
                self.prep.volumes.get(&m.name).map(|p| Mount {
                    name: m.name.clone(),
                    host_path: p.clone(),
                    container_path: m.mount_path.clone(),
                    read_only: m.read_only,
                })
            })
            .collect();
        let limit = |name: &str, f: fn(&str) -> Result<u64, crate::model::quantity::QuantityError>| {
            c.resources.limits.get(name).and_then(|q| f(&q.to_string()).ok())
        };
        Launch {
            namespace: d.namespace.clone(),
            pod: d.name.clone(),
            container: c.name.clone(),
            generation: self.ctx.generation,
            template_hash: d.template_hash.clone(),
            image: c.image.clone(),
            pull_policy: c.image_pull_policy.clone(),
            command: c.command.iter().map(|s| expand(s, vars)).collect(),
            args: c.args.iter().map(|s| expand(s, vars)).collect(),
            env,
            workdir: c.working_dir.clone(),
            pod_dir: self.prep.pod_dir.clone(),
            ports: self
                .prep
                .ports
                .iter()
                .filter(|m| c.ports.iter().any(|p| p.container_port as u16 == m.container_port))
                .cloned()
                .collect(),
            mounts,
            cpu_limit_millis: limit("cpu", crate::model::quantity::parse_cpu_millis),
            memory_limit_bytes: limit("memory", crate::model::quantity::parse_memory_bytes),
            node_ip: self.ctx.node_ip,
            labels: d.labels.clone(),
            log: LogSink::open(
                logs::log_path(&self.ctx.logs_dir(), &d.namespace, &d.name, &c.name),
                self.ctx.log_limits,
            ),
        }
    }

    fn spawn_probe(
        &self,
        probe: &Probe,
        liveness: bool,
        vars: &BTreeMap<String, String>,
        target: ExecTarget,
        tx: mpsc::Sender<ProbeMsg>,
    ) -> Option<JoinHandle<()>> {
        let check = probe_check(probe, self.ctx.node_ip, &self.prep, &self.container, vars)?;
        let timing = Timing::of(probe);
        let runtime = self.runtime.clone();
        Some(tokio::spawn(async move {
            tokio::time::sleep(timing.initial_delay).await;
            let mut tracker = Tracker::new(liveness);
            let mut tick = tokio::time::interval(timing.period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = tracker.healthy();
            loop {
                tick.tick().await;
                let res = run_check(&check, timing.timeout, &runtime, &target).await;
                let ok = res.is_ok();
                let now = tracker.record(ok, &timing);
                if liveness {
                    if !now {
                        let _ = tx.send(ProbeMsg::Unhealthy(res.err().unwrap_or_default())).await;
                        return;
                    }
                } else if now != last && tx.send(ProbeMsg::Ready(now)).await.is_err() {
                    return;
                }
                last = now;
            }
        }))
    }

    /// Runs the container until it ends for good or a stop is requested.
    /// Returns its last exit.
    async fn run(mut self) -> Option<Exit> {
        let i = self.index;
        let (ns, pod, cname) = (self.desired.namespace.clone(), self.desired.name.clone(), self.container.name.clone());
        let docker = self.container.image.is_some();
        let (env, vars) = container_env(&self.desired, &self.container, &self.ctx, &self.prep, docker);
        let mut consecutive = 0u32;
        let mut last_exit = None;
        loop {
            if self.stopping().is_some() {
                return last_exit;
            }
            let adopted = self.adopted.take();
            let (mut running, started_at) = match adopted {
                Some(a) => {
                    if let Some(follow) = a.follow {
                        follow(LogSink::open(
                            logs::log_path(&self.ctx.logs_dir(), &self.desired.namespace, &self.desired.name, &cname),
                            self.ctx.log_limits,
                        ));
                    }
                    (a.running, a.started_at)
                }
                None => {
                    if let Some(img) = &self.container.image {
                        self.cell.container(i, |c| {
                            c.state = ContainerState::Waiting {
                                reason: "ContainerCreating".into(),
                                message: format!("starting {img}"),
                            };
                        });
                    }
                    match self.runtime.start(self.launch(env.clone(), &vars)).await {
                        Ok(r) => (r, unix_now()),
                        Err(e) => {
                            consecutive += 1;
                            let delay = self.ctx.backoff.delay(consecutive);
                            self.ctx.events.pod(
                                true,
                                &ns,
                                &pod,
                                &e.reason,
                                format!("container {cname}: {}", e.message),
                            );
                            self.cell.container(i, |c| {
                                c.state =
                                    ContainerState::Waiting { reason: e.reason.clone(), message: e.message.clone() };
                            });
                            let _ = self
                                .events
                                .send(PodEvent::ContainerFailed { id: self.desired.id(), exit_code: -1 })
                                .await;
                            if self.sleep_or_stop(delay).await {
                                return last_exit;
                            }
                            continue;
                        }
                    }
                }
            };
            let started = Instant::now();
            let cid = running.id();
            self.ctx.events.pod(false, &ns, &pod, "Started", format!("started container {cname} ({cid})"));
            let has_readiness = self.container.readiness_probe.is_some();
            self.cell.container(i, |c| {
                c.state = ContainerState::Running { started_at };
                c.ready = !has_readiness;
                c.container_id = cid.clone();
            });
            let (ptx, mut prx) = mpsc::channel(4);
            let target =
                ExecTarget { container_id: cid.clone(), env: env.clone(), workdir: Some(self.prep.pod_dir.clone()) };
            let mut probes = Vec::new();
            if let Some(p) = self.container.readiness_probe.clone() {
                probes.extend(self.spawn_probe(&p, false, &vars, target.clone(), ptx.clone()));
            }
            if let Some(p) = self.container.liveness_probe.clone() {
                probes.extend(self.spawn_probe(&p, true, &vars, target.clone(), ptx.clone()));
            }
            drop(ptx);
            let mut forced = false;
            let mut stop_grace = None;
            let mut stop_rx = self.stop_rx.clone();
            enum Ev {
                Exit(Exit),
                Probe(ProbeMsg),
                Stop,
            }
            let exit = loop {
                let ev = tokio::select! {
                    exit = running.wait() => Ev::Exit(exit),
                    Some(msg) = prx.recv() => Ev::Probe(msg),
                    _ = stop_rx.wait_for(|v| v.is_some()) => Ev::Stop,
                };
                match ev {
                    Ev::Exit(exit) => break exit,
                    Ev::Probe(ProbeMsg::Ready(r)) => self.cell.container(i, |c| c.ready = r),
                    Ev::Probe(ProbeMsg::Unhealthy(why)) => {
                        self.ctx.events.pod(true, &ns, &pod, "Unhealthy", format!("liveness probe failed: {why}"));
                        self.ctx.events.pod(
                            false,
                            &ns,
                            &pod,
                            "Killing",
                            format!("container {cname} failed liveness probe, will be restarted"),
                        );
                        self.cell.container(i, |c| c.ready = false);
                        forced = true;
                        break running.stop(self.desired.grace).await;
                    }
                    Ev::Stop => {
                        let grace = self.stopping().unwrap_or(self.desired.grace);
                        stop_grace = Some(grace);
                        self.ctx.events.pod(false, &ns, &pod, "Killing", format!("stopping container {cname}"));
                        self.cell.container(i, |c| c.ready = false);
                        break running.stop(grace).await;
                    }
                }
            };
            for p in probes {
                p.abort();
            }
            let terminated = ContainerState::Terminated {
                exit_code: exit.code,
                reason: if exit.oom_killed { "OOMKilled".into() } else { exit.reason.clone() },
                signal: exit.signal,
                finished_at: unix_now(),
            };
            last_exit = Some(exit.clone());
            if stop_grace.is_some() {
                self.cell.container(i, |c| {
                    c.ready = false;
                    c.state = terminated;
                });
                return last_exit;
            }
            let decision = after_exit(
                self.desired.restart_policy,
                exit.code,
                forced,
                started.elapsed(),
                consecutive,
                &self.ctx.backoff,
            );
            let failed = exit.code != 0 || forced;
            match decision {
                AfterExit::Restart { delay, consecutive: n } => {
                    consecutive = n;
                    if failed {
                        let _ = self
                            .events
                            .send(PodEvent::ContainerFailed { id: self.desired.id(), exit_code: exit.code })
                            .await;
                    }
                    let secs = delay.as_secs_f64();
                    self.ctx.events.pod(
                        true,
                        &ns,
                        &pod,
                        "BackOff",
                        format!("back-off {secs:.1}s restarting container {cname} (exit code {})", exit.code),
                    );
                    self.cell.container(i, |c| {
                        c.ready = false;
                        c.last_state = Some(terminated);
                        c.restart_count += 1;
                        c.state = ContainerState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: format!("back-off {secs:.1}s restarting failed container {cname}"),
                        };
                    });
                    if self.sleep_or_stop(delay).await {
                        return last_exit;
                    }
                }
                AfterExit::Done => {
                    self.cell.container(i, |c| {
                        c.ready = false;
                        c.state = terminated;
                    });
                    return last_exit;
                }
            }
        }
    }
}

/// Where a pod's files live (for tests and the API).
pub fn pod_dir(data_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    data_dir.join("pods").join(format!("{namespace}_{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_paren_expansion() {
        let vars: BTreeMap<String, String> = [("PORT".to_string(), "8080".to_string())].into();
        assert_eq!(expand("--port=$(PORT)", &vars), "--port=8080");
        assert_eq!(expand("$(MISSING) $$(PORT) $", &vars), "$(MISSING) $(PORT) $");
        assert_eq!(expand("héllo $(PORT)", &vars), "héllo 8080");
        assert_eq!(env_suffix("http-alt"), "HTTP_ALT");
    }

    #[test]
    fn phase_from_containers() {
        let mut s = PodStatus { containers: vec![ContainerStatus::default()], ..Default::default() };
        recompute(&mut s);
        assert_eq!(s.phase, Phase::Pending);
        s.containers[0].state = ContainerState::Running { started_at: 1 };
        s.containers[0].ready = true;
        recompute(&mut s);
        assert_eq!((s.phase, s.ready), (Phase::Running, true));
        s.containers[0].state =
            ContainerState::Terminated { exit_code: 0, reason: "Completed".into(), signal: None, finished_at: 2 };
        s.containers[0].ready = false;
        recompute(&mut s);
        assert_eq!(s.phase, Phase::Succeeded);
        s.containers[0].state =
            ContainerState::Terminated { exit_code: 3, reason: "Error".into(), signal: None, finished_at: 2 };
        recompute(&mut s);
        assert_eq!(s.phase, Phase::Failed);
    }
}
