//! One placement of the bench's shape (`REPLICAS` × `NODES`, default
//! 100,000 × 1,000), for instruction counts that do not vary from run to
//! run: `valgrind --tool=callgrind --toggle-collect='shoal::placement::place'
//! target/release/examples/place_once 100000 1000`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shoal::model::Kind;
use shoal::model::pods::{DesiredPod, OwnerRef, Resources, RestartPolicy, RuntimeKind};
use shoal::model::types::PodSpec;
use shoal::placement::{NodeSpec, place};

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (replicas, n) = (arg(1, 100_000), arg(2, 1_000));
    let nodes: Vec<NodeSpec> = (0..n)
        .map(|i| {
            let cores = [1u64, 2, 4, 8, 16][i % 5];
            NodeSpec {
                name: format!("node-{i:04}").into(),
                allocatable: Resources { cpu_millis: cores * 1000, memory_bytes: cores * (4 << 30) },
                weight: cores * 1000,
                labels: Default::default(),
                runtimes: Arc::new([RuntimeKind::Process].into()),
                max_pods: 1000,
                unschedulable: false,
            }
        })
        .collect();
    let spec = Arc::new(PodSpec::default());
    let pods: Vec<DesiredPod> = (0..replicas)
        .map(|i| {
            let w = i / 20;
            DesiredPod {
                namespace: "default".into(),
                name: format!("w{w}-{}", i % 20),
                owner: OwnerRef { kind: Kind::Deployment, name: format!("w{w}"), uid: "u".into() },
                index: (i % 20) as u32,
                labels: Default::default(),
                spec: spec.clone(),
                template_hash: "h".into(),
                requests: Resources { cpu_millis: 10, memory_bytes: 16 << 20 },
                runtime: RuntimeKind::Process,
                restart_policy: RestartPolicy::Always,
                grace: Duration::from_secs(1),
                fenced: false,
                node: None,
            }
        })
        .collect();
    // `TIMES=k`: place k times and print the fastest and the median.
    let times: usize = std::env::var("TIMES").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let mut took = Vec::new();
    let mut p = Default::default();
    for _ in 0..times {
        let t = std::time::Instant::now();
        p = place(&nodes, &pods, &BTreeMap::new());
        took.push(t.elapsed().as_secs_f64() * 1e3);
    }
    took.sort_by(f64::total_cmp);
    let p: shoal::placement::Placement = p;
    println!(
        "{} placed, {} pending; {times} runs: fastest {:.1} ms, median {:.1} ms",
        p.owners.len(),
        p.pending.len(),
        took[0],
        took[took.len() / 2]
    );
}
