//! One workload's pods onto the nodes: pinned pods first, then every other
//! pod, in slot order, to the best node below its share that meets the
//! hard constraints, preferring one that meets the soft ones too.

use std::collections::BTreeMap;

use std::cmp::Ordering;

use super::{Node, Placement, Score, best_in, mix, pending_reason, seed, selector_matches};
use crate::model::Kind;
use crate::model::pods::DesiredPod;
use crate::model::types::TopologySpreadConstraint;

/// Most (pod, node) pairs ranked for one workload; beyond, pods are placed
/// in slot order (a workload of 1,000 replicas on 1,000 nodes).
const MAX_PAIRS: usize = 1 << 20;
/// Nodes each pod ranks for the matching: its best few are nearly always
/// enough; one that runs out is placed on its own afterwards.
const TOP: usize = 4;

/// A pod's `l` best nodes among those passing `ok`, best first: per weight
/// group the largest hashes (no log needed within a group), then scored.
fn top(
    groups: &[(u64, Vec<usize>)],
    state: &[Node<'_>],
    ps: u64,
    l: usize,
    ok: impl Fn(usize, &Node<'_>) -> bool,
) -> Vec<(Score, usize)> {
    let mut out: Vec<(Score, usize)> = Vec::new();
    for (w, members) in groups {
        let mut best: Vec<(u64, usize)> = Vec::with_capacity(l + 1);
        for &i in members {
            if !ok(i, &state[i]) {
                continue;
            }
            let h = mix(ps ^ state[i].seed);
            if best.len() < l || best.last().is_some_and(|(bh, _)| h > *bh) {
                let at = best.partition_point(|(bh, bi)| *bh > h || (*bh == h && *bi < i));
                best.insert(at, (h, i));
                best.truncate(l);
            }
        }
        out.extend(best.into_iter().map(|(h, i)| (Score::new(*w, h), i)));
    }
    out.sort_by(|a, b| {
        if a.0.beats(&b.0) {
            Ordering::Less
        } else if b.0.beats(&a.0) {
            Ordering::Greater
        } else {
            a.1.cmp(&b.1)
        }
    });
    out.truncate(l);
    out
}

/// The pods of one workload: one revision of a Deployment, or one Job.
pub(super) struct Workload<'a> {
    pods: Vec<&'a DesiredPod>,
}

/// Pods grouped into workloads, in a fixed order (namespace, kind, owner,
/// revision), each in slot order.
pub(super) fn workloads<'a>(pods: impl IntoIterator<Item = &'a DesiredPod>) -> Vec<Workload<'a>> {
    let mut m: BTreeMap<(&str, Kind, &str, &str), Vec<&DesiredPod>> = BTreeMap::new();
    for p in pods {
        let rev = if p.owner.kind == Kind::Deployment { p.template_hash.as_str() } else { "" };
        m.entry((p.namespace.as_str(), p.owner.kind, p.owner.name.as_str(), rev)).or_default().push(p);
    }
    m.into_values()
        .map(|mut v| {
            v.sort_by(|a, b| (a.index, &a.name).cmp(&(b.index, &b.name)));
            v.dedup_by(|a, b| a.name == b.name);
            Workload { pods: v }
        })
        .collect()
}

/// Replicas per domain of one constraint.
struct Domains<'c> {
    c: &'c TopologySpreadConstraint,
    /// Domain of each node (its label value), if it has the label.
    of: Vec<Option<String>>,
    counts: BTreeMap<String, u32>,
}

impl Domains<'_> {
    /// Whether a replica more on node `i` keeps the skew within bounds.
    fn allows(&self, i: usize) -> bool {
        let Some(d) = &self.of[i] else { return !self.c.hard() };
        let min = self.counts.values().copied().min().unwrap_or(0);
        let here = self.counts.get(d).copied().unwrap_or(0);
        i64::from(here + 1) - i64::from(min) <= self.c.max_skew
    }
}

/// How many of the workload's `n` pods each node may hold. Replicas go to
/// distinct nodes first (so that losing one node loses as few as it can):
/// with no more pods than nodes, room for one on each; with more, one each,
/// and the rest by weight, each node to at most its proportional share
/// `ceil(n × weight / total)` (ties: a hash of the workload, so that the
/// choice is stable when other nodes come or go). With a topology spread constraint, the domains (its label's values)
/// first share the pods evenly, then each domain's nodes share its part.
fn targets(first: &DesiredPod, n: usize, state: &[Node<'_>], elig: &[bool], domains: &[Domains<'_>]) -> Vec<u32> {
    let ws = seed(format!("{}/{}/{}", first.namespace, first.owner.name, first.template_hash).as_bytes());
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    let key = domains.first();
    for i in (0..state.len()).filter(|i| elig[*i] && !state[*i].spec.unschedulable) {
        let d = key.and_then(|d| d.of[i].as_deref());
        if key.is_some_and(|k| k.c.hard()) && d.is_none() {
            continue;
        }
        groups.entry(d).or_default().push(i);
    }
    let mut out = vec![0u32; state.len()];
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let per_group: Vec<u64> = if key.is_some() {
        let hashes: Vec<(u64, u64)> = groups.iter().map(|g| (1, mix(ws ^ state[g[0]].seed))).collect();
        largest_remainder(n as u64, &hashes, None)
    } else {
        vec![n as u64; groups.len()]
    };
    for (members, m) in groups.iter().zip(per_group) {
        let ranked = |i: usize| (state[i].spec.weight.max(1), mix(ws ^ state[i].seed));
        let k = members.len() as u64;
        if m <= k {
            // Distinct nodes: room for one on each; the matching picks which.
            for i in members {
                out[*i] = 1;
            }
            continue;
        }
        // One each, then the rest by weight, up to each node's share.
        let total: u128 = members.iter().map(|i| u128::from(ranked(*i).0)).sum::<u128>().max(1);
        let caps: Vec<u64> =
            members.iter().map(|i| ((u128::from(m) * u128::from(ranked(*i).0)).div_ceil(total)) as u64).collect();
        let weights: Vec<(u64, u64)> = members.iter().map(|i| ranked(*i)).collect();
        let extra =
            largest_remainder(m - k, &weights, Some(&caps.iter().map(|c| c.saturating_sub(1)).collect::<Vec<_>>()));
        for (i, e) in members.iter().zip(extra) {
            out[*i] = (1 + e) as u32;
        }
    }
    out
}

/// Splits `n` by the weights: floors, then one more each to the largest
/// remainders (ties by the given hash), never above `caps` (what a capped
/// part cannot take goes to the next).
fn largest_remainder(n: u64, parts: &[(u64, u64)], caps: Option<&[u64]>) -> Vec<u64> {
    let total: u128 = parts.iter().map(|(w, _)| u128::from(*w)).sum::<u128>().max(1);
    let cap = |i: usize| caps.map_or(u64::MAX, |c| c[i]);
    let mut out: Vec<u64> = parts
        .iter()
        .enumerate()
        .map(|(i, (w, _))| ((u128::from(n) * u128::from(*w) / total) as u64).min(cap(i)))
        .collect();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    let rem = |i: usize| (u128::from(n) * u128::from(parts[i].0)) % total;
    order.sort_by(|a, b| rem(*b).cmp(&rem(*a)).then(parts[*b].1.cmp(&parts[*a].1)).then(a.cmp(b)));
    let mut left = n.saturating_sub(out.iter().sum());
    while left > 0 {
        let before = left;
        for &i in &order {
            if left > 0 && out[i] < cap(i) {
                out[i] += 1;
                left -= 1;
            }
        }
        if left == before {
            break;
        }
    }
    out
}

/// This workload's pods per node so far.
struct Fill {
    counts: Vec<u32>,
    placed: usize,
}

impl Fill {
    fn assign(
        &mut self,
        state: &mut [Node<'_>],
        domains: &mut [Domains<'_>],
        i: usize,
        pod: &DesiredPod,
        out: &mut Placement,
    ) {
        let n = &mut state[i];
        n.used = n.used.saturating_add(pod.requests);
        n.pods += 1;
        self.counts[i] += 1;
        self.placed += 1;
        for d in domains.iter_mut() {
            if let Some(v) = &d.of[i] {
                *d.counts.entry(v.clone()).or_default() += 1;
            }
        }
        out.owners.insert(pod.id(), n.spec.name.clone());
    }
}

pub(super) fn place_workload(
    w: &Workload<'_>,
    state: &mut [Node<'_>],
    groups: &[(u64, Vec<usize>)],
    pinned: &BTreeMap<String, String>,
    out: &mut Placement,
) {
    let Some(first) = w.pods.first() else { return };
    let elig: Vec<bool> =
        state.iter().map(|n| n.spec.runtimes.contains(&first.runtime) && selector_matches(first, n.spec)).collect();
    let mut domains: Vec<Domains<'_>> = first
        .spec
        .topology_spread_constraints
        .iter()
        .map(|c| {
            let of: Vec<Option<String>> = state.iter().map(|n| n.spec.labels.get(&c.topology_key).cloned()).collect();
            let counts =
                of.iter().zip(&elig).filter(|(_, e)| **e).filter_map(|(d, _)| d.clone().map(|d| (d, 0))).collect();
            Domains { c, of, counts }
        })
        .collect();
    let targets = targets(first, w.pods.len(), state, &elig, &domains);
    let mut fill = Fill { counts: vec![0u32; state.len()], placed: 0 };
    let fits = |state: &[Node<'_>], i: usize, pod: &DesiredPod| {
        let n = &state[i];
        elig[i] && n.pods < n.max_pods && n.used.saturating_add(pod.requests).fits_within(n.alloc)
    };
    let mut rest = Vec::new();
    for pod in &w.pods {
        let at = pinned.get(&pod.id()).and_then(|name| state.iter().position(|n| &n.spec.name == name));
        match at {
            Some(i) if fits(state, i, pod) => fill.assign(state, &mut domains, i, pod, out),
            _ => rest.push(*pod),
        }
    }
    let hard = |domains: &[Domains<'_>], i: usize| domains.iter().filter(|d| d.c.hard()).all(|d| d.allows(i));
    // Strongest pairings first: each pod goes to the node with room it scores
    // best on, the strongest (pod, node) pairs served first (the stable
    // matching of both sides ranking by the pair's score), so a node that
    // comes or goes moves few pods. Above MAX_PAIRS pairs, pods in slot order.
    let cand: Vec<usize> = (0..state.len()).filter(|i| targets[*i] > 0).collect();
    let l = cand.len().min(TOP);
    let rest: Vec<&DesiredPod> = if rest.len().saturating_mul(l) <= MAX_PAIRS {
        let mut pairs: Vec<(Score, u32, u32)> = Vec::with_capacity(rest.len() * l);
        for (p, pod) in rest.iter().enumerate() {
            let ps = seed(pod.id().as_bytes());
            for (score, i) in top(groups, state, ps, l, |i, _| targets[i] > 0) {
                pairs.push((score, p as u32, i as u32));
            }
        }
        pairs.sort_by(|a, b| {
            if a.0.beats(&b.0) {
                Ordering::Less
            } else if b.0.beats(&a.0) {
                Ordering::Greater
            } else {
                (a.1, a.2).cmp(&(b.1, b.2))
            }
        });
        let mut done = vec![false; rest.len()];
        for (_, p, i) in pairs {
            let (p, i) = (p as usize, i as usize);
            if done[p] || fill.counts[i] >= targets[i] || !fits(state, i, rest[p]) || !hard(&domains, i) {
                continue;
            }
            fill.assign(state, &mut domains, i, rest[p], out);
            done[p] = true;
        }
        rest.into_iter().zip(done).filter(|(_, d)| !d).map(|(p, _)| p).collect()
    } else {
        rest
    };
    for pod in rest {
        let ps = seed(pod.id().as_bytes());
        let soft = |domains: &[Domains<'_>], i: usize| domains.iter().all(|d| d.allows(i));
        let ok = |i: usize, n: &Node<'_>| !n.spec.unschedulable && fits(state, i, pod);
        let below = |i: usize, _: &Node<'_>| fill.counts[i] < targets[i];
        let pick = best_in(groups, state, ps, |i, n| ok(i, n) && below(i, n) && soft(&domains, i))
            .or_else(|| best_in(groups, state, ps, |i, n| ok(i, n) && below(i, n) && hard(&domains, i)))
            // Capacity forces it: anywhere it fits within the hard constraints.
            .or_else(|| best_in(groups, state, ps, |i, n| ok(i, n) && hard(&domains, i)));
        match pick {
            Some(i) => fill.assign(state, &mut domains, i, pod, out),
            None => {
                let blocked = (0..state.len()).any(|i| !state[i].spec.unschedulable && fits(state, i, pod));
                let why = match domains.iter().find(|d| d.c.hard()) {
                    Some(d) if blocked => format!(
                        "topologySpreadConstraints: another replica on any node would put more than maxSkew {} in one {} domain",
                        d.c.max_skew, d.c.topology_key
                    ),
                    _ => pending_reason(pod, state),
                };
                out.pending.insert(pod.id(), why);
            }
        }
    }
}
