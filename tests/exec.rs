//! `exec` through any node: `shoal exec` and kubectl (Kubernetes' WebSocket
//! remote-command protocol), for process and Docker pods, with stdin, exit
//! codes, a terminal, and a pod on another node than the one asked.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::kubectl::*;
use common::*;

/// The pods of `deploy` with the node each runs on, as seen from `node`.
fn pods_by_node(node: &TestNode, deploy: &str) -> Vec<(String, String)> {
    node.pods()
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == deploy)
        .map(|p| {
            (p["metadata"]["name"].as_str().unwrap().to_string(), p["spec"]["nodeName"].as_str().unwrap_or("").into())
        })
        .collect()
}

fn with_stdin(mut c: Command, input: &str) -> Output {
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command under `script`, which gives it a terminal (123 columns, 45
/// rows); `shoal` talks to `node`.
fn in_terminal(node: &TestNode, cmd: &str) -> Output {
    Command::new("script")
        .args(["-qec", &format!("stty cols 123 rows 45; {cmd}"), "/dev/null"])
        .env("SHOAL_SERVER", node.server())
        .env("SHOAL_DATA_DIR", node.data_dir())
        .env("XDG_CACHE_HOME", node.dir.join("cache"))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run script")
}

#[test]
fn shoal_and_kubectl_exec_in_pods_on_any_node() {
    let c = Cluster::start(3, FAST);
    let n1 = &c.nodes[0];
    n1.apply(&web_deployment("web", 3));
    n1.wait_ready("web", 3, 60);
    let pods = pods_by_node(n1, "web");
    assert_eq!(pods.len(), 3, "{pods:?}");
    // Through n1, for a pod on n1 (if any) and pods elsewhere (relayed).
    let remote: Vec<&(String, String)> = pods.iter().filter(|(_, node)| node != "n1").collect();
    assert!(!remote.is_empty(), "every pod on n1: {pods:?}");
    for (pod, node) in &pods {
        let o =
            n1.cli(&["exec", pod, "--", "sh", "-c", "echo $SHOAL_POD_NAME on $SHOAL_NODE_NAME; echo oops >&2; exit 7"]);
        assert_eq!(o.status.code(), Some(7), "{pod}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), format!("{pod} on {node}\n"));
        assert!(text(&o.stderr).starts_with("oops\n"), "{}", text(&o.stderr));
    }
    // Stdin, to a pod on another node.
    let (pod, _) = remote[0];
    let mut cmd = Command::new(BIN);
    cmd.args(["exec", "-i", pod, "--", "sh", "-c", "tr a-z A-Z; echo done"])
        .env("SHOAL_SERVER", n1.server())
        .env("SHOAL_DATA_DIR", n1.data_dir());
    let o = with_stdin(cmd, "hello\nworld\n");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "HELLO\nWORLD\ndone\n");
    // A terminal: the command sees one, of this terminal's size.
    let o = in_terminal(n1, &format!("{BIN} exec -it {pod} -- sh -c 'tty; stty size; exit 3'"));
    let out = text(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("45 123"), "{out}");
    assert_eq!(o.status.code(), Some(3), "{out}");
    // Mistakes, each named.
    let o = n1.cli(&["exec", "nope", "--", "true"]);
    assert!(text(&o.stderr).contains("\"nope\"") && !o.status.success(), "{}", text(&o.stderr));
    let o = n1.cli(&["exec", pod, "-c", "sidecar", "--", "true"]);
    assert!(text(&o.stderr).contains("no container \"sidecar\"; choose one of: web"), "{}", text(&o.stderr));
    let o = n1.cli(&["exec", pod, "--", "no-such-command"]);
    assert!(text(&o.stderr).contains("no-such-command") && !o.status.success(), "{}", text(&o.stderr));
    // kubectl: 1.30 and newer speak WebSocket; older ones get told.
    let kc = n1.dir.join("kube").join("config");
    n1.ok(&["kubeconfig", "--write", "--kubeconfig", kc.to_str().unwrap()]);
    for bin in need_kubectl() {
        kubectl_exec(n1, &bin, &kc, pod);
    }
}

fn kubectl_exec(node: &TestNode, bin: &Path, kc: &Path, pod: &str) {
    let v = bin.display();
    if minor(bin) < 30 {
        let err = fails(bin, kc, &["exec", pod, "--", "true"]);
        assert!(err.contains("not SPDY: use kubectl 1.30 or newer"), "{v}: {err}");
        return;
    }
    let o = kubectl(bin, kc, &["exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{v}: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n", "{v}");
    assert!(text(&o.stderr).contains("err\n"), "{v}: {}", text(&o.stderr));
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig").arg(kc).args(["exec", "-i", pod, "--", "wc", "-l"]).env_remove("KUBECONFIG");
    let o = with_stdin(cmd, "a\nb\nc\n");
    assert!(o.status.success(), "{v}: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "3", "{v}");
    // By Deployment: kubectl picks one of its pods.
    let out = ok(bin, kc, &["exec", "deploy/web", "--", "sh", "-c", "echo $SHOAL_POD_NAME"]);
    assert!(out.starts_with("web-"), "{v}: {out}");
    let o = in_terminal(node, &format!("{v} --kubeconfig {} exec -it {pod} -- sh -c 'tty; stty size'", kc.display()));
    let out = text(&o.stdout);
    assert!(out.contains("/dev/pts/") && out.contains("45 123"), "{v}: {out}");
}

#[test]
fn exec_in_a_docker_container() {
    if !docker_ready() {
        return;
    }
    let node = TestNode::start("dexec", FAST, &[]);
    node.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: box}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: box}}}}
  template:
    metadata: {{labels: {{app: box}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: box
          image: {TEST_IMAGE}
          imagePullPolicy: Never
          command: ["sleep", "3600"]
          env: [{{name: GREETING, value: hi-from-the-spec}}]
"#
    ));
    node.wait_ready("box", 1, 60);
    let (pod, _) = pods_by_node(&node, "box").pop().unwrap();
    let o = node.cli(&["exec", &pod, "--", "sh", "-c", "echo $GREETING; hostname; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("hi-from-the-spec\n"), "{out}");
    let mut cmd = Command::new(BIN);
    cmd.args(["exec", "-i", &pod, "--", "cat"])
        .env("SHOAL_SERVER", node.server())
        .env("SHOAL_DATA_DIR", node.data_dir());
    let o = with_stdin(cmd, "through the engine\n");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "through the engine\n");
    // (Engines before API 1.42 start an exec's terminal at 0x0 and take its
    // size just after: the command polls until it has one.)
    let ask = "i=0; until s=$(stty size 2>/dev/null) && [ -n \"$s\" ] && [ \"$s\" != \"0 0\" ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done; echo $s";
    let o = in_terminal(&node, &format!("{BIN} exec -it {pod} -- sh -c '{ask}'"));
    assert!(text(&o.stdout).contains("45 123"), "{:?} {:?}", text(&o.stdout), text(&o.stderr));
}
