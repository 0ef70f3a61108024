//! Jobs on 3 real nodes: an Indexed Job of 6 parts spreads over the nodes,
//! each pod told its index, each part's log readable from any node after
//! the Job finished; a failed index is given up (`backoffLimitPerIndex`)
//! while the others finish; `activeDeadlineSeconds` fails a Job and stops
//! its pods even when the node keeping the deadline is killed; and
//! `ttlSecondsAfterFinished` deletes a finished Job.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn indexed_job(name: &str, completions: u32, parallelism: u32, extra: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  completionMode: Indexed\n  completions: {completions}\n  parallelism: {parallelism}\n{extra}  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, command: [sh, -c, '{script}']}}]\n"
    )
}

/// Waits until Job `name` has condition `kind` (Complete or Failed); returns the Job.
fn wait_condition(node: &TestNode, name: &str, kind: &str, secs: u64) -> Value {
    poll(secs, &format!("Job {name} to be {kind}"), || {
        let j = node.json(&["get", "job", name])?;
        let conds = j["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conds.iter().any(|c| c["type"] == kind && c["status"] == "True") {
            Ok(j)
        } else {
            Err(format!("status {}", j["status"]))
        }
    })
}

fn pods_of_job<'a>(pods: &'a [Value], job: &str) -> Vec<&'a Value> {
    pods.iter().filter(|p| p["metadata"]["ownerReferences"][0]["name"] == job).collect()
}

#[test]
fn an_indexed_job_spreads_its_parts_and_gives_up_a_failed_index() {
    let c = Cluster::start(3, FAST);
    c.wait_settled(60);
    let n0 = &c.nodes[0];
    // Each part sleeps a little so that the three run at once, then prints its index.
    n0.apply(&indexed_job("parts", 6, 3, "", "sleep 1; echo part $JOB_COMPLETION_INDEX of $SHOAL_POD_NAME"));
    let j = wait_condition(&c.nodes[1], "parts", "Complete", 90);
    assert_eq!(j["status"]["succeeded"], 6, "{}", j["status"]);
    assert_eq!(j["status"]["completedIndexes"], "0-5", "{}", j["status"]);
    // Every finished part is listed as Succeeded (once node 0 has heard
    // the last reports).
    let pods = poll(30, "6 parts Succeeded on node 0", || {
        let pods = n0.pods();
        let done = pods_of_job(&pods, "parts").iter().filter(|p| p["status"]["phase"] == "Succeeded").count();
        if done == 6 { Ok(pods) } else { Err(format!("{done} Succeeded: {pods:?}")) }
    });
    let mine = pods_of_job(&pods, "parts");
    let nodes: BTreeSet<&str> = mine.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
    assert_eq!(nodes.len(), 3, "the 6 parts ran on all 3 nodes: {nodes:?}");
    for p in &mine {
        let name = p["metadata"]["name"].as_str().unwrap();
        let index = name.rsplit_once('-').unwrap().1;
        assert_eq!(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"], index, "{p}");
        assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
        // Dated by when it ran, not 1970 (a finished pod's age was 20,000 days).
        let created = p["metadata"]["creationTimestamp"].as_str().unwrap_or("");
        assert!(created.starts_with("20"), "{p}");
        // Its log, from node 0 whichever node ran it.
        let log = n0.ok(&["logs", name]);
        assert_eq!(log.trim(), format!("part {index} of {name}"), "log of {name}");
    }
    let any = n0.ok(&["logs", "job/parts"]);
    assert!(any.starts_with("part "), "logs job/NAME picks a finished pod: {any}");
    let d = n0.ok(&["describe", "job", "parts"]);
    assert!(d.contains("Completion Mode:  Indexed") && d.contains("Completed Indexes:  0-5"), "{d}");

    // Index 1 always fails: with backoffLimitPerIndex 1 it is tried twice and
    // given up; the others finish; the Job fails with FailedIndexes.
    n0.apply(&indexed_job("flaky", 3, 3, "  backoffLimitPerIndex: 1\n", "test $JOB_COMPLETION_INDEX != 1"));
    let j = wait_condition(&c.nodes[2], "flaky", "Failed", 120);
    let st = &j["status"];
    assert_eq!((st["completedIndexes"].as_str(), st["failedIndexes"].as_str()), (Some("0,2"), Some("1")), "{st}");
    assert_eq!(st["failed"], 2, "index 1 ran twice: {st}");
    let failed = st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").cloned().unwrap();
    assert_eq!(failed["reason"], "FailedIndexes", "{failed}");
    poll(30, "flaky-1 listed as Failed on node 0", || {
        let pods = n0.pods();
        let p1 = find(&pods, "flaky-1").ok_or("flaky-1 not listed")?;
        if p1["status"]["phase"] == "Failed" { Ok(()) } else { Err(format!("{p1}")) }
    });
    // Deleting the Job removes its finished pods from the list.
    n0.ok(&["delete", "job", "parts"]);
    poll(30, "parts' pods gone", || {
        let pods = n0.pods();
        let left = pods_of_job(&pods, "parts").len();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    });
}

#[test]
fn the_deadline_holds_when_its_keeper_dies_and_the_ttl_deletes() {
    let mut c = Cluster::start(3, FAST);
    c.wait_settled(60);
    // Long enough for the keeper to be killed and declared dead first.
    let deadline = 12;
    c.nodes[0].apply(&indexed_job(
        "slow",
        3,
        3,
        &format!("  activeDeadlineSeconds: {deadline}\n  ttlSecondsAfterFinished: 600\n"),
        "sleep 300",
    ));
    let keepers: Vec<String> = poll(30, "the Job's keepers", || {
        let j = c.nodes[0].json(&["get", "job", "slow"])?;
        let k: Vec<String> = j["status"]["keeperNodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if k.len() == 2 { Ok(k) } else { Err(format!("{}", j["status"])) }
    });
    // Its pods run; then the keeper of its deadline is killed with them.
    poll(60, "slow's 3 pods running", || {
        let pods = c.nodes[0].pods();
        let running = pods_of_job(&pods, "slow").iter().filter(|p| p["status"]["phase"] == "Running").count();
        if running == 3 { Ok(()) } else { Err(format!("{running} running")) }
    });
    let k = c.nodes.iter().position(|n| n.name == keepers[0]).expect("keeper is a node");
    c.nodes[k].kill9();
    let other = (k + 1) % 3;
    let j = wait_condition(&c.nodes[other], "slow", "Failed", 90);
    let failed = j["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").cloned().unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded", "{failed}");
    // Its pods stop on the live nodes.
    poll(60, "slow's pods stopped", || {
        let pods = c.nodes[other].pods();
        let running: Vec<String> = pods_of_job(&pods, "slow")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| format!("{} on {}", p["metadata"]["name"], p["spec"]["nodeName"]))
            .collect();
        if running.is_empty() { Ok(()) } else { Err(format!("still running: {running:?}")) }
    });
    let events = c.nodes[other].ok(&["get", "events"]);
    let said_by_a_live_node =
        c.nodes.iter().enumerate().filter(|(i, _)| *i != k).any(|(_, n)| {
            n.ok(&["get", "events"]).lines().any(|l| l.contains("DeadlineExceeded") && l.contains("slow"))
        });
    assert!(said_by_a_live_node, "a DeadlineExceeded event for slow; node {other} says:\n{events}");

    // ttlSecondsAfterFinished: a finished Job is deleted that long after.
    c.nodes[other].apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: brief}\nspec:\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, command: [\"true\"]}]\n",
    );
    wait_condition(&c.nodes[other], "brief", "Complete", 60);
    poll(60, "brief deleted by its TTL", || match c.nodes[other].json(&["get", "job", "brief"]) {
        Err(e) if e.contains("not found") => Ok(()),
        Err(e) => Err(e),
        Ok(j) => Err(format!("still there: {}", j["status"])),
    });
}
