//! The founding scenario on 3 real nodes: the movie recommender of
//! `configs/examples/recommender/` (five services as process pods: real
//! Python programs on real ports), driven by `bench/recommender.py`, the
//! load generator a user runs. One cluster goes through every claim in
//! turn, under load:
//!
//! 1. serving scaled 2 → 6 alone: no pod of the other services restarts or
//!    moves, no request fails;
//! 2. a training run crashes: serving keeps answering, ingestion keeps
//!    accepting;
//! 3. serving rolled to a new build and model format: 0 failed requests;
//! 4. a node killed with its pods: < 1 % failed requests over the minute
//!    around it (clients retry through another node's proxy), every service
//!    fully Ready again, and no acknowledged rating lost;
//! 5. the CronJob retrains every minute and serving switches to each new
//!    model within a bound (seen in the load generator's answers).
//!
//! Figures are printed (`--nocapture`) for the README and the notes.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, FAST, TestNode, poll};
use serde_json::Value;

const NS: &str = "recommender";
const SERVING_PORT: u16 = 30081;
const INGESTION_PORT: u16 = 30082;
const UI_PORT: u16 = 30080;
const TOKEN: &str = "change-me-7f3a91c2";

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/examples/recommender")
}

/// One HTTP/1.0 request; (status, body).
fn http(ip: Ipv4Addr, port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
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
struct Load {
    child: Child,
    json: PathBuf,
    /// Per-second lines printed so far.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(targets: &[Ipv4Addr], rate: u32, json: PathBuf) -> Load {
        let targets: Vec<String> = targets.iter().map(|ip| format!("{ip}:{SERVING_PORT}")).collect();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/recommender.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--targets", &targets.join(","), "--rate", &rate.to_string(), "--duration", "0"])
            .args(["--retries", "2", "--json"])
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
    fn wait_seconds(&self, secs: usize) {
        poll(secs as u64 + 30, &format!("{secs} s of load reported"), || {
            let n = self.lines.lock().unwrap().iter().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count();
            if n >= secs { Ok(()) } else { Err(format!("{n} s")) }
        });
    }

    /// The seconds reported so far, parsed: (servings of the last line).
    fn last_servings(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        let last = lines.iter().rev().find(|l| l.starts_with(|c: char| c.is_ascii_digit()));
        last.and_then(|l| l.split('\t').nth(7))
            .and_then(|f| f.split(' ').nth(1))
            .unwrap_or("")
            .split(',')
            .map(String::from)
            .collect()
    }

    /// Stops it (SIGTERM) and returns its totals.
    fn finish(mut self) -> Value {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.json).expect("the load generator wrote its totals");
        serde_json::from_str(&text).expect("totals are JSON")
    }
}

fn pods(n: &TestNode) -> Vec<Value> {
    n.json(&["get", "pods", "-n", NS]).ok().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default()
}

fn app(p: &Value) -> &str {
    p["metadata"]["labels"]["app"].as_str().unwrap_or("")
}

/// Running pods of the long-lived services but serving: name → (node, restarts, pid).
fn others(n: &TestNode) -> BTreeMap<String, (String, i64, Option<i32>)> {
    pods(n)
        .iter()
        .filter(|p| matches!(app(p), "ingestion" | "features" | "ui"))
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            let restarts = p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(-1);
            (name, (node, restarts, common::pid_of(p)))
        })
        .collect()
}

/// (ready, replicas) of a Deployment.
fn ready(n: &TestNode, deploy: &str) -> Result<(i64, i64), String> {
    let v = n.json(&["get", "deployments", deploy, "-n", NS])?;
    Ok((v["status"]["readyReplicas"].as_i64().unwrap_or(0), v["spec"]["replicas"].as_i64().unwrap_or(-1)))
}

fn all_ready(n: &TestNode) -> Result<(), String> {
    for d in ["ingestion", "features", "serving", "ui"] {
        let (r, want) = ready(n, d)?;
        if r != want {
            return Err(format!("{d}: {r}/{want} ready"));
        }
    }
    Ok(())
}

fn failed_fraction(v: &Value) -> f64 {
    v["failed"].as_f64().unwrap_or(1.0) / v["sent"].as_f64().unwrap_or(1.0).max(1.0)
}

/// p50 (ms) over the per-second lines `range` of a run.
fn p50_of(v: &Value, range: std::ops::Range<usize>) -> f64 {
    let secs = v["seconds"].as_array().cloned().unwrap_or_default();
    let mut xs: Vec<f64> = secs.get(range).unwrap_or(&[]).iter().filter_map(|s| s["p50_ms"].as_f64()).collect();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Model versions serving switched to while a load ran: (version, unix
/// second it was first answered with). Versions already answered in a
/// run's first seconds were loaded before it, and are not counted.
fn switches(runs: &[Value]) -> Vec<(String, f64)> {
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let mut out = Vec::new();
    for r in runs {
        for (i, s) in r["seconds"].as_array().into_iter().flatten().enumerate() {
            for m in s["models"].as_array().into_iter().flatten().filter_map(|m| m.as_str()) {
                if !seen.contains_key(m) {
                    let at = s["at"].as_f64().unwrap_or(0.0);
                    seen.insert(m.to_string(), at);
                    if i >= 2 {
                        out.push((m.to_string(), at));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_recommender_scales_fails_updates_and_loses_a_node_under_load() {
    let mut c = Cluster::start(3, FAST);
    let ips: Vec<Ipv4Addr> = c.nodes.iter().map(|n| n.ip).collect();
    let dir = example();
    let out_dir = c.dir().to_path_buf();
    let json = |name: &str| out_dir.join(format!("{name}.json"));

    // `python3 app/configmap.py --check`: the code ConfigMap is what app/ holds.
    let check = Command::new("python3").arg(dir.join("app/configmap.py")).arg("--check").output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // One command brings it up; --wait returns once every Deployment is
    // rolled out and both Jobs (seed, first training) are done.
    let t = Instant::now();
    let applied = c.nodes[0].ok(&["apply", "-f", &dir.to_string_lossy(), "--wait", "--timeout", "5m"]);
    println!("apply --wait took {:.1} s:\n{applied}", t.elapsed().as_secs_f64());
    poll(30, "every service Ready", || all_ready(&c.nodes[0]));
    // The UI answers from every node, through serving.
    for ip in &ips {
        let (status, page) = http(*ip, UI_PORT, "GET", "/", None).unwrap();
        assert!(status == 200 && page.contains("What should you watch?"), "{status} {page}");
    }
    let (status, rec) = http(ips[1], UI_PORT, "GET", "/api/recommend?user=123", None).unwrap();
    assert_eq!(status, 200, "{rec}");
    let rec: Value = serde_json::from_str(&rec).unwrap();
    assert_eq!(rec["items"].as_array().map(Vec::len), Some(10), "{rec}");
    println!(
        "user 123 gets: {}",
        rec["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut runs = Vec::new();

    // 1. Scale serving alone, 2 -> 6, while the load runs.
    let before = others(&c.nodes[0]);
    assert_eq!(before.len(), 6, "3 ingestion, 1 features, 2 ui: {before:?}");
    let load = Load::start(&ips, 150, json("scale"));
    load.wait_seconds(8);
    c.nodes[0].ok(&["scale", "deployment", "serving", "-n", NS, "--replicas", "6"]);
    let t = Instant::now();
    poll(60, "serving 6/6 ready", || match ready(&c.nodes[0], "serving")? {
        (6, 6) => Ok(()),
        r => Err(format!("{r:?}")),
    });
    let scaled_in = t.elapsed();
    load.wait_seconds(8 + (scaled_in.as_secs() as usize) + 8);
    let scale = load.finish();
    let after = others(&c.nodes[0]);
    assert_eq!(after, before, "scaling serving restarted or moved another service's pod");
    println!(
        "scale 2 -> 6: ready in {:.1} s; {} of {} requests failed; p50 {:.1} ms before, {:.1} ms after",
        scaled_in.as_secs_f64(),
        scale["failed"],
        scale["sent"],
        p50_of(&scale, 0..8),
        p50_of(&scale, {
            let n = scale["seconds"].as_array().map_or(0, Vec::len);
            n.saturating_sub(5)..n
        })
    );
    assert_eq!(scale["failed"], 0, "{scale}");
    runs.push(scale);

    // 2. A training run crashes (its features URL is wrong): serving keeps
    //    answering with its model, ingestion keeps accepting.
    let training = std::fs::read_to_string(dir.join("50-training.yaml")).unwrap();
    let cron_doc = training.split("\n---\n").next().unwrap();
    let broken = cron_doc.replacen(
        "              env:\n",
        "              env:\n                - {name: FEATURES_URL, value: \"http://127.0.0.1:9\"}\n                - {name: FEATURES_ATTEMPTS, value: \"1\"}\n",
        1,
    );
    assert_ne!(broken, cron_doc);
    let load = Load::start(&ips, 100, json("training-fails"));
    load.wait_seconds(3);
    c.nodes[0].apply(&broken);
    c.nodes[0].ok(&["create", "job", "train-broken", "--from=cronjob/training", "-n", NS]);
    poll(90, "the broken training Job failed", || {
        let j = c.nodes[0].json(&["get", "jobs", "train-broken", "-n", NS])?;
        let failed = j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Failed" && c["status"] == "True");
        if failed { Ok(()) } else { Err(format!("{}", j["status"])) }
    });
    let accepted = (0..5)
        .filter(|i| {
            let body = format!(r#"{{"id":"during-training-crash-{i}","user":7,"movie":{i},"rating":4}}"#);
            http(ips[1], INGESTION_PORT, "POST", "/ratings", Some(&body)).is_ok_and(|(s, _)| s == 201)
        })
        .count();
    load.wait_seconds(12);
    let fails = load.finish();
    println!(
        "training crashed: {} of {} requests failed; ingestion accepted {accepted} of 5 ratings",
        fails["failed"], fails["sent"]
    );
    assert_eq!(fails["failed"], 0, "{fails}");
    assert_eq!(accepted, 5);
    runs.push(fails);
    c.nodes[0].ok(&["apply", "-f", &dir.join("50-training.yaml").to_string_lossy()]);

    // 3. Serving alone rolled to a new build that reads a new part of the
    //    model (popularity): 0 failed requests.
    let serving = std::fs::read_to_string(dir.join("60-serving.yaml")).unwrap();
    // (Still at 6 replicas: the manifest's 2 would scale it back down.)
    let v2 = serving
        .replace("replicas: 2", "replicas: 6")
        .replace("{name: SERVING_VERSION, value: v1}", "{name: SERVING_VERSION, value: v2}")
        .replace("{name: POPULARITY_BLEND, value: \"0\"}", "{name: POPULARITY_BLEND, value: \"0.3\"}");
    assert_ne!(v2, serving);
    let before = others(&c.nodes[0]);
    let load = Load::start(&ips, 100, json("rollout"));
    load.wait_seconds(5);
    let t = Instant::now();
    c.nodes[0].apply(&v2);
    poll(120, "every answer from serving v2", || {
        let s = load.last_servings();
        if s == ["v2"] && ready(&c.nodes[0], "serving")? == (6, 6) { Ok(()) } else { Err(format!("{s:?}")) }
    });
    let rolled_in = t.elapsed();
    load.wait_seconds(5 + rolled_in.as_secs() as usize + 3);
    let rollout = load.finish();
    println!(
        "rolling update of serving (6 replicas): {:.1} s; {} of {} requests failed",
        rolled_in.as_secs_f64(),
        rollout["failed"],
        rollout["sent"]
    );
    assert_eq!(rollout["failed"], 0, "{rollout}");
    assert_eq!(others(&c.nodes[0]), before, "rolling serving touched another service");
    runs.push(rollout);

    // 4. Lose a machine: node 3 and every pod on it, kill -9, in the middle
    //    of a minute of load. Ratings acknowledged before survive.
    let acked: Vec<String> = (0..40)
        .map(|i| format!("before-crash-{i}"))
        .filter(|id| {
            let body = format!(r#"{{"id":"{id}","user":11,"movie":{},"rating":3.5}}"#, id.len() % 100);
            http(ips[2], INGESTION_PORT, "POST", "/ratings", Some(&body)).is_ok_and(|(s, _)| s == 201)
        })
        .collect();
    assert!(acked.len() >= 35, "ingestion refused writes before the crash: {} of 40 acknowledged", acked.len());
    let load = Load::start(&ips, 100, json("node-loss"));
    load.wait_seconds(20);
    let victim = c.nodes[2].name.clone();
    let t = Instant::now();
    c.nodes[2].kill9_with_pods();
    poll(60, "every service fully Ready again, off the dead node", || {
        all_ready(&c.nodes[0])?;
        let stranded: Vec<String> = pods(&c.nodes[0])
            .iter()
            .filter(|p| matches!(app(p), "ingestion" | "features" | "serving" | "ui"))
            .filter(|p| p["spec"]["nodeName"] == victim.as_str())
            .map(|p| p["metadata"]["name"].to_string())
            .collect();
        if stranded.is_empty() { Ok(()) } else { Err(format!("still on {victim}: {stranded:?}")) }
    });
    let recovered = t.elapsed();
    load.wait_seconds(60);
    let loss = load.finish();
    println!(
        "kill -9 of {victim} and its pods: every service Ready again in {:.1} s; {} of {} requests failed ({:.2} %), {} retried through another node",
        recovered.as_secs_f64(),
        loss["failed"],
        loss["sent"],
        100.0 * failed_fraction(&loss),
        loss["retried"]
    );
    assert!(failed_fraction(&loss) < 0.01, "{loss}");
    for id in &acked {
        poll(30, &format!("acknowledged rating {id} held by ingestion"), || {
            match http(ips[0], INGESTION_PORT, "GET", &format!("/has?kind=rating&key={id}"), None)? {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    runs.push(loss);

    // 5. Scheduled retraining: each new model version serving answered with,
    //    against the minute its CronJob run was due.
    let mut delays = Vec::new();
    for (version, at) in switches(&runs) {
        // `<YYYYmmddTHHMMSSZ>-<events>`: trained within the minute it was due.
        let num = |r: std::ops::Range<usize>| version.get(r).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
        let due_in_day = num(9..11) * 3600 + num(11..13) * 60;
        let delay = ((at as i64).rem_euclid(86400) - due_in_day).rem_euclid(86400);
        let second = num(13..15);
        delays.push((version, second, delay));
    }
    println!(
        "scheduled retraining, each new model: (version, second of its minute it was trained, \
         seconds from the due minute to serving's first answer with it): {delays:?}"
    );
    assert!(!delays.is_empty(), "serving switched to no new model over the whole run");
    for (v, _, delay) in &delays {
        assert!(*delay <= 15, "serving switched to {v} {delay} s after its run was due");
    }
}
