//! ConfigMaps on 3 real nodes: a pod takes variables (`valueFrom`,
//! `envFrom`) and files (a `configMap` volume) from one; changing the
//! ConfigMap rewrites the files in place without restarting the pod; a pod
//! whose ConfigMap or key is missing waits with `CreateContainerConfigError`
//! naming it, and starts once it appears.

mod common;

use common::*;
use serde_json::Value;

fn deployment(name: &str, extra_container: &str, extra_spec: &str, script: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{extra_spec}      containers:\n      - name: c\n        command: [sh, -c, '{script}']\n{extra_container}"
    )
}

/// The only pod of `deploy`, once one is listed.
fn the_pod(node: &TestNode, deploy: &str) -> Value {
    poll(60, &format!("a pod of {deploy}"), || {
        let pods = node.pods();
        pods.into_iter().find(|p| names_replica_of(p, deploy)).ok_or_else(|| "none yet".to_string())
    })
}

fn node_of<'a>(c: &'a Cluster, pod: &Value) -> &'a TestNode {
    let name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    c.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("pod on an unknown node: {pod}"))
}

fn pod_file(c: &Cluster, pod: &Value, rel: &str) -> Option<String> {
    let n = node_of(c, pod);
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    std::fs::read_to_string(n.data_dir().join("pods").join(format!("default_{name}")).join(rel)).ok()
}

#[test]
fn env_and_files_come_from_a_configmap_and_files_follow_its_changes() {
    let c = Cluster::start(3, FAST);
    c.wait_settled(60);
    let n0 = &c.nodes[0];
    let conf = c.dir().join("app.conf");
    std::fs::write(&conf, "threads=2\n").unwrap();
    n0.ok(&["create", "configmap", "app", "--from-literal=MODE=fast", &format!("--from-file={}", path_str(&conf))]);
    let table = n0.ok(&["get", "configmaps"]);
    assert!(table.contains("DATA") && table.lines().any(|l| l.starts_with("app ") && l.contains(" 2 ")), "{table}");
    let d = c.nodes[1].ok(&["describe", "configmap", "app"]);
    assert!(d.contains("threads=2") && d.contains("MODE:"), "{d}");
    n0.apply(&deployment(
        "web",
        "        env:\n        - {name: MODE, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}\n        envFrom:\n        - {prefix: CFG_, configMapRef: {name: app}}\n        volumeMounts:\n        - {name: config, mountPath: /etc/app}\n",
        "      volumes:\n      - {name: config, configMap: {name: app}}\n",
        "echo \"mode=$MODE cfg=$CFG_MODE dir=$SHOAL_VOLUME_CONFIG\" > $SHOAL_POD_DIR/env.txt; exec sleep 600",
    ));
    n0.wait_ready("web", 1, 60);
    let pod = the_pod(n0, "web");
    let env = poll(30, "env.txt written", || pod_file(&c, &pod, "env.txt").ok_or("not yet".to_string()));
    assert!(env.starts_with("mode=fast cfg=fast dir=/"), "{env}");
    assert!(env.trim_end().ends_with("/volumes/config"), "the volume's path is in SHOAL_VOLUME_CONFIG: {env}");
    assert_eq!(pod_file(&c, &pod, "volumes/config/app.conf").as_deref(), Some("threads=2\n"));
    assert_eq!(pod_file(&c, &pod, "volumes/config/MODE").as_deref(), Some("fast"));
    let id = pod["status"]["containerStatuses"][0]["containerID"].clone();

    // A change to the ConfigMap, applied on another node, rewrites the files
    // in place; the pod is not restarted.
    c.nodes[2].apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata:\n  MODE: slow\n  app.conf: |\n    threads=8\n",
    );
    poll(30, "app.conf updated in place", || match pod_file(&c, &pod, "volumes/config/app.conf") {
        Some(s) if s == "threads=8\n" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(pod_file(&c, &pod, "volumes/config/MODE").as_deref(), Some("slow"));
    let now = the_pod(n0, "web");
    assert_eq!(now["metadata"]["name"], pod["metadata"]["name"], "same pod");
    assert_eq!(now["status"]["containerStatuses"][0]["containerID"], id, "not restarted: {now}");
    assert_eq!(now["status"]["containerStatuses"][0]["restartCount"], 0);
}

#[test]
fn a_missing_configmap_or_key_holds_the_pod_until_it_appears() {
    let c = Cluster::start(3, FAST);
    c.wait_settled(60);
    let n0 = &c.nodes[0];
    n0.apply(&deployment(
        "late",
        "        env:\n        - {name: LEVEL, valueFrom: {configMapKeyRef: {name: later, key: LEVEL}}}\n",
        "",
        "echo level=$LEVEL > $SHOAL_POD_DIR/env.txt; exec sleep 600",
    ));
    let waiting = |want: &str| {
        poll(60, &format!("the pod waiting: {want}"), || {
            let p = the_pod(n0, "late");
            let st = &p["status"];
            let ok = st["reason"] == "CreateContainerConfigError"
                && st["message"].as_str().is_some_and(|m| m.contains(want))
                && st["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError";
            if ok { Ok(p) } else { Err(format!("{st}")) }
        })
    };
    waiting("configmap \"later\" not found");
    let table = n0.ok(&["get", "pods"]);
    assert!(table.contains("CreateContainerConfigError"), "get pods shows why: {table}");
    n0.ok(&["create", "configmap", "later", "--from-literal=OTHER=1"]);
    let p = waiting("couldn't find key \"LEVEL\" in ConfigMap default/later");
    // The node that runs it says so (each node keeps its own events).
    let events = node_of(&c, &p).ok(&["get", "events"]);
    assert!(events.contains("CreateContainerConfigError"), "{events}");
    c.nodes[1].apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {OTHER: '1', LEVEL: '7'}\n");
    n0.wait_ready("late", 1, 60);
    let pod = the_pod(n0, "late");
    let env = poll(30, "env.txt written", || pod_file(&c, &pod, "env.txt").ok_or("not yet".to_string()));
    assert_eq!(env.trim(), "level=7");
    // Bad input names its field.
    let o = n0.cli(&["create", "configmap", "bad", "--from-literal=a/b=1"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a/b") && err.contains("'/'"), "{err}");
    let o =
        n0.cli_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {a/b: x}\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("data.a/b"), "{err}");
    // An immutable ConfigMap refuses a change to its data.
    let frozen = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {K: '1'}\n";
    n0.apply(frozen);
    let o = c.nodes[2].cli_stdin(&["apply", "-f", "-"], &frozen.replace("'1'", "'2'"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("immutable"), "{err}");
    assert!(c.nodes[2].apply(frozen).contains("unchanged"), "the same data is fine");
}
