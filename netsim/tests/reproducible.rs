//! Reproducibility. The seed fixes everything Shoal controls: which nodes
//! fail and when, which node takes each write, message delays, losses and
//! delivery order, and Shoal's own randomness. chitchat 0.11.2 picks gossip
//! peers with an OS-seeded RNG and a HashSet's iteration order, which no seed
//! reaches, so two runs of one seed are not byte-identical: the timeline must
//! be identical and every figure must stay within the tolerance below.

use std::path::Path;

use netsim::node::Mode;
use netsim::report::{Figures, figures};
use netsim::run::{RunConfig, run_all};
use netsim::scenario::Scenario;

/// Stated tolerance of the spread over runs of one seed (max - min).
const DETECTION_SPREAD_S: f64 = 1.0;
const RESCHEDULE_SPREAD_S: f64 = 1.5;
/// Replica-seconds: relative to the median run.
const REPLICA_SECONDS_SPREAD: f64 = 0.5;

fn runs(seed: u64, k: usize) -> (Vec<Vec<(f64, String)>>, Vec<Figures>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/netsim/kill-one.toml");
    let sc = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let configs = (0..k).map(|_| RunConfig { scenario: sc.clone(), nodes: 20, seed, mode: Mode::Leaderless }).collect();
    let results = run_all(configs, 1);
    (results.iter().map(|r| r.log.clone()).collect(), results.iter().map(figures).collect())
}

fn range(xs: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[test]
fn same_seed_same_timeline_and_figures_within_tolerance() {
    let (logs, figs) = runs(11, 3);
    assert!(logs.iter().all(|l| l == &logs[0]), "the seeded timeline differs between runs: {logs:?}");
    assert!(logs[0].iter().any(|(_, w)| w.starts_with("crash ")), "the scenario crashed nothing: {:?}", logs[0]);
    for f in &figs {
        assert_eq!(f.violations, 0);
        assert_eq!(f.detection.n, 1, "the crash must be detected in every run");
        assert_eq!(f.reschedule.n, 1, "the replicas must come back in every run");
    }
    let (lo, _, hi) = range(figs.iter().map(|f| f.detection.max));
    assert!(hi - lo <= DETECTION_SPREAD_S, "detection spread {lo}..{hi} s exceeds {DETECTION_SPREAD_S} s");
    let (lo, _, hi) = range(figs.iter().map(|f| f.reschedule.max));
    assert!(hi - lo <= RESCHEDULE_SPREAD_S, "reschedule spread {lo}..{hi} s exceeds {RESCHEDULE_SPREAD_S} s");
    let (lo, mid, hi) = range(figs.iter().map(|f| f.missing_secs));
    assert!(
        mid > 0.0 && (hi - lo) / mid <= REPLICA_SECONDS_SPREAD,
        "missing replica-seconds spread {lo}..{hi} (median {mid})"
    );
}

#[test]
fn different_seeds_make_different_timelines() {
    let (a, _) = runs(1, 1);
    let (b, _) = runs(2, 1);
    assert_ne!(a[0], b[0], "the seed must choose the faults and the writing node");
}
