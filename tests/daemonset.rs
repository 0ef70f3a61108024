//! DaemonSets on real nodes: one pod per node, a node that joins gets its
//! pod, one that leaves or dies takes its pod with it (nothing moves), and
//! an update goes node by node with a 100 ms Ready poller watching.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// DaemonSet `agent` from the web template, with a version in its env.
fn agent(version: u32, extra_spec: &str) -> String {
    web_deployment("agent", 1)
        .replace("kind: Deployment", "kind: DaemonSet")
        .replace("  replicas: 1\n", extra_spec)
        .replace(
            "        - name: web\n",
            &format!("        - name: web\n          env: [{{name: VERSION, value: \"{version}\"}}]\n"),
        )
}

/// The agent pods `node` lists: pod name -> (node, ready).
fn agents(node: &TestNode) -> BTreeMap<String, (String, bool)> {
    node.pods()
        .iter()
        .filter(|p| of_daemonset(p, "agent"))
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            let n = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            (p["metadata"]["name"].as_str().unwrap_or("").to_string(), (n, ready))
        })
        .collect()
}

/// Waits until `node` lists exactly one Ready agent pod on each of `on`, named after it.
fn wait_agents_on(node: &TestNode, on: &[&str], secs: u64) {
    poll(secs, &format!("one Ready agent pod on each of {on:?}"), || {
        let a = agents(node);
        let want: BTreeMap<String, (String, bool)> =
            on.iter().map(|n| (format!("agent-{n}"), (n.to_string(), true))).collect();
        if a == want { Ok(()) } else { Err(format!("{a:?}")) }
    });
}

fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Waits until `get daemonsets` on `node` shows `counts` from DESIRED on
/// (AVAILABLE follows READY after the linger and minReadySeconds).
fn wait_row(node: &TestNode, counts: &[&str]) -> String {
    poll(30, &format!("get daemonsets shows {counts:?}"), || {
        let t = node.ok(&["get", "daemonsets"]);
        let r = row(&t, "agent");
        if r.len() > counts.len() && r[1..=counts.len()] == *counts { Ok(t) } else { Err(t) }
    })
}

#[test]
fn a_daemonset_follows_nodes_joining_leaving_and_dying() {
    let mut c = Cluster::start(2, FAST);
    c.nodes[0].apply(&agent(1, ""));
    wait_agents_on(&c.nodes[0], &["n1", "n2"], 60);
    // DESIRED CURRENT READY UP-TO-DATE AVAILABLE, as kubectl shows them.
    let t = wait_row(&c.nodes[1], &["2", "2", "2", "2", "2"]);
    assert!(
        t.starts_with("NAME") && t.contains("DESIRED") && t.contains("UP-TO-DATE") && t.contains("NODE SELECTOR"),
        "{t}"
    );
    // A node that joins gets its pod.
    let i = c.add_node(FAST);
    wait_agents_on(&c.nodes[0], &["n1", "n2", "n3"], 60);
    let d = c.nodes[i].ok(&["describe", "daemonset", "agent"]);
    assert!(d.contains("Desired Number of Nodes Scheduled: 3"), "{d}");
    // A node that leaves takes its pod with it; nothing moves.
    c.nodes[i].stop();
    wait_agents_on(&c.nodes[0], &["n1", "n2"], 60);
    // A node that dies: the same, once it is declared dead.
    c.nodes[1].kill9();
    wait_agents_on(&c.nodes[0], &["n1"], 60);
    wait_row(&c.nodes[0], &["1", "1", "1"]);
    assert!(c.nodes[0].ok(&["get", "ds"]).contains("agent"), "ds is the short name");
    // Deleting it removes every pod.
    c.nodes[0].ok(&["delete", "daemonset", "agent"]);
    poll(30, "agent pods gone", || {
        if agents(&c.nodes[0]).is_empty() { Ok(()) } else { Err(format!("{:?}", agents(&c.nodes[0]))) }
    });
}

#[test]
fn a_node_selector_picks_the_nodes() {
    let c =
        Cluster::start_with(3, |i| if i == 1 { format!("[labels]\ndisk = \"ssd\"\n{FAST}") } else { FAST.to_string() });
    c.nodes[0].apply(&agent(1, "").replace("      containers:", "      nodeSelector: {disk: ssd}\n      containers:"));
    wait_agents_on(&c.nodes[2], &["n2"], 60);
    let t = c.nodes[0].ok(&["get", "daemonsets"]);
    assert!(row(&t, "agent").contains(&"disk=ssd".to_string()), "{t}");
    // The well-known hostname label works as a selector too.
    c.nodes[0].apply(
        &agent(1, "")
            .replace("      containers:", "      nodeSelector: {kubernetes.io/hostname: n3}\n      containers:"),
    );
    wait_agents_on(&c.nodes[0], &["n3"], 60);
}

#[test]
fn an_update_goes_node_by_node_and_keeps_the_others_ready() {
    let c = Cluster::start(3, FAST);
    let n = &c.nodes[0];
    n.apply(&agent(1, ""));
    wait_agents_on(n, &["n1", "n2", "n3"], 60);
    let hash_of = |v: &Value| v["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or("").to_string();
    let old: Vec<String> = n.pods().iter().filter(|p| of_daemonset(p, "agent")).map(hash_of).collect();
    assert_eq!(old.len(), 3);
    poll(30, "the observing node sees 3 Ready", || {
        let r = ready_pods_where(std::net::SocketAddr::from((c.nodes[1].ip, 7420)), &c.nodes[1].token(), &|p| {
            of_daemonset(p, "agent")
        });
        if r == Some(3) { Ok(()) } else { Err(format!("{r:?}")) }
    });
    let poller = ReadyPoller::start_where(&c.nodes[1], |p| of_daemonset(p, "agent"));
    let t0 = std::time::Instant::now();
    n.apply(&agent(2, ""));
    // `rollout status` follows it to its end with kubectl's messages.
    let out = c.nodes[2].ok(&["rollout", "status", "daemonset/agent", "--timeout", "120s"]);
    assert!(out.trim_end().ends_with("daemon set \"agent\" successfully rolled out"), "{out}");
    poll(120, "every node runs the new template", || {
        let pods = n.pods();
        let now: Vec<(String, bool)> = pods
            .iter()
            .filter(|p| of_daemonset(p, "agent"))
            .map(|p| (hash_of(p), p["status"]["containerStatuses"][0]["ready"] == true))
            .collect();
        if now.len() == 3 && now.iter().all(|(h, r)| *r && !old.contains(h)) { Ok(()) } else { Err(format!("{now:?}")) }
    });
    let took = t0.elapsed();
    let seen = poller.finish_all();
    let min = seen.iter().copied().min().unwrap_or(0);
    eprintln!("DaemonSet on 3 nodes, maxUnavailable 1: min Ready {min} over {} samples, update {took:?}", seen.len());
    assert!(seen.len() > 10, "the poller ran");
    assert!(min >= 2, "more than one node without its pod at once: {seen:?}");
    assert!(seen.contains(&2), "each node's pod was replaced in place (a gap of one): {seen:?}");
    wait_agents_on(n, &["n1", "n2", "n3"], 30);
    wait_row(n, &["3", "3", "3", "3", "3"]);
}

#[test]
fn a_drain_moves_the_other_pods_and_leaves_the_daemonset_pod() {
    let c = Cluster::start(2, FAST);
    c.nodes[0].apply(&agent(1, ""));
    c.nodes[0].apply(&web_deployment("web", 4));
    wait_agents_on(&c.nodes[0], &["n1", "n2"], 60);
    c.nodes[0].wait_ready("web", 4, 60);
    let o = c.nodes[0].cli(&["drain", "n2", "--timeout", "60s"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("ignoring DaemonSet-managed pods: default/agent-n2"), "{out}");
    assert!(out.contains("node/n2 drained"), "{out}");
    // Every web replica runs on n1 now; n2 keeps its agent pod, Ready.
    let pods = c.nodes[0].pods();
    let web_on: Vec<&str> = pods
        .iter()
        .filter(|p| names_replica_of(p, "web"))
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(web_on, ["n1"; 4], "{web_on:?}");
    wait_agents_on(&c.nodes[0], &["n1", "n2"], 10);
}
