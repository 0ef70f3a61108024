//! netsim: Shoal's real node logic on many simulated nodes.
//!
//! Every simulated node runs the same membership (chitchat), desired-state
//! replication, placement and reconcile decisions as a real node, with a
//! simulated network (`net`), a simulated container runtime (`agent`) and
//! virtual time (`clock`). `leader` is the leader-based baseline on the same
//! parts. `observer` measures and checks invariants; `report` prints.

pub mod agent;
pub mod clock;
pub mod leader;
pub mod net;
pub mod node;
pub mod observer;
pub mod report;
pub mod run;
pub mod scenario;

use std::path::Path;

/// The command that replays a run exactly as far as the seed reaches.
pub fn replay_command(scenario: &Path, nodes: usize, seed: u64, mode: &str) -> String {
    format!(
        "cargo run -p netsim --release -- --scenario {} --nodes {nodes} --seed {seed} --mode {mode}",
        scenario.display()
    )
}
