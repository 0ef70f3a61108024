//! Rolling updates without a coordinator: which pods of a Deployment are
//! desired right now, decided by every node alike from what it sees.
//!
//! A Deployment of `replicas` N has slots 0..N. Each slot runs a pod of the
//! current revision (`<name>-<hash>-<slot>`), or during a rollout a pod of
//! an old revision, or both. Every node evaluates the same rule over the same
//! inputs: the Deployment, and the pods that live nodes report (which
//! revision, whether available). Only a pod's owner acts on it, so no node
//! drives the rollout and no node's death stalls it.
//!
//! The rule. A slot is *done* when its current pod is available and no old
//! pod of it is seen any more; every other slot is *in flight*. Slots in
//! flight are taken in slot order and ranked, and each slot's rank says
//! whether it may move now. With `maxSurge` > 0 a rollout surges: the first
//! `maxSurge` ranked slots start their current pod beside the old one, and
//! the old pod goes once the current one is available. With `maxSurge` 0 it
//! makes gaps: the first `maxUnavailable` ranked slots stop their old pod and
//! start the current one once the old one is gone. (When both are set it
//! surges, which keeps every replica available: a rollout never mixes the
//! two, because a slot counted as a surge in one view and as a gap in
//! another would spend both budgets at once.)
//!
//! So at most `maxSurge` slots run two pods, and at most `maxUnavailable`
//! slots are without an available pod because of the rollout, even when
//! owners act on views of different ages: a slot leaves the flight only once
//! its new pod *was* seen available and its old pod gone, so an older view
//! ranks every slot at least as far back as a newer one does, and acts
//! later, never sooner (the property tests check it over stale views).
//! Slots that cost no budget move at once: a fresh slot (no old pod seen: a
//! new slot, or one whose old pod died with its node) starts its current
//! pod, and an old pod that is not Ready (crash-looping, still starting)
//! is stopped first; one that is Ready but not yet available holds its
//! slot like an available one. `Recreate` starts no current pod while any
//! old pod is seen. A paused Deployment keeps what runs and starts only
//! fresh slots.
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use crate::model::revision::RolloutParams;

/// A pod of a Deployment that a live node reports (running or starting, not
/// terminating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    pub hash: String,
    pub ready: bool,
    /// Ready for at least `minReadySeconds` (and long enough that every node
    /// has heard of it).
    pub available: bool,
}

/// What this node sees of one Deployment's pods, by slot.
pub type Observed = BTreeMap<u32, Vec<ObservedPod>>;

/// A rollout's counts, as Kubernetes reports them in a Deployment's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutStatus {
    /// Pods that exist, every revision.
    pub replicas: u32,
    /// Pods of the current revision in slots below `replicas`.
    pub updated: u32,
    pub ready: u32,
    pub available: u32,
    pub unavailable: u32,
    /// Every slot runs an available current pod and nothing else runs.
    pub complete: bool,
    /// Slots still to be replaced, in order.
    pub pending: Vec<u32>,
}

/// The pods desired now, as (slot, revision hash), and the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub pods: Vec<(u32, String)>,
    pub status: RolloutStatus,
}

/// Decides one Deployment. `known(hash)`: whether the template of an old
/// revision is known here (a pod of an unknown revision cannot be kept).
pub fn decide(p: &RolloutParams, current: &str, known: &dyn Fn(&str) -> bool, obs: &Observed) -> Decision {
    fn keep(out: &mut Decision, i: u32, h: &str) {
        out.pods.push((i, h.to_string()));
    }
    let none = Vec::new();
    let any_old = obs.values().flatten().any(|o| o.hash != current);
    let surge = p.max_surge > 0;
    let budget = if surge { p.max_surge } else { p.max_unavailable };
    let mut out = Decision::default();
    let mut rank = 0u32;
    for i in 0..p.replicas {
        let pods = obs.get(&i).unwrap_or(&none);
        let new_exists = pods.iter().any(|o| o.hash == current);
        let new_avail = pods.iter().any(|o| o.hash == current && o.available);
        let olds: Vec<&ObservedPod> = pods.iter().filter(|o| o.hash != current && known(&o.hash)).collect();
        // Ready counts: an old pod Ready but not yet available (it came up
        // moments before the template changed) holds its slot like an
        // available one, or a rollout would stop healthy pods unbudgeted.
        let old_ready = olds.iter().any(|o| o.ready || o.available);
        if !(new_avail && olds.is_empty()) {
            out.status.pending.push(i);
        }
        if p.recreate {
            if !any_old {
                keep(&mut out, i, current);
            }
            continue;
        }
        if p.paused {
            if new_exists || olds.is_empty() {
                keep(&mut out, i, current);
            }
            for o in &olds {
                keep(&mut out, i, &o.hash);
            }
            continue;
        }
        if new_avail && olds.is_empty() {
            keep(&mut out, i, current);
            continue;
        }
        if new_avail {
            // Two pods until the old one is seen gone: it holds its rank.
            rank += 1;
            keep(&mut out, i, current);
            continue;
        }
        if olds.is_empty() {
            // Fresh, or its old pod has gone: the current pod starts. While
            // it starts the slot is unavailable, which gaps must count.
            rank += u32::from(!surge);
            keep(&mut out, i, current);
            continue;
        }
        if !old_ready {
            // Not Ready anyway (crash-looping, still starting): it goes, and
            // the current pod follows.
            continue;
        }
        let r = rank;
        rank += 1;
        if surge && r < budget {
            keep(&mut out, i, current);
        }
        if surge || r >= budget {
            for o in &olds {
                keep(&mut out, i, &o.hash);
            }
        }
    }
    out.status = RolloutStatus { pending: std::mem::take(&mut out.status.pending), ..status(p, current, obs) };
    out
}

/// The status counts of what `obs` shows.
pub fn status(p: &RolloutParams, current: &str, obs: &Observed) -> RolloutStatus {
    let n = p.replicas;
    let mut s = RolloutStatus::default();
    let mut complete = true;
    for (i, pods) in obs {
        s.replicas += pods.len() as u32;
        if *i >= n {
            complete &= pods.is_empty();
            continue;
        }
        s.updated += pods.iter().filter(|o| o.hash == current).count() as u32;
        s.ready += pods.iter().filter(|o| o.ready).count() as u32;
        s.available += pods.iter().filter(|o| o.available).count() as u32;
        complete &= pods.iter().all(|o| o.hash == current) && pods.iter().any(|o| o.available);
    }
    complete &= (0..n).all(|i| obs.get(&i).is_some_and(|v| !v.is_empty()));
    s.unavailable = n.saturating_sub(s.available);
    s.complete = complete;
    s
}

#[cfg(test)]
mod tests;
