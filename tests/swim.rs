//! Real nodes under `--membership swim` (foca's SWIM over the QUIC gossip
//! port): they join with a token, run a Deployment, see a kill -9 and a
//! graceful leave, and move the dead node's replicas; a node started with
//! the other engine is named in the log, not silently ignored.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn swim_config() -> String {
    FAST.replace("[membership]\n", "[membership]\nengine = \"swim\"\n")
}

#[test]
fn a_swim_cluster_runs_pods_and_replaces_a_killed_nodes_replicas() {
    let cfg = swim_config();
    assert!(cfg.contains("engine = \"swim\""), "{cfg}");
    let mut c = Cluster::start(3, &cfg);
    // Every node sees the others' records (pulled, not gossiped).
    for i in 0..3 {
        let v = c.nodes[i].json(&["get", "nodes"]).unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 3, "{v}");
        assert!(items.iter().all(|n| n["status"]["capacity"]["cpu"].is_string()), "{v}");
    }
    c.nodes[0].apply(&web_deployment("web", 3));
    c.nodes[0].wait_ready("web", 3, 60);
    // Pod statuses of every node reach every node.
    poll(20, "3 Ready pods seen from the last node", || {
        let pods = c.nodes[2].pods();
        let ready = pods.iter().filter(|p| p["status"]["phase"] == "Running").count();
        if ready == 3 { Ok(()) } else { Err(format!("{ready} running: {pods:?}")) }
    });
    let victim = c.nodes[2].name.clone();
    let t0 = Instant::now();
    c.nodes[2].kill9_with_pods();
    let dead = c.wait_node_state(15, &victim, "Dead");
    poll(30, "3 replicas Ready again on the survivors", || {
        let v = c.nodes[0].json(&["get", "deployments", "web"])?;
        let on_victim = c.nodes[0].pods().iter().filter(|p| p["spec"]["nodeName"] == victim.as_str()).count();
        if v["status"]["readyReplicas"] == 3 && on_victim == 0 {
            Ok(())
        } else {
            Err(format!("{} ({on_victim} on {victim})", v["status"]))
        }
    });
    eprintln!("swim: kill -9 -> Dead everywhere {dead:?}, replicas back {:?}", t0.elapsed());
}

#[test]
fn a_swim_node_that_stops_is_seen_as_left() {
    let mut c = Cluster::start(3, &swim_config());
    let t0 = Instant::now();
    assert_eq!(c.nodes[2].stop(), Some(0));
    c.wait_node_state(6, "n3", "Left");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
}

#[test]
fn a_chitchat_node_talking_to_a_swim_cluster_is_named_in_the_log() {
    let c = Cluster::start(1, &swim_config());
    let tmp = tempfile::tempdir().unwrap();
    let args = vec!["--join".to_string(), format!("{}:7421", c.nodes[0].ip), "--token".into(), c.token.clone()];
    let other = TestNode::start_at("chatty", unique_ip(), tmp.path().join("x"), FAST, &args);
    poll(20, "the SWIM node names the mismatch", || {
        let log = c.nodes[0].log();
        if log.contains("--membership") && log.contains("same membership engine") {
            Ok(())
        } else {
            Err(other.log().lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    });
    let st = c.states(0).unwrap();
    assert!(!st.contains_key("chatty"), "a node speaking another engine never joins: {st:?}");
}
