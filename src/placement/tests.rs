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
        labels: BTreeMap::new(),
        runtimes: [RuntimeKind::Process].into(),
        max_pods: 10_000,
    }
}

pub(crate) fn pods(owner: &str, n: u32, req: Resources) -> Vec<DesiredPod> {
    (0..n)
        .map(|i| DesiredPod {
            namespace: "default".into(),
            name: format!("{owner}-{i}"),
            owner: OwnerRef { kind: Kind::Deployment, name: owner.into(), uid: "u".into() },
            index: i,
            labels: BTreeMap::new(),
            spec: Arc::new(PodSpec::default()),
            template_hash: "h".into(),
            requests: req,
            runtime: RuntimeKind::Process,
            restart_policy: RestartPolicy::Always,
            grace: Duration::from_secs(1),
            fenced: false,
        })
        .collect()
}

fn cluster(n: usize) -> Vec<NodeSpec> {
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

#[test]
fn twenty_replicas_on_five_mixed_nodes() {
    let nodes =
        vec![node("big", 16, 64), node("mid-a", 4, 16), node("mid-b", 4, 16), node("nas", 2, 8), node("pi", 1, 4)];
    let p = place(&nodes, &pods("web", 20, Resources::default()), DEFAULT_EPSILON);
    assert!(p.pending.is_empty());
    let loads = p.loads();
    assert!(loads["big"] > loads["mid-a"] && loads["big"] > loads["pi"], "{loads:?}");
    assert!(loads["pi"] <= loads["nas"], "{loads:?}");
    assert_eq!(loads.len(), 5, "every node gets at least one replica: {loads:?}");
    let total_w: u64 = nodes.iter().map(|n| n.weight).sum();
    for n in &nodes {
        let cap = ((1.0 + DEFAULT_EPSILON) * 20.0 * n.weight as f64 / total_w as f64).ceil() as usize;
        assert!(loads[n.name.as_str()] <= cap.max(1), "{} over its bound: {loads:?}", n.name);
    }
}

#[test]
fn replicas_spread_over_distinct_nodes_first() {
    let nodes = cluster(5);
    let p = place(&nodes, &pods("web", 5, Resources::default()), DEFAULT_EPSILON);
    let distinct: BTreeSet<&String> = p.owners.values().collect();
    assert_eq!(distinct.len(), 5);
}

#[test]
fn pending_reasons_name_the_constraint() {
    let nodes = cluster(5);
    let big = Resources { cpu_millis: 100, memory_bytes: 100 << 30 };
    let p = place(&nodes, &pods("db", 1, big), DEFAULT_EPSILON);
    assert_eq!(p.pending["default/db-0"], "insufficient memory on all 5 nodes");
    let mut sel = pods("x", 1, Resources::default());
    Arc::make_mut(&mut sel[0].spec).node_selector.insert("disk".into(), "ssd".into());
    let p = place(&nodes, &sel, DEFAULT_EPSILON);
    assert_eq!(p.pending["default/x-0"], "no node matches nodeSelector disk=ssd");
    let mut dock = pods("img", 1, Resources::default());
    dock[0].runtime = RuntimeKind::Docker;
    let p = place(&nodes, &dock, DEFAULT_EPSILON);
    assert_eq!(p.pending["default/img-0"], "no node offers the docker runtime (5 nodes checked)");
    let p = place(&[], &pods("a", 1, Resources::default()), DEFAULT_EPSILON);
    assert_eq!(p.pending["default/a-0"], "no live node");
}

#[test]
fn node_selector_is_honoured() {
    let mut nodes = cluster(4);
    nodes[2].labels.insert("disk".into(), "ssd".into());
    let mut ps = pods("x", 3, Resources::default());
    for p in &mut ps {
        Arc::make_mut(&mut p.spec).node_selector.insert("disk".into(), "ssd".into());
    }
    let p = place(&nodes, &ps, DEFAULT_EPSILON);
    assert!(p.owners.values().all(|n| n == &nodes[2].name));
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeSpec>> {
    proptest::collection::vec((1u64..16, 1u64..32, any::<bool>()), 1..12).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, mem, ssd))| {
                let mut n = node(&format!("node-{i}"), cpu, mem);
                if ssd {
                    n.labels.insert("disk".into(), "ssd".into());
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

    #[test]
    fn same_inputs_any_order_same_placement(nodes in arb_nodes(), ps in arb_pods(), rot in 0usize..50) {
        let a = place(&nodes, &ps, DEFAULT_EPSILON);
        let mut n2 = nodes.clone();
        n2.reverse();
        let k = rot % n2.len();
        n2.rotate_left(k);
        let mut p2 = ps.clone();
        p2.reverse();
        prop_assert_eq!(a, place(&n2, &p2, DEFAULT_EPSILON));
    }

    #[test]
    fn capacity_and_constraints_never_violated(nodes in arb_nodes(), ps in arb_pods()) {
        let p = place(&nodes, &ps, DEFAULT_EPSILON);
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

    /// With no resource requests and no selectors, no node exceeds
    /// ceil((1 + ε) · fair share).
    #[test]
    fn balance_within_bound(nodes in arb_nodes(), n in 1u32..300) {
        let ps = pods("w", n, Resources::default());
        let p = place(&nodes, &ps, DEFAULT_EPSILON);
        prop_assert!(p.pending.is_empty());
        let total_w: u64 = nodes.iter().map(|x| x.weight).sum();
        for (name, load) in p.loads() {
            let w = nodes.iter().find(|x| x.name == name).unwrap().weight;
            let fair = n as f64 * w as f64 / total_w as f64;
            let bound = ((1.0 + DEFAULT_EPSILON) * fair).ceil().max(1.0) as usize;
            prop_assert!(load <= bound, "{} has {} > {}", name, load, bound);
        }
    }

    /// Removing a node moves its own pods plus a bounded cascade.
    #[test]
    fn removing_a_node_moves_little(n_nodes in 3usize..30, n_pods in 10u32..400, victim in any::<proptest::sample::Index>()) {
        let nodes = cluster(n_nodes);
        let ps = pods("w", n_pods, Resources::default());
        let before = place(&nodes, &ps, DEFAULT_EPSILON);
        let gone = nodes[victim.index(nodes.len())].name.clone();
        let rest: Vec<NodeSpec> = nodes.iter().filter(|n| n.name != gone).cloned().collect();
        let after = place(&rest, &ps, DEFAULT_EPSILON);
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
        let before = place(&nodes[..n_nodes - 1], &ps, DEFAULT_EPSILON);
        let after = place(&nodes, &ps, DEFAULT_EPSILON);
        let newcomer = &nodes[n_nodes - 1].name;
        let gained = after.owners.values().filter(|o| *o == newcomer).count();
        let moved = before.owners.iter().filter(|(id, o)| after.owners.get(*id) != Some(*o)).count();
        prop_assert!(moved >= gained);
        prop_assert!(moved <= 3 * gained + n_nodes, "moved {} for {} gained", moved, gained);
    }
}
