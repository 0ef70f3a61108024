//! One real node: apply, restart on crash and on failed liveness, scale,
//! delete without orphans, survive kill -9, refuse bad manifests and tokens,
//! run Jobs, serve logs.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::Value;

#[test]
fn apply_makes_every_replica_ready_and_reachable() {
    let node = TestNode::start("solo", FAST, &[]);
    let out = node.apply(&web_deployment("web", 3));
    assert_eq!(out.trim(), "deployment.apps/web created");
    node.wait_ready("web", 3, 30);
    let pods = node.pods();
    assert_eq!(pods.len(), 3);
    let mut ports = std::collections::BTreeSet::new();
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["spec"]["nodeName"], "solo");
        let hp = p["spec"]["containers"][0]["ports"][0]["hostPort"].as_u64().expect("host port") as u16;
        ports.insert(hp);
        let body = http_get(SocketAddr::from((node.ip, hp)), "/").unwrap();
        assert!(body.contains(&format!("pod={}", p["metadata"]["name"].as_str().unwrap())), "{body}");
    }
    assert_eq!(ports.len(), 3, "each replica has its own host port");
    // Applying the same manifest again changes nothing.
    assert_eq!(node.apply(&web_deployment("web", 3)).trim(), "deployment.apps/web unchanged");
    assert_eq!(node.apply(&web_deployment("web", 2)).trim(), "deployment.apps/web configured");
    // `shoal get pods | head -0`: the reader is gone before the CLI writes;
    // it ends quietly (SIGPIPE), not with a panic.
    let mut c = std::process::Command::new(BIN)
        .args(["get", "pods", "-o", "json"])
        .env("SHOAL_SERVER", node.server())
        .env("SHOAL_DATA_DIR", node.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "a closed stdout made the CLI panic: {err}");
}

#[test]
fn a_killed_process_is_restarted_and_counted() {
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(&web_deployment("web", 1));
    node.wait_ready("web", 1, 30);
    let pid = pid_of(&node.pods()[0]).expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let p = poll(30, "web-0 restarted and ready", || {
        let pods = node.pods();
        let p = find(&pods, "web-0").ok_or("no web-0")?.clone();
        let restarts = p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0);
        let ready = p["status"]["containerStatuses"][0]["ready"].as_bool().unwrap_or(false);
        if restarts >= 1 && ready { Ok(p) } else { Err(format!("restarts={restarts} ready={ready}")) }
    });
    assert_ne!(pid_of(&p), Some(pid));
    assert!(!alive(pid));
    assert_eq!(p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 137);
}

#[test]
fn failing_liveness_probe_restarts_the_container() {
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: live}
spec:
  replicas: 1
  selector: {matchLabels: {app: live}}
  template:
    metadata: {labels: {app: live}}
    spec:
      containers:
        - name: c
          command: ["sh", "-c", "touch alive; exec sleep 1000"]
          livenessProbe:
            exec: {command: ["test", "-f", "alive"]}
            periodSeconds: 1
            failureThreshold: 2
"#,
    );
    let pod_dir = node.data_dir().join(format!("pods/default_{}", pod_name(&node, "live-0")));
    poll(30, "alive file", || if pod_dir.join("alive").exists() { Ok(()) } else { Err("missing".into()) });
    std::fs::remove_file(pod_dir.join("alive")).unwrap();
    poll(30, "a liveness restart", || {
        let pods = node.pods();
        let p = find(&pods, "live-0").ok_or("no pod")?;
        let r = p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0);
        if r >= 1 { Ok(()) } else { Err(format!("restarts {r}")) }
    });
    let out = node.ok(&["describe", "pod", &pod_name(&node, "live-0")]);
    assert!(out.contains("Unhealthy") && out.contains("liveness probe failed"), "{out}");
}

#[test]
fn scale_up_and_down_starts_and_stops_processes() {
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(&web_deployment("web", 2));
    node.wait_ready("web", 2, 30);
    node.ok(&["scale", "deployment", "web", "--replicas", "4"]);
    node.wait_ready("web", 4, 30);
    let pids: Vec<i32> = node.pods().iter().filter_map(pid_of).collect();
    assert_eq!(pids.len(), 4);
    node.ok(&["scale", "deployment/web", "--replicas", "1"]);
    node.wait_ready("web", 1, 30);
    poll(30, "scaled-down processes gone", || {
        let left = pids.iter().filter(|p| alive(**p)).count();
        if left == 1 { Ok(()) } else { Err(format!("{left} alive")) }
    });
    poll(10, "one pod listed", || {
        let n = node.pods().len();
        if n == 1 { Ok(()) } else { Err(format!("{n} pods")) }
    });
    let bad = node.cli(&["scale", "deployment", "web", "--replicas", "-3"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("spec.replicas"));
}

#[test]
fn delete_leaves_no_orphan_processes() {
    let node = TestNode::start("solo", FAST, &[]);
    // Each pod forks a child of its own: both must go.
    node.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: forky}
spec:
  replicas: 2
  selector: {matchLabels: {app: forky}}
  template:
    metadata: {labels: {app: forky}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: c
          command: ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]
"#,
    );
    node.wait_ready("forky", 2, 30);
    let pids = poll(10, "pod processes", || {
        let p = node.pod_pids();
        if p.len() >= 6 { Ok(p) } else { Err(format!("{p:?}")) }
    });
    let out = node.ok(&["delete", "deployment", "forky"]);
    assert_eq!(out.trim(), "deployment.apps/forky deleted");
    poll(30, "every process of the deleted pods gone", || {
        let left: Vec<&i32> = pids.iter().filter(|p| alive(**p)).collect();
        if left.is_empty() { Ok(()) } else { Err(format!("still alive: {left:?}")) }
    });
    assert!(node.pod_pids().is_empty());
    let gone = node.cli(&["get", "deployments", "forky"]);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn kill9_and_restart_runs_each_replica_exactly_once() {
    let mut node = TestNode::start("solo", FAST, &[]);
    node.apply(&web_deployment("web", 3));
    node.wait_ready("web", 3, 30);
    let before = node.pod_pids();
    assert_eq!(before.len(), 3);
    node.kill9();
    // The pods outlive the node...
    assert!(before.iter().all(|p| alive(*p)));
    node.restart();
    node.wait_ready("web", 3, 30);
    // ...and the restarted node replaces them: never two copies of a replica.
    poll(30, "exactly one process per replica", || {
        let now = node.pod_pids();
        let old_alive = before.iter().filter(|p| alive(**p)).count();
        if now.len() == 3 && old_alive == 0 { Ok(()) } else { Err(format!("now {now:?}, old alive {old_alive}")) }
    });
    let names: Vec<String> = node.pods().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (name, want) in names.iter().zip(["web-0", "web-1", "web-2"]) {
        assert!(names_replica(name, want), "{names:?}");
    }
}

#[test]
fn bad_manifests_are_refused_with_location_and_store_nothing() {
    let node = TestNode::start("solo", FAST, &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    let good = web_deployment("ok", 1);
    std::fs::write(&f, format!("{good}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bad}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: bad}}}}\n  template:\n    metadata: {{labels: {{app: bad}}}}\n    spec:\n      containers:\n        - name: c\n          command: [\"true\"]\n          resources: {{requests: {{memory: 12Qi}}}}\n")).unwrap();
    let o = node.cli(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:"), "{err}");
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("spec.template.spec.containers[0].resources.requests.memory"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    let list = node.json(&["get", "deployments"]).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "all-or-nothing");
    // Unknown kinds and unsupported fields.
    let o = node.cli_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown kind \"Pod\""));
    let o = node
        .cli_stdin(&["apply", "-f", "-"], &good.replace("      containers:", "      affinity: {}\n      containers:"));
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Warning: -:11:17 document 1: spec.template.spec.affinity: not supported, ignored"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn requests_without_a_valid_token_are_refused_and_change_nothing() {
    let node = TestNode::start("solo", FAST, &[]);
    // No token at all.
    let raw = http_get(SocketAddr::from((node.ip, 7420)), "/api/v1/pods").unwrap();
    assert!(raw.starts_with("HTTP/1.1 401") || raw.starts_with("HTTP/1.0 401"), "{raw}");
    assert!(raw.contains("\"kind\":\"Status\""));
    // A wrong token: apply refused with exit code 4, nothing stored.
    let o = std::process::Command::new(BIN)
        .args(["apply", "-f", "-"])
        .env("SHOAL_SERVER", node.server())
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("SHOAL_TOKEN", "wrong")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(web_deployment("x", 1).as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(node.json(&["get", "deployments"]).unwrap()["items"].as_array().unwrap().len(), 0);
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.data_dir().join("api-token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn jobs_run_to_completion_and_fail_past_their_backoff_limit() {
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: work}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, command: ["sh", "-c", "echo done $SHOAL_POD_NAME"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, command: ["sh", "-c", "exit 3"]}]
"#,
    );
    poll(60, "job work complete", || {
        let j = node.json(&["get", "jobs", "work"])?;
        let complete = j["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Complete"));
        if complete && j["status"]["succeeded"] == 3 { Ok(()) } else { Err(j["status"].to_string()) }
    });
    poll(60, "job doomed failed", || {
        let j = node.json(&["get", "jobs", "doomed"])?;
        let failed = j["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"));
        if failed { Ok(j) } else { Err(j["status"].to_string()) }
    });
    let j = node.json(&["get", "jobs", "doomed"]).unwrap();
    assert_eq!(j["status"]["failed"], 2, "backoffLimit 1 allows two attempts");
    let table = node.ok(&["get", "jobs"]);
    assert!(table.lines().any(|l| l.starts_with("work") && l.contains("Complete") && l.contains("3/3")), "{table}");
    let pods = node.pods();
    let done: Vec<&Value> =
        pods.iter().filter(|p| p["metadata"]["name"].as_str().unwrap().starts_with("work-")).collect();
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|p| p["status"]["phase"] == "Succeeded"));
}

#[test]
fn logs_are_captured_and_followed() {
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: talk}
spec:
  replicas: 1
  selector: {matchLabels: {app: talk}}
  template:
    metadata: {labels: {app: talk}}
    spec:
      containers:
        - name: c
          command: ["sh", "-c", "i=0; while true; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.2; done"]
"#,
    );
    let talk = pod_name(&node, "talk-0");
    let out = poll(30, "logs", || {
        let o = node.cli(&["logs", &talk, "--tail", "4"]);
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        if s.lines().count() == 4 { Ok(s) } else { Err(s) }
    });
    assert!(out.contains("line ") && out.contains("err "), "{out}");
    // Follow: new lines keep arriving.
    let mut child = std::process::Command::new(BIN)
        .args(["logs", "-f", &talk, "--tail", "0"])
        .env("SHOAL_SERVER", node.server())
        .env("SHOAL_DATA_DIR", node.data_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let got = poll(20, "followed lines", || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let n = stdout.read(&mut buf).map_err(|e| e.to_string())?;
        let s = String::from_utf8_lossy(&buf[..n]).into_owned();
        if s.contains("line ") { Ok(s) } else { Err(s) }
    });
    assert!(got.contains("line "));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn image_pods_wait_for_a_docker_node_with_a_reason() {
    let cfg = format!("[runtimes]\ndocker = \"off\"\n{FAST}");
    let node = TestNode::start("solo", &cfg, &[]);
    node.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: img}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    let pods = poll(20, "pending pod with its reason", || {
        let pods = node.pods();
        let ok =
            pods.len() == 1 && pods[0]["status"]["message"] == "no node offers the docker runtime (1 node checked)";
        if ok { Ok(pods) } else { Err(format!("{pods:?}")) }
    });
    assert_eq!(pods[0]["status"]["phase"], "Pending");
    let table = node.ok(&["get", "pods"]);
    assert!(table.contains("Unschedulable"), "{table}");
}

#[test]
fn sigterm_stops_pods_gracefully() {
    let mut node = TestNode::start("solo", FAST, &[]);
    node.apply(&web_deployment("web", 2));
    node.wait_ready("web", 2, 30);
    let pids = node.pod_pids();
    assert_eq!(node.stop(), Some(0));
    assert!(pids.iter().all(|p| !alive(*p)), "pods stopped with the node");
}

#[test]
fn a_stale_resource_version_is_a_conflict() {
    let node = TestNode::start("solo", FAST, &[]);
    node.apply(&web_deployment("web", 1));
    let v = node.json(&["get", "deployments", "web"]).unwrap();
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let with_rv = |replicas: u32| {
        web_deployment("web", replicas)
            .replace("metadata: {name: web}", &format!("metadata: {{name: web, resourceVersion: \"{rv}\"}}"))
    };
    // Current version: accepted.
    assert_eq!(node.apply(&with_rv(2)).trim(), "deployment.apps/web configured");
    // The same (now stale) version again: refused, nothing changed.
    let o = node.cli_stdin(&["apply", "-f", "-"], &with_rv(5));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(Conflict)"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(node.json(&["get", "deployments", "web"]).unwrap()["spec"]["replicas"], 2);
}
