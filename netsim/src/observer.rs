//! The omniscient observer: samples every node, measures the figures of the
//! report and checks the invariants during the run.
//!
//! What runs is read from each host (`runtime::Machine`), not from what the
//! agents believe, so a pod whose agent died is still seen. The invariants,
//! every sample (100 virtual ms):
//!
//! - a replica runs only where its node's agent owns it, beyond the handoff
//!   grace (outside partitions; a paused node is not judged). While a node's
//!   agent is dead, the pods it left behind are orphans: an orphan of an
//!   unfenced replica may run beside its replacement until the agent comes
//!   back and stops it (it is then judged again, with the same grace);
//! - a fenced replica never runs on two hosts at once, orphans and stopping
//!   copies included: this one holds always, agent or no agent;
//! - no acknowledged object is lost: some node's disk holds it, and no live
//!   node holds a tombstone for it (netsim never deletes).
//!
//! At the end of a run that had time to heal (`final_checks`): every live
//! node agrees on membership, desired state and placement, holds every
//! acknowledged object, and every desired replica runs exactly once on the
//! nodes whose agent runs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imbl::ordmap::DiffItem;
use rustc_hash::FxHashMap;
use shoal::membership::view::{ClusterView, NodeState};
use tokio::time::Instant;

use crate::net::SimNet;
use crate::node::SimNode;

/// After a boot, a resume or a heal, how long the failure detectors may take
/// to catch up before a Dead mark counts as a false death.
pub const QUIET: Duration = Duration::from_secs(5);

/// One point of the timeline.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub t: f64,
    pub up: usize,
    pub desired: usize,
    pub running: usize,
    pub missing: usize,
    pub duplicates: usize,
    /// Copies running on hosts whose agent is dead.
    pub orphans: usize,
    /// Duplicates among the copies whose agent runs.
    pub cluster_duplicates: usize,
    pub agree: bool,
}

/// A write through one node: converged when every live node holds each of
/// its keys at least at the stamp the writing node gave it.
pub struct Write {
    pub at: Duration,
    pub via: usize,
    pub keys: Vec<shoal::state::Key>,
    /// The stamps the keys had on the writing node before the write.
    pub before: Vec<Option<shoal::state::Stamp>>,
    /// The stamps the write gave them (read back from the writing node).
    pub stamps: Option<Vec<shoal::state::Stamp>>,
    pub converged: Option<Duration>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("at", &self.at)
            .field("keys", &self.keys.len())
            .field("converged", &self.converged)
            .finish()
    }
}

/// A fault whose consequences are being timed.
#[derive(Debug, Clone)]
pub struct Crash {
    pub node: String,
    pub generation: u64,
    pub at: Duration,
    pub detected: Option<Duration>,
    pub rescheduled: Option<Duration>,
    /// The cluster wanted replicas after it (a run with no workload has
    /// nothing to reschedule: its crashes are not "never came back").
    pub replicas: bool,
}

/// A node of a mass join, timed against the nodes live at its boot (its
/// witnesses): from its boot until each of them still up holds it Ready
/// at its generation (`seen`), and until it holds each of them Ready
/// (`learned`). Nodes that boot after it are left out: each of those
/// learns it as part of its own join, and counting them would time the
/// join window rather than the join (while nodes keep booting, one just
/// booted has not heard of anyone yet).
#[derive(Debug, Clone)]
pub struct Joined {
    pub node: String,
    pub generation: u64,
    pub at: Duration,
    pub witnesses: Vec<usize>,
    pub seen: Option<Duration>,
    pub learned: Option<Duration>,
    /// While not `learned`: a few witnesses it does not hold Ready, with
    /// how it holds them (for the report of a join that never completes).
    pub lacking: Vec<String>,
}

/// A rolling update being timed: from the apply until every replica runs
/// the new template and no old pod is left; the fewest Ready replicas meanwhile.
#[derive(Debug, Clone)]
pub struct Update {
    pub deployment: String,
    pub replicas: u32,
    pub at: Duration,
    /// Template hashes running when it was applied (the old ones).
    pub old: BTreeSet<String>,
    pub min_ready: usize,
    pub done: Option<Duration>,
}

impl Update {
    pub fn new(deployment: &str, replicas: u32, at: Duration, nodes: &[SimNode]) -> Update {
        let prefix = format!("default/{deployment}-");
        let old = nodes
            .iter()
            .filter(|n| n.host_up)
            .flat_map(|n| {
                let m = n.machine.lock().unwrap_or_else(|p| p.into_inner());
                m.containers
                    .iter()
                    .filter(|(id, _)| id.starts_with(&prefix))
                    .map(|(_, c)| c.template_hash.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        Update { deployment: deployment.into(), replicas, at, old, min_ready: usize::MAX, done: None }
    }
}

/// An agent that came back to a host where its pods ran on without it:
/// timed until the host runs only what its agent owns.
#[derive(Debug, Clone)]
pub struct Return {
    pub node: String,
    pub at: Duration,
    pub clean: Option<Duration>,
}

/// The Dead entries of a view: name and generation.
type Dead = Arc<BTreeMap<String, u64>>;

#[derive(Debug, Default)]
pub struct Observer {
    pub samples: Vec<Sample>,
    pub crashes: Vec<Crash>,
    pub joins: Vec<Joined>,
    pub returns: Vec<Return>,
    pub updates: Vec<Update>,
    /// Writes whose spread is being timed.
    pub writes: Vec<Write>,
    pub missing_secs: f64,
    /// During partitions: replicas not Ready anywhere on the worse-off side
    /// (what a client there cannot reach), in replica-seconds.
    pub side_missing_secs: f64,
    pub duplicate_secs: f64,
    /// Replica-seconds of orphans (copies on a host whose agent is dead).
    pub orphan_secs: f64,
    pub agree_secs: f64,
    pub total_secs: f64,
    pub false_deaths: usize,
    pub violations: Vec<String>,
    counted_deaths: HashSet<(String, String, u64)>,
    /// The Dead entries (name, generation) of each node's view, and the
    /// view they were read from: the false-death check reads these, and
    /// follows a new view by what changed, not by every entry of every
    /// view at every sample (n² at 1,000 nodes).
    dead_in_view: FxHashMap<String, (Arc<ClusterView>, Dead)>,
    wrong_owner_since: HashMap<(String, String), Duration>,
    reported: BTreeSet<String>,
    /// When each node last booted or resumed, and the last heal: a Dead
    /// mark right after those is the detector catching up, not a false death.
    pub disturbed: HashMap<String, Duration>,
    pub last_heal: Duration,
    /// Keys of objects whose write was acknowledged (filled as acks arrive).
    pub acked: Arc<Mutex<Vec<shoal::state::Key>>>,
    /// The Jobs CronJobs made, as seen over the run, and the figures at the end.
    pub cron: crate::cron::CronWatch,
    pub cron_figures: crate::cron::CronFigures,
}

/// Splits the live nodes into sides (nodes that reach each other both
/// ways) and counts, on the worst side, the desired replicas no node there
/// has Ready.
fn worst_side_missing(
    up: &[&SimNode],
    net: &SimNet,
    desired: &shoal::placement::desired::DesiredPods,
    now: Instant,
) -> usize {
    let live: Vec<&SimNode> = up.iter().copied().filter(|n| n.paused_until.is_none()).collect();
    let mut side_of: Vec<Option<usize>> = vec![None; live.len()];
    let mut sides = 0;
    for i in 0..live.len() {
        if side_of[i].is_some() {
            continue;
        }
        for j in i..live.len() {
            if side_of[j].is_none()
                && (i == j || (net.reachable(live[i].addr, live[j].addr) && net.reachable(live[j].addr, live[i].addr)))
            {
                side_of[j] = Some(sides);
            }
        }
        sides += 1;
    }
    (0..sides)
        .map(|k| {
            let mut ready: HashSet<&str> = HashSet::new();
            for (_, n) in live.iter().enumerate().filter(|(i, _)| side_of[*i] == Some(k)) {
                let m = n.machine.lock().unwrap_or_else(|p| p.into_inner());
                for (id, c) in &m.containers {
                    if c.ready(now)
                        && let Some((k, _)) = desired.get_key_value(id)
                    {
                        ready.insert(k.as_str());
                    }
                }
            }
            desired.len() - ready.len()
        })
        .max()
        .unwrap_or(0)
}

impl Observer {
    /// The Dead entries of `node`'s view `v`, followed from the last view
    /// read by what changed between them (O(changes)).
    fn dead_in(&mut self, node: &str, v: &Arc<ClusterView>) -> Dead {
        let Some((seen, dead)) = self.dead_in_view.get_mut(node) else {
            let dead: Dead = Arc::new(
                v.nodes
                    .iter()
                    .filter(|(_, x)| x.state == NodeState::Dead)
                    .map(|(name, x)| (name.to_string(), x.info.generation))
                    .collect(),
            );
            self.dead_in_view.insert(node.to_string(), (v.clone(), dead.clone()));
            return dead;
        };
        if !Arc::ptr_eq(seen, v) {
            let d = Arc::make_mut(dead);
            for change in seen.nodes.diff(&v.nodes) {
                match change {
                    DiffItem::Add(name, x) | DiffItem::Update { new: (name, x), .. } => {
                        if x.state == NodeState::Dead {
                            d.insert(name.to_string(), x.info.generation);
                        } else {
                            d.remove(name.as_str());
                        }
                    }
                    DiffItem::Remove(name, _) => {
                        d.remove(name.as_str());
                    }
                }
            }
            *seen = v.clone();
        }
        dead.clone()
    }

    fn violate(&mut self, key: String, msg: String) {
        if self.reported.insert(key) {
            self.violations.push(msg);
        }
    }

    /// Samples every node at virtual time `t`.
    pub fn sample(&mut self, nodes: &[SimNode], net: &SimNet, t: Duration, dt: Duration, grace: Duration) {
        self.cron.sample(nodes);
        let now = Instant::now();
        let up: Vec<&SimNode> = nodes.iter().filter(|n| n.up()).collect();
        let dts = dt.as_secs_f64();
        // What the cluster wants: the desired set of the node that took the
        // latest write (while it lives), else of any live node.
        let via = self.writes.last().map(|w| w.via).filter(|i| nodes[*i].up());
        let reference = via.map(|i| &nodes[i]).into_iter().chain(up.iter().copied()).find_map(|n| n.live.as_ref());
        let desired = reference.map(|l| l.local_plan.borrow().plan.desired.clone()).unwrap_or_default();
        let mut running: FxHashMap<&str, usize> = FxHashMap::default();
        let mut ready: FxHashMap<&str, usize> = FxHashMap::default();
        let mut copies: FxHashMap<&str, usize> = FxHashMap::default();
        // Copies of each fenced replica, stopping ones included.
        let mut fenced_copies: FxHashMap<&str, usize> = FxHashMap::default();
        let mut orphans = 0;
        let mut wrong_now = HashSet::new();
        let mut unclean: HashSet<&str> = HashSet::new();
        let partition = net.partitioned();
        for n in nodes.iter().filter(|n| n.host_up) {
            let mut m = n.machine.lock().unwrap_or_else(|p| p.into_inner());
            m.prune(now);
            let plan = n.live.as_ref().map(|l| l.follow.borrow().0.clone());
            for (id, c) in &m.containers {
                let desired_pod = desired.get_key_value(id);
                if let Some((k, _)) = desired_pod.filter(|(_, d)| d.fenced) {
                    *fenced_copies.entry(k.as_str()).or_default() += 1;
                }
                if c.stop_at.is_some() {
                    continue;
                }
                let desired_id = desired_pod.map(|(k, _)| k.as_str());
                if let Some(k) = desired_id {
                    *copies.entry(k).or_default() += 1;
                }
                let Some(plan) = &plan else {
                    // The agent is dead: an orphan, nobody's to judge.
                    orphans += usize::from(desired_id.is_some());
                    continue;
                };
                if let Some(k) = desired_id {
                    *running.entry(k).or_default() += 1;
                    if c.ready(now) {
                        *ready.entry(k).or_default() += 1;
                    }
                }
                // Invariant: runs only where it is owned, beyond the handoff grace.
                if plan.owners.get(id).map(|o| o.as_str()) != Some(n.name.as_str()) && n.paused_until.is_none() {
                    unclean.insert(n.name.as_str());
                    let key = (n.name.clone(), id.clone());
                    wrong_now.insert(key.clone());
                    let since = *self.wrong_owner_since.entry(key).or_insert(t);
                    if !partition && t.saturating_sub(since) > grace {
                        self.violate(
                            format!("owner:{}:{id}", n.name),
                            format!(
                                "t={:.1}s: {id} has run on {} for {:.1}s without being its owner",
                                t.as_secs_f64(),
                                n.name,
                                (t - since).as_secs_f64()
                            ),
                        );
                    }
                }
            }
        }
        self.wrong_owner_since.retain(|k, _| wrong_now.contains(k));
        for r in self.returns.iter_mut().filter(|r| r.clean.is_none()) {
            if !unclean.contains(r.node.as_str()) {
                r.clean = Some(t - r.at);
            }
        }
        // Fenced replicas never run twice (a stopping copy and an orphan count).
        let mut twice: Vec<(&str, usize)> = fenced_copies.into_iter().filter(|(_, c)| *c > 1).collect();
        twice.sort_unstable();
        for (id, _) in twice {
            self.violate(
                format!("fenced:{id}:{}", t.as_millis() / 1000),
                format!("t={:.1}s: fenced replica {id} runs on more than one node", t.as_secs_f64()),
            );
        }
        self.check_acked(nodes, t);
        self.time_updates(nodes, now, t);
        let missing = desired.keys().filter(|id| ready.get(id.as_str()).copied().unwrap_or(0) == 0).count();
        let duplicates: usize = copies.values().map(|c| c.saturating_sub(1)).sum();
        let cluster_duplicates: usize = running.values().map(|c| c.saturating_sub(1)).sum();
        let digests: BTreeSet<u64> = up
            .iter()
            .filter(|n| n.paused_until.is_none())
            .filter_map(|n| n.live.as_ref())
            .map(|l| l.follow.borrow().1)
            .collect();
        let agree = digests.len() <= 1;
        self.missing_secs += missing as f64 * dts;
        if partition {
            self.side_missing_secs += worst_side_missing(&up, net, &desired, now) as f64 * dts;
        }
        self.duplicate_secs += duplicates as f64 * dts;
        self.orphan_secs += orphans as f64 * dts;
        self.total_secs += dts;
        if agree {
            self.agree_secs += dts;
        }
        // Detection and rescheduling of each crash.
        for c in self.crashes.iter_mut() {
            if c.detected.is_none() {
                let all = up.iter().filter(|n| n.name != c.node && n.paused_until.is_none()).all(|n| {
                    let v = n.live.as_ref().map(|l| l.view.borrow().clone());
                    v.is_some_and(|v| match v.nodes.get(c.node.as_str()) {
                        Some(x) if x.info.generation == c.generation => {
                            matches!(x.state, NodeState::Dead | NodeState::Left)
                        }
                        _ => true,
                    })
                });
                if all {
                    c.detected = Some(t - c.at);
                }
            }
            c.replicas |= !desired.is_empty();
            if c.rescheduled.is_none() && missing == 0 && !desired.is_empty() {
                c.rescheduled = Some(t - c.at);
            }
        }
        // Each joining node and its witnesses, until each holds the other Ready.
        let holds =
            |n: &SimNode, name: &str, generation: Option<u64>| {
                n.live.as_ref().is_some_and(|l| {
                    l.view.borrow().nodes.get(name).is_some_and(|x| {
                        generation.is_none_or(|g| x.info.generation == g) && x.state == NodeState::Ready
                    })
                })
            };
        let live = |n: &&SimNode| n.up() && n.paused_until.is_none();
        for j in self.joins.iter_mut().filter(|j| j.seen.is_none() || j.learned.is_none()) {
            let witnesses: Vec<&SimNode> = j.witnesses.iter().map(|i| &nodes[*i]).filter(live).collect();
            if j.seen.is_none() && witnesses.iter().all(|n| holds(n, &j.node, Some(j.generation))) {
                j.seen = Some(t - j.at);
            }
            let Some(me) = nodes.iter().find(|n| n.name == j.node).filter(live) else { continue };
            if j.learned.is_none() {
                let view = me.live.as_ref().map(|l| l.view.borrow().clone());
                let state = |n: &SimNode| view.as_ref().and_then(|v| v.nodes.get(n.name.as_str()).map(|x| x.state));
                j.lacking = witnesses
                    .iter()
                    .filter(|n| state(n) != Some(NodeState::Ready))
                    .take(3)
                    .map(|n| format!("{} {}", n.name, state(n).map_or("absent", |s| s.as_str())))
                    .collect();
                if j.lacking.is_empty() {
                    j.learned = Some(t - j.at);
                }
            }
        }
        // Desired-state convergence of each write.
        for w in self.writes.iter_mut().filter(|w| w.converged.is_none()) {
            if w.stamps.is_none() {
                let now: Vec<Option<shoal::state::Stamp>> =
                    w.keys.iter().map(|k| nodes[w.via].db.peek(k, |e| e.stamp)).collect();
                if now != w.before {
                    w.stamps = Some(now.into_iter().map(Option::unwrap_or_default).collect());
                }
            }
            let Some(stamps) = &w.stamps else { continue };
            let all = up
                .iter()
                .filter(|n| n.paused_until.is_none())
                .all(|n| w.keys.iter().zip(stamps).all(|(k, s)| n.db.peek(k, |e| e.stamp >= *s).unwrap_or(false)));
            if all {
                w.converged = Some(t - w.at);
            }
        }
        // False deaths: a live, reachable node marked Dead.
        let by_name: FxHashMap<&str, &SimNode> = up.iter().map(|n| (n.name.as_str(), *n)).collect();
        for a in &up {
            let Some(l) = &a.live else { continue };
            let v = l.view.borrow().clone();
            for (name, generation) in self.dead_in(&a.name, &v).iter() {
                let Some(b) = by_name.get(name.as_str()) else { continue };
                let same_gen = b.live.as_ref().is_some_and(|bl| bl.generation == *generation);
                let reachable = net.reachable(a.addr, b.addr) && net.reachable(b.addr, a.addr);
                let quiet_since = [self.disturbed.get(&a.name), self.disturbed.get(&b.name), Some(&self.last_heal)]
                    .into_iter()
                    .flatten()
                    .max()
                    .copied()
                    .unwrap_or_default();
                let settled = t.saturating_sub(quiet_since) > QUIET;
                if same_gen
                    && reachable
                    && settled
                    && b.paused_until.is_none()
                    && a.paused_until.is_none()
                    && self.counted_deaths.insert((a.name.clone(), name.clone(), *generation))
                {
                    self.false_deaths += 1;
                }
            }
        }
        self.samples.push(Sample {
            t: t.as_secs_f64(),
            up: up.len(),
            desired: desired.len(),
            running: running.values().sum(),
            missing,
            duplicates,
            orphans,
            cluster_duplicates,
            agree,
        });
    }

    /// Ready replicas of each deployment in a rolling update (on hosts whose
    /// agent runs), and whether the update is over.
    fn time_updates(&mut self, nodes: &[SimNode], now: Instant, t: Duration) {
        for u in self.updates.iter_mut().filter(|u| u.done.is_none()) {
            let prefix = format!("default/{}-", u.deployment);
            let (mut ready, mut new_ready, mut old_left) = (0, 0, 0);
            for n in nodes.iter().filter(|n| n.host_up) {
                let m = n.machine.lock().unwrap_or_else(|p| p.into_inner());
                for (_, c) in m.containers.iter().filter(|(id, _)| id.starts_with(&prefix)) {
                    let old = u.old.contains(&c.template_hash);
                    old_left += usize::from(old);
                    if n.up() && c.ready(now) {
                        ready += 1;
                        new_ready += usize::from(!old);
                    }
                }
            }
            u.min_ready = u.min_ready.min(ready);
            if old_left == 0 && new_ready >= u.replicas as usize {
                u.done = Some(t - u.at);
            }
        }
    }

    /// No acknowledged object is lost: some node's disk (a crashed node's
    /// too) holds it, and no live node holds a tombstone for it.
    fn check_acked(&mut self, nodes: &[SimNode], t: Duration) {
        let mut acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // A key written again is acknowledged again: checked once.
        acked.sort();
        acked.dedup();
        for k in &acked {
            let tombstone = |n: &SimNode| n.db.peek(k, |e| e.is_tombstone());
            let held = nodes.iter().any(|n| tombstone(n) == Some(false));
            let deleted_on = nodes.iter().find(|n| n.up() && tombstone(n) == Some(true));
            if !held || deleted_on.is_some() {
                let on = deleted_on.map_or("every node".to_string(), |n| n.name.clone());
                self.violate(
                    format!("lost:{k}"),
                    format!("t={:.1}s: acknowledged object {k} was lost (gone from {on})", t.as_secs_f64()),
                );
            }
        }
    }

    /// The eventual properties, checked at the end of a run that had time to heal.
    /// The CronJob figures: every time up to `upto` (unix seconds) must be
    /// run once or reported missed, and no time may have two Jobs.
    pub fn cron_checks(&mut self, nodes: &[SimNode], upto: i64) {
        let f = self.cron.figures(nodes, upto);
        if f.two_jobs > 0 {
            self.violate("cron-two-jobs".into(), format!("{} scheduled time(s) got two different Jobs", f.two_jobs));
        }
        if f.silently_missed > 0 {
            self.violate(
                "cron-silent-miss".into(),
                format!("{} of {} scheduled time(s) neither ran nor were reported missed", f.silently_missed, f.times),
            );
        }
        self.cron_figures = f;
    }

    pub fn final_checks(&mut self, nodes: &[SimNode]) {
        let up: Vec<&SimNode> = nodes.iter().filter(|n| n.up() && n.paused_until.is_none()).collect();
        let views: Vec<Arc<ClusterView>> =
            up.iter().filter_map(|n| n.live.as_ref()).map(|l| l.view.borrow().clone()).collect();
        let member_sets: BTreeSet<Vec<&str>> = views
            .iter()
            .map(|v| v.nodes.values().filter(|x| x.state.alive()).map(|x| x.info.name.as_str()).collect())
            .collect();
        if member_sets.len() > 1 {
            self.violations
                .push(format!("at the end, live nodes disagree on membership ({} different views)", member_sets.len()));
        }
        let roots: BTreeSet<[u8; 32]> = up.iter().map(|n| n.db.summary().0).collect();
        if roots.len() > 1 {
            self.violations.push(format!("at the end, live nodes hold {} different desired states", roots.len()));
        }
        let digests: BTreeSet<u64> = up.iter().filter_map(|n| n.live.as_ref()).map(|l| l.follow.borrow().1).collect();
        if digests.len() > 1 {
            self.violations
                .push(format!("at the end, live nodes disagree on placement ({} different answers)", digests.len()));
        }
        if let Some(last) = self.samples.last()
            && (last.missing > 0 || last.cluster_duplicates > 0 || last.running != last.desired)
        {
            self.violations.push(format!(
                "at the end, replicas are not running exactly once: {} desired, {} running, {} missing, {} duplicates",
                last.desired, last.running, last.missing, last.cluster_duplicates
            ));
        }
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for k in &acked {
            let missing_on: Vec<&str> = up
                .iter()
                .filter(|n| n.db.peek(k, |e| e.is_tombstone()).unwrap_or(true))
                .map(|n| n.name.as_str())
                .collect();
            if !missing_on.is_empty() {
                self.violations.push(format!(
                    "at the end, acknowledged object {k} is missing on live node(s) {}",
                    missing_on.join(", ")
                ));
            }
        }
    }
}
