//! Incremental placement gives the full placement's answer, whatever
//! changed: nodes joining, leaving, cordoned, relabelled or resized,
//! workloads scaled, added, removed or given new requests, pods pinned,
//! with capacity binding. And it does replay: one node of many leaving
//! leaves most workloads as they were.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::candidates::WINDOW;
use super::tests::{node, pods};
use super::*;

/// A workload: name, replicas, cpu per replica (millicores), SSD only.
#[derive(Debug, Clone)]
struct W {
    name: String,
    size: u32,
    cpu: u64,
    ssd: bool,
}

fn desired(ws: &[W]) -> Vec<DesiredPod> {
    let mut out = Vec::new();
    for w in ws {
        let mut ps = pods(&w.name, w.size, Resources { cpu_millis: w.cpu, memory_bytes: 1 << 20 });
        if w.ssd {
            for p in &mut ps {
                Arc::make_mut(&mut p.spec).node_selector.insert("disk".into(), "ssd".into());
            }
        }
        out.extend(ps);
    }
    out
}

fn small(i: usize) -> NodeSpec {
    let mut n = node(&format!("n{i:04}"), [1, 2, 4][i % 3], 4);
    if i.is_multiple_of(3) {
        Arc::make_mut(&mut n.labels).insert("disk".into(), "ssd".into());
    }
    n
}

#[derive(Debug, Clone)]
enum Change {
    RemoveNode(prop::sample::Index),
    AddNode,
    Cordon(prop::sample::Index),
    Relabel(prop::sample::Index),
    Resize(prop::sample::Index, u64),
    Scale(prop::sample::Index, u32),
    Requests(prop::sample::Index, u64),
    AddWorkload(u32, u64, bool),
    RemoveWorkload(prop::sample::Index),
    Pin(prop::sample::Index, prop::sample::Index),
    Unpin,
    Nothing,
}

fn change() -> impl Strategy<Value = Change> {
    use prop::sample::Index;
    prop_oneof![
        any::<Index>().prop_map(Change::RemoveNode),
        Just(Change::AddNode),
        any::<Index>().prop_map(Change::Cordon),
        any::<Index>().prop_map(Change::Relabel),
        (any::<Index>(), 1u64..9).prop_map(|(i, c)| Change::Resize(i, c)),
        (any::<Index>(), 1u32..40).prop_map(|(i, s)| Change::Scale(i, s)),
        (any::<Index>(), 50u64..1500).prop_map(|(i, c)| Change::Requests(i, c)),
        (1u32..30, 50u64..900, any::<bool>()).prop_map(|(s, c, d)| Change::AddWorkload(s, c, d)),
        any::<Index>().prop_map(Change::RemoveWorkload),
        (any::<Index>(), any::<Index>()).prop_map(|(p, n)| Change::Pin(p, n)),
        Just(Change::Unpin),
        Just(Change::Nothing),
    ]
}

fn apply(
    c: &Change,
    nodes: &mut Vec<NodeSpec>,
    next: &mut usize,
    ws: &mut Vec<W>,
    pinned: &mut BTreeMap<String, String>,
) {
    match c {
        Change::RemoveNode(i) if nodes.len() > 1 => {
            nodes.remove(i.index(nodes.len()));
        }
        Change::AddNode => {
            nodes.push(small(*next));
            *next += 1;
        }
        Change::Cordon(i) => {
            let at = i.index(nodes.len());
            let n = &mut nodes[at];
            n.unschedulable = !n.unschedulable;
        }
        Change::Relabel(i) => {
            let at = i.index(nodes.len());
            let n = &mut nodes[at];
            let labels = Arc::make_mut(&mut n.labels);
            if labels.remove("disk").is_none() {
                labels.insert("disk".into(), "ssd".into());
            }
        }
        Change::Resize(i, cores) => {
            let at = i.index(nodes.len());
            let n = &mut nodes[at];
            n.allocatable.cpu_millis = cores * 1000;
        }
        Change::Scale(i, s) if !ws.is_empty() => {
            let k = i.index(ws.len());
            ws[k].size = *s;
        }
        Change::Requests(i, cpu) if !ws.is_empty() => {
            let k = i.index(ws.len());
            ws[k].cpu = *cpu;
        }
        Change::AddWorkload(size, cpu, ssd) => {
            ws.push(W { name: format!("w{}", ws.len() + 1000), size: *size, cpu: *cpu, ssd: *ssd });
        }
        Change::RemoveWorkload(i) if !ws.is_empty() => {
            ws.remove(i.index(ws.len()));
        }
        Change::Pin(p, n) => {
            let ps = desired(ws);
            if !ps.is_empty() {
                let pod = &ps[p.index(ps.len())];
                pinned.insert(pod.id(), nodes[n.index(nodes.len())].name.to_string());
            }
        }
        Change::Unpin => {
            pinned.pop_first();
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After every change, incremental placement (from the last step's
    /// memo) equals a full one.
    #[test]
    fn incremental_placement_equals_full_placement(
        n in WINDOW + 1..90,
        sizes in prop::collection::vec((1u32..25, 50u64..900, any::<bool>()), 5..40),
        changes in prop::collection::vec(change(), 1..8),
    ) {
        let mut nodes: Vec<NodeSpec> = (0..n).map(small).collect();
        let mut next = n;
        let mut ws: Vec<W> = sizes
            .iter()
            .enumerate()
            .map(|(i, (size, cpu, ssd))| W { name: format!("w{i}"), size: *size, cpu: *cpu, ssd: *ssd })
            .collect();
        let mut pinned = BTreeMap::new();
        let (first, mut memo) = place_incremental(&Arc::new(nodes.clone()), &desired(&ws), &pinned, None);
        prop_assert_eq!(&first, &place(&nodes, &desired(&ws), &pinned));
        for c in &changes {
            apply(c, &mut nodes, &mut next, &mut ws, &mut pinned);
            let ps = desired(&ws);
            let full = place(&nodes, &ps, &pinned);
            let (inc, m) = place_incremental(&Arc::new(nodes.clone()), &ps, &pinned, Some(memo));
            prop_assert_eq!(&inc, &full, "after {:?} ({} workloads replayed)", c, m.replayed());
            memo = m;
        }
    }
}

/// One node of 300 leaving: most pods keep their ranking, and the outcome
/// is the full placement's. A node added back, the same; a node whose capacity
/// shrinks under its pods, the workloads there are placed again.
#[test]
fn one_node_leaving_reuses_most_rankings() {
    let nodes: Vec<NodeSpec> = (0..300).map(|i| node(&format!("n{i:04}"), [1, 2, 4, 8][i % 4], 64)).collect();
    let ps: Vec<DesiredPod> = (0..400)
        .flat_map(|w| pods(&format!("w{w}"), 20, Resources { cpu_millis: 10, memory_bytes: 1 << 20 }))
        .collect();
    let none = BTreeMap::new();
    let (_, memo) = place_incremental(&Arc::new(nodes.clone()), &ps, &none, None);
    assert_eq!(memo.kept(), 400, "every workload can be replayed");

    // A pod's arc holds about 34 of the ring's 4,800 points, so a node's
    // 16 points lie on about 11 % of the arcs: a workload of 20 pods
    // escapes all of them about 10 % of the time and is replayed whole;
    // the others are placed again, reusing the rankings of the pods whose
    // arc it missed.
    let untouched = |m: &Memo| m.replayed() * 20 + m.reused();
    let fewer: Vec<NodeSpec> = nodes.iter().filter(|n| n.name != "n0150").cloned().collect();
    let (inc, memo) = place_incremental(&Arc::new(fewer.clone()), &ps, &none, Some(memo));
    assert_eq!(inc, place(&fewer, &ps, &none));
    assert!(inc.owners.values().all(|o| o != "n0150"));
    assert!(memo.replayed() > 0 && memo.replayed() < 400, "{} of 400 workloads replayed", memo.replayed());
    assert!(untouched(&memo) >= 6_800, "{} of 8,000 pods not ranked again", untouched(&memo));

    let (inc, memo) = place_incremental(&Arc::new(nodes.clone()), &ps, &none, Some(memo));
    assert_eq!(inc, place(&nodes, &ps, &none));
    assert!(untouched(&memo) >= 6_800, "{} of 8,000 pods not ranked again", untouched(&memo));

    // Capacity: the node that holds the most pods can now hold one.
    let loads = inc.loads();
    let busy = loads.iter().max_by_key(|(_, l)| **l).map(|(n, _)| n.to_string()).expect("a node");
    let mut shrunk = nodes.clone();
    let at = shrunk.iter().position(|n| n.name == *busy).expect("the node");
    shrunk[at].max_pods = 1;
    let (inc, _) = place_incremental(&Arc::new(shrunk.clone()), &ps, &none, Some(memo));
    assert_eq!(inc, place(&shrunk, &ps, &none));
    assert_eq!(inc.loads().get(busy.as_str()).copied(), Some(1));
}

/// Below the window every pod reads every node: nothing is replayed, and
/// the answer is still the full one.
#[test]
fn below_the_window_nothing_is_replayed() {
    let nodes: Vec<NodeSpec> = (0..WINDOW).map(small).collect();
    let ps = desired(&[W { name: "a".into(), size: 5, cpu: 100, ssd: false }]);
    let none = BTreeMap::new();
    let (_, memo) = place_incremental(&Arc::new(nodes.clone()), &ps, &none, None);
    let (p, memo) = place_incremental(&Arc::new(nodes.clone()), &ps, &none, Some(memo));
    assert_eq!(p, place(&nodes, &ps, &none));
    assert_eq!(memo.replayed(), 0);
}
