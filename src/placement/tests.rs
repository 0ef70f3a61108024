//! Property and example tests of `place`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::Kind;
use crate::model::pods::{OwnerRef, RestartPolicy, RuntimeKind};
use crate::model::types::PodSpec;

pub(crate) fn node(name: &str, cpu_cores: u64, mem_gib: u64) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        allocatable: Resources { cpu_millis: cpu_cores * 1000, memory_bytes: mem_gib << 30 },
        weight: cpu_cores * 1000,
        labels: Default::default(),
        runtimes: std::sync::Arc::new([RuntimeKind::Process].into()),
        max_pods: 10_000,
        unschedulable: false,
    }
}

pub(crate) fn pods(owner: &str, n: u32, req: Resources) -> Vec<DesiredPod> {
    (0..n)
        .map(|i| DesiredPod {
            namespace: "default".into(),
            name: format!("{owner}-{i}"),
            owner: OwnerRef { kind: Kind::Deployment, name: owner.into(), uid: "u".into() },
            index: i,
            labels: Default::default(),
            spec: Arc::new(PodSpec::default()),
            template_hash: "h".into(),
            requests: req,
            runtime: RuntimeKind::Process,
            restart_policy: RestartPolicy::Always,
            grace: Duration::from_secs(1),
            fenced: false,
            node: None,
        })
        .collect()
}

pub(crate) fn cluster(n: usize) -> Vec<NodeSpec> {
    (0..n).map(|i| node(&format!("n{i:03}"), 1 + (i as u64 % 4) * 2, 8)).collect()
}

#[test]
fn neg_log_is_monotonic_and_exact_at_the_ends() {
    assert_eq!(neg_log2_fixed(u64::MAX), 0, "u = 1 scores infinitely well");
    assert_eq!(neg_log2_fixed(0), 53 << 32);
    let mut last = u64::MAX;
    for h in (0..64).map(|i| (1u64 << i).wrapping_sub(1) | (1 << 11)) {
        let l = neg_log2_fixed(h);
        assert!(l <= last, "monotonic");
        last = l;
    }
    // -log2(0.5) = 1
    let half = (1u64 << 52) - 1;
    let l = neg_log2_fixed(half << 11);
    assert!((l as i64 - (1i64 << 32)).abs() < 4, "{l}");
}

/// The table's log is within 2^-22 of the bit-by-bit one, for hashes
/// spread over every exponent.
#[test]
fn neg_log_table_is_close_to_exact() {
    let mut h = 0x1234_5678_9abc_def0u64;
    for i in 0..200_000u64 {
        h = mix(h ^ i);
        let v = h >> (i % 60);
        let x = (v >> 11) + 1;
        let k = 63 - u64::from(x.leading_zeros());
        let exact = (53u64 << 32).saturating_sub((k << 32) | log2_frac_exact(x, k));
        let d = neg_log2_fixed(v).abs_diff(exact);
        assert!(d <= 1024, "h = {v:#x}: table {} exact {exact}", neg_log2_fixed(v));
    }
}

#[test]
fn twenty_replicas_on_five_mixed_nodes() {
    let nodes =
        vec![node("big", 16, 64), node("mid-a", 4, 16), node("mid-b", 4, 16), node("nas", 2, 8), node("pi", 1, 4)];
    let p = place(&nodes, &pods("web", 20, Resources::default()), &BTreeMap::new());
    assert!(p.pending.is_empty());
    let loads = p.loads();
    assert!(loads["big"] > loads["mid-a"] && loads["big"] > loads["pi"], "{loads:?}");
    assert!(loads["pi"] <= loads["nas"], "{loads:?}");
    assert_eq!(loads.len(), 5, "every node gets at least one replica: {loads:?}");
    let total_w: u64 = nodes.iter().map(|n| n.weight).sum();
    for n in &nodes {
        let cap = (20 * n.weight).div_ceil(total_w) as usize;
        assert!(loads[n.name.as_str()] <= cap.max(1), "{} over its share: {loads:?}", n.name);
    }
}

#[test]
fn six_replicas_on_three_equal_nodes_are_two_two_two() {
    let nodes: Vec<NodeSpec> = ["a", "b", "c"].iter().map(|n| node(n, 4, 16)).collect();
    let p = place(&nodes, &pods("web", 6, Resources::default()), &BTreeMap::new());
    assert_eq!(p.loads().values().copied().collect::<Vec<_>>(), [2, 2, 2]);
}

fn zoned(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| {
            let mut x = node(&format!("n{i}"), 4, 16);
            Arc::make_mut(&mut x.labels).insert("zone".into(), ["attic", "basement"][i % 2].into());
            Arc::make_mut(&mut x.labels).insert("kubernetes.io/hostname".into(), format!("n{i}"));
            x
        })
        .collect()
}

pub(crate) fn with_spread(mut ps: Vec<DesiredPod>, key: &str, skew: i64, when: &str) -> Vec<DesiredPod> {
    let c = crate::model::types::TopologySpreadConstraint {
        max_skew: skew,
        topology_key: key.into(),
        when_unsatisfiable: Some(when.into()),
        label_selector: None,
    };
    for p in &mut ps {
        Arc::make_mut(&mut p.spec).topology_spread_constraints = vec![c.clone()];
    }
    ps
}

#[test]
fn topology_spread_over_a_node_label() {
    // Three nodes in the attic, one in the basement: zones stay within maxSkew 1.
    let mut nodes = zoned(4);
    Arc::make_mut(&mut nodes[1].labels).insert("zone".into(), "attic".into());
    let ps = with_spread(pods("web", 4, Resources::default()), "zone", 1, "DoNotSchedule");
    let p = place(&nodes, &ps, &BTreeMap::new());
    let zone = |n: &str| nodes.iter().find(|x| x.name == n).unwrap().labels["zone"].clone();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for o in p.owners.values() {
        *per.entry(zone(o)).or_default() += 1;
    }
    assert_eq!(per, BTreeMap::from([("attic".to_string(), 2), ("basement".to_string(), 2)]));
    // The basement node cannot take more: a fifth replica may go to the attic
    // (skew 1), a sixth would break the skew and waits, with the reason.
    let mut nodes1 = nodes.clone();
    nodes1[3].max_pods = 2;
    let ps = with_spread(pods("web", 6, Resources::default()), "zone", 1, "DoNotSchedule");
    let p = place(&nodes1, &ps, &BTreeMap::new());
    assert_eq!(p.owners.len(), 5, "{p:?}");
    assert!(p.pending.values().all(|w| w.contains("maxSkew 1") && w.contains("zone")), "{:?}", p.pending);
    // ScheduleAnyway: a preference, not a wait.
    let ps = with_spread(pods("web", 6, Resources::default()), "zone", 1, "ScheduleAnyway");
    assert!(place(&nodes1, &ps, &BTreeMap::new()).pending.is_empty());
    // DoNotSchedule leaves out nodes without the label.
    let mut nodes2 = zoned(3);
    Arc::make_mut(&mut nodes2[2].labels).remove("zone");
    let ps = with_spread(pods("web", 4, Resources::default()), "zone", 1, "DoNotSchedule");
    let p = place(&nodes2, &ps, &BTreeMap::new());
    assert!(p.owners.values().all(|o| o != "n2"), "{p:?}");
}

#[test]
fn pinned_pods_stay_on_a_cordoned_node_that_takes_nothing_else() {
    let mut nodes = cluster(3);
    let ps = pods("web", 6, Resources::default());
    let before = place(&nodes, &ps, &BTreeMap::new());
    let victim = nodes[1].name.clone();
    nodes[1].unschedulable = true;
    let pinned: BTreeMap<String, String> =
        before.owners.iter().filter(|(_, o)| **o == victim).map(|(id, o)| (id.clone(), o.to_string())).collect();
    assert!(!pinned.is_empty());
    let after = place(&nodes, &ps, &pinned);
    for (id, o) in after.owners.iter() {
        assert_eq!(o == &victim, pinned.contains_key(id), "{id} on {o}");
    }
    // Unpinned (drained), they all go elsewhere.
    let drained = place(&nodes, &ps, &BTreeMap::new());
    assert!(drained.owners.values().all(|o| *o != victim));
}

#[test]
fn replicas_spread_over_distinct_nodes_first() {
    let nodes = cluster(5);
    let p = place(&nodes, &pods("web", 5, Resources::default()), &BTreeMap::new());
    let distinct: BTreeSet<&NodeName> = p.owners.values().collect();
    assert_eq!(distinct.len(), 5);
}

#[test]
fn pending_reasons_name_the_constraint() {
    let nodes = cluster(5);
    let big = Resources { cpu_millis: 100, memory_bytes: 100 << 30 };
    let p = place(&nodes, &pods("db", 1, big), &BTreeMap::new());
    assert_eq!(p.pending["default/db-0"], "insufficient memory on all 5 nodes");
    let mut sel = pods("x", 1, Resources::default());
    Arc::make_mut(&mut sel[0].spec).node_selector.insert("disk".into(), "ssd".into());
    let p = place(&nodes, &sel, &BTreeMap::new());
    assert_eq!(p.pending["default/x-0"], "no node matches nodeSelector disk=ssd");
    let mut dock = pods("img", 1, Resources::default());
    dock[0].runtime = RuntimeKind::Docker;
    let p = place(&nodes, &dock, &BTreeMap::new());
    assert_eq!(p.pending["default/img-0"], "no node offers the docker runtime (5 nodes checked)");
    let p = place(&[], &pods("a", 1, Resources::default()), &BTreeMap::new());
    assert_eq!(p.pending["default/a-0"], "no live node");
}

#[test]
fn node_selector_is_honoured() {
    let mut nodes = cluster(4);
    Arc::make_mut(&mut nodes[2].labels).insert("disk".into(), "ssd".into());
    let mut ps = pods("x", 3, Resources::default());
    for p in &mut ps {
        Arc::make_mut(&mut p.spec).node_selector.insert("disk".into(), "ssd".into());
    }
    let p = place(&nodes, &ps, &BTreeMap::new());
    assert!(p.owners.values().all(|n| n == &nodes[2].name));
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeSpec>> {
    proptest::collection::vec((1u64..16, 1u64..32, any::<bool>()), 1..12).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, mem, ssd))| {
                let mut n = node(&format!("node-{i}"), cpu, mem);
                if ssd {
                    Arc::make_mut(&mut n.labels).insert("disk".into(), "ssd".into());
                }
                n
            })
            .collect()
    })
}

fn arb_pods() -> impl Strategy<Value = Vec<DesiredPod>> {
    proptest::collection::vec((0u32..12, 0u64..3000, 0u64..8, any::<bool>()), 1..6).prop_map(|ws| {
        let mut out = Vec::new();
        for (i, (n, cpu, mem, ssd)) in ws.into_iter().enumerate() {
            let mut ps = pods(&format!("w{i}"), n, Resources { cpu_millis: cpu, memory_bytes: mem << 30 });
            if ssd {
                for p in &mut ps {
                    Arc::make_mut(&mut p.spec).node_selector.insert("disk".into(), "ssd".into());
                }
            }
            out.extend(ps);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The floating-point shortcut of `Score::against` gives the exact
    /// cross-multiplication's answer: on near ties (the same hash, weights
    /// one apart), on weights too large for `f64` and on hashes whose log
    /// is 0 (an infinite quotient).
    #[test]
    fn score_comparison_is_the_exact_one(
        w1 in prop_oneof![1u64..100_000, (1u64 << 53)..u64::MAX],
        dw in 0u64..2,
        h1 in any::<u64>(),
        h2 in prop_oneof![any::<u64>(), Just(u64::MAX)],
        same in any::<bool>(),
    ) {
        let w2 = w1.saturating_add(dw);
        let h2 = if same { h1 } else { h2 };
        let (a, b) = (Score::new(w1, h1), Score::new(w2, h2));
        let exact = |x: &Score, y: &Score| {
            (u128::from(x.weight) * u128::from(y.neg_log)).cmp(&(u128::from(y.weight) * u128::from(x.neg_log)))
        };
        prop_assert_eq!(a.against(&b), exact(&a, &b));
        prop_assert_eq!(b.against(&a), exact(&b, &a));
    }

    #[test]
    fn same_inputs_any_order_same_placement(nodes in arb_nodes(), ps in arb_pods(), rot in 0usize..50) {
        let a = place(&nodes, &ps, &BTreeMap::new());
        let mut n2 = nodes.clone();
        n2.reverse();
        let k = rot % n2.len();
        n2.rotate_left(k);
        let mut p2 = ps.clone();
        p2.reverse();
        prop_assert_eq!(a, place(&n2, &p2, &BTreeMap::new()));
    }

    #[test]
    fn capacity_and_constraints_never_violated(nodes in arb_nodes(), ps in arb_pods()) {
        let p = place(&nodes, &ps, &BTreeMap::new());
        prop_assert_eq!(p.owners.len() + p.pending.len(), ps.len());
        let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
        for pod in &ps {
            if let Some(owner) = p.owners.get(&pod.id()) {
                let n = nodes.iter().find(|n| &n.name == owner).unwrap();
                prop_assert!(pod.spec.node_selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)));
                let u = used.entry(owner.as_str()).or_default();
                *u = u.saturating_add(pod.requests);
                prop_assert!(u.fits_within(n.allocatable), "{} over capacity", owner);
            }
        }
    }

    /// With no resource requests and no selectors, no node holds more of a
    /// workload than ceil(pods × weight / total weight).
    #[test]
    fn a_workload_stays_within_its_share(nodes in arb_nodes(), n in 1u32..300) {
        let ps = pods("w", n, Resources::default());
        let p = place(&nodes, &ps, &BTreeMap::new());
        prop_assert!(p.pending.is_empty());
        let total_w: u64 = nodes.iter().map(|x| x.weight).sum();
        for (name, load) in p.loads() {
            let w = nodes.iter().find(|x| x.name == name).unwrap().weight;
            let bound = (u64::from(n) * w).div_ceil(total_w) as usize;
            prop_assert!(load <= bound, "{} has {} > {}", name, load, bound);
        }
    }

    /// On nodes of equal capacity a workload's counts differ by at most one
    /// (Kubernetes' maxSkew 1), whatever else runs there.
    #[test]
    fn equal_nodes_skew_at_most_one(k in 1usize..12, n in 1u32..200, others in 0u32..50) {
        let nodes: Vec<NodeSpec> = (0..k).map(|i| node(&format!("n{i}"), 4, 16)).collect();
        let mut ps = pods("web", n, Resources::default());
        ps.extend(pods("other", others, Resources::default()));
        let p = place(&nodes, &ps, &BTreeMap::new());
        let mut per: BTreeMap<&str, usize> = nodes.iter().map(|x| (x.name.as_str(), 0)).collect();
        for (id, owner) in p.owners.iter() {
            if id.starts_with("default/web-") {
                *per.get_mut(owner.as_str()).unwrap() += 1;
            }
        }
        let (lo, hi) = (per.values().min().unwrap(), per.values().max().unwrap());
        prop_assert!(hi - lo <= 1, "{:?}", per);
    }

    /// Applying, scaling or deleting another workload moves none of this
    /// one's pods while capacity does not bind.
    #[test]
    fn other_workloads_and_scaling_move_nothing(nodes in arb_nodes(), n in 1u32..60, m in 0u32..60, extra in 1u32..20) {
        let mine = pods("web", n, Resources::default());
        let alone = place(&nodes, &mine, &BTreeMap::new());
        let mut with = mine.clone();
        with.extend(pods("api", m, Resources::default()));
        let both = place(&nodes, &with, &BTreeMap::new());
        for p in &mine {
            prop_assert_eq!(alone.owners.get(&p.id()), both.owners.get(&p.id()));
        }
        // Scaling this one moves few of its pods: at most one per node whose
        // share changed, plus the new ones' neighbours.
        let bigger = place(&nodes, &pods("web", n + extra, Resources::default()), &BTreeMap::new());
        let moved = mine.iter().filter(|p| alone.owners.get(&p.id()) != bigger.owners.get(&p.id())).count();
        prop_assert!(moved <= extra as usize + nodes.len(), "scaling {} -> {} moved {}", n, n + extra, moved);
    }

    /// Removing a node moves its own pods plus a bounded cascade.
    #[test]
    fn removing_a_node_moves_little(n_nodes in 3usize..30, n_pods in 10u32..400, victim in any::<proptest::sample::Index>()) {
        let nodes = cluster(n_nodes);
        let ps = pods("w", n_pods, Resources::default());
        let before = place(&nodes, &ps, &BTreeMap::new());
        let gone = nodes[victim.index(nodes.len())].name.clone();
        let rest: Vec<NodeSpec> = nodes.iter().filter(|n| n.name != gone).cloned().collect();
        let after = place(&rest, &ps, &BTreeMap::new());
        let own = before.owners.values().filter(|o| **o == gone).count();
        let moved = before.owners.iter().filter(|(id, o)| after.owners.get(*id) != Some(*o)).count();
        // The victim's pods must move; others move only through the bounded
        // cascade (a displaced pod can push at most a few others over caps).
        prop_assert!(moved >= own);
        prop_assert!(moved <= 3 * own + n_nodes, "moved {} for {} owned", moved, own);
    }

    /// Adding a node moves about 1/N of the pods.
    #[test]
    fn adding_a_node_moves_about_one_nth(n_nodes in 3usize..30, n_pods in 50u32..400) {
        let nodes = cluster(n_nodes);
        let ps = pods("w", n_pods, Resources::default());
        let before = place(&nodes[..n_nodes - 1], &ps, &BTreeMap::new());
        let after = place(&nodes, &ps, &BTreeMap::new());
        let newcomer = &nodes[n_nodes - 1].name;
        let gained = after.owners.values().filter(|o| *o == newcomer).count();
        let moved = before.owners.iter().filter(|(id, o)| after.owners.get(*id) != Some(*o)).count();
        prop_assert!(moved >= gained);
        prop_assert!(moved <= 3 * gained + n_nodes, "moved {} for {} gained", moved, gained);
    }
}
