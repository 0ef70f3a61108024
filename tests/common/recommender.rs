//! Shared by the recommender tests (`tests/recommender.rs`,
//! `tests/recommender_docker.rs`): the example's constants, plain HTTP to
//! its node ports, `bench/recommender.py` in the background, and what the
//! cluster says of its pods and Deployments.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{TestNode, poll};

pub const NS: &str = "recommender";
pub const SERVING_PORT: u16 = 30081;
pub const INGESTION_PORT: u16 = 30082;
pub const UI_PORT: u16 = 30080;
pub const TOKEN: &str = "change-me-7f3a91c2";

pub fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/examples/recommender")
}

/// One HTTP/1.0 request; (status, body).
pub fn http(ip: Ipv4Addr, port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let addr = SocketAddr::from((ip, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status: {out}"))?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// `bench/recommender.py` running in the background.
pub struct Load {
    child: Child,
    json: PathBuf,
    /// Per-second lines printed so far.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Load {
    /// Load on serving's `/recommend`, through every node's port.
    pub fn start(targets: &[Ipv4Addr], rate: u32, json: PathBuf) -> Load {
        Load::start_on(targets, SERVING_PORT, "/recommend?user={user}", rate, json)
    }

    /// Load on `path` (`{user}` is a random user) at `port` of every node.
    pub fn start_on(targets: &[Ipv4Addr], port: u16, path: &str, rate: u32, json: PathBuf) -> Load {
        Load::start_with(targets, port, path, rate, 2, json)
    }

    /// Like `start_on`, retrying a failed request `retries` times on the next node.
    pub fn start_with(targets: &[Ipv4Addr], port: u16, path: &str, rate: u32, retries: u32, json: PathBuf) -> Load {
        let targets: Vec<String> = targets.iter().map(|ip| format!("{ip}:{port}")).collect();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/recommender.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--targets", &targets.join(","), "--path", path, "--rate", &rate.to_string(), "--duration", "0"])
            .args(["--retries", &retries.to_string(), "--json"])
            .arg(&json)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs bench/recommender.py");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let keep = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(l);
            }
        });
        Load { child, json, lines }
    }

    /// Waits until `secs` whole seconds have been reported.
    pub fn wait_seconds(&self, secs: usize) {
        poll(secs as u64 + 30, &format!("{secs} s of load reported"), || {
            let n = self.reported();
            if n >= secs { Ok(()) } else { Err(format!("{n} s")) }
        });
    }

    /// The seconds reported so far, parsed: (servings of the last line).
    pub fn last_servings(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        let last = lines.iter().rev().find(|l| l.starts_with(|c: char| c.is_ascii_digit()));
        last.and_then(|l| l.split('\t').nth(7))
            .and_then(|f| f.split(' ').nth(1))
            .unwrap_or("")
            .split(',')
            .map(String::from)
            .collect()
    }

    /// How many whole seconds were reported so far.
    pub fn reported(&self) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count()
    }

    /// p50 latency (ms) of the last reported second, if anything succeeded.
    pub fn last_p50(&self) -> Option<f64> {
        let lines = self.lines.lock().unwrap();
        let last = lines.iter().rev().find(|l| l.starts_with(|c: char| c.is_ascii_digit()))?;
        last.split('\t').nth(5)?.parse().ok()
    }

    /// The model versions answered in the last reported second.
    pub fn last_models(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        let last = lines.iter().rev().find(|l| l.starts_with(|c: char| c.is_ascii_digit()));
        let field = last.and_then(|l| l.split('\t').nth(7)).and_then(|f| f.split(' ').next()).unwrap_or("");
        field.split(',').filter(|m| !m.is_empty()).map(String::from).collect()
    }

    /// Stops it (SIGTERM) and returns its totals.
    pub fn finish(mut self) -> Value {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.json).expect("the load generator wrote its totals");
        serde_json::from_str(&text).expect("totals are JSON")
    }
}

pub fn pods(n: &TestNode) -> Vec<Value> {
    n.json(&["get", "pods", "-n", NS]).ok().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default()
}

pub fn app(p: &Value) -> &str {
    p["metadata"]["labels"]["app"].as_str().unwrap_or("")
}

/// Running pods of the long-lived services but serving: name → (node, restarts, pid).
pub fn others(n: &TestNode) -> BTreeMap<String, (String, i64, Option<i32>)> {
    pods(n)
        .iter()
        .filter(|p| matches!(app(p), "ingestion" | "features" | "ui"))
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            let restarts = p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(-1);
            (name, (node, restarts, super::pid_of(p)))
        })
        .collect()
}

/// (ready, replicas) of a Deployment.
pub fn ready(n: &TestNode, deploy: &str) -> Result<(i64, i64), String> {
    let v = n.json(&["get", "deployments", deploy, "-n", NS])?;
    Ok((v["status"]["readyReplicas"].as_i64().unwrap_or(0), v["spec"]["replicas"].as_i64().unwrap_or(-1)))
}

/// Whether a Deployment's rollout is complete: every replica of the
/// newest revision Ready.
pub fn rolled_out(n: &TestNode, deploy: &str) -> Result<(), String> {
    let v = n.json(&["get", "deployments", deploy, "-n", NS])?;
    let s = &v["status"];
    let want = v["spec"]["replicas"].as_i64().unwrap_or(-1);
    let done = s["shoal"]["complete"] == true && s["updatedReplicas"] == want && s["readyReplicas"] == want;
    if done { Ok(()) } else { Err(s.to_string()) }
}

pub fn all_ready(n: &TestNode) -> Result<(), String> {
    for d in ["ingestion", "features", "serving", "ui"] {
        let (r, want) = ready(n, d)?;
        if r != want {
            return Err(format!("{d}: {r}/{want} ready"));
        }
    }
    Ok(())
}

pub fn failed_fraction(v: &Value) -> f64 {
    v["failed"].as_f64().unwrap_or(1.0) / v["sent"].as_f64().unwrap_or(1.0).max(1.0)
}

/// p50 (ms) over the per-second lines `range` of a run.
pub fn p50_of(v: &Value, range: std::ops::Range<usize>) -> f64 {
    let secs = v["seconds"].as_array().cloned().unwrap_or_default();
    let mut xs: Vec<f64> = secs.get(range).unwrap_or(&[]).iter().filter_map(|s| s["p50_ms"].as_f64()).collect();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}
