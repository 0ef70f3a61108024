//! One placement of the bench's shape (`REPLICAS` × `NODES`, default
//! 100,000 × 1,000), for instruction counts that do not vary from run to
//! run: `valgrind --tool=callgrind --toggle-collect='shoal::placement::place'
//! target/release/examples/place_once 100000 1000`.

use std::collections::BTreeMap;

use shoal::placement::place;

#[path = "../benches/inputs/placement.rs"]
mod inputs;

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (replicas, n) = (arg(1, 100_000), arg(2, 1_000));
    let (nodes, pods) = (inputs::nodes(n), inputs::pods(replicas));
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
