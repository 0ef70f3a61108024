//! The small sweep `cargo test` runs: every shipped scenario, on a cluster
//! of `NETSIM_NODES` nodes (default 30, or fewer if the scenario is smaller),
//! over `NETSIM_SEEDS` seeds (default 2), in both modes. Every invariant must
//! hold, and each scenario must show the behaviour it exists to show.
//!
//! Bigger sweeps are the same test with other numbers, for example:
//! `NETSIM_SEEDS=20 cargo test -p netsim --release --test sweep`.

use std::path::{Path, PathBuf};

use netsim::node::Mode;
use netsim::report::{Figures, figures};
use netsim::run::{RunConfig, RunResult, run_all};
use netsim::scenario::Scenario;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/netsim").join(format!("{name}.toml"))
}

/// Runs one scenario over the sweep's seeds in both modes; fails with the
/// replay command of every run that broke an invariant.
fn sweep(name: &str) -> Vec<(RunConfig, Figures)> {
    let path = scenario_path(name);
    let sc = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let nodes = env_or("NETSIM_NODES", 30).min(sc.nodes);
    sc.check_size(nodes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let seeds = env_or("NETSIM_SEEDS", 2) as u64;
    let configs: Vec<RunConfig> = (1..=seeds)
        .flat_map(|seed| {
            [Mode::Leaderless, Mode::Leader].map(|mode| RunConfig { scenario: sc.clone(), nodes, seed, mode })
        })
        .collect();
    let results: Vec<RunResult> = run_all(configs, env_or("NETSIM_JOBS", 1));
    let mut failures = Vec::new();
    for r in &results {
        if !r.observer.violations.is_empty() {
            failures.push(format!(
                "{name}, seed {}, {} mode:\n  {}\n  replay: {}",
                r.config.seed,
                r.config.mode.as_str(),
                r.observer.violations.join("\n  "),
                netsim::replay_command(
                    Path::new(&format!("configs/netsim/{name}.toml")),
                    nodes,
                    r.config.seed,
                    r.config.mode.as_str()
                )
            ));
        }
    }
    assert!(failures.is_empty(), "invariant violations:\n{}", failures.join("\n"));
    results.iter().map(|r| (r.config.clone(), figures(r))).collect()
}

/// Crashes are detected by every live node and every replica comes back.
fn assert_recovers(name: &str, runs: &[(RunConfig, Figures)]) {
    for (c, f) in runs {
        let what = format!("{name}, seed {}, {} mode", c.seed, c.mode.as_str());
        assert!(f.detection.n > 0, "{what}: no crash was detected");
        assert_eq!(f.undetected, 0, "{what}: a crash was never detected by every node");
        assert_eq!(f.unrecovered, 0, "{what}: replicas did not all come back after a crash");
        assert_eq!(f.false_deaths, 0, "{what}: a live node was declared dead");
    }
}

#[test]
fn kill_one() {
    let runs = sweep("kill-one");
    assert_recovers("kill-one", &runs);
}

#[test]
fn kill_a_third() {
    let runs = sweep("kill-a-third");
    assert_recovers("kill-a-third", &runs);
}

#[test]
fn lossy_network() {
    let runs = sweep("lossy-network");
    assert_recovers("lossy-network", &runs);
}

#[test]
fn rolling_restart() {
    let runs = sweep("rolling-restart");
    assert_recovers("rolling-restart", &runs);
}

#[test]
fn agent_crash() {
    let runs = sweep("agent-crash");
    assert_recovers("agent-crash", &runs);
    for (c, f) in &runs {
        let what = format!("agent-crash, seed {}, {} mode", c.seed, c.mode.as_str());
        assert!(f.orphan_secs > 0.0, "{what}: the dead agent's pods ran on without it");
        assert!(f.duplicate_secs > 0.0, "{what}: the orphans ran beside their replacements");
        assert_eq!(f.unclean_returns, 0, "{what}: the agent came back and did not clean up its orphans");
        assert_eq!(f.orphan_cleanup.n, 1, "{what}: one return with orphans");
    }
}

#[test]
fn long_pause() {
    // The invariants (a fenced replica never on two hosts, convergence
    // after the thaw) are checked by `sweep`.
    let runs = sweep("long-pause");
    assert_eq!(runs.len(), 2 * env_or("NETSIM_SEEDS", 2));
}

/// Every update finishes, every replica ends on the new template.
fn assert_rolled(name: &str, runs: &[(RunConfig, Figures)], min_ready_floor: usize) {
    for (c, f) in runs {
        let what = format!("{name}, seed {}, {} mode", c.seed, c.mode.as_str());
        assert_eq!(f.unfinished_updates, 0, "{what}: the rolling update never finished");
        assert_eq!(f.update_duration.n, 1, "{what}: one update timed");
        let (min, of) = f.update_min_ready.expect("an update");
        assert!(min >= min_ready_floor.min(of as usize), "{what}: Ready fell to {min} of {of}");
    }
}

#[test]
fn rolling_update() {
    let runs = sweep("rolling-update");
    // maxUnavailable 0: every replica stays Ready (30 nodes: 60 replicas).
    assert_rolled("rolling-update", &runs, 60);
}

#[test]
fn rolling_update_crash() {
    let runs = sweep("rolling-update-crash");
    // A crash takes its node's replicas down until they are back elsewhere.
    assert_rolled("rolling-update-crash", &runs, 0);
    assert_recovers("rolling-update-crash", &runs);
}

#[test]
fn flapping_node() {
    for (c, f) in sweep("flapping-node") {
        // The paused node is really declared dead and its replicas go missing
        // for a while; nothing else is.
        assert!(f.missing_secs > 0.0, "seed {} {}: the pauses had no effect", c.seed, c.mode.as_str());
        assert_eq!(f.false_deaths, 0, "seed {} {}: a live node was declared dead", c.seed, c.mode.as_str());
    }
}

#[test]
fn split_brain_and_heal() {
    for (c, f) in sweep("split-brain-and-heal") {
        // The split was real: some side lacked replicas for a while.
        assert!(f.side_missing_secs > 0.0, "seed {} {}: the partition had no effect", c.seed, c.mode.as_str());
    }
}

#[test]
fn scale_to_1000_replicas() {
    for (c, f) in sweep("scale-to-1000-replicas") {
        assert_eq!(f.convergence.n, 3, "seed {} {}: every write must reach every node", c.seed, c.mode.as_str());
    }
}

#[test]
fn cron_under_faults() {
    for (c, f) in sweep("cron-under-faults") {
        let what = format!("cron-under-faults, seed {}, {} mode", c.seed, c.mode.as_str());
        // 12 CronJobs, every minute from about 0:08 to 8:10 of the run.
        assert!(f.cron.times >= 12 * 7, "{what}: only {} scheduled times were counted", f.cron.times);
        assert_eq!(f.cron.two_jobs, 0, "{what}: a time got two different Jobs");
        assert_eq!(f.cron.silently_missed, 0, "{what}: a time vanished");
        assert!(f.cron.run > 0, "{what}: nothing ran");
    }
}

#[test]
fn idle() {
    sweep("idle");
}

#[test]
fn membership_only() {
    for (c, f) in sweep("membership-only") {
        let what = format!("membership-only, seed {}, {} mode", c.seed, c.mode.as_str());
        assert_eq!(f.undetected, 0, "{what}: a crash was never detected by every node");
        assert_eq!(f.unrecovered, 0, "{what}: no replica to bring back, none missing");
    }
}
