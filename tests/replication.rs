//! The desired state across real nodes: apply anywhere, read anywhere,
//! acknowledged writes survive their node, partitions converge, deletes stay
//! deleted, restarted nodes catch up.

mod common;

use std::time::Instant;

use common::*;
use serde_json::Value;

fn ns_yaml(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

fn has(n: &TestNode, kind: &str, name: &str) -> bool {
    n.json(&["get", kind, name]).is_ok()
}

#[test]
fn a_write_on_one_node_is_visible_on_all_five() {
    let c = Cluster::start(5, FAST);
    let t0 = Instant::now();
    c.nodes[0].apply(&ns_yaml("team-a"));
    poll(10, "namespace on every node", || {
        for n in &c.nodes {
            if !has(n, "namespaces", "team-a") {
                return Err(format!("missing on {}", n.name));
            }
        }
        Ok(())
    });
    eprintln!("apply on n1 -> visible on all 5: {:?}", t0.elapsed());
    // Delete and scale elsewhere, too.
    c.nodes[4].apply(&web_deployment("w", 0));
    c.nodes[2].ok(&["scale", "deployment", "w", "--replicas", "1"]);
    c.nodes[3].ok(&["delete", "namespace", "team-a"]);
    poll(10, "delete seen everywhere", || {
        if c.nodes.iter().any(|n| has(n, "namespaces", "team-a")) { Err("still there".into()) } else { Ok(()) }
    });
    // describe shows who wrote last.
    let d = c.nodes[0].ok(&["describe", "deployment", "w"]);
    assert!(d.contains("Last write:   by node n3"), "{d}");
}

#[test]
fn an_acknowledged_write_survives_the_loss_of_the_node_that_took_it() {
    let mut c = Cluster::start(3, FAST);
    c.nodes[0].apply(&ns_yaml("precious"));
    c.nodes[0].kill9();
    // write_replicas = 2: at least one survivor held it durably before the ack.
    poll(10, "object on every survivor", || {
        for n in &c.nodes[1..] {
            if !has(n, "namespaces", "precious") {
                return Err(format!("missing on {}", n.name));
            }
        }
        Ok(())
    });
}

#[test]
fn restarted_and_lagging_nodes_catch_up() {
    let mut c = Cluster::start(3, FAST);
    c.nodes[2].stop();
    for i in 0..20 {
        c.nodes[0].apply(&ns_yaml(&format!("ns-{i}")));
    }
    c.nodes[2].restart();
    poll(20, "restarted node has all 20 namespaces", || {
        let v = c.nodes[2].json(&["get", "namespaces"])?;
        let n = v["items"].as_array().map_or(0, |i| {
            i.iter().filter(|x| x["metadata"]["name"].as_str().unwrap_or("").starts_with("ns-")).count()
        });
        if n == 20 { Ok(()) } else { Err(format!("{n} of 20")) }
    });
}

#[test]
fn a_partition_heals_to_one_winner_and_deletes_stay_deleted() {
    if !can_partition() {
        return;
    }
    let cfg = format!(
        "[state]\nwrite_timeout = \"1s\"\nanti_entropy_interval = \"200ms\"\n{}",
        FAST.replace("[state]\nwrite_timeout = \"3s\"\n", "")
    );
    let c = Cluster::start(5, &cfg);
    c.nodes[0].apply(&web_deployment("x", 0));
    c.nodes[0].apply(&ns_yaml("doomed"));
    poll(10, "everything everywhere", || {
        if c.nodes.iter().all(|n| has(n, "deployments", "x") && has(n, "namespaces", "doomed")) {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let ips: Vec<_> = c.nodes.iter().map(|n| n.ip).collect();
    let mut p = Partition::new(&ips[..2], &ips[2..]);
    // Both sides see the other side dead, then each side takes writes.
    poll(15, "each side sees the other dead", || {
        let (a, b) = (c.states(0)?, c.states(2)?);
        let ok = a.get("n3").map(String::as_str) == Some("Dead") && b.get("n1").map(String::as_str) == Some("Dead");
        if ok { Ok(()) } else { Err(format!("{a:?} / {b:?}")) }
    });
    c.nodes[2].ok(&["scale", "deployment", "x", "--replicas", "2"]);
    c.nodes[0].ok(&["scale", "deployment", "x", "--replicas", "7"]); // later: wins
    c.nodes[1].ok(&["delete", "namespace", "doomed"]);
    // Heal: everyone converges to the same winner, the delete holds.
    p.heal();
    poll(30, "convergence", || {
        let mut seen = Vec::new();
        for n in &c.nodes {
            let v: Value = n.json(&["get", "deployments", "x"])?;
            seen.push(v["spec"]["replicas"].as_i64().unwrap_or(-1));
            if has(n, "namespaces", "doomed") {
                return Err(format!("doomed is back on {}", n.name));
            }
        }
        if seen.iter().all(|r| *r == 7) { Ok(()) } else { Err(format!("{seen:?}")) }
    });
}

#[test]
fn a_write_without_enough_replicas_answers_503_then_the_last_node_standing_accepts() {
    if !can_partition() {
        return;
    }
    let cfg = format!("[state]\nwrite_timeout = \"1s\"\n{}", FAST.replace("[state]\nwrite_timeout = \"3s\"\n", ""));
    let c = Cluster::start(2, &cfg);
    let ips: Vec<_> = c.nodes.iter().map(|n| n.ip).collect();
    let _p = Partition::new(&ips[..1], &ips[1..]);
    // Before the failure detector notices, n2 still counts as alive: the
    // write is stored on n1 but not acknowledged.
    let o = c.nodes[0].cli_stdin(&["apply", "-f", "-"], &ns_yaml("maybe"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ServiceUnavailable") && err.contains("stored on 1 of the 2 nodes"), "{err}");
    // Once n2 is known dead, n1 is the last node standing and accepts alone.
    poll(15, "n2 dead on n1", || {
        if c.states(0)?.get("n2").map(String::as_str) == Some("Dead") { Ok(()) } else { Err("alive".into()) }
    });
    c.nodes[0].apply(&ns_yaml("alone"));
}

#[test]
fn tombstones_past_the_horizon_do_not_resurrect_deleted_objects() {
    if !can_partition() {
        return;
    }
    let cfg = format!(
        "[state]\nwrite_timeout = \"1s\"\nanti_entropy_interval = \"200ms\"\ntombstone_horizon = \"2s\"\n{}",
        FAST.replace("[state]\nwrite_timeout = \"3s\"\n", "")
    );
    let c = Cluster::start(3, &cfg);
    c.nodes[0].apply(&ns_yaml("gone"));
    poll(10, "on all", || if c.nodes.iter().all(|n| has(n, "namespaces", "gone")) { Ok(()) } else { Err("no".into()) });
    let ips: Vec<_> = c.nodes.iter().map(|n| n.ip).collect();
    let mut p = Partition::new(&ips[2..], &ips[..2]);
    poll(15, "n1 sees n3 dead", || {
        if c.states(0)?.get("n3").map(String::as_str) == Some("Dead") { Ok(()) } else { Err("alive".into()) }
    });
    c.nodes[0].ok(&["delete", "namespace", "gone"]);
    // The majority forgets the tombstone (horizon 2 s, collected every 2 s).
    poll(20, "tombstone collected on the majority", || {
        let t: Vec<f64> = c.nodes[..2].iter().map(|n| metric(n, "shoal_state_tombstones ")).collect();
        if t.iter().all(|x| *x == 0.0) && !has(&c.nodes[0], "namespaces", "gone") {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    assert!(has(&c.nodes[2], "namespaces", "gone"), "the isolated node still has it");
    p.heal();
    poll(20, "the isolated node drops it", || {
        if has(&c.nodes[2], "namespaces", "gone") { Err("still there".into()) } else { Ok(()) }
    });
    for n in &c.nodes[..2] {
        assert!(!has(n, "namespaces", "gone"), "resurrected on {}", n.name);
    }
}
