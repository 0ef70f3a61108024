//! `cargo run -p netsim --release -- --scenario configs/netsim/kill-one.toml --nodes 200 --seed 7`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use netsim::node::Mode;
use netsim::report::{Figures, figures, markdown, markdown_spread};
use netsim::run::{RunConfig, RunResult};
use netsim::scenario::Scenario;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ModeArg {
    Leaderless,
    Leader,
    Both,
}

/// Runs Shoal's node logic on simulated nodes and prints a report.
#[derive(Debug, Parser)]
#[command(name = "netsim", version)]
struct Args {
    /// Scenario file (TOML; see configs/netsim/).
    #[arg(long)]
    scenario: PathBuf,
    /// Cluster size (default: the scenario's).
    #[arg(long)]
    nodes: Option<usize>,
    /// Seed of everything Shoal controls: faults, workload, delays, its own randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value = "leaderless")]
    mode: ModeArg,
    /// Repeat the run K times with the same seed and report the spread of each figure.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Runs executed at once, each on its own thread (memory grows with it:
    /// 6-8 GB per 500-node run).
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// Membership engine of every node (default: the scenario's, else chitchat).
    #[arg(long, value_enum)]
    membership: Option<shoal::config::Engine>,
    /// Directory for the CSV timelines and the SVG chart.
    #[arg(long, default_value = "netsim-out")]
    out: PathBuf,
}

/// The allocator: a simulation of 100 nodes spent a third of its time in
/// glibc's malloc and free (perf, a rollout of 200 replicas), mostly
/// strings and small vectors built and dropped by every node's planner.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut sc = match Scenario::load(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(e) = a.membership {
        sc.timing.membership = e;
    }
    let nodes = a.nodes.unwrap_or(sc.nodes);
    if let Err(e) = sc.check_size(nodes) {
        eprintln!("error: {}: {e}", a.scenario.display());
        return ExitCode::from(2);
    }
    let modes: Vec<Mode> = match a.mode {
        ModeArg::Leaderless => vec![Mode::Leaderless],
        ModeArg::Leader => vec![Mode::Leader],
        ModeArg::Both => vec![Mode::Leaderless, Mode::Leader],
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        eprintln!("error: {}: {e}", a.out.display());
        return ExitCode::from(2);
    }
    println!(
        "## netsim: {} — {nodes} nodes, seed {}, {:?} virtual, membership {:?}\n\n{}\n",
        sc.name, a.seed, sc.duration, sc.timing.membership, sc.description
    );
    let mut failed = false;
    let mut first: Vec<RunResult> = Vec::new();
    let mut cols: Vec<Figures> = Vec::new();
    let configs: Vec<RunConfig> = modes
        .iter()
        .flat_map(|m| {
            std::iter::repeat_n(RunConfig { scenario: sc.clone(), nodes, seed: a.seed, mode: *m }, a.runs.max(1))
        })
        .collect();
    // This process ends once the runs are reported: the system takes
    // their memory back faster than freeing it piece by piece would. Only
    // when every run has a thread of its own: runs that follow one
    // another on a thread free what the last one used.
    if configs.len() <= a.jobs.max(1) {
        netsim::run::leave_clusters_at_exit();
    }
    let mut results = netsim::run::run_all(configs, a.jobs.max(1));
    for mode in &modes {
        let mut all: Vec<RunResult> = Vec::new();
        while let Some(i) = results.iter().position(|r| r.config.mode == *mode) {
            all.push(results.remove(i));
        }
        for r in &all {
            if !r.observer.violations.is_empty() {
                failed = true;
                eprintln!("invariant violations ({} mode):", mode.as_str());
                for v in &r.observer.violations {
                    eprintln!("  {v}");
                }
                eprintln!("replay: {}", netsim::replay_command(&a.scenario, nodes, a.seed, mode.as_str()));
            }
            for j in r.observer.joins.iter().filter(|j| j.learned.is_none()) {
                eprintln!(
                    "join never complete ({} mode): {} does not hold Ready {}",
                    mode.as_str(),
                    j.node,
                    j.lacking.join(", ")
                );
            }
        }
        let figs: Vec<Figures> = all.iter().map(figures).collect();
        if a.runs > 1 {
            println!("{}", markdown_spread(&format!("{} mode", mode.as_str()), &figs));
        }
        cols.push(figs[0].clone());
        let csv = a.out.join(format!("{}-{}-{nodes}-{}.csv", sc.name, mode.as_str(), a.seed));
        let _ = std::fs::write(&csv, netsim::report::csv(&all[0]));
        first.push(all.swap_remove(0));
    }
    let headers: Vec<String> = modes.iter().map(|m| m.as_str().to_string()).collect();
    println!("{}", markdown("figures (first run of each mode)", &headers, &cols));
    println!("timeline of the first run:");
    for (t, what) in &first[0].log {
        println!("  {t:>6.1}s  {what}");
    }
    let svg = a.out.join(format!("{}-{nodes}-{}.svg", sc.name, a.seed));
    let labelled: Vec<(&str, &RunResult)> = first.iter().map(|r| (r.config.mode.as_str(), r)).collect();
    match netsim::report::svg(&svg, &format!("{} ({nodes} nodes, seed {})", sc.name, a.seed), &labelled) {
        Ok(()) => println!("\nCSV and SVG timeline in {}", a.out.display()),
        Err(e) => eprintln!("cannot draw {}: {e}", svg.display()),
    }
    // Exits without dropping the results (their views and samples): see
    // `leave_clusters_at_exit`.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(if failed { 1 } else { 0 })
}
