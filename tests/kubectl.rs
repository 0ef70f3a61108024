//! Real kubectl against real nodes (a 3-node cluster for the verbs; one
//! node for the watch-protocol and plain-HTTP checks): HTTPS with the cluster CA, the kubeconfig
//! `shoal kubeconfig` writes, discovery, every everyday verb, and the TLS
//! failures a user can meet (a foreign CA, a wrong server name, an expired
//! certificate, plain HTTP where it is not served), each refused with a
//! clear error.
//!
//! Runs the newest and the oldest kubectl found beside `/usr/bin/kubectl`
//! (versioned binaries `kubectl.1.NN`), else the one on PATH.

mod common;

use std::path::Path;
use std::process::Command;

use common::kubectl::*;
use common::*;
use serde_json::Value;

#[test]
fn kubectl_works_over_https_with_the_kubeconfig_shoal_writes() {
    let bins = kubectls();
    if bins.is_empty() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "kubectl is needed under CI (.ci/run installs it)");
        eprintln!("SKIPPED: no kubectl on this machine (apt install kubernetes-client)");
        return;
    }
    let c = Cluster::start(3, FAST);
    let node = &c.nodes[0];
    node.apply(&web_deployment("web", 2));
    let kc = node.dir.join("kube").join("config");
    // Printed, and merged into a file that already holds another cluster.
    let printed = node.ok(&["kubeconfig"]);
    assert!(printed.contains("certificate-authority-data"), "{printed}");
    std::fs::create_dir_all(kc.parent().unwrap()).unwrap();
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://10.9.9.9:6443'}\nusers: []\ncontexts:\n- name: other\n  context: {cluster: other, user: nobody}\ncurrent-context: other\n",
    )
    .unwrap();
    node.ok(&["kubeconfig", "--write", "--kubeconfig", kc.to_str().unwrap()]);
    for bin in &bins {
        let v = bin.display();
        let contexts = ok(bin, &kc, &["config", "get-contexts", "-o", "name"]);
        assert!(contexts.contains("other") && contexts.contains("shoal-n1"), "{v}: {contexts}");
        let current = ok(bin, &kc, &["config", "current-context"]);
        assert_eq!(current.trim(), "shoal-n1", "{v}");
        let version = ok(bin, &kc, &["version", "-o", "json"]);
        let version: Value = serde_json::from_str(&version).unwrap();
        assert!(version["serverVersion"]["gitVersion"].is_string(), "{v}: {version}");
        // Discovery: resources with their short names.
        let res = ok(bin, &kc, &["api-resources", "--no-headers"]);
        for (short, name) in [("deploy", "deployments"), ("po", "pods"), ("svc", "services"), ("cj", "cronjobs")] {
            assert!(
                res.lines().any(|l| l.split_whitespace().next() == Some(name) && l.contains(short)),
                "{v}: {name} ({short}) not in api-resources:\n{res}"
            );
        }
        // get, by short name, as JSON and as names.
        let nodes: Value = serde_json::from_str(&ok(bin, &kc, &["get", "nodes", "-o", "json"])).unwrap();
        assert_eq!(nodes["items"].as_array().map(Vec::len), Some(3), "{v}");
        assert_eq!(nodes["items"][0]["metadata"]["name"], "n1", "{v}");
        let deploys = ok(bin, &kc, &["get", "deploy", "-o", "name"]);
        assert_eq!(deploys.trim(), "deployment.apps/web", "{v}");
        poll(30, "two web pods through kubectl", || {
            let pods = ok(bin, &kc, &["get", "po", "-o", "name"]);
            let n = pods.lines().filter(|l| l.starts_with("pod/web-")).count();
            if n == 2 { Ok(()) } else { Err(pods) }
        });
        let replicas = ok(bin, &kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
        assert_eq!(replicas, "2", "{v}");
        // Server-side tables: kubectl prints Kubernetes' columns.
        poll(30, "both web replicas Running in kubectl's table", || {
            let out = ok(bin, &kc, &["get", "pods"]);
            let header: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
            assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{v}: {out}");
            let running =
                out.lines().filter(|l| l.starts_with("web-") && l.contains(" 1/1 ") && l.contains("Running")).count();
            if running == 2 { Ok(()) } else { Err(out) }
        });
        let wide = ok(bin, &kc, &["get", "pods", "-o", "wide", "--no-headers"]);
        assert!(
            wide.lines().all(|l| l.split_whitespace().nth(6).is_some_and(|n| ["n1", "n2", "n3"].contains(&n))),
            "{v}: the NODE column: {wide}"
        );
        // The pods' rows come from the nodes that run them; the
        // Deployment's counts from the gossiped view, which can trail
        // them by a gossip round (as a Deployment's status trails its
        // pods in Kubernetes).
        poll(30, "the Deployment's table row at 2/2", || {
            let deploy = ok(bin, &kc, &["get", "deploy", "web"]);
            assert!(deploy.contains("UP-TO-DATE"), "{v}: {deploy}");
            if deploy.lines().nth(1).is_some_and(|l| l.contains("2/2")) { Ok(()) } else { Err(deploy) }
        });
        let nodes = ok(bin, &kc, &["get", "nodes"]);
        assert!(nodes.lines().nth(1).is_some_and(|l| l.starts_with("n1") && l.contains("Ready")), "{v}: {nodes}");
        let all = ok(bin, &kc, &["get", "all", "-A"]);
        assert!(all.contains("deployment.apps/web") && all.contains("pod/web-"), "{v}: {all}");
        let yaml = ok(bin, &kc, &["get", "deploy", "web", "-o", "yaml"]);
        assert!(yaml.contains("kind: Deployment") && yaml.contains("name: web"), "{v}: {yaml}");
        let described = ok(bin, &kc, &["describe", "deploy", "web"]);
        assert!(described.contains("Replicas:") && described.contains("2 desired"), "{v}: {described}");
        let logs = kubectl(bin, &kc, &["logs", "deploy/web", "--tail", "5"]);
        assert!(logs.status.success(), "{v}: {}", String::from_utf8_lossy(&logs.stderr));
        let err = fails(bin, &kc, &["delete", "configmap", "nothing-here"]);
        assert!(err.contains("NotFound") && err.contains("nothing-here"), "{v}: {err}");
    }
    let bin = &bins[bins.len() - 1];
    // Writes: scale, apply, delete.
    ok(bin, &kc, &["scale", "deploy", "web", "--replicas", "3"]);
    assert_eq!(ok(bin, &kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    let cm = kc.with_file_name("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-kubectl}\ndata: {k: v}\n").unwrap();
    let out = ok(bin, &kc, &["apply", "-f", cm.to_str().unwrap()]);
    assert!(out.contains("configmap/from-kubectl created"), "{out}");
    assert_eq!(ok(bin, &kc, &["get", "cm", "from-kubectl", "-o", "jsonpath={.data.k}"]), "v");
    // PATCH: label and annotate (strategic merge on maps), merge and JSON
    // patches.
    let out = ok(bin, &kc, &["label", "deploy", "web", "tier=front"]);
    assert!(out.contains("deployment.apps/web labeled"), "{out}");
    assert_eq!(ok(bin, &kc, &["get", "deploy", "web", "-o", "jsonpath={.metadata.labels.tier}"]), "front");
    let out = ok(bin, &kc, &["annotate", "cm", "from-kubectl", "note=hello"]);
    assert!(out.contains("annotated"), "{out}");
    assert_eq!(ok(bin, &kc, &["get", "cm", "from-kubectl", "-o", "jsonpath={.metadata.annotations.note}"]), "hello");
    ok(bin, &kc, &["patch", "deploy", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":2}}"#]);
    assert_eq!(ok(bin, &kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    ok(
        bin,
        &kc,
        &["patch", "cm", "from-kubectl", "--type", "json", "-p", r#"[{"op":"add","path":"/data/k2","value":"v2"}]"#],
    );
    assert_eq!(ok(bin, &kc, &["get", "cm", "from-kubectl", "-o", "jsonpath={.data.k2}"]), "v2");
    // Strategic merge patches of lists: set env merges env by name.
    ok(bin, &kc, &["set", "env", "deploy/web", "GREETING=hi"]);
    ok(bin, &kc, &["set", "env", "deploy/web", "OTHER=1"]);
    let env = ok(bin, &kc, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"]);
    assert_eq!(env, "GREETING OTHER", "{env}");
    let out = ok(bin, &kc, &["delete", "cm", "from-kubectl"]);
    assert!(out.contains("deleted"), "{out}");

    // kubectl apply, as people use it: create, then change the manifest
    // and apply again (a three-way strategic merge patch computed by
    // kubectl), with its default strict validation done by the server.
    for b in &bins {
        let v = b.display();
        let app = kc.with_file_name("app.yaml");
        let manifest = web_deployment("app", 1).replace("      containers:", "      affinity: {}\n      containers:");
        std::fs::write(&app, &manifest).unwrap();
        let o = kubectl(b, &kc, &["apply", "-f", app.to_str().unwrap()]);
        assert!(o.status.success(), "{v}: {o:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("deployment.apps/app created"), "{v}: {o:?}");
        // A Kubernetes field Shoal does not use: applied, with a warning.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("Warning: spec.template.spec.affinity: not supported"), "{v}: {err}");
        // Applied again as it is: nothing to change.
        std::fs::write(&app, web_deployment("app", 1)).unwrap();
        ok(b, &kc, &["apply", "-f", app.to_str().unwrap()]);
        let out = ok(b, &kc, &["apply", "-f", app.to_str().unwrap()]);
        assert!(out.contains("unchanged"), "{v}: {out}");
        // Changed: two replicas and an env var; an env var set by hand
        // survives (it was never in the applied manifest).
        ok(b, &kc, &["set", "env", "deploy/app", "BY_HAND=1"]);
        // (Without the field Shoal drops: kept in the manifest, it would
        // differ from the stored object at every apply.)
        let changed = web_deployment("app", 1)
            .replace("replicas: 1", "replicas: 2")
            .replace("          command:", "          env: [{name: FROM_FILE, value: \"x\"}]\n          command:");
        std::fs::write(&app, &changed).unwrap();
        let out = ok(b, &kc, &["apply", "-f", app.to_str().unwrap()]);
        assert!(out.contains("deployment.apps/app configured"), "{v}: {out}");
        let got = ok(
            b,
            &kc,
            &[
                "get",
                "deploy",
                "app",
                "-o",
                "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env[*].name}",
            ],
        );
        let mut words: Vec<&str> = got.split_whitespace().collect();
        words[1..].sort();
        assert_eq!(words, ["2", "BY_HAND", "FROM_FILE"], "{v}");
        let last = ok(
            b,
            &kc,
            &[
                "get",
                "deploy",
                "app",
                "-o",
                "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
            ],
        );
        assert!(last.contains("FROM_FILE"), "{v}: kubectl's record of what it applied: {last}");
        ok(b, &kc, &["delete", "-f", app.to_str().unwrap()]);
        // A field Kubernetes does not have: refused under kubectl's
        // default (Strict), a warning when asked for (Warn).
        let typo = kc.with_file_name("typo.yaml");
        std::fs::write(&typo, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, lables: {a: b}}\ndta: {k: v}\n")
            .unwrap();
        let err = fails(b, &kc, &["create", "-f", typo.to_str().unwrap()]);
        assert!(
            err.contains("strict decoding error")
                && err.contains("unknown field \"dta\"")
                && err.contains("metadata.lables"),
            "{v}: {err}"
        );
        let o = kubectl(b, &kc, &["create", "--validate=warn", "-f", typo.to_str().unwrap()]);
        assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Warning: dta"), "{v}: {o:?}");
        ok(b, &kc, &["delete", "cm", "typo"]);
    }

    // A foreign CA: refused, and kubectl says why.
    let foreign = shoal::net::tls::Identity::create_cluster("elsewhere").unwrap();
    let text = std::fs::read_to_string(&kc).unwrap();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s.trim().as_bytes())
    };
    let ours = b64(&node.cluster_ca());
    assert!(text.contains(&ours), "the kubeconfig holds the cluster's CA");
    let bad = kc.with_file_name("foreign");
    std::fs::write(&bad, text.replace(&ours, &b64(&foreign.ca_cert_pem))).unwrap();
    let err = fails(bin, &bad, &["get", "pods"]);
    assert!(err.contains("certificate signed by unknown authority") || err.contains("x509"), "{err}");
    // A name the certificate does not hold.
    let err = fails(bin, &kc, &["--tls-server-name", "not-this-node.example", "get", "pods"]);
    assert!(err.contains("not-this-node.example") && err.contains("x509"), "{err}");
    // A wrong token: 401, as kubectl shows it.
    let wrong = kc.with_file_name("wrong-token");
    std::fs::write(&wrong, text.replace(&node.token(), "not-the-token")).unwrap();
    let err = fails(bin, &wrong, &["get", "pods"]);
    assert!(err.contains("You must be logged in") && err.contains("invalid bearer token"), "{err}");
    // The shoal CLI refuses a foreign CA too, naming TLS.
    let ca_file = node.dir.join("foreign-ca.pem");
    std::fs::write(&ca_file, &foreign.ca_cert_pem).unwrap();
    let o = node.cli(&["get", "pods", "--ca-file", ca_file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS") && err.contains("UnknownIssuer"), "{err}");
    // From a machine with no copy of the CA, the join token pins it.
    let nowhere = node.dir.join("no-data-dir");
    let pinned = |pin: &str| {
        Command::new(BIN)
            .args(["get", "nodes", "--server", &node.server(), "--token", &node.token(), "--ca-pin", pin])
            .arg("--data-dir")
            .arg(&nowhere)
            .output()
            .unwrap()
    };
    let o = pinned(node.ok(&["token"]).trim());
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("n1"), "{o:?}");
    let o = pinned(&foreign.ca_hash().unwrap());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("does not match the pinned hash"), "{err}");
    let o = Command::new(BIN)
        .args(["get", "nodes", "--server", &node.server(), "--token", &node.token()])
        .arg("--data-dir")
        .arg(&nowhere)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--ca-file"),
        "without a CA or a pin, the CLI says what to give: {err}"
    );
}

#[test]
fn plain_http_is_served_only_where_allowed_and_refused_with_directions() {
    // Loopback by default: a plain-HTTP client on this host is served.
    let node = TestNode::start("p1", FAST, &[]);
    let addr = std::net::SocketAddr::from((node.ip, 7420));
    let r = http_get_auth(addr, "/api/v1/namespaces", &node.token()).unwrap();
    assert!(r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"), "{r}");
    // HTTPS only: the same request gets one answer saying what to do.
    let strict = TestNode::start("p2", FAST, &["--api-plain-http", "off"]);
    let r =
        http_get_auth(std::net::SocketAddr::from((strict.ip, 7420)), "/api/v1/namespaces", &strict.token()).unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("this API speaks HTTPS") && r.contains("shoal kubeconfig"), "{r}");
    // Over HTTPS the CLI works as ever.
    let out = strict.ok(&["get", "namespaces"]);
    assert!(out.contains("default"), "{out}");
    // A plain URL to it from the CLI: the node's refusal, passed on.
    let o = Command::new(BIN)
        .args(["get", "namespaces", "--server", &format!("http://{}:7420", strict.ip)])
        .env("SHOAL_DATA_DIR", strict.data_dir())
        .env("XDG_CACHE_HOME", strict.dir.join("cache"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("this API speaks HTTPS"), "{o:?}");
}

#[test]
fn when_the_current_node_dies_another_context_still_works() {
    let Some(bin) = kubectls().pop() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "kubectl is needed under CI (.ci/run installs it)");
        eprintln!("SKIPPED: no kubectl on this machine (apt install kubernetes-client)");
        return;
    };
    let mut c = Cluster::start(3, FAST);
    c.nodes[0].apply(&web_deployment("web", 3));
    let kc = c.nodes[0].dir.join("kube").join("config");
    c.nodes[0].ok(&["kubeconfig", "--write", "--kubeconfig", kc.to_str().unwrap()]);
    let contexts = ok(&bin, &kc, &["config", "get-contexts", "-o", "name"]);
    let mut contexts: Vec<&str> = contexts.lines().collect();
    contexts.sort();
    assert_eq!(contexts, ["shoal-n1", "shoal-n2", "shoal-n3"]);
    assert_eq!(ok(&bin, &kc, &["config", "current-context"]).trim(), "shoal-n1");
    // The node in the current context dies: kubectl cannot reach it...
    c.nodes[0].kill9();
    let err = fails(&bin, &kc, &["get", "pods", "--request-timeout", "3s"]);
    assert!(!err.is_empty());
    // ...and another context answers, with the cluster's whole state.
    ok(&bin, &kc, &["config", "use-context", "shoal-n2"]);
    poll(10, "n1 NotReady, seen through n2", || {
        let nodes = ok(&bin, &kc, &["get", "nodes", "--no-headers"]);
        if nodes.lines().any(|l| l.starts_with("n1 ") && l.contains("NotReady")) { Ok(()) } else { Err(nodes) }
    });
    poll(30, "3 web pods Running on n2 and n3, seen through n2", || {
        let out = ok(&bin, &kc, &["get", "pods", "-o", "wide", "--no-headers"]);
        let running = out
            .lines()
            .filter(|l| l.starts_with("web-") && l.contains("Running") && l.split_whitespace().nth(6) != Some("n1"))
            .count();
        if running == 3 { Ok(()) } else { Err(out) }
    });
}

/// A kubectl left running (`get -w`), its output lines read as they come.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(bin: &Path, kubeconfig: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for r in [Box::new(out) as Box<dyn std::io::Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        Running { child, lines, seen: Vec::new() }
    }

    /// Waits up to `secs` for a line that passes `f`.
    fn expect(&mut self, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line {what} within {secs}s; kubectl printed:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kubectl_selects_watches_waits_and_resumes_from_watch_versions() {
    let bins = kubectls();
    if bins.is_empty() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "kubectl is needed under CI (.ci/run installs it)");
        eprintln!("SKIPPED: no kubectl on this machine (apt install kubernetes-client)");
        return;
    }
    let node = TestNode::start("w1", FAST, &[]);
    node.apply(&web_deployment("web", 2));
    node.apply(&web_deployment("api", 1));
    let kc = node.dir.join("kube").join("config");
    std::fs::create_dir_all(kc.parent().unwrap()).unwrap();
    node.ok(&["kubeconfig", "--write", "--kubeconfig", kc.to_str().unwrap()]);
    for bin in &bins {
        let v = bin.display();
        // Waits that kubectl builds on watches.
        for d in ["web", "api"] {
            let out = ok(bin, &kc, &["rollout", "status", &format!("deploy/{d}"), "--timeout", "60s"]);
            assert!(out.contains("successfully rolled out"), "{v}: {out}");
        }
        let out = ok(bin, &kc, &["wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout", "60s"]);
        assert_eq!(out.lines().filter(|l| l.contains("condition met")).count(), 2, "{v}: {out}");
        // Label and field selectors.
        let names = |args: &[&str]| -> Vec<String> {
            let mut a = vec!["get", "pods", "-o", "name"];
            a.extend_from_slice(args);
            let mut n: Vec<String> =
                ok(bin, &kc, &a).lines().map(|l| l.trim_start_matches("pod/").to_string()).collect();
            n.sort();
            n
        };
        let web = names(&["-l", "app=web"]);
        assert!(web.len() == 2 && web.iter().all(|n| n.starts_with("web-")), "{v}: {web:?}");
        let not_web = names(&["-l", "app!=web"]);
        assert!(not_web.len() == 1 && not_web[0].starts_with("api-"), "{v}: {not_web:?}");
        assert_eq!(names(&["-l", "app in (web,api)"]).len(), 3, "{v}");
        assert_eq!(names(&["--field-selector", "spec.nodeName=w1"]).len(), 3, "{v}");
        assert!(names(&["--field-selector", "spec.nodeName=elsewhere"]).is_empty(), "{v}");
        assert_eq!(
            names(&["-l", "app=web", "--field-selector", &format!("metadata.name={}", web[0])]),
            [web[0].clone()]
        );
        let err = fails(bin, &kc, &["get", "pods", "-l", "app in (web"]);
        assert!(err.contains("BadRequest") && err.contains("closing parenthesis"), "{v}: {err}");
    }
    let bin = &bins[bins.len() - 1];
    // get -w: the current pods, then each change as it happens.
    let mut w =
        Running::start(bin, &kc, &["get", "pods", "-l", "app=web", "-w", "--output-watch-events", "--no-headers"]);
    let first = w.expect(20, "ADDED for web", |l| l.starts_with("ADDED") && l.contains("web-"));
    w.expect(20, "ADDED for the other web pod", |l| l.starts_with("ADDED") && l.contains("web-") && l != first);
    ok(bin, &kc, &["scale", "deploy", "web", "--replicas", "3"]);
    let added = w.expect(30, "ADDED for a third web pod", |l| {
        l.starts_with("ADDED") && l.split_whitespace().nth(1).is_some_and(|n| n.starts_with("web-"))
    });
    let third = added.split_whitespace().nth(1).unwrap().to_string();
    w.expect(30, "the third pod Running", |l| l.starts_with("MODIFIED") && l.contains(&third) && l.contains("Running"));
    ok(bin, &kc, &["scale", "deploy", "web", "--replicas", "2"]);
    w.expect(30, "DELETED for a web pod", |l| l.starts_with("DELETED") && l.contains("web-"));
    assert!(!w.seen.iter().any(|l| l.contains("api-")), "the selector holds in the watch: {:?}", w.seen);
    drop(w);

    // The protocol underneath: a watch from a list's version sees what
    // changed since; another version gets 410 Expired.
    let list: Value =
        serde_json::from_str(&ok(bin, &kc, &["get", "--raw", "/api/v1/namespaces/default/configmaps"])).unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert!(rv.starts_with('w'), "a list carries the node's watch version: {list}");
    let mut raw = Running::start(
        bin,
        &kc,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=30"),
        ],
    );
    let cm = kc.with_file_name("watched.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {k: v1}\n").unwrap();
    ok(bin, &kc, &["create", "-f", cm.to_str().unwrap()]);
    let line = raw.expect(20, "ADDED for the new ConfigMap", |l| l.contains("\"ADDED\"") && l.contains("watched"));
    let event: Value = serde_json::from_str(&line).unwrap();
    let from_watch = event["object"].clone();
    let watch_rv = from_watch["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert!(watch_rv.starts_with('w') && watch_rv != rv, "events carry the newer version: {event}");
    drop(raw);
    // A write quoting the version a watch gave is a write against the
    // object as that version saw it...
    let mut edited = from_watch.clone();
    edited["data"]["k"] = "v2".into();
    let file = kc.with_file_name("edited.json");
    std::fs::write(&file, edited.to_string()).unwrap();
    ok(bin, &kc, &["replace", "-f", file.to_str().unwrap()]);
    assert_eq!(ok(bin, &kc, &["get", "cm", "watched", "-o", "jsonpath={.data.k}"]), "v2");
    // ...so the same version again is stale: a conflict, as in Kubernetes.
    edited["data"]["k"] = "v3".into();
    std::fs::write(&file, edited.to_string()).unwrap();
    let err = fails(bin, &kc, &["replace", "-f", file.to_str().unwrap()]);
    assert!(err.contains("Conflict") || err.contains("modified"), "{err}");
    for (stale, says) in [("w00000000-1", "another node"), ("12345.0abc", "list again")] {
        let out = ok(
            bin,
            &kc,
            &["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={stale}")],
        );
        let e: Value = serde_json::from_str(out.lines().next().unwrap_or("")).unwrap();
        assert_eq!((e["type"].as_str(), e["object"]["code"].as_i64()), (Some("ERROR"), Some(410)), "{out}");
        assert_eq!(e["object"]["reason"], "Expired", "{out}");
        assert!(e["object"]["message"].as_str().unwrap().contains(says), "{out}");
    }
    // delete waits for the object to go, through a watch.
    let out = ok(bin, &kc, &["delete", "cm", "watched", "--wait", "--timeout", "20s"]);
    assert!(out.contains("deleted"), "{out}");
}

/// A Deployment whose pod prints a numbered line every 200 ms.
const TICKER: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: ticker}
spec:
  replicas: 3
  selector: {matchLabels: {app: ticker}}
  template:
    metadata: {labels: {app: ticker}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          command: ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"]
          env: [{name: LEVEL, value: "one"}]
"#;

/// `kubectl create KIND` for each kind Shoal serves (protobuf bodies from
/// kubectl 1.32 on): what each wrote, read back.
fn kubectl_create_verbs(bin: &Path, kc: &Path, i: usize) {
    let v = bin.display();
    let made = format!("made-{i}");
    let made = made.as_str();
    let get =
        |args: &[&str]| -> Value { serde_json::from_str(&ok(bin, kc, &[args, &["-o", "json"]].concat())).unwrap() };
    ok(bin, kc, &["create", "namespace", made]);
    assert_eq!(get(&["get", "ns", made])["metadata"]["name"], made, "{v}");
    ok(bin, kc, &["create", "secret", "generic", "pw", "--from-literal=password=s3cret", "-n", made]);
    let s = get(&["get", "secret", "pw", "-n", made]);
    assert_eq!((s["type"].as_str(), s["data"]["password"].as_str()), (Some("Opaque"), Some("czNjcmV0")), "{v}");
    ok(
        bin,
        kc,
        &["create", "deployment", "idle", "--image=shoal-test/none:1", "--replicas=0", "-n", made, "--", "sleep", "9"],
    );
    let d = get(&["get", "deploy", "idle", "-n", made]);
    assert_eq!(d["spec"]["replicas"], 0, "{v}: replicas 0 is kept");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["command"], serde_json::json!(["sleep", "9"]), "{v}");
    ok(bin, kc, &["create", "service", "clusterip", "idle", "--tcp=80:8080", "-n", made]);
    let s = get(&["get", "svc", "idle", "-n", made]);
    assert_eq!(
        (s["spec"]["ports"][0]["port"].as_i64(), s["spec"]["ports"][0]["targetPort"].as_i64()),
        (Some(80), Some(8080)),
        "{v}"
    );
    ok(
        bin,
        kc,
        &["create", "cronjob", "yearly", "--image=shoal-test/none:1", "--schedule=0 0 1 1 *", "-n", made, "--", "date"],
    );
    let c = get(&["get", "cj", "yearly", "-n", made]);
    assert_eq!(c["spec"]["schedule"], "0 0 1 1 *", "{v}");
    assert_eq!(c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"], "OnFailure", "{v}");
    ok(bin, kc, &["delete", "namespace", made, "--wait=false"]);
}

/// The nodes kubectl's wide pod table shows for `app`'s pods.
fn pod_nodes(bin: &Path, kc: &Path, app: &str) -> Vec<String> {
    let out = ok(bin, kc, &["get", "pods", "-l", &format!("app={app}"), "-o", "wide", "--no-headers"]);
    out.lines()
        .filter(|l| l.contains("Running"))
        .filter_map(|l| l.split_whitespace().nth(6).map(String::from))
        .collect()
}

#[test]
fn kubectl_server_side_apply_edit_logs_rollouts_deletes_and_drain() {
    let bins = need_kubectl();
    if bins.is_empty() {
        return;
    }
    let c = Cluster::start(3, FAST);
    let n1 = &c.nodes[0];
    let kc = n1.dir.join("kube").join("config");
    n1.ok(&["kubeconfig", "--write", "--kubeconfig", kc.to_str().unwrap()]);
    let manifest = n1.dir.join("ticker.yaml");
    for (i, bin) in bins.iter().enumerate() {
        let v = bin.display();
        let ns = format!("ssa{i}");
        // Server-side apply: creates, then merges what the manager applies.
        std::fs::write(&manifest, TICKER.replace("name: ticker}", &format!("name: ticker, namespace: {ns}}}")))
            .unwrap();
        let out = ok(bin, &kc, &["create", "namespace", &ns, "--dry-run=client", "-o", "yaml"]);
        std::fs::write(n1.dir.join("ns.yaml"), out).unwrap();
        let out = ok(bin, &kc, &["apply", "--server-side", "-f", n1.dir.join("ns.yaml").to_str().unwrap()]);
        assert_eq!(out.trim(), format!("namespace/{ns} serverside-applied"), "{v}");
        let out = ok(bin, &kc, &["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
        assert_eq!(out.trim(), "deployment.apps/ticker serverside-applied", "{v}");
        std::fs::write(&manifest, std::fs::read_to_string(&manifest).unwrap().replace("\"one\"", "\"two\"")).unwrap();
        ok(bin, &kc, &["apply", "--server-side", "--field-manager", "ci", "-f", manifest.to_str().unwrap()]);
        let env = ok(
            bin,
            &kc,
            &["-n", &ns, "get", "deploy", "ticker", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].value}"],
        );
        assert_eq!(env, "two", "{v}");
        // `kubectl create configmap` (from 1.32 on, a protobuf body).
        let name = format!("made{i}");
        ok(bin, &kc, &["create", "configmap", name.as_str(), "--from-literal=k=v"]);
        assert_eq!(ok(bin, &kc, &["get", "cm", &name, "-o", "jsonpath={.data.k}"]), "v", "{v}");
        ok(bin, &kc, &["delete", "namespace", &ns, "--wait=false"]);
    }
    for (i, bin) in bins.iter().enumerate() {
        kubectl_create_verbs(bin, &kc, i);
        everyday(n1, bin, &kc, i);
    }
}

/// edit, logs -f, rollout restart/undo/history, cordon/drain/uncordon,
/// eviction and deletes, with kubectl `bin` (names suffixed with `i`).
fn everyday(n1: &TestNode, bin: &Path, kc: &Path, i: usize) {
    let v = bin.display();
    let t = format!("ticker{i}");
    let dt = format!("deploy/{t}");
    let conf = format!("conf{i}");
    n1.apply(&TICKER.replace("ticker", &t));
    n1.wait_ready(&t, 3, 60);
    // edit: kubectl's editor is any program that rewrites the file.
    n1.ok(&["create", "configmap", &conf, "--from-literal=mode=plain"]);
    let editor = n1.dir.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/mode: plain/mode: edited/' \"$1\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&editor).status().unwrap();
    let o = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kc)
        .args(["edit", "configmap", &conf])
        .env("KUBE_EDITOR", &editor)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{v}: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("configmap/{conf} edited"), "{v}");
    assert_eq!(ok(bin, kc, &["get", "cm", &conf, "-o", "jsonpath={.data.mode}"]), "edited", "{v}");
    // logs -f through a Deployment: new lines keep coming.
    let mut follow = Running::start(bin, kc, &["logs", "-f", &dt, "--tail", "1"]);
    let first = follow.expect(20, "a first tick", |l| l.starts_with("tick-"));
    let n: u64 = first.trim_start_matches("tick-").parse().unwrap();
    follow.expect(20, "a later tick", |l| l.trim_start_matches("tick-").parse::<u64>().is_ok_and(|m| m >= n + 3));
    drop(follow);
    // rollout restart makes a revision; undo goes back to the one before.
    let history = |bin: &Path| -> Vec<String> {
        ok(bin, kc, &["rollout", "history", &dt])
            .lines()
            .filter_map(|l| l.split_whitespace().next().filter(|w| w.parse::<u32>().is_ok()).map(String::from))
            .collect()
    };
    assert_eq!(history(bin), ["1"], "{v}");
    assert_eq!(ok(bin, kc, &["rollout", "restart", &dt]).trim(), format!("deployment.apps/{t} restarted"));
    ok(bin, kc, &["rollout", "status", &dt, "--timeout", "60s"]);
    assert_eq!(history(bin), ["1", "2"], "{v}");
    let out = kubectl(bin, kc, &["rollout", "undo", &dt]);
    assert!(out.status.success(), "{v}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("deployment.apps/{t} rolled back"), "{v}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Warning"), "{v}: {}", String::from_utf8_lossy(&out.stderr));
    ok(bin, kc, &["rollout", "status", &dt, "--timeout", "60s"]);
    assert_eq!(history(bin), ["2", "3"], "{v}: undo re-applies revision 1 as revision 3");
    // cordon / drain / uncordon: a node's replicas move to the others.
    let before = pod_nodes(bin, kc, &t);
    let node = before.iter().find(|n| *n != "n1").map(String::as_str).expect("a replica off n1");
    assert_eq!(ok(bin, kc, &["cordon", node]).trim(), format!("node/{node} cordoned"));
    let nodes = ok(bin, kc, &["get", "node", node, "--no-headers"]);
    assert!(nodes.contains("SchedulingDisabled"), "{v}: {nodes}");
    let err = fails(bin, kc, &["label", "node", node, "disk=ssd"]);
    assert!(err.contains("only spec.unschedulable can be changed"), "{v}: {err}");
    let out = ok(bin, kc, &["drain", node, "--timeout", "60s"]);
    assert!(out.contains(&format!("node/{node} drained")), "{v}: {out}");
    poll(30, "3 pods Running, none on the drained node", || {
        let nodes = pod_nodes(bin, kc, &t);
        if nodes.len() == 3 && !nodes.contains(&node.to_string()) { Ok(()) } else { Err(format!("{nodes:?}")) }
    });
    assert_eq!(ok(bin, kc, &["uncordon", node]).trim(), format!("node/{node} uncordoned"));
    // Eviction where placement would put the pod back: refused, with directions.
    let pod = ok(bin, kc, &["get", "pods", "-l", &format!("app={t}"), "-o", "jsonpath={.items[0].metadata.name}"]);
    let eviction = n1.dir.join("eviction.json");
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    std::fs::write(&eviction, body).unwrap();
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    let err = fails(bin, kc, &["create", "--raw", &path, "-f", eviction.to_str().unwrap()]);
    assert!(err.contains("only from a cordoned node"), "{v}: {err}");
    let err = fails(bin, kc, &["delete", "pod", &pod]);
    assert!(err.contains("rollout restart"), "{v}: {err}");
    // Deletes with options: orphaning is refused, a grace period warned about.
    let err = fails(bin, kc, &["delete", "deploy", &t, "--cascade=orphan"]);
    assert!(err.contains("propagationPolicy Orphan cannot be honoured"), "{v}: {err}");
    let out = kubectl(bin, kc, &["delete", "deploy", &t, "--grace-period=5", "--wait"]);
    assert!(out.status.success(), "{v}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gracePeriodSeconds is not honoured"), "{v}");
    assert_eq!(ok(bin, kc, &["get", "deploy", "-o", "name"]).trim(), "", "{v}");
}

/// Serves TLS on a loopback port with `cert`/`key` (an API certificate of
/// `id`'s cluster) and answers nothing: enough for a client to judge the
/// certificate. Returns the port; the server lives as long as `rt`.
fn tls_server(rt: &tokio::runtime::Runtime, id: &shoal::net::tls::Identity, cert: &str, key: &str) -> u16 {
    let cfg = std::sync::Arc::new(id.api_server_config(cert, key).unwrap());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(s).await;
            });
        }
    });
    port
}

#[test]
fn an_expired_api_certificate_is_refused_by_kubectl_and_the_cli() {
    let bins = need_kubectl();
    let id = shoal::net::tls::Identity::create_cluster("t1").unwrap();
    let (cert, key) = id.issue_api_valid(&["127.0.0.1".into()], Some(((2020, 1, 1), (2021, 1, 1)))).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = tls_server(&rt, &id, &cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &id.ca_cert_pem).unwrap();
    let server = format!("https://127.0.0.1:{port}");
    for bin in &bins {
        let o = Command::new(bin)
            .args(["--server", &server, "--certificate-authority", ca.to_str().unwrap(), "--token", "t"])
            .args(["get", "pods", "--request-timeout", "5s"])
            .env("KUBECONFIG", dir.path().join("none"))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("certificate has expired"), "{}: {err}", bin.display());
    }
    let o = Command::new(BIN)
        .args(["get", "pods", "--server", &server, "--ca-file", ca.to_str().unwrap(), "--token", "t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("TLS") && err.to_lowercase().contains("expired"), "{err}");
    // The same server with a current certificate is trusted (so the refusal
    // above is the dates', not something else).
    let (cert, key) = id.issue_api(&["127.0.0.1".into()]).unwrap();
    let port = tls_server(&rt, &id, &cert, &key);
    let o = Command::new(BIN)
        .args(["get", "pods", "--server", &format!("https://127.0.0.1:{port}"), "--ca-file", ca.to_str().unwrap()])
        .args(["--token", "t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("TLS"), "a valid certificate passes the handshake: {err}");
}
