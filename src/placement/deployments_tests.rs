//! `Seen` followed from view to view is `Seen` read afresh, and the times
//! pods were first seen Ready are those the whole-view reading gave.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::Seen;
use crate::membership::view::{ClusterView, NodeInfo, NodeState, test_node, xorshift};
use crate::model::status::{Phase, PodStatus};

/// The pods of a `Seen`, by owner, in a canonical order.
fn canonical(s: &Seen) -> BTreeMap<String, Vec<(String, String, bool)>> {
    s.by_owner
        .iter()
        .map(|(o, v)| {
            let mut v: Vec<_> = v.iter().map(|p| (p.id.clone(), p.name.clone(), p.ready)).collect();
            v.sort();
            (o.clone(), v)
        })
        .collect()
}

/// `ready_since` as the whole-view reading kept it before views were
/// followed: the pods Ready now keep their time, new ones get `now`.
fn reference(view: &ClusterView, rs: &mut FxHashMap<String, u64>, now: u64) {
    let mut ready_now = std::collections::HashSet::new();
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        for (id, st) in n.pods.iter() {
            if st.ready && !st.terminating && matches!(st.phase, Phase::Pending | Phase::Running) {
                ready_now.insert(id.clone());
            }
        }
    }
    rs.retain(|id, _| ready_now.contains(id));
    for id in ready_now {
        rs.entry(id).or_insert(now);
    }
}

#[test]
fn a_view_followed_by_its_changes_is_the_view_read_afresh() {
    let mut rnd = xorshift(0x0005_eed0_f5ee);
    let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead, NodeState::Left];
    let phases = [Phase::Pending, Phase::Running, Phase::Succeeded];
    let mut view = ClusterView { self_name: "n0".into(), quorum: true, ..Default::default() };
    let (mut followed_rs, mut fresh_rs, mut reference_rs) =
        (FxHashMap::default(), FxHashMap::default(), FxHashMap::default());
    let mut seen = Seen::of(&Arc::new(view.clone()), &mut followed_rs, 0);
    let (mut follows, mut afresh) = (0, 0);
    for step in 1..3000u64 {
        // A few nodes change (sometimes many: read afresh then).
        let changes = if rnd(50) == 0 { 200 } else { 1 + rnd(3) };
        for _ in 0..changes {
            let name = format!("n{}", rnd(90));
            if rnd(10) == 0 {
                view.nodes.remove(name.as_str());
                continue;
            }
            let mut node = test_node(NodeInfo { name: name.clone(), ..Default::default() }, states[rnd(4) as usize]);
            let old = view.nodes.get(name.as_str()).map(|o| o.pods.clone());
            if let (0, Some(old)) = (rnd(4), &old) {
                // Only its state changes: its pods stay shared.
                node.pods = old.clone();
            } else if let (0, Some(old)) = (rnd(3), &old) {
                // Its pods change only in what no rollout reads.
                let mut pods = (**old).clone();
                for st in pods.values_mut() {
                    Arc::make_mut(st).message = format!("step {step}");
                }
                node.pods = Arc::new(pods);
            } else {
                let mut pods = BTreeMap::new();
                for _ in 0..rnd(4) {
                    // Few pod ids, so that several nodes report one (a handoff).
                    let i = rnd(12);
                    let st = PodStatus {
                        namespace: "default".into(),
                        name: format!("web-{i}"),
                        owner_uid: format!("uid-{}", i % 3),
                        phase: phases[rnd(3) as usize],
                        ready: rnd(2) == 0,
                        terminating: rnd(6) == 0,
                        ..Default::default()
                    };
                    pods.insert(st.id(), Arc::new(st));
                }
                node.pods = Arc::new(pods);
            }
            view.nodes.insert(name.into(), node);
        }
        let now = step * 100;
        let next = Arc::new(view.clone());
        seen = match seen.follow(&next, &mut followed_rs, now) {
            Some(s) => {
                follows += 1;
                s
            }
            None => {
                afresh += 1;
                Seen::of(&next, &mut followed_rs, now)
            }
        };
        let fresh = Seen::of(&next, &mut fresh_rs, now);
        reference(&next, &mut reference_rs, now);
        assert_eq!(canonical(&seen), canonical(&fresh), "step {step}: pods by owner");
        assert_eq!(seen.ready, fresh.ready, "step {step}: Ready counts");
        assert_eq!(followed_rs, reference_rs, "step {step}: first seen Ready (followed)");
        assert_eq!(fresh_rs, reference_rs, "step {step}: first seen Ready (afresh)");
        // What deciding reads in place of the map: each Ready report
        // carries its pod's time, the others none.
        for p in seen.by_owner.values().flatten() {
            let want = if p.ready { reference_rs.get(&p.id).copied() } else { None };
            assert_eq!(p.since, want, "step {step}: time kept with {} (Ready: {})", p.id, p.ready);
        }
    }
    assert!(follows > 2000 && afresh > 20, "both paths taken: {follows} followed, {afresh} afresh");
}
