//! Test harness: real `shoal` processes on their own loopback addresses,
//! driven through the real CLI. Every wait polls a condition with a deadline.
// Shared by every integration test crate through `mod common;`: its items
// are `pub` for those crates, which the lint cannot see.
#![allow(unreachable_pub)]
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod kubectl;
pub mod netns;
pub mod recommender;

pub const BIN: &str = env!("CARGO_BIN_EXE_shoal");

/// Config tuned for tests: fast restarts, short settle. The `[membership]`
/// table comes last so that a test can append keys to it.
pub const FAST: &str = r#"
[agent]
restart_backoff_initial = "200ms"
restart_backoff_max = "2s"
handoff_timeout = "30s"
[state]
write_timeout = "3s"
[membership]
settle_time = "1s"
"#;

/// Polls `f` every 50 ms until it returns `Some`, or panics after `secs`
/// with `what` and the last observation.
pub fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > end {
            panic!("timed out after {secs}s waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback address no other test uses: 127.X.Y.Z, checked free.
pub fn unique_ip() -> Ipv4Addr {
    loop {
        let r: u32 = rand_u32();
        let ip = Ipv4Addr::new(127, 100 + (r % 100) as u8, ((r >> 8) % 250) as u8 + 1, ((r >> 16) % 250) as u8 + 2);
        if TcpListener::bind(SocketAddr::from((ip, 7420))).is_ok()
            && std::net::UdpSocket::bind(SocketAddr::from((ip, 7421))).is_ok()
        {
            return ip;
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// A consecutive block of `n` loopback addresses, all free.
pub fn unique_ips(n: usize) -> Vec<Ipv4Addr> {
    loop {
        let base = unique_ip();
        let o = base.octets();
        if o[3] as usize + n > 254 {
            continue;
        }
        let ips: Vec<Ipv4Addr> = (0..n).map(|i| Ipv4Addr::new(o[0], o[1], o[2], o[3] + i as u8)).collect();
        if ips.iter().all(|ip| TcpListener::bind(SocketAddr::from((*ip, 7420))).is_ok()) {
            return ips;
        }
    }
}

pub struct TestNode {
    pub name: String,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub extra_args: Vec<String>,
    /// The network namespace the node runs in (`netns`), if any.
    pub netns: Option<String>,
    /// Extra environment of the node's process (e.g. a faked clock).
    pub env: Vec<(String, String)>,
    /// A command the node runs under (`setpriv ...`), before `shoal up`.
    pub wrapper: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node with `config` (TOML) and extra flags.
    pub fn start(name: &str, config: &str, extra_args: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut n = TestNode {
            name: name.into(),
            ip: unique_ip(),
            dir,
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            netns: None,
            env: Vec::new(),
            wrapper: Vec::new(),
            _tmp: Some(tmp),
        };
        std::fs::write(n.dir.join("node.toml"), config).unwrap();
        n.spawn();
        n.wait_healthy();
        n
    }

    /// A node at a given address and data dir (for clusters).
    pub fn start_at(name: &str, ip: Ipv4Addr, dir: PathBuf, config: &str, extra_args: &[String]) -> TestNode {
        TestNode::start_in(name, ip, dir, config, extra_args, None)
    }

    /// A node at a given address and data dir, in network namespace `netns`.
    pub fn start_in(
        name: &str,
        ip: Ipv4Addr,
        dir: PathBuf,
        config: &str,
        extra_args: &[String],
        netns: Option<String>,
    ) -> TestNode {
        TestNode::start_wrapped(name, ip, dir, config, extra_args, netns, &[])
    }

    /// `start_in`, the node running under `wrapper` (e.g. `setpriv` with
    /// fewer capabilities).
    pub fn start_wrapped(
        name: &str,
        ip: Ipv4Addr,
        dir: PathBuf,
        config: &str,
        extra_args: &[String],
        netns: Option<String>,
        wrapper: &[&str],
    ) -> TestNode {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("node.toml"), config).unwrap();
        let mut n = TestNode {
            name: name.into(),
            ip,
            dir,
            child: None,
            extra_args: extra_args.to_vec(),
            netns,
            env: Vec::new(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
        };
        n.spawn();
        n
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The pid of the node's `shoal` process, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The node's cluster data keys: beside its data dir, not in it.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("keys").join("data-keys.json")
    }

    /// The node's API URL: HTTPS (the CLI verifies it with the CA in the
    /// node's data dir, SHOAL_DATA_DIR).
    pub fn server(&self) -> String {
        format!("https://{}:7420", self.ip)
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).unwrap();
        // `ip netns exec` execs the node in place: the child's pid is the node's.
        let mut argv = self.wrapper.clone();
        argv.push(BIN.to_string());
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("up")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--node-ip")
            .arg(self.ip.to_string())
            .arg("--name")
            .arg(&self.name)
            .arg("--config")
            .arg(self.dir.join("node.toml"))
            .args(&self.extra_args)
            .env_remove("SHOAL_TOKEN")
            .env_remove("SHOAL_SERVER")
            .env("SHOAL_DATA_KEY_FILE", self.key_file())
            .env("SHOAL_LOG", "info,shoal=debug,chitchat=warn,quinn=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn shoal up"));
    }

    pub fn wait_healthy(&self) {
        let addr = SocketAddr::from((self.ip, 7420));
        poll(30, &format!("node {} API", self.name), || {
            if let Some(code) = self.exit_code() {
                return Err(format!("node exited with {code:?}; log:\n{}", self.log()));
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }

    fn exit_code(&self) -> Option<Option<i32>> {
        // try_wait needs &mut; peek via /proc instead.
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        if stat.contains(") Z ") { Some(None) } else { None }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// The cluster CA (PEM), from the node's data dir.
    pub fn cluster_ca(&self) -> String {
        let id = std::fs::read_to_string(self.data_dir().join("identity.json")).expect("identity.json");
        serde_json::from_str::<Value>(&id).unwrap()["ca_cert_pem"].as_str().unwrap().to_string()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("api-token")).unwrap_or_default().trim().to_string()
    }

    /// Runs the CLI against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("SHOAL_SERVER", self.server())
            .env("SHOAL_DATA_DIR", self.data_dir())
            .env("XDG_CACHE_HOME", self.dir.join("cache"))
            .env_remove("SHOAL_TOKEN")
            .output()
            .expect("run shoal")
    }

    /// Runs the CLI with stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut c = Command::new(BIN)
            .args(args)
            .env("SHOAL_SERVER", self.server())
            .env("SHOAL_DATA_DIR", self.data_dir())
            .env("XDG_CACHE_HOME", self.dir.join("cache"))
            .env_remove("SHOAL_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// Runs the CLI and returns stdout, panicking with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        if !o.status.success() {
            // The node's last words help when it is the node that failed.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            panic!(
                "shoal {args:?} failed ({:?}): {}\nlast lines of node {}'s log:\n{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr),
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        let o = self.cli(&a);
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())
    }

    /// Applies a manifest given as text.
    pub fn apply(&self, yaml: &str) -> String {
        let o = self.cli_stdin(&["apply", "-f", "-"], yaml);
        assert!(o.status.success(), "apply failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn pods(&self) -> Vec<Value> {
        self.json(&["get", "pods"]).ok().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default()
    }

    /// Waits until `deploy` has `n` Ready replicas (as `get deployments` says).
    pub fn wait_ready(&self, deploy: &str, n: i64, secs: u64) {
        poll(secs, &format!("{deploy} to have {n} ready replicas"), || {
            let v = self.json(&["get", "deployments", deploy])?;
            let ready = v["status"]["readyReplicas"].as_i64().unwrap_or(0);
            if ready == n { Ok(()) } else { Err(format!("{ready} ready: {}", v["status"])) }
        });
    }

    /// The marker on this node's pod processes.
    pub fn marker(&self) -> String {
        shoal::node::agent_marker(&self.data_dir())
    }

    /// Pids of this node's pod processes (all, children included).
    pub fn pod_pids(&self) -> Vec<i32> {
        shoal::agent::process::marked_pids(&self.marker())
    }

    /// Simulates the machine dying: the node and all its pods, kill -9.
    pub fn kill9_with_pods(&mut self) {
        self.kill9();
        shoal::agent::process::kill_marked(&self.marker(), Duration::from_secs(5));
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
        c.wait().ok().and_then(|s| s.code())
    }

    pub fn restart(&mut self) {
        self.spawn();
        self.wait_healthy();
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
        shoal::agent::process::kill_marked(&self.marker(), Duration::from_secs(5));
        remove_containers(&self.marker());
        let _ = std::fs::remove_dir_all(shoal::agent::exec::prepare::default_secrets_dir(&self.marker()));
    }
}

/// Removes the Docker containers a node (by its marker) created.
pub fn remove_containers(marker: &str) {
    let ids = docker_ids(&format!("shoal.managed={marker}"));
    if !ids.is_empty() {
        let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
    }
}

/// Ids of the containers (running or not) carrying `label`.
pub fn docker_ids(label: &str) -> Vec<String> {
    Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect())
        .unwrap_or_default()
}

/// The tag of the locally built test image.
pub const TEST_IMAGE: &str = "shoal-test/busybox:1";

/// Whether a Docker engine answers; builds the test image (FROM scratch
/// with Debian's static busybox) on first use. Outside CI a missing engine
/// or busybox skips the test with a message; under CI (`CI=true`) it fails,
/// so CI never passes by skipping.
/// A cluster of nodes `n1`, `n2`... at host addresses that are not loopback
/// (the caller put them on an interface), under `dir`. Their API listens on
/// the node's address, in plain HTTP too, which the harness speaks (a node
/// whose address is not loopback serves its API on 127.0.0.1, and plain
/// HTTP on loopback only, unless told).
pub fn cluster_at(ips: &[Ipv4Addr], dir: &Path) -> Vec<TestNode> {
    let flags =
        |ip: Ipv4Addr| vec!["--api-plain-http".to_string(), "any".into(), "--api-addr".into(), format!("{ip}:7420")];
    let first = TestNode::start_at("n1", ips[0], dir.join("n1"), FAST, &flags(ips[0]));
    first.wait_healthy();
    let token = first.ok(&["token"]).trim().to_string();
    let mut nodes = vec![first];
    for (i, ip) in ips.iter().enumerate().skip(1) {
        let name = format!("n{}", i + 1);
        let mut args = vec!["--join".to_string(), format!("{}:7421", ips[0]), "--token".into(), token.clone()];
        args.extend(flags(*ip));
        nodes.push(TestNode::start_at(&name, *ip, dir.join(&name), FAST, &args));
    }
    for n in &nodes {
        n.wait_healthy();
    }
    nodes
}

pub fn docker_ready() -> bool {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let r = READY.get_or_init(|| {
        let ping = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
        if !ping.as_ref().is_ok_and(|o| o.status.success()) {
            return Err("no Docker engine answers (docker version failed)".into());
        }
        if Command::new("docker").args(["image", "inspect", TEST_IMAGE]).output().is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        let bb = Path::new("/bin/busybox");
        if !bb.exists() {
            return Err("/bin/busybox is missing (apt-get install busybox-static)".into());
        }
        let ctx = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::copy(bb, ctx.path().join("busybox")).map_err(|e| e.to_string())?;
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker/Dockerfile"), ctx.path().join("Dockerfile"))
            .map_err(|e| e.to_string())?;
        let o = Command::new("docker")
            .args(["build", "-q", "-t", TEST_IMAGE])
            .arg(ctx.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("docker build failed: {}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    match r {
        Ok(()) => true,
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "Docker tests cannot run under CI: {why}");
            eprintln!("skipping: {why}");
            false
        }
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.contains(") Z "),
        Err(_) => false,
    }
}

/// The pid in a `pid://N` container id.
pub fn pid_of(pod: &Value) -> Option<i32> {
    pod["status"]["containerStatuses"][0]["containerID"].as_str()?.strip_prefix("pid://")?.parse().ok()
}

pub fn find<'a>(pods: &'a [Value], name: &str) -> Option<&'a Value> {
    pods.iter().find(|p| p["metadata"]["name"].as_str().is_some_and(|n| names_replica(n, name)))
}

/// Whether pod `name` is `want`: exactly, or, for a Deployment's replica
/// written `web-0`, the pod `web-<template hash>-0` of any revision.
pub fn names_replica(name: &str, want: &str) -> bool {
    if name == want {
        return true;
    }
    let Some((prefix, index)) = want.rsplit_once('-') else { return false };
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.rsplit_once('-'))
        .is_some_and(|(h, i)| i == index && h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The name replica `want` (`web-0`) has on `node` now, once it exists.
pub fn pod_name(node: &TestNode, want: &str) -> String {
    poll(60, &format!("pod {want} exists"), || {
        let pods = node.pods();
        find(&pods, want)
            .and_then(|p| p["metadata"]["name"].as_str().map(String::from))
            .ok_or_else(|| "not yet".to_string())
    })
}

/// One authenticated HTTP GET; returns the whole response.
pub fn http_get_auth(addr: SocketAddr, path: &str, token: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A counter from a node's /metrics (0 when absent).
pub fn metric(node: &TestNode, name_and_labels: &str) -> f64 {
    let text = http_get_auth(SocketAddr::from((node.ip, 7420)), "/metrics", &node.token()).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One HTTP GET; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A manifest of a Deployment of `n` Python HTTP servers answering with their pod name.
pub fn web_deployment(name: &str, n: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          command: ["python3", "-c", "{py}"]
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /, port: http}}
            periodSeconds: 1
"#,
        py = PY_SERVER
    )
}

/// A tiny HTTP server answering `client=<ip> pod=<name> node=<node>` (the
/// address its connection comes from). A pod whose name
/// ends with `$SLOW_POD` sleeps `$SLOW` seconds before answering.
pub const PY_SERVER: &str = "import http.server,os,time\\nclass H(http.server.BaseHTTPRequestHandler):\\n def do_GET(s):\\n  if os.environ['SHOAL_POD_NAME'].endswith(os.environ.get('SLOW_POD','/none')): time.sleep(float(os.environ.get('SLOW','1')))\\n  b=('client='+s.client_address[0]+' pod='+os.environ['SHOAL_POD_NAME']+' node='+os.environ['SHOAL_NODE_NAME']).encode()\\n  s.send_response(200);s.send_header('Content-Length',str(len(b)));s.end_headers();s.wfile.write(b)\\n def log_message(s,*a): pass\\nhttp.server.ThreadingHTTPServer((os.environ['SHOAL_NODE_IP'],int(os.environ['PORT'])),H).serve_forever()";

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Several nodes on consecutive loopback addresses, joined with a token.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub token: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes: the first creates the cluster, the others join it.
    pub fn start(n: usize, config: &str) -> Cluster {
        Cluster::start_with(n, |_| config.to_string())
    }

    /// Like `start`, with a config per node (index from 0).
    pub fn start_with(n: usize, config_of: impl Fn(usize) -> String) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let ips = unique_ips(n);
        let first = TestNode::start_at("n1", ips[0], tmp.path().join("n1"), &config_of(0), &[]);
        first.wait_healthy();
        let token = first.ok(&["token"]).trim().to_string();
        let mut nodes = vec![first];
        for (i, ip) in ips.iter().enumerate().skip(1) {
            let name = format!("n{}", i + 1);
            let args = vec!["--join".to_string(), format!("{}:7421", ips[0]), "--token".into(), token.clone()];
            nodes.push(TestNode::start_at(&name, *ip, tmp.path().join(&name), &config_of(i), &args));
        }
        for n in &nodes {
            n.wait_healthy();
        }
        let c = Cluster { nodes, token, _tmp: tmp };
        c.wait_states(30, |_, s| s == "Ready", n);
        c.wait_settled(30);
        c
    }

    /// Waits until every running node sees every Ready node as schedulable
    /// (past its settle time), so placement is stable.
    pub fn wait_settled(&self, secs: u64) {
        poll(secs, "all nodes schedulable everywhere", || {
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                let v = n.json(&["get", "nodes"])?;
                for x in v["items"].as_array().ok_or("no items")? {
                    if x["status"]["state"] == "Ready" && x["spec"]["unschedulable"] != false {
                        return Err(format!("{} sees {} settling", n.name, x["metadata"]["name"]));
                    }
                }
            }
            Ok(())
        });
    }

    pub fn dir(&self) -> &Path {
        self._tmp.path()
    }

    /// Starts one more node, `n<count+1>`, joining through the first one;
    /// returns its index once it is healthy.
    pub fn add_node(&mut self, config: &str) -> usize {
        let i = self.nodes.len();
        let name = format!("n{}", i + 1);
        let args =
            vec!["--join".to_string(), format!("{}:7421", self.nodes[0].ip), "--token".into(), self.token.clone()];
        let node = TestNode::start_at(&name, unique_ip(), self._tmp.path().join(&name), config, &args);
        node.wait_healthy();
        self.nodes.push(node);
        i
    }

    /// Node name → state, as node `i` sees it.
    pub fn states(&self, i: usize) -> Result<std::collections::BTreeMap<String, String>, String> {
        let v = self.nodes[i].json(&["get", "nodes"])?;
        Ok(v["items"]
            .as_array()
            .ok_or("no items")?
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    n["status"]["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    /// Waits until every running node sees exactly `count` nodes matching `pred`.
    pub fn wait_states(&self, secs: u64, pred: impl Fn(&str, &str) -> bool, count: usize) {
        poll(secs, &format!("{count} nodes in the expected state everywhere"), || {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.child.is_none() {
                    continue;
                }
                let st = self.states(i)?;
                let c = st.iter().filter(|(name, s)| pred(name, s)).count();
                if c != count {
                    return Err(format!("{} sees {st:?}", n.name));
                }
            }
            Ok(())
        });
    }

    /// Waits until every running node other than `node` sees it in `state`;
    /// returns the elapsed time.
    pub fn wait_node_state(&self, secs: u64, node: &str, state: &str) -> Duration {
        let t0 = Instant::now();
        poll(secs, &format!("{node} {state} on every live node"), || {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.child.is_none() || n.name == node {
                    continue;
                }
                let st = self.states(i)?;
                if st.get(node).map(String::as_str) != Some(state) {
                    return Err(format!("{} sees {node} as {:?}", n.name, st.get(node)));
                }
            }
            Ok(())
        });
        t0.elapsed()
    }

    pub fn generation(&self, observer: usize, node: &str) -> Option<String> {
        let v = self.nodes[observer].json(&["get", "nodes", node]).ok()?;
        v["metadata"]["annotations"]["shoal.dev/generation"].as_str().map(String::from)
    }
}

/// Whether the test may change the host's packet filter (root with iptables).
/// Outside CI a missing capability skips the test with a message; under CI
/// (`CI=true`) it is a failure, so CI never passes by skipping.
pub fn can_partition() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Command::new("iptables").arg("-S").arg("INPUT").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "partition tests need root and iptables under CI");
        eprintln!("skipping: partition tests need root and iptables (they drop UDP between loopback addresses)");
    }
    ok
}

/// A network partition between two groups of node addresses: their QUIC
/// (UDP) traffic is dropped both ways; the HTTP API stays reachable. Healed
/// on `heal()` or drop.
pub struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    pub fn new(a: &[Ipv4Addr], b: &[Ipv4Addr]) -> Partition {
        let mut rules = Vec::new();
        for x in a {
            for y in b {
                for (s, d) in [(x, y), (y, x)] {
                    let r: Vec<String> =
                        ["INPUT", "-s", &s.to_string(), "-d", &d.to_string(), "-p", "udp", "-j", "DROP"]
                            .iter()
                            .map(|s| s.to_string())
                            .collect();
                    let mut add = vec!["-I".to_string()];
                    add.extend(r.iter().cloned());
                    let st = Command::new("iptables").args(&add).status().expect("iptables");
                    assert!(st.success(), "iptables {add:?}");
                    rules.push(r);
                }
            }
        }
        Partition { rules }
    }

    pub fn heal(&mut self) {
        for r in self.rules.drain(..) {
            let mut del = vec!["-D".to_string()];
            del.extend(r);
            let _ = Command::new("iptables").args(&del).status();
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.heal();
    }
}

/// Ready pods of Deployment `deploy` as one node's API reports them.
pub fn ready_pods(addr: SocketAddr, token: &str, deploy: &str) -> Option<usize> {
    ready_pods_where(addr, token, &|p| names_replica_of(p, deploy))
}

/// Whether pod `p` is controlled by DaemonSet `name`.
pub fn of_daemonset(p: &Value, name: &str) -> bool {
    let o = &p["metadata"]["ownerReferences"][0];
    o["kind"] == "DaemonSet" && o["name"] == name
}

/// Ready pods that `mine` accepts, as one node's API reports them.
pub fn ready_pods_where(addr: SocketAddr, token: &str, mine: &dyn Fn(&Value) -> bool) -> Option<usize> {
    let raw = http_get_auth(addr, "/api/v1/namespaces/default/pods", token).ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    let v: Value = serde_json::from_str(body).ok()?;
    let n = v["items"]
        .as_array()?
        .iter()
        .filter(|p| mine(p))
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count();
    Some(n)
}

/// Whether pod `p` belongs to a ReplicaSet of Deployment `deploy`.
pub fn names_replica_of(p: &Value, deploy: &str) -> bool {
    p["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .is_some_and(|rs| rs.rsplit_once('-').is_some_and(|(d, _)| d == deploy))
}

/// Samples the Ready count every 100 ms until stopped; keeps the minimum.
pub struct ReadyPoller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<usize>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadyPoller {
    /// Counts the Ready pods of Deployment `deploy`.
    pub fn start(node: &TestNode, deploy: &str) -> ReadyPoller {
        let deploy = deploy.to_string();
        ReadyPoller::start_where(node, move |p| names_replica_of(p, &deploy))
    }

    /// Counts the Ready pods that `mine` accepts.
    pub fn start_where(node: &TestNode, mine: impl Fn(&Value) -> bool + Send + 'static) -> ReadyPoller {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (addr, token) = (SocketAddr::from((node.ip, 7420)), node.token());
        let (s2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Some(n) = ready_pods_where(addr, &token, &mine) {
                    seen2.lock().unwrap().push(n);
                }
                std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
            }
        });
        ReadyPoller { stop, seen, thread: Some(thread) }
    }

    /// (minimum, samples)
    pub fn finish(self) -> (usize, usize) {
        let seen = self.finish_all();
        (seen.iter().copied().min().unwrap_or(0), seen.len())
    }

    /// Every sample, in order.
    pub fn finish_all(mut self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
