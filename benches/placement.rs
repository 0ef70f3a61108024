//! Placement compute time: `cargo bench --bench placement`.
//! 10,000 replicas × 100 nodes, 100,000 × 1,000 and 1,000,000 × 10,000
//! (mixed capacities, 20 replicas per workload, small resource requests),
//! and the recompute when one node of 1,000 leaves (`…-1`): a whole
//! placement again, and incremental (`…-1 incremental`: from the memo of
//! the last placement, what the planner does on a membership change).

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shoal::placement::{place, place_incremental};

#[path = "inputs/placement.rs"]
mod inputs;
use inputs::{nodes, pods};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("place");
    g.sample_size(10);
    for (replicas, n) in [(10_000, 100), (100_000, 1_000), (1_000_000, 10_000)] {
        let (ns, ps) = (nodes(n), pods(replicas));
        g.bench_function(format!("{replicas}x{n}"), |b| b.iter(|| place(&ns, &ps, &BTreeMap::new())));
    }
    let (mut ns, ps) = (nodes(1_000), pods(100_000));
    let before = place(&ns, &ps, &BTreeMap::new());
    ns.remove(500);
    let after = place(&ns, &ps, &BTreeMap::new());
    let moved = before.owners.iter().filter(|(id, o)| after.owners.get(*id) != Some(*o)).count();
    let own = before.owners.values().filter(|o| **o == "node-0500").count();
    println!("one node of 1,000 leaves: {moved} of 100,000 replicas move, {own} of them its own");
    g.bench_function("100000x1000-1", |b| b.iter(|| place(&ns, &ps, &BTreeMap::new())));
    // The same change, incremental: from the memo of the placement with
    // every node (cloned outside the timing).
    let (full, ns) = (Arc::new(nodes(1_000)), Arc::new(ns));
    let (_, memo) = place_incremental(&full, &ps, &BTreeMap::new(), None);
    let (inc, m) = place_incremental(&ns, &ps, &BTreeMap::new(), Some(memo.clone()));
    assert_eq!(inc, after, "incremental placement gives the full one");
    println!(
        "incremental, one node leaves: {} of {} workloads replayed whole, {} rankings of the others reused; memo {:.1} MB",
        m.replayed(),
        memo.kept(),
        m.reused(),
        memo.bytes() as f64 / 1e6
    );
    // And back: the node joins again.
    let (inc, back) = place_incremental(&full, &ps, &BTreeMap::new(), Some(m.clone()));
    assert_eq!(inc, before, "incremental placement gives the full one");
    println!(
        "incremental, the node joins again: {} of {} workloads replayed whole, {} rankings of the others reused",
        back.replayed(),
        m.kept(),
        back.reused()
    );
    // What the planner's first placement costs: a full one that also
    // keeps the memo.
    g.bench_function("100000x1000 keeping a memo", |b| {
        b.iter(|| place_incremental(&full, &ps, &BTreeMap::new(), None))
    });
    g.bench_function("100000x1000-1 incremental", |b| {
        b.iter_batched(
            || memo.clone(),
            |m| place_incremental(&ns, &ps, &BTreeMap::new(), Some(m)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("100000x1000+1 incremental", |b| {
        b.iter_batched(
            || m.clone(),
            |m| place_incremental(&full, &ps, &BTreeMap::new(), Some(m)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
