//! The recommender's container variant (`configs/examples/recommender/docker/`,
//! images built locally by its `build.sh`) on 3 real nodes, and the claim
//! the process variant cannot show on a 2-core machine: scaling serving
//! alone relieves a load that saturated its 2 replicas. Docker enforces
//! CPU limits; each serving container gets 100m here, so 2 replicas
//! saturate at a rate this machine can send, and 8 do not.
//!
//! Containers reach services at their node's IP, which must not be a
//! loopback address (a container's 127.0.0.1 is its own). The test gives
//! its nodes addresses from 198.18.0.0/15 (RFC 2544's benchmarking range)
//! on a veth pair of its own, removed at the end: packets to them never
//! leave the machine. That needs root.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use common::recommender::*;
use common::{cluster_at, docker_ready, poll};

const LINK: &str = "shoal-rec0";
const PEER: &str = "shoal-rec1";

/// A veth pair of the test's own, one end holding the nodes' addresses (a
/// host's own addresses: containers reach them through their gateway),
/// removed on drop.
struct Addresses;

impl Addresses {
    fn add(ips: &[Ipv4Addr]) -> Result<Addresses, String> {
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
            if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
        };
        let _ = ip(&["link", "del", LINK]);
        ip(&["link", "add", LINK, "type", "veth", "peer", "name", PEER])?;
        let a = Addresses;
        for addr in ips {
            ip(&["addr", "add", &format!("{addr}/32"), "dev", LINK])?;
        }
        ip(&["link", "set", LINK, "up"])?;
        ip(&["link", "set", PEER, "up"])?;
        Ok(a)
    }
}

impl Drop for Addresses {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", LINK]).output();
    }
}

fn build_images(dir: &std::path::Path) {
    let t = Instant::now();
    let o = Command::new("bash").arg(dir.join("docker/build.sh")).output().expect("bash runs build.sh");
    assert!(
        o.status.success(),
        "configs/examples/recommender/docker/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("build.sh: {:.1} s\n{}", t.elapsed().as_secs_f64(), String::from_utf8_lossy(&o.stdout));
}

// Ignored in CI until made reliable. On 2026-12-05 it failed 3 of 3 runs on
// this machine, with the code of d30e471 too (whose CI had passed it hours
// before): requests timed out from the first second, before any scale, while
// the others took 2 ms, and 8 replicas left p50 at 0.3-3 s. The load and the
// 100m CPU limit are calibrated to one machine's speed, and that is not
// stable from run to run. Run it with
// `cargo test --test recommender_docker -- --ignored --nocapture` (root, Docker).
#[test]
#[ignore = "fails on this machine today with the previous code too (load calibrated to one machine's speed); see the comment"]
fn containers_scaling_serving_alone_relieves_a_saturating_load() {
    if !docker_ready() {
        return;
    }
    let ips: Vec<Ipv4Addr> = (2..5).map(|i| Ipv4Addr::new(198, 18, 213, i)).collect();
    let _addrs = match Addresses::add(&ips) {
        Ok(a) => a,
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "cannot add the nodes' addresses: {why}");
            eprintln!("SKIPPED: adding the nodes' addresses needs root (ip link add ... type veth): {why}");
            return;
        }
    };
    let dir = example();
    build_images(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let nodes = cluster_at(&ips, tmp.path());
    let n1 = &nodes[0];
    poll(60, "3 nodes Ready, with Docker", || {
        let v = n1.json(&["get", "nodes"])?;
        let ok = v["items"].as_array().into_iter().flatten().filter(|n| {
            n["status"]["state"] == "Ready"
                && n["spec"]["unschedulable"] == false
                && n["status"]["nodeInfo"]["containerRuntimes"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x == "docker"))
        });
        if ok.count() == 3 { Ok(()) } else { Err(v.to_string()) }
    });

    // Serving made CPU-bound: 100m each, and 50 scorings per answer (25
    // saturated 2 replicas on a slower machine, not on a faster one); at
    // most 8 requests in progress per replica, past which it answers 503
    // (app/common.py's admission control). Without that bound, the 2
    // saturated replicas queued hundreds of requests their client had given
    // up on, and kept computing them long after the scale: 2 of 9 runs
    // never recovered within 90 s (p50 1.7 s).
    let serving = std::fs::read_to_string(dir.join("docker/60-serving.yaml")).unwrap();
    let bound = serving
        .replace(
            "requests: {cpu: 100m, memory: 64Mi}",
            "requests: {cpu: 100m, memory: 64Mi}\n            limits: {cpu: 100m}",
        )
        .replace(
            "{name: POPULARITY_BLEND, value: \"0\"}",
            "{name: POPULARITY_BLEND, value: \"0\"}\n            - {name: WORK, value: \"50\"}\n            - {name: MAX_INFLIGHT, value: \"8\"}",
        );
    assert_ne!(bound, serving);
    let t = Instant::now();
    n1.ok(&["apply", "-f", &dir.join("docker").to_string_lossy(), "--wait", "--timeout", "5m"]);
    poll(60, "every service Ready (containers)", || all_ready(n1));
    n1.apply(&bound);
    poll(120, "serving rolled out CPU-bound", || rolled_out(n1, "serving"));
    println!("container variant up in {:.1} s", t.elapsed().as_secs_f64());
    // The scheduled retraining is suspended for this measurement: each run
    // (uncapped) and each replica's load of its new model compete for the
    // machine's 2 cores once a minute, which showed as latency relapses
    // after the scale (2 of 8 runs). Retraining on schedule is tested with
    // process pods (tests/recommender.rs).
    let training = std::fs::read_to_string(dir.join("docker/50-training.yaml")).unwrap();
    let cron = training.split("\n---\n").next().unwrap();
    let suspended = cron.replace("  concurrencyPolicy: Forbid", "  concurrencyPolicy: Forbid\n  suspend: true");
    assert_ne!(suspended, cron);
    n1.apply(&suspended);
    poll(90, "no training run active", || {
        let active: Vec<String> = pods(n1)
            .iter()
            .filter(|p| app(p) == "training" && matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running")))
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        if active.is_empty() { Ok(()) } else { Err(format!("{active:?}")) }
    });
    let kinds: Vec<String> = pods(n1)
        .iter()
        .filter(|p| app(p) == "serving")
        .map(|p| p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap_or("").to_string())
        .collect();
    // (A pod of the rollout just ended may be listed still, with no container.)
    let started: Vec<&String> = kinds.iter().filter(|k| !k.is_empty()).collect();
    assert!(
        started.len() >= 2 && started.iter().all(|k| k.starts_with("docker://")),
        "serving runs in containers: {kinds:?}"
    );

    let before = others(n1);
    let out = tmp.path().join("saturated.json");
    // No client retries here: under overload they would multiply the work
    // (a timed-out request is still computed by its replica).
    let load = Load::start_with(&ips, SERVING_PORT, "/recommend?user={user}", 50, 0, out);
    // Saturated: answers wait in the replicas' queues.
    let saturated = poll(90, "2 replicas saturated (p50 over 200 ms)", || match load.last_p50() {
        Some(p) if p > 200.0 => Ok(p),
        other => Err(format!("p50 {other:?} ms")),
    });
    let at_scale = load.reported();
    n1.ok(&["scale", "deployment", "serving", "-n", NS, "--replicas", "8"]);
    let t = Instant::now();
    poll(90, "serving 8/8 ready", || match ready(n1, "serving")? {
        (8, 8) => Ok(()),
        r => Err(format!("{r:?}")),
    });
    let scaled = t.elapsed();
    // The queues drain, then 5 s of steady state. (Polled by hand: on a
    // timeout the load generator's per-second lines are printed first.)
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    let drained = loop {
        match load.last_p50() {
            Some(p) if p < 20.0 => break Some(load.reported()),
            _ if Instant::now() > deadline => break None,
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    if let Some(d) = drained {
        load.wait_seconds(d + 5);
    }
    let run = load.finish();
    println!("second  sent  ok  failed  p50_ms   (scaled after second {at_scale})");
    for (i, s) in run["seconds"].as_array().into_iter().flatten().enumerate() {
        println!("{i:>6}  {:>4}  {:>2}  {:>6}  {}", s["sent"], s["ok"], s["failed"], s["p50_ms"]);
    }
    let Some(drained) = drained else {
        panic!("p50 not under 20 ms within 90 s with 8 replicas (see the lines above)")
    };
    let n = run["seconds"].as_array().map_or(0, Vec::len);
    let p50_6 = p50_of(&run, n.saturating_sub(5)..n);
    println!(
        "50 req/s on serving at 100m CPU per replica: p50 {saturated:.0} ms with 2 replicas (saturated, after {at_scale} s), \
         {p50_6:.1} ms with 8 (Ready {:.1} s after the scale, drained {} s after it); {} of {} requests failed in all",
        scaled.as_secs_f64(),
        drained.saturating_sub(at_scale),
        run["failed"],
        run["sent"]
    );
    assert_eq!(others(n1), before, "scaling serving restarted or moved another service's pod");
    assert!(p50_6 * 4.0 < saturated, "8 replicas did not relieve the load: p50 {saturated} ms -> {p50_6} ms; {run}");
    // Failures stop too, but for a few: under a 100m quota a replica that
    // gets a burst is throttled for the rest of its 100 ms period, and past
    // 8 requests in progress it sheds (503). Not recovering shows as tens of
    // percent failed; 1 run in 5 had 7 of 250 (2.8%) in its last 5 s.
    let tail = &run["seconds"].as_array().unwrap()[n.saturating_sub(5)..];
    let count = |k: &str| tail.iter().map(|s| s[k].as_u64().unwrap_or(0)).sum::<u64>();
    let (failed, sent) = (count("failed"), count("sent"));
    assert!(failed * 20 <= sent, "more than 5% of requests still failed with 8 replicas: {failed} of {sent}; {run}");
    drop(nodes);
}
