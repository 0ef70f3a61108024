//! Leaderless placement on real nodes: spread by capacity, constraints and
//! pending reasons, replicas back within seconds of a kill -9, make-before-
//! break rebalancing, fencing on the minority side of a partition.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use common::*;
use serde_json::Value;

fn owners(n: &TestNode) -> BTreeMap<String, String> {
    n.pods()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sleeper(name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n{extra_spec}      containers: [{{name: c, command: [\"sleep\", \"100000\"]}}]\n"
    )
}

#[test]
fn replicas_spread_by_capacity_and_constraints_hold() {
    let cpus = ["16", "4", "4", "2", "1"];
    let c = Cluster::start_with(5, |i| {
        let label = if i == 2 { "[labels]\ndisk = \"ssd\"\n" } else { "" };
        format!("{label}[capacity]\ncpu = \"{}\"\nmemory = \"8Gi\"\n{FAST}", cpus[i])
    });
    c.nodes[0].apply(&sleeper("spread", 20, ""));
    c.nodes[0].apply(&sleeper("ssd", 2, "      nodeSelector: {disk: ssd}\n"));
    c.nodes[0].apply(&sleeper("huge", 1, "").replace(
        "command: [\"sleep\", \"100000\"]",
        "command: [\"sleep\", \"1\"], resources: {requests: {memory: 64Gi}}",
    ));
    c.nodes[0].wait_ready("ssd", 2, 30);
    // Nodes that just joined take pods after their settle time: wait until
    // every replica runs where placement wants it (no handoff in progress).
    // Every node computes the same answer: nobody assigns work.
    let o = poll(60, "placement settled and the same on every node", || {
        let pods = c.nodes[4].pods();
        let busy =
            pods.iter().filter(|p| p["status"]["reason"] == "Terminating" || p["status"]["phase"] != "Running").count();
        let o = owners(&c.nodes[4]);
        let nodes: std::collections::BTreeSet<&String> =
            o.iter().filter(|(p, _)| p.starts_with("spread-")).map(|(_, n)| n).collect();
        let agree = c.nodes[..4].iter().all(|n| owners(n) == o);
        if busy <= 1 && nodes.len() == 5 && agree { Ok(o) } else { Err(format!("{busy} busy, agree {agree}, {o:?}")) }
    });
    c.nodes[0].wait_ready("spread", 20, 30);
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (pod, node) in &o {
        if pod.starts_with("spread-") {
            *per_node.entry(node.as_str()).or_default() += 1;
        }
        if pod.starts_with("ssd-") {
            assert_eq!(node, "n3", "nodeSelector disk=ssd");
        }
    }
    eprintln!("20 replicas over cpus {cpus:?}: {per_node:?}");
    assert_eq!(per_node.len(), 5, "every node gets a replica first: {per_node:?}");
    assert!(per_node["n1"] > per_node["n2"] && per_node["n1"] > per_node["n5"], "{per_node:?}");
    assert!(per_node["n5"] <= per_node["n4"] && per_node["n4"] <= per_node["n2"], "{per_node:?}");
    let pods = c.nodes[1].pods();
    let huge = find(&pods, "huge-0").expect("huge-0");
    assert_eq!(huge["status"]["message"], "insufficient memory on all 5 nodes");
}

#[test]
fn a_killed_nodes_replicas_are_ready_elsewhere_within_seconds_then_rebalance_without_loss() {
    let mut c = Cluster::start(5, FAST);
    c.nodes[0].apply(&web_deployment("web", 10));
    c.nodes[0].wait_ready("web", 10, 60);
    let before = owners(&c.nodes[0]);
    let victim = before.values().next().unwrap().clone();
    let vi = c.nodes.iter().position(|n| n.name == victim).unwrap();
    let observer = (vi + 1) % 5;
    let t0 = Instant::now();
    c.nodes[vi].kill9();
    poll(30, "all 10 ready, none on the dead node", || {
        let v = c.nodes[observer].json(&["get", "deployments", "web"])?;
        let o = owners(&c.nodes[observer]);
        let ok = v["status"]["readyReplicas"] == 10 && o.len() == 10 && o.values().all(|n| *n != victim);
        if ok { Ok(()) } else { Err(format!("{} ready, {o:?}", v["status"]["readyReplicas"])) }
    });
    eprintln!("kill -9 {victim} -> 10/10 Ready elsewhere: {:?}", t0.elapsed());

    // Bring it back: it takes back its share, make-before-break.
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (min_ready, done) = (min_ready.clone(), done.clone());
        let (server, dir) = (c.nodes[observer].server(), c.nodes[observer].data_dir());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let o = std::process::Command::new(BIN)
                    .args(["get", "deployments", "web", "-o", "json", "--server", &server, "--data-dir"])
                    .arg(&dir)
                    .output()
                    .unwrap();
                if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
                    let r = v["status"]["readyReplicas"].as_i64().unwrap_or(0);
                    min_ready.fetch_min(r, Ordering::Relaxed);
                }
            }
        })
    };
    c.nodes[vi].extra_args.clear();
    c.nodes[vi].restart();
    poll(60, "the restarted node runs its share again", || {
        let o = owners(&c.nodes[observer]);
        let mine = o.values().filter(|n| **n == victim).count();
        let pods = c.nodes[observer].pods();
        let terminating = pods.iter().filter(|p| p["status"]["reason"] == "Terminating").count();
        if mine >= 1 && o.len() == 10 && terminating == 0 {
            Ok(())
        } else {
            Err(format!("{mine} on {victim}, {terminating} terminating, {o:?}"))
        }
    });
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!(min_ready.load(Ordering::Relaxed), 10, "Ready count dropped below desired during the rebalance");
}

#[test]
fn a_fenced_replica_stops_on_the_minority_side_before_it_starts_elsewhere() {
    if !can_partition() {
        return;
    }
    let cfg = format!("[placement]\nfence_delay = \"6s\"\n{FAST}");
    let c = Cluster::start(5, &cfg);
    let manifest = sleeper("db", 1, "").replace("  replicas: 1\n", "  replicas: 1\n  fencing: Majority\n");
    c.nodes[0].apply(&manifest);
    c.nodes[0].wait_ready("db", 1, 30);
    let owner = owners(&c.nodes[0])[&pod_name(&c.nodes[0], "db-0")].clone();
    let oi = c.nodes.iter().position(|n| n.name == owner).unwrap();
    let minority = [oi, (oi + 1) % 5];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    let old_pids = c.nodes[oi].pod_pids();
    assert_eq!(old_pids.len(), 2, "the pod and its lease watchdog");
    let ips = |is: &[usize]| is.iter().map(|i| c.nodes[*i].ip).collect::<Vec<_>>();
    let _p = Partition::new(&ips(&minority), &ips(&majority));
    // Watch processes: the old copy must be gone before a new one exists.
    let mut old_gone_at = None;
    let new_at = poll(60, "db-0 running on the majority side", || {
        if old_gone_at.is_none() && !old_pids.iter().any(|p| alive(*p)) {
            old_gone_at = Some(Instant::now());
        }
        let started: Vec<i32> = majority.iter().flat_map(|i| c.nodes[*i].pod_pids()).collect();
        if started.is_empty() { Err("not yet".into()) } else { Ok(Instant::now()) }
    });
    let gone = old_gone_at.expect("the minority side stopped its fenced replica before the majority started one");
    assert!(gone <= new_at);
    // And the minority side never restarts it while cut off.
    assert!(c.nodes[minority[0]].pod_pids().is_empty() && c.nodes[minority[1]].pod_pids().is_empty());
}

#[test]
fn a_fenced_replica_dies_with_its_nodes_shoal_before_it_starts_elsewhere() {
    let cfg = format!("[placement]\nfence_delay = \"6s\"\n{FAST}");
    let mut c = Cluster::start(3, &cfg);
    let manifest = sleeper("db", 1, "").replace("  replicas: 1\n", "  replicas: 1\n  fencing: Majority\n");
    c.nodes[0].apply(&manifest);
    c.nodes[0].wait_ready("db", 1, 30);
    let owner = owners(&c.nodes[0])[&pod_name(&c.nodes[0], "db-0")].clone();
    let oi = c.nodes.iter().position(|n| n.name == owner).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != oi).collect();
    // The pod runs under its lease watchdog: two processes, both marked.
    let old_pids = c.nodes[oi].pod_pids();
    assert_eq!(old_pids.len(), 2, "the watchdog and the pod");
    // `shoal` alone dies: its pods would otherwise keep running.
    let killed = Instant::now();
    c.nodes[oi].kill9();
    let mut old_gone_at = None;
    let new_at = poll(60, "db-0 running on another node", || {
        if old_gone_at.is_none() && !old_pids.iter().any(|p| alive(*p)) {
            old_gone_at = Some(Instant::now());
        }
        let started: Vec<i32> = others.iter().flat_map(|i| c.nodes[*i].pod_pids()).collect();
        if started.is_empty() { Err("not yet".into()) } else { Ok(Instant::now()) }
    });
    let gone = old_gone_at.expect("the fenced replica died with its node's shoal before it started elsewhere");
    assert!(gone <= new_at);
    eprintln!(
        "fenced replica after kill -9 of shoal: old copy gone {:?} after, new copy running {:?} after",
        gone - killed,
        new_at - killed
    );
}

#[test]
fn a_fenced_replica_dies_when_its_node_stops_renewing_the_lease_and_comes_back_after() {
    use nix::sys::signal::{Signal, kill};
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(&sleeper("db", 1, "").replace("  replicas: 1\n", "  replicas: 1\n  fencing: Majority\n"));
    node.wait_ready("db", 1, 30);
    let pids = node.pod_pids();
    assert_eq!(pids.len(), 2, "the pod and its lease watchdog");
    // The node hangs (SIGSTOP): its pipe to the watchdog stays open, but
    // no renewal comes; the lease (3 s) runs out.
    let shoal = nix::unistd::Pid::from_raw(node.pid().unwrap());
    kill(shoal, Signal::SIGSTOP).unwrap();
    let paused = Instant::now();
    poll(15, "the watchdog to end the fenced pod", || {
        if pids.iter().any(|p| alive(*p)) { Err("still running".to_string()) } else { Ok(()) }
    });
    let after = paused.elapsed();
    kill(shoal, Signal::SIGCONT).unwrap();
    eprintln!("a fenced pod of a hung node ended {after:?} after the hang (lease 3 s, renewed every 750 ms)");
    assert!(after >= std::time::Duration::from_secs(2), "not before its lease could have run out: {after:?}");
    // Resumed, the node sees its pod gone and starts it again.
    node.wait_ready("db", 1, 60);
    assert!(!node.pod_pids().iter().any(|p| pids.contains(p)));
}

#[test]
fn pod_details_come_from_the_node_that_runs_the_pod_and_a_silent_node_is_named() {
    use nix::sys::signal::{Signal, kill};
    let c = Cluster::start(3, FAST);
    c.nodes[0].apply(&sleeper("detail", 6, ""));
    c.nodes[0].wait_ready("detail", 6, 60);
    let cid = |p: &Value| p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap_or("").to_string();
    let node_of = |p: &Value| p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    // Nodes gossip summaries of their pods; a list on n1 asks n2 and n3 for
    // the details of theirs (a container id is one), and shows what each
    // node shows of its own pods.
    let pods = poll(60, "every node to run a replica, with details shown from n1", || {
        let pods: Vec<Value> = c.nodes[0].pods().into_iter().filter(|p| p["status"]["phase"] == "Running").collect();
        let nodes: std::collections::BTreeSet<String> = pods.iter().map(node_of).collect();
        let bare = pods.iter().filter(|p| cid(p).is_empty()).count();
        if pods.len() == 6 && nodes.len() == 3 && bare == 0 {
            Ok(pods)
        } else {
            Err(format!("{} running on {nodes:?}, {bare} without a container id", pods.len()))
        }
    });
    for n in &c.nodes[1..] {
        let own: BTreeMap<String, String> = n
            .pods()
            .iter()
            .filter(|p| node_of(p) == n.name)
            .map(|p| (p["metadata"]["name"].as_str().unwrap_or("").to_string(), cid(p)))
            .collect();
        for p in pods.iter().filter(|p| node_of(p) == n.name) {
            let name = p["metadata"]["name"].as_str().unwrap_or("");
            assert_eq!(own.get(name), Some(&cid(p)), "{name}: n1 shows what {} shows of its own pod", n.name);
        }
    }
    // n3 hangs: still alive to gossip for a moment, but its API does not
    // answer. The list comes back within the deadline, shows n3's pods by
    // their gossiped summaries (no container id), and names n3.
    let n3 = nix::unistd::Pid::from_raw(c.nodes[2].pid().unwrap());
    kill(n3, Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let out = c.nodes[0].cli(&["get", "pods", "-o", "json"]);
    let took = t0.elapsed();
    kill(n3, Signal::SIGCONT).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Warning: pod details missing from 1 node(s): n3 ("), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = v["items"].as_array().cloned().unwrap_or_default();
    let on = |node: &str| listed.iter().filter(|p| node_of(p) == node).cloned().collect::<Vec<_>>();
    assert!(
        !on("n3").is_empty() && on("n3").iter().all(|p| cid(p).is_empty()),
        "n3's pods, as gossiped: {:?}",
        on("n3")
    );
    assert!(!on("n2").is_empty() && on("n2").iter().all(|p| !cid(p).is_empty()), "n2 answered: {:?}", on("n2"));
    assert!(on("n3").iter().all(|p| p["status"]["containerStatuses"][0]["ready"] == true));
    assert!(took < std::time::Duration::from_secs(10), "the list waits at most the deadline per node: {took:?}");
    eprintln!("a list with one hung node took {took:?}");
}
