//! The omniscient observer: samples every node, measures the figures of the
//! report and checks the invariants during the run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use shoal::membership::view::NodeState;
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
}

#[derive(Debug, Default)]
pub struct Observer {
    pub samples: Vec<Sample>,
    pub crashes: Vec<Crash>,
    /// Writes whose spread is being timed.
    pub writes: Vec<Write>,
    pub missing_secs: f64,
    /// During partitions: replicas not Ready anywhere on the worse-off side
    /// (what a client there cannot reach), in replica-seconds.
    pub side_missing_secs: f64,
    pub duplicate_secs: f64,
    pub agree_secs: f64,
    pub total_secs: f64,
    pub false_deaths: usize,
    pub violations: Vec<String>,
    counted_deaths: HashSet<(String, String, u64)>,
    wrong_owner_since: HashMap<(String, String), Duration>,
    reported: BTreeSet<String>,
    /// When each node last booted or resumed, and the last heal: a Dead
    /// mark right after those is the detector catching up, not a false death.
    pub disturbed: HashMap<String, Duration>,
    pub last_heal: Duration,
    /// Keys of objects whose write was acknowledged.
    pub acked: Vec<shoal::state::Key>,
}

/// Splits the live nodes into sides (nodes that reach each other both
/// ways) and counts, on the worst side, the desired replicas no node there
/// has Ready.
fn worst_side_missing(
    up: &[&SimNode],
    net: &SimNet,
    desired: &std::collections::BTreeMap<String, shoal::model::pods::DesiredPod>,
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
                let Some(l) = &n.live else { continue };
                let st = l.agent.lock().unwrap_or_else(|p| p.into_inner());
                for (id, p) in &st.pods {
                    if p.ready(now)
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
    fn violate(&mut self, key: String, msg: String) {
        if self.reported.insert(key) {
            self.violations.push(msg);
        }
    }

    /// Samples every node at virtual time `t`.
    pub fn sample(&mut self, nodes: &[SimNode], net: &SimNet, t: Duration, dt: Duration, grace: Duration) {
        let now = Instant::now();
        let up: Vec<&SimNode> = nodes.iter().filter(|n| n.up()).collect();
        let dts = dt.as_secs_f64();
        // What the cluster wants: the desired set of the node that took the
        // latest write (while it lives), else of any live node.
        let via = self.writes.last().map(|w| w.via).filter(|i| nodes[*i].up());
        let reference = via.map(|i| &nodes[i]).into_iter().chain(up.iter().copied()).find_map(|n| n.live.as_ref());
        let desired = reference.map(|l| l.local_plan.borrow().plan.desired.clone()).unwrap_or_default();
        let mut running: BTreeMap<&str, usize> = BTreeMap::new();
        let mut ready: BTreeMap<&str, usize> = BTreeMap::new();
        let mut copies_incl_stopping: BTreeMap<String, usize> = BTreeMap::new();
        let mut wrong_now = HashSet::new();
        let partition = net.partitioned();
        for n in &up {
            let Some(l) = &n.live else { continue };
            let st = l.agent.lock().unwrap_or_else(|p| p.into_inner());
            let plan = l.follow.borrow().0.clone();
            for (id, p) in &st.pods {
                *copies_incl_stopping.entry(id.clone()).or_default() += 1;
                if p.stop_at.is_some() {
                    continue;
                }
                if let Some((k, _)) = desired.get_key_value(id) {
                    *running.entry(k.as_str()).or_default() += 1;
                    if p.ready(now) {
                        *ready.entry(k.as_str()).or_default() += 1;
                    }
                }
                // Invariant: runs only where it is owned, beyond the handoff grace.
                if plan.owners.get(id).map(String::as_str) != Some(n.name.as_str()) && n.paused_until.is_none() {
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
        // Fenced replicas never run twice (a stopping copy still runs).
        for (id, d) in desired.iter() {
            if d.fenced && copies_incl_stopping.get(id).copied().unwrap_or(0) > 1 {
                self.violate(
                    format!("fenced:{id}:{}", t.as_millis() / 1000),
                    format!("t={:.1}s: fenced replica {id} runs on more than one node", t.as_secs_f64()),
                );
            }
        }
        let missing = desired.keys().filter(|id| ready.get(id.as_str()).copied().unwrap_or(0) == 0).count();
        let duplicates: usize = running.values().map(|c| c.saturating_sub(1)).sum();
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
        self.total_secs += dts;
        if agree {
            self.agree_secs += dts;
        }
        // Detection and rescheduling of each crash.
        for c in self.crashes.iter_mut() {
            if c.detected.is_none() {
                let all = up.iter().filter(|n| n.name != c.node && n.paused_until.is_none()).all(|n| {
                    let v = n.live.as_ref().map(|l| l.view.borrow().clone());
                    v.is_some_and(|v| match v.nodes.get(&c.node) {
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
            if c.rescheduled.is_none() && missing == 0 && !desired.is_empty() {
                c.rescheduled = Some(t - c.at);
            }
        }
        // Desired-state convergence of each write.
        for w in self.writes.iter_mut().filter(|w| w.converged.is_none()) {
            if w.stamps.is_none() {
                let now: Vec<Option<shoal::state::Stamp>> =
                    w.keys.iter().map(|k| nodes[w.via].db.get(k).map(|e| e.stamp)).collect();
                if now != w.before {
                    w.stamps = Some(now.into_iter().map(Option::unwrap_or_default).collect());
                }
            }
            let Some(stamps) = &w.stamps else { continue };
            let all = up
                .iter()
                .filter(|n| n.paused_until.is_none())
                .all(|n| w.keys.iter().zip(stamps).all(|(k, s)| n.db.get(k).is_some_and(|e| e.stamp >= *s)));
            if all {
                w.converged = Some(t - w.at);
            }
        }
        // False deaths: a live, reachable node marked Dead.
        let by_name: HashMap<&str, &SimNode> = up.iter().map(|n| (n.name.as_str(), *n)).collect();
        for a in &up {
            let Some(l) = &a.live else { continue };
            let v = l.view.borrow().clone();
            for (name, x) in v.nodes.iter() {
                if x.state != NodeState::Dead {
                    continue;
                }
                let Some(b) = by_name.get(name.as_str()) else { continue };
                let same_gen = b.live.as_ref().is_some_and(|bl| bl.generation == x.info.generation);
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
                    && self.counted_deaths.insert((a.name.clone(), name.clone(), x.info.generation))
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
            agree,
        });
    }

    /// The eventual properties, checked at the end of a run that had time to heal.
    pub fn final_checks(&mut self, nodes: &[SimNode]) {
        let up: Vec<&SimNode> = nodes.iter().filter(|n| n.up() && n.paused_until.is_none()).collect();
        let member_sets: BTreeSet<Vec<String>> = up
            .iter()
            .filter_map(|n| n.live.as_ref())
            .map(|l| l.view.borrow().nodes.values().filter(|x| x.state.alive()).map(|x| x.info.name.clone()).collect())
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
            && (last.missing > 0 || last.duplicates > 0 || last.running != last.desired)
        {
            self.violations.push(format!(
                "at the end, replicas are not running exactly once: {} desired, {} running, {} missing, {} duplicates",
                last.desired, last.running, last.missing, last.duplicates
            ));
        }
        for k in &self.acked {
            let lost = up.iter().any(|n| n.db.get(k).is_none_or(|e| e.is_tombstone()));
            if lost {
                self.violations.push(format!("acknowledged object {k} is missing on a live node"));
            }
        }
    }
}
