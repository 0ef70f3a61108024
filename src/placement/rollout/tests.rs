//! The rollout rule: stories, and properties over any interleaving of stale
//! views.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const OLD: &str = "aaaaaaaaaa";
const NEW: &str = "bbbbbbbbbb";

fn params(n: u32, surge: u32, unavailable: u32) -> RolloutParams {
    RolloutParams {
        replicas: n,
        recreate: false,
        max_surge: surge,
        max_unavailable: unavailable,
        min_ready_secs: 0,
        progress_deadline_secs: 600,
        paused: false,
        history_limit: 10,
    }
}

fn pod(hash: &str, available: bool) -> ObservedPod {
    ObservedPod { hash: hash.into(), ready: available, available }
}

fn all_old(n: u32) -> Observed {
    (0..n).map(|i| (i, vec![pod(OLD, true)])).collect()
}

fn any(_: &str) -> bool {
    true
}

fn wanted(d: &Decision, hash: &str) -> Vec<u32> {
    d.pods.iter().filter(|(_, h)| h == hash).map(|(i, _)| *i).collect()
}

#[test]
fn a_rollout_starts_with_the_first_slots_within_its_budget() {
    // 6 replicas, Kubernetes' defaults: surge 2 (and unavailable 1, unused).
    let d = decide(&params(6, 2, 1), NEW, &any, &all_old(6));
    assert_eq!(wanted(&d, NEW), [0, 1], "two surges");
    assert_eq!(wanted(&d, OLD), [0, 1, 2, 3, 4, 5], "every old pod stays until its successor is available");
    assert_eq!(d.status.pending, [0, 1, 2, 3, 4, 5]);
    assert!(!d.status.complete);
    // maxSurge 0, maxUnavailable 2: two gaps; the new pods wait for the old to go.
    let d = decide(&params(6, 0, 2), NEW, &any, &all_old(6));
    assert!(wanted(&d, NEW).is_empty());
    assert_eq!(wanted(&d, OLD), [2, 3, 4, 5]);
    let mut obs = all_old(6);
    obs.remove(&0);
    obs.remove(&1);
    let d = decide(&params(6, 0, 2), NEW, &any, &obs);
    assert_eq!((wanted(&d, NEW), wanted(&d, OLD)), (vec![0, 1], vec![2, 3, 4, 5]), "gone: their successors start");
}

#[test]
fn a_slot_is_done_once_its_new_pod_is_available() {
    let mut obs = all_old(3);
    obs.get_mut(&0).unwrap().push(pod(NEW, false));
    let d = decide(&params(3, 1, 0), NEW, &any, &obs);
    assert_eq!((wanted(&d, NEW), wanted(&d, OLD)), (vec![0], vec![0, 1, 2]), "ready is not enough");
    obs.get_mut(&0).unwrap()[1].available = true;
    let d = decide(&params(3, 1, 0), NEW, &any, &obs);
    assert_eq!((wanted(&d, NEW), wanted(&d, OLD)), (vec![0], vec![1, 2]), "the old pod goes; slot 1 waits for that");
    obs.get_mut(&0).unwrap().remove(0);
    let d = decide(&params(3, 1, 0), NEW, &any, &obs);
    assert_eq!((wanted(&d, NEW), wanted(&d, OLD)), (vec![0, 1], vec![1, 2]), "slot 0 done, slot 1 surges");
}

#[test]
fn fresh_slots_and_unavailable_old_pods_cost_nothing() {
    let mut obs = all_old(4);
    obs.remove(&1); // its owner died: never recreated on the old template
    obs.get_mut(&2).unwrap()[0] = pod(OLD, false); // a crash-looping old pod: not Ready
    let d = decide(&params(4, 1, 0), NEW, &any, &obs);
    assert_eq!(wanted(&d, NEW), [0, 1], "slot 0 surges, fresh slot 1 starts");
    assert_eq!(wanted(&d, OLD), [0, 3], "slot 2's crash-looping old pod goes at once");
    // An old revision whose template is not known here cannot be kept.
    let d = decide(&params(4, 1, 0), NEW, &|h| h != OLD, &all_old(4));
    assert_eq!((wanted(&d, NEW).len(), wanted(&d, OLD).len()), (4, 0));
}

#[test]
fn recreate_and_pause_and_scale_down() {
    let mut p = params(3, 0, 3);
    p.recreate = true;
    let d = decide(&p, NEW, &any, &all_old(3));
    assert!(d.pods.is_empty(), "every old pod stops first: {:?}", d.pods);
    let d = decide(&p, NEW, &any, &Observed::new());
    assert_eq!(wanted(&d, NEW), [0, 1, 2], "then every new pod starts");
    let mut p = params(3, 1, 0);
    p.paused = true;
    let mut obs = all_old(3);
    obs.get_mut(&0).unwrap().push(pod(NEW, false));
    obs.remove(&2);
    let d = decide(&p, NEW, &any, &obs);
    assert_eq!((wanted(&d, NEW), wanted(&d, OLD)), (vec![0, 2], vec![0, 1]), "keeps what runs, fills fresh slots");
    let d = decide(&params(2, 1, 0), NEW, &any, &all_old(4));
    assert!(d.pods.iter().all(|(i, _)| *i < 2), "slots past replicas go");
}

#[test]
fn status_counts_as_kubernetes_reports_them() {
    let mut obs = all_old(3);
    obs.get_mut(&0).unwrap().push(pod(NEW, true));
    let s = status(&params(3, 1, 0), NEW, &obs);
    assert_eq!((s.replicas, s.updated, s.ready, s.available, s.unavailable), (4, 1, 4, 4, 0));
    assert!(!s.complete);
    let done: Observed = (0..3).map(|i| (i, vec![pod(NEW, true)])).collect();
    assert!(status(&params(3, 1, 0), NEW, &done).complete);
}

/// A small world: each slot's pods, and pods that become available some
/// steps after they start. Owners decide from views up to `lag` steps old.
#[derive(Clone, Debug)]
struct World {
    /// slot -> (hash, steps until available; 0 = available)
    pods: BTreeMap<u32, Vec<(String, u32)>>,
}

impl World {
    /// A pod is Ready one step before it is available (`minReadySeconds`,
    /// the linger that lets every node hear of it).
    fn observed(&self) -> Observed {
        let seen = |h: &String, t: u32| ObservedPod { hash: h.clone(), ready: t <= 1, available: t == 0 };
        self.pods.iter().map(|(i, v)| (*i, v.iter().map(|(h, t)| seen(h, *t)).collect())).collect()
    }
    fn unready_slots(&self, n: u32) -> u32 {
        (0..n).filter(|i| !self.pods.get(i).is_some_and(|v| v.iter().any(|(_, t)| *t <= 1))).count() as u32
    }
    fn unavailable_slots(&self, n: u32) -> u32 {
        (0..n).filter(|i| !self.pods.get(i).is_some_and(|v| v.iter().any(|(_, t)| *t == 0))).count() as u32
    }
    fn total(&self) -> u32 {
        self.pods.values().map(|v| v.len() as u32).sum()
    }
    fn done(&self, n: u32) -> bool {
        (0..n).all(|i| self.pods.get(&i).is_some_and(|v| v.len() == 1 && v[0].0 == NEW && v[0].1 == 0))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever the order in which owners act and however stale their views
    /// (up to 8 steps), at most maxUnavailable slots lack an available pod,
    /// at most maxSurge extra pods run, and every slot ends on the new
    /// template.
    #[test]
    fn budgets_hold_under_stale_views_and_every_slot_ends_new(
        n in 1u32..12,
        surge in 0u32..4,
        unavailable in 0u32..4,
        start_delays in proptest::collection::vec(1u32..5, 64),
        lags in proptest::collection::vec(0usize..9, 512),
        young in proptest::collection::vec(proptest::bool::weighted(0.3), 12),
    ) {
        let (surge, unavailable) = if surge == 0 && unavailable == 0 { (1, 0) } else { (surge, unavailable) };
        let p = params(n, surge, unavailable);
        // Some old pods are Ready but not yet available when the rollout
        // starts (the template changed moments after they came up): they
        // count as in flight, never as "unavailable anyway".
        let age = |i: u32| u32::from(young[i as usize % young.len()]);
        let mut w = World { pods: (0..n).map(|i| (i, vec![(OLD.to_string(), age(i))])).collect() };
        let young_slots = (0..n).filter(|i| age(*i) > 0).count() as u32;
        let mut history: Vec<Observed> = vec![w.observed()];
        let (mut d, mut l) = (0, 0);
        let mut steps = 0;
        while !w.done(n) {
            steps += 1;
            prop_assert!(steps < 400, "the rollout did not finish: {:?}", w);
            for i in 0..n {
                // The old pod's owner and the new pod's owner each look at a view of their own age.
                let view = |l: &mut usize| {
                    let lag = lags[*l % lags.len()];
                    *l += 1;
                    history[history.len().saturating_sub(1 + lag)].clone()
                };
                let old_view = decide(&p, NEW, &any, &view(&mut l));
                let keep_old = old_view.pods.iter().any(|(s, h)| *s == i && h == OLD);
                let new_view = decide(&p, NEW, &any, &view(&mut l));
                let want_new = new_view.pods.iter().any(|(s, h)| *s == i && h == NEW);
                let slot = w.pods.entry(i).or_default();
                if !keep_old {
                    slot.retain(|(h, _)| h != OLD);
                }
                if want_new && !slot.iter().any(|(h, _)| h == NEW) {
                    slot.push((NEW.to_string(), start_delays[d % start_delays.len()]));
                    d += 1;
                }
                prop_assert!(
                    w.unavailable_slots(n) <= unavailable + young_slots,
                    "too many unavailable: {:?}",
                    w
                );
                prop_assert!(w.unready_slots(n) <= unavailable, "too many slots without a Ready pod: {:?}", w);
                prop_assert!(w.total() <= n + surge, "too many pods: {:?}", w);
            }
            for v in w.pods.values_mut() {
                for (_, t) in v.iter_mut() {
                    *t = t.saturating_sub(1);
                }
            }
            history.push(w.observed());
        }
    }

    /// A slot whose old pod vanished (its node died) is replaced on the new
    /// template, whatever else is going on.
    #[test]
    fn a_dead_owners_replica_comes_back_new(n in 1u32..10, dead in 0u32..10, surge in 0u32..3) {
        let dead = dead % n;
        let mut obs = all_old(n);
        obs.remove(&dead);
        let d = decide(&params(n, surge, 1), NEW, &any, &obs);
        prop_assert!(d.pods.contains(&(dead, NEW.to_string())));
        prop_assert!(!d.pods.contains(&(dead, OLD.to_string())));
    }
}
