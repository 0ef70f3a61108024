//! netsim: Shoal's real node logic on many simulated nodes.
//!
//! Every simulated node is Shoal's own node assembly (`shoal::node::assembly`:
//! membership over chitchat, desired-state replication, settle, placement,
//! and the agent core with its driver), given a simulated network (`net`), a
//! simulated host for its pods (`runtime`) and virtual time (`clock`), and
//! nothing else. `leader` is the leader-based baseline on the same parts.
//! `observer` measures and checks invariants (`cron`: the CronJobs' times);
//! `report` prints.

pub mod clock;
pub mod cron;
pub mod leader;
pub mod net;
pub mod node;
pub mod observer;
pub mod report;
pub mod run;
pub mod runtime;
pub mod scenario;

use std::path::Path;

/// The command that replays a run exactly as far as the seed reaches.
pub fn replay_command(scenario: &Path, nodes: usize, seed: u64, mode: &str) -> String {
    format!(
        "cargo run -p netsim --release -- --scenario {} --nodes {nodes} --seed {seed} --mode {mode}",
        scenario.display()
    )
}
