//! Placement figures: replicas moved when one of N nodes leaves or joins (as a
//! multiple of the minimum, which is the replicas that node held or receives),
//! replicas of other workloads moved when one more workload is applied, and
//! the max/fair load ratio on mixed-capacity clusters.
//!
//! `cargo run --release --example placement_report`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shoal::model::Kind;
use shoal::model::pods::{DesiredPod, OwnerRef, Resources, RestartPolicy, RuntimeKind};
use shoal::model::types::PodSpec;
use shoal::placement::{NodeSpec, Placement, place};

fn node(i: usize) -> NodeSpec {
    // A homelab mix: Pi, NAS, mini PCs, a big box.
    let cores = [1u64, 2, 4, 4, 16][i % 5];
    NodeSpec {
        name: format!("node-{i:04}").into(),
        allocatable: Resources { cpu_millis: cores * 1000, memory_bytes: cores * (4 << 30) },
        weight: cores * 1000,
        labels: Default::default(),
        runtimes: std::sync::Arc::new([RuntimeKind::Process].into()),
        max_pods: 10_000,
        unschedulable: false,
    }
}

fn pods(n: usize) -> Vec<DesiredPod> {
    let spec = Arc::new(PodSpec::default());
    (0..n)
        .map(|i| DesiredPod {
            namespace: "default".into(),
            name: format!("w{}-{}", i / 10, i % 10),
            owner: OwnerRef { kind: Kind::Deployment, name: format!("w{}", i / 10), uid: "u".into() },
            index: (i % 10) as u32,
            labels: Default::default(),
            spec: spec.clone(),
            template_hash: "h".into(),
            requests: Resources::default(),
            runtime: RuntimeKind::Process,
            restart_policy: RestartPolicy::Always,
            grace: Duration::from_secs(1),
            fenced: false,
            node: None,
        })
        .collect()
}

fn moved(a: &Placement, b: &Placement) -> usize {
    a.owners.iter().filter(|(id, n)| b.owners.get(*id) != Some(*n)).count()
}

fn max_over_fair(nodes: &[NodeSpec], p: &Placement, total: usize) -> f64 {
    let w: u64 = nodes.iter().map(|n| n.weight).sum();
    let loads = p.loads();
    nodes
        .iter()
        .map(|n| *loads.get(n.name.as_str()).unwrap_or(&0) as f64 / (total as f64 * n.weight as f64 / w as f64))
        .fold(0.0, f64::max)
}

fn main() {
    println!(
        "| nodes | replicas | leave: moved / minimum | join: moved / minimum | unrelated apply: moved | max/fair load (mixed 1,2,4,4,16 cores) |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [5usize, 50, 500, 2000] {
        let total = 20 * n;
        let ps = pods(total);
        let all: Vec<NodeSpec> = (0..n).map(node).collect();
        let full = place(&all, &ps, &BTreeMap::new());
        // Leave: average over several victims of different sizes.
        let (mut m_sum, mut min_sum) = (0usize, 0usize);
        for v in [1usize, 2, 3, 4, n - 1].iter().map(|v| v % n) {
            let rest: Vec<NodeSpec> = all.iter().filter(|x| x.name != all[v].name).cloned().collect();
            let after = place(&rest, &ps, &BTreeMap::new());
            m_sum += moved(&full, &after);
            min_sum += full.owners.values().filter(|o| **o == all[v].name).count();
        }
        // Join: the last node joins a cluster of n - 1.
        let before = place(&all[..n - 1], &ps, &BTreeMap::new());
        let j_moved = moved(&before, &full);
        let j_min = full.owners.values().filter(|o| **o == all[n - 1].name).count();
        // One more workload of 10 replicas: does any other replica move?
        let mut more = ps.clone();
        more.extend(pods(total + 10).into_iter().skip(total));
        let with = place(&all, &more, &BTreeMap::new());
        let unrelated = full.owners.iter().filter(|(id, o)| with.owners.get(*id) != Some(*o)).count();
        println!(
            "| {n} | {total} | {m_sum} / {min_sum} = {:.2}x | {j_moved} / {j_min} = {:.2}x | {unrelated} | {:.3} |",
            m_sum as f64 / min_sum.max(1) as f64,
            j_moved as f64 / j_min.max(1) as f64,
            max_over_fair(&all, &full, total)
        );
    }
}
