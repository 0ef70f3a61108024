//! Placement above `candidates::WINDOW` nodes, where each pod ranks only
//! its window of the ring: the same promises as exact rendezvous (order
//! independence, capacity, shares, bounded movement), and balance close to
//! proportional.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::candidates::WINDOW;
use super::tests::{cluster, node, pods, with_spread};
use super::*;

/// `n` nodes of 1, 2, 4 and 8 cores; every fifth has an SSD.
fn big(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| {
            let mut x = node(&format!("n{i:05}"), [1, 2, 4, 8][i % 4], 64);
            if i % 5 == 0 {
                Arc::make_mut(&mut x.labels).insert("disk".into(), "ssd".into());
            }
            x
        })
        .collect()
}

/// `k` workloads of `size` pods each, with small requests.
fn many(k: usize, size: u32) -> Vec<DesiredPod> {
    let req = Resources { cpu_millis: 10, memory_bytes: 1 << 20 };
    (0..k).flat_map(|w| pods(&format!("w{w}"), size, req)).collect()
}

fn moved(a: &Placement, b: &Placement) -> usize {
    a.owners.iter().filter(|(id, o)| b.owners.get(*id) != Some(*o)).count()
}

/// Each weight class's pods, and the worst node's distance from its share
/// in standard deviations (sqrt(share): the noise of independent hashing).
fn balance(nodes: &[NodeSpec], pods: usize, p: &Placement) -> (BTreeMap<u64, f64>, f64) {
    let total_w: u64 = nodes.iter().map(|n| n.weight).sum();
    let loads = p.loads();
    let mut by_class: BTreeMap<u64, f64> = BTreeMap::new();
    let mut worst = 0.0f64;
    for n in nodes {
        let fair = pods as f64 * n.weight as f64 / total_w as f64;
        let load = loads.get(n.name.as_str()).copied().unwrap_or(0) as f64;
        *by_class.entry(n.weight).or_default() += load;
        worst = worst.max((load - fair).abs() / fair.sqrt());
    }
    (by_class, worst)
}

/// Placement is a protocol: nodes of two versions must agree on every
/// owner, or replicas move back and forth while a cluster upgrades. So its
/// outcome for fixed inputs is pinned, below the window and above it,
/// with capacity binding (pending reasons included), a node selector and
/// pinned pods. The digests were recorded at 6003005, before owners were
/// kept by node index. A change that fails this test changes placement:
/// say so in the README (upgrade every node together) and record the new
/// digests.
#[test]
fn placement_outcome_is_pinned_across_versions() {
    let inputs = |nodes: usize, workloads: usize| {
        let mut ps = many(workloads, 20);
        ps.extend(pods("heavy", 60, Resources { cpu_millis: 3000, memory_bytes: 1 << 30 }));
        let mut ssd = pods("ssd", 30, Resources { cpu_millis: 100, memory_bytes: 1 << 20 });
        for p in &mut ssd {
            Arc::make_mut(&mut p.spec).node_selector.insert("disk".into(), "ssd".into());
        }
        ps.extend(ssd);
        let pinned: BTreeMap<String, String> =
            (0..5).map(|i| (format!("default/w1-{i}"), "n00003".to_string())).collect();
        digest(&place(&big(nodes), &ps, &pinned))
    };
    assert_eq!([inputs(20, 60), inputs(150, 100)], ["1a06559523194d1f", "defb8ab4973f688a"]);
}

/// A second pin, of what the first leaves out: workloads of more replicas
/// than nodes (each node's share), a topology spread constraint, a pod
/// bound to one node, and the pod count binding above the window. These
/// are 77881f0's placements (checked there by another digest of the same
/// owners), before the matching took pairs off a heap and scores compared
/// in floating point first.
#[test]
fn placement_outcome_of_shares_and_spread_is_pinned_across_versions() {
    let inputs = |nodes: &[NodeSpec]| {
        let mut ps = Vec::new();
        for w in 0..60u32 {
            let n = [1, 3, 20, 70][w as usize % 4];
            let req = Resources { cpu_millis: 10 + u64::from(w % 7) * 25, memory_bytes: 64 << 20 };
            ps.extend(pods(&format!("w{w}"), n, req));
        }
        ps.extend(with_spread(pods("spread", 30, Resources::default()), "zone", 1, "DoNotSchedule"));
        let mut bound = pods("ds", 1, Resources::default()).remove(0);
        bound.node = Some(nodes[3].name.to_string());
        ps.push(bound);
        let pinned = BTreeMap::from([("default/w1-0".to_string(), nodes[5].name.to_string())]);
        let p = place(nodes, &ps, &pinned);
        (p.owners.len(), p.pending.len(), digest(&p))
    };
    let zoned = |n: usize| -> Vec<NodeSpec> {
        let mut v = cluster(n);
        for (i, x) in v.iter_mut().enumerate() {
            Arc::make_mut(&mut x.labels).insert("zone".into(), format!("z{}", i % 3));
        }
        v
    };
    let mut full = zoned(40);
    full.iter_mut().for_each(|n| n.max_pods = 30);
    assert_eq!(
        [inputs(&zoned(20)), inputs(&zoned(300)), inputs(&full)],
        [
            (1026, 415, "f4e040b27900e09a".to_string()),
            (1441, 0, "218a88049900e411".to_string()),
            (1049, 392, "9a73be3a6b569ae3".to_string())
        ]
    );
}

/// A placement's digest: its owners and pending reasons.
fn digest(p: &Placement) -> String {
    let mut h = blake3::Hasher::new();
    for (id, owner) in p.owners.iter() {
        h.update(format!("{id}={owner}\n").as_bytes());
    }
    for (id, why) in p.pending.iter() {
        h.update(format!("{id}!{why}\n").as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The window balances about as well as exact rendezvous over every node:
/// each weight class within 7 % of its proportional share (measured: 6.1 %
/// at worst, exact 2.6 %; with 20 pods per workload a big node takes at
/// most one of each, in both), the worst node no further from its share
/// than exact's worst plus one standard deviation.
#[test]
fn a_large_cluster_balances_as_exact_rendezvous_does() {
    let nodes = big(400);
    let ps = many(2000, 20);
    let window = place(&nodes, &ps, &BTreeMap::new());
    let exact = place_in_windows(&nodes, &ps, &BTreeMap::new(), usize::MAX, None).0;
    assert!(window.pending.is_empty(), "{:?}", window.pending.iter().next());
    let ((wc, ww), (_, ew)) = (balance(&nodes, ps.len(), &window), balance(&nodes, ps.len(), &exact));
    let total_w: u64 = nodes.iter().map(|n| n.weight).sum();
    for (w, pods) in &wc {
        let class_w: u64 = nodes.iter().filter(|n| n.weight == *w).map(|n| n.weight).sum();
        let fair = ps.len() as f64 * class_w as f64 / total_w as f64;
        assert!((pods / fair - 1.0).abs() <= 0.07, "weight {w}: {pods} pods for a share of {fair:.0}");
    }
    assert!(ww <= ew + 1.0, "worst node {ww:.1} standard deviations from its share, exact {ew:.1}");
}

#[test]
fn a_selector_few_nodes_match_finds_them_all() {
    let mut nodes = big(300);
    for n in nodes.iter_mut().take(7) {
        Arc::make_mut(&mut n.labels).insert("gpu".into(), "yes".into());
    }
    let mut ps = pods("train", 20, Resources::default());
    for p in &mut ps {
        Arc::make_mut(&mut p.spec).node_selector.insert("gpu".into(), "yes".into());
    }
    let p = place(&nodes, &ps, &BTreeMap::new());
    assert!(p.pending.is_empty(), "{:?}", p.pending);
    let on: std::collections::BTreeSet<&crate::model::node::NodeName> = p.owners.values().collect();
    assert_eq!(on.len(), 7, "20 pods over the 7 gpu nodes: {on:?}");
    assert!(on.iter().all(|n| nodes.iter().any(|x| &&x.name == n && x.labels.contains_key("gpu"))));
}

#[test]
fn a_workload_larger_than_the_window_uses_every_node() {
    let nodes = big(WINDOW * 3);
    let p = place(&nodes, &pods("w", nodes.len() as u32, Resources::default()), &BTreeMap::new());
    assert_eq!(p.loads().len(), nodes.len(), "one replica on each node");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn same_inputs_any_order_same_placement_above_the_window(n in WINDOW + 1..200, k in 1usize..60, rot in 0usize..500) {
        let nodes = big(n);
        let ps = many(k, 20);
        let a = place(&nodes, &ps, &BTreeMap::new());
        let mut n2 = nodes.clone();
        n2.reverse();
        n2.rotate_left(rot % n);
        let mut p2 = ps.clone();
        p2.reverse();
        prop_assert_eq!(a, place(&n2, &p2, &BTreeMap::new()));
    }

    #[test]
    fn capacity_and_selectors_hold_above_the_window(n in WINDOW + 1..150, k in 1usize..40, cpu in 100u64..2000, ssd in any::<bool>()) {
        let nodes = big(n);
        let mut ps: Vec<DesiredPod> =
            (0..k).flat_map(|w| pods(&format!("w{w}"), 20, Resources { cpu_millis: cpu, memory_bytes: 1 << 30 })).collect();
        if ssd {
            for p in &mut ps {
                Arc::make_mut(&mut p.spec).node_selector.insert("disk".into(), "ssd".into());
            }
        }
        let p = place(&nodes, &ps, &BTreeMap::new());
        prop_assert_eq!(p.owners.len() + p.pending.len(), ps.len());
        let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
        for pod in &ps {
            if let Some(owner) = p.owners.get(&pod.id()) {
                let x = nodes.iter().find(|x| &x.name == owner).unwrap();
                prop_assert!(!ssd || x.labels.contains_key("disk"));
                let u = used.entry(owner.as_str()).or_default();
                *u = u.saturating_add(pod.requests);
                prop_assert!(u.fits_within(x.allocatable), "{} over capacity", owner);
            }
        }
        // A pod is pending only if no node that could take it has room.
        if let Some((id, why)) = p.pending.iter().next() {
            let pod = ps.iter().find(|x| &x.id() == id).unwrap();
            let room = nodes.iter().any(|x| {
                (!ssd || x.labels.contains_key("disk"))
                    && used.get(x.name.as_str()).copied().unwrap_or_default().saturating_add(pod.requests).fits_within(x.allocatable)
            });
            prop_assert!(!room, "{} pending ({}) while a node has room", id, why);
        }
    }

    /// Removing a node moves its own pods and about an average node's share
    /// of others (a window that loses a node lets the next one in), plus
    /// the cascade; adding one, the same.
    // From WINDOW + 2 nodes: both placements above the window. Going from
    // WINDOW + 1 to WINDOW nodes switches to exact rendezvous, a step that
    // moves more (80 replicas for 21 owned at 33 -> 32 nodes, 760 replicas):
    // see the README.
    #[test]
    fn removing_a_node_moves_little_above_the_window(n in WINDOW + 2..250, k in 10usize..100, victim in any::<proptest::sample::Index>()) {
        let nodes = big(n);
        let ps = many(k, 20);
        let before = place(&nodes, &ps, &BTreeMap::new());
        let gone = nodes[victim.index(n)].name.clone();
        let rest: Vec<NodeSpec> = nodes.iter().filter(|x| x.name != gone).cloned().collect();
        let after = place(&rest, &ps, &BTreeMap::new());
        let own = before.owners.values().filter(|o| **o == gone).count();
        let m = moved(&before, &after);
        let avg = ps.len() / n;
        prop_assert!(m >= own);
        // 4×, not 3×: at n = 76, k = 95 (1,900 replicas) removing one node
        // moved 90 for 26 owned (its own, the windows it left, and the
        // matching's cascade), 3.5×; the placement report's averages are
        // 1.4-1.6× (README).
        prop_assert!(m <= 4 * own.max(avg) + 10, "moved {} for {} owned ({} on average)", m, own, avg);
    }

    #[test]
    fn adding_a_node_moves_about_one_nth_above_the_window(n in WINDOW + 1..250, k in 10usize..100) {
        let nodes = big(n);
        let ps = many(k, 20);
        let before = place(&nodes[..n - 1], &ps, &BTreeMap::new());
        let after = place(&nodes, &ps, &BTreeMap::new());
        let gained = after.owners.values().filter(|o| **o == nodes[n - 1].name).count();
        let m = moved(&before, &after);
        let avg = ps.len() / n;
        prop_assert!(m >= gained);
        prop_assert!(m <= 3 * gained.max(avg) + 10, "moved {} for {} gained ({} on average)", m, gained, avg);
    }
}
