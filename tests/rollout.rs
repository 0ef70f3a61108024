//! Rolling updates on real nodes: a poller reads the API every 100 ms while
//! a Deployment changes, and the number of Ready pods must never drop below
//! the budget. Also: undo, restart, a node killed mid-rollout, and a rollout
//! that exceeds its progress deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The web Deployment with a rollout strategy and a version in its template.
fn web(replicas: u32, strategy: &str, version: u32) -> String {
    web_deployment("web", replicas).replace("spec:\n  replicas:", &format!("spec:\n{strategy}  replicas:")).replace(
        "        - name: web\n",
        &format!("        - name: web\n          env: [{{name: VERSION, value: \"{version}\"}}]\n"),
    )
}

fn rollout_status(node: &TestNode, secs: u64) -> (bool, String) {
    let o = node.cli(&["rollout", "status", "deployment", "web", "--timeout", &format!("{secs}s")]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn pod_versions(node: &TestNode) -> Vec<String> {
    node.pods()
        .iter()
        .filter(|p| names_replica_of(p, "web"))
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Updates 6 replicas under a strategy while a poller watches; returns
/// (min Ready, samples, rollout duration).
fn roll(c: &Cluster, strategy: &str) -> (usize, usize, Duration) {
    let n = &c.nodes[0];
    n.apply(&web(6, strategy, 1));
    n.wait_ready("web", 6, 60);
    let (ok, out) = rollout_status(n, 60);
    assert!(ok, "{out}");
    let before = pod_versions(n);
    let poller = ReadyPoller::start(&c.nodes[1], "web");
    // Let the poller see the steady state first.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    n.apply(&web(6, strategy, 2));
    let (ok, out) = rollout_status(n, 120);
    let took = t0.elapsed();
    assert!(ok, "the rollout finished: {out}");
    assert!(out.contains("successfully rolled out"), "{out}");
    // The poller keeps watching until the last old pod is gone everywhere.
    poll(30, "only new pods left", || {
        let now = pod_versions(n);
        if now.len() == 6 && now.iter().all(|p| !before.contains(p)) { Ok(()) } else { Err(format!("{now:?}")) }
    });
    let (min, samples) = poller.finish();
    (min, samples, took)
}

#[test]
fn a_rolling_update_with_max_unavailable_0_keeps_every_replica_ready() {
    let c = Cluster::start(3, FAST);
    let strategy = "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n";
    let (min, samples, took) = roll(&c, strategy);
    eprintln!("maxUnavailable 0, 6 replicas on 3 nodes: min Ready {min} over {samples} samples, rollout {took:?}");
    assert!(samples > 10, "the poller ran ({samples} samples)");
    assert!(min >= 6, "Ready dropped to {min} of 6");
}

#[test]
fn a_rolling_update_with_the_defaults_keeps_three_quarters_ready() {
    let c = Cluster::start(3, FAST);
    let (min, samples, took) = roll(&c, "");
    eprintln!("defaults, 6 replicas on 3 nodes: min Ready {min} over {samples} samples, rollout {took:?}");
    assert!(min * 4 >= 6 * 3, "Ready dropped to {min} of 6");
}

#[test]
fn undo_restart_and_history() {
    let c = Cluster::start(2, FAST);
    let n = &c.nodes[0];
    n.apply(&web(2, "", 1));
    let (ok, out) = rollout_status(n, 60);
    assert!(ok, "{out}");
    let v1 = pod_versions(n);
    n.apply(&web(2, "", 2));
    assert!(rollout_status(n, 60).0);
    let v2 = pod_versions(n);
    assert!(v2.iter().all(|p| !v1.contains(p)), "new names: {v1:?} -> {v2:?}");
    let h = n.ok(&["rollout", "history", "deployment", "web"]);
    assert!(h.contains("REVISION") && h.contains("1 ") && h.contains("2 "), "{h}");
    // Undo: back to the first template, which becomes revision 3.
    let o = n.ok(&["rollout", "undo", "deployment", "web"]);
    assert!(o.contains("rolled back"), "{o}");
    assert!(rollout_status(n, 60).0);
    let mut back = pod_versions(n);
    back.sort();
    let mut first = v1.clone();
    first.sort();
    assert_eq!(back, first, "the first revision's pods again");
    let h = n.ok(&["rollout", "history", "deployment", "web"]);
    assert!(h.contains("3 ") && !h.lines().any(|l| l.starts_with("1 ")), "revision 1 became 3: {h}");
    let rs = n.ok(&["get", "replicasets"]);
    assert!(rs.lines().count() >= 3, "two ReplicaSets listed: {rs}");
    // Restart: every pod replaced, no spec change of the user's.
    let o = n.ok(&["rollout", "restart", "deployment", "web"]);
    assert!(o.contains("restarted"), "{o}");
    assert!(rollout_status(n, 60).0);
    let restarted = pod_versions(n);
    assert!(restarted.iter().all(|p| !back.contains(p)), "{back:?} -> {restarted:?}");
    // A bad revision is refused with a reason.
    let bad = n.cli(&["rollout", "undo", "deployment", "web", "--to-revision", "99"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("revision 99"));
}

#[test]
fn a_rollout_goes_on_when_the_node_that_took_the_apply_dies() {
    let mut c = Cluster::start(3, FAST);
    let strategy = "  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  minReadySeconds: 1\n";
    c.nodes[0].apply(&web(6, strategy, 1));
    assert!(rollout_status(&c.nodes[1], 60).0);
    let before = pod_versions(&c.nodes[1]);
    c.nodes[0].apply(&web(6, strategy, 2));
    // Kill the node that took the apply while the rollout is under way.
    poll(30, "the rollout started", || {
        let now = pod_versions(&c.nodes[1]);
        if now.iter().any(|p| !before.contains(p)) { Ok(()) } else { Err(format!("{now:?}")) }
    });
    c.nodes[0].kill9();
    let (ok, out) = rollout_status(&c.nodes[1], 120);
    assert!(ok, "the rollout finished without the node that started it: {out}");
    let after = pod_versions(&c.nodes[1]);
    assert_eq!(after.len(), 6, "{after:?}");
    assert!(after.iter().all(|p| !before.contains(p)), "{after:?}");
}

#[test]
fn a_rollout_that_cannot_progress_exceeds_its_deadline() {
    let c = Cluster::start(1, FAST);
    let n = &c.nodes[0];
    n.apply(&web(2, "  progressDeadlineSeconds: 4\n", 1));
    assert!(rollout_status(n, 60).0);
    // A template whose pods never become ready.
    let broken = web(2, "  progressDeadlineSeconds: 4\n", 2)
        .replace("httpGet: {path: /, port: http}", "httpGet: {path: /, port: 1}");
    assert!(broken.contains("port: 1}"));
    n.apply(&broken);
    let (ok, out) = rollout_status(n, 60);
    assert!(!ok, "{out}");
    assert!(out.contains("exceeded its progress deadline"), "{out}");
    let d = n.json(&["get", "deployments", "web"]).unwrap();
    let cond = d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").cloned();
    assert_eq!(cond.as_ref().map(|c| c["reason"].clone()), Some(Value::from("ProgressDeadlineExceeded")), "{cond:?}");
    // The old pods still serve: maxUnavailable 25% of 2 rounds down to 0.
    assert_eq!(d["status"]["availableReplicas"], 2, "{}", d["status"]);
}

#[test]
fn drain_moves_every_pod_make_before_break_and_a_reboot_costs_nothing() {
    let mut c = Cluster::start(3, FAST);
    c.nodes[0].apply(&web(12, "", 1));
    assert!(rollout_status(&c.nodes[0], 60).0);
    // What a node reports running (waiting for it to be listed: a node that
    // just restarted is missing from its peers' views for a moment).
    let on = |node: &TestNode, name: &str| -> Vec<String> {
        let v = poll(30, &format!("node {name} listed"), || node.json(&["get", "nodes", name]));
        v["status"]["shoal"]["pods"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.as_str().map(String::from))
            .collect()
    };
    let victim = c.nodes[2].name.clone();
    let held = on(&c.nodes[0], &victim).len();
    assert!(held >= 3, "n3 holds its share: {held}");
    let poller = ReadyPoller::start(&c.nodes[1], "web");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let o = c.nodes[0].cli(&["drain", &victim, "--timeout", "120s"]);
    let took = t0.elapsed();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("drained"), "{out}");
    assert!(on(&c.nodes[0], &victim).is_empty());
    let nodes = c.nodes[0].ok(&["get", "nodes"]);
    assert!(nodes.lines().any(|l| l.starts_with(&victim) && l.contains("SchedulingDisabled")), "{nodes}");
    // A drained node reboots without costing a Ready replica.
    c.nodes[2].kill9();
    c.nodes[2].restart();
    c.nodes[2].wait_healthy();
    let n = &c.nodes[0];
    std::thread::sleep(Duration::from_secs(3));
    let (min, samples) = poller.finish();
    eprintln!(
        "drain of {victim} holding {held} of 12 replicas: {took:?}, min Ready {min} over {samples} samples (through its reboot)"
    );
    assert!(min >= 12, "Ready dropped to {min} during the drain or the reboot");
    // Cordoned, it takes nothing new; uncordoned, it takes its share back.
    n.apply(&web_deployment("extra", 6));
    n.wait_ready("extra", 6, 60);
    assert!(on(n, &victim).is_empty(), "a cordoned node took a new pod");
    n.ok(&["uncordon", &victim]);
    poll(60, "the node takes pods again", || {
        let p = on(n, &victim);
        if p.len() >= 3 { Ok(()) } else { Err(format!("{p:?}")) }
    });
    let bad = n.cli(&["cordon", "no-such-node"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-node"));
}

#[test]
fn replicas_spread_evenly_and_other_applies_move_none() {
    let c = Cluster::start(3, FAST);
    let n = &c.nodes[0];
    n.apply(&web(6, "", 1));
    assert!(rollout_status(n, 60).0);
    let owners = |n: &TestNode| -> std::collections::BTreeMap<String, String> {
        n.pods()
            .iter()
            .filter(|p| names_replica_of(p, "web"))
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["spec"]["nodeName"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let before = owners(n);
    let mut per: std::collections::BTreeMap<&String, usize> = std::collections::BTreeMap::new();
    for node in before.values() {
        *per.entry(node).or_default() += 1;
    }
    assert_eq!(per.values().copied().collect::<Vec<_>>(), [2, 2, 2], "6 replicas on 3 equal nodes: {before:?}");
    n.apply(&web_deployment("other", 5));
    n.wait_ready("other", 5, 60);
    n.apply(&web_deployment("third", 2));
    n.wait_ready("third", 2, 60);
    let after = owners(n);
    let moved = before.iter().filter(|(p, o)| after.get(*p) != Some(*o)).count();
    eprintln!("replicas of web moved by two unrelated applies: {moved}");
    assert_eq!(moved, 0, "{before:?} -> {after:?}");
}
