//! The inputs of the placement bench (`benches/placement.rs`) and of
//! `examples/place_once.rs`: `n` nodes of mixed capacities, and replicas
//! in workloads of 20 with small requests.

use std::sync::Arc;
use std::time::Duration;

use shoal::model::Kind;
use shoal::model::pods::{DesiredPod, OwnerRef, Resources, RestartPolicy, RuntimeKind};
use shoal::model::types::PodSpec;
use shoal::placement::NodeSpec;

pub(crate) fn nodes(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| {
            let cores = [1u64, 2, 4, 8, 16][i % 5];
            NodeSpec {
                name: format!("node-{i:04}").into(),
                allocatable: Resources { cpu_millis: cores * 1000, memory_bytes: cores * (4 << 30) },
                weight: cores * 1000,
                labels: Default::default(),
                runtimes: std::sync::Arc::new([RuntimeKind::Process].into()),
                max_pods: 1000,
                unschedulable: false,
            }
        })
        .collect()
}

pub(crate) fn pods(n: usize) -> Vec<DesiredPod> {
    let spec = Arc::new(PodSpec::default());
    (0..n)
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
        .collect()
}
