//! The chaos suite: five real `shoal` nodes, each on a host of its own (a
//! network namespace on a test bridge), through Jepsen's menu of faults:
//! `shoal` killed, the machine gone, one host cut off, one host whose
//! packets out are lost (it still hears the others), a 2|3 split with
//! writes on both sides, 20 % packet loss, 2 s pauses, a clock an hour
//! off. Checked throughout:
//!
//! - a fenced replica never runs twice (its processes, counted every 50 ms);
//! - no acknowledged write is lost (each one, on every node, at the end);
//! - desired state and placement converge within 10 s of a heal;
//! - no false death (every Dead in every node's log is a node that was
//!   down or cut off from the one that said so);
//! - every replica is Ready again within `READY_BOUND` of each fault.
//!
//! This is the short form `cargo test` runs (a few minutes). The long form
//! repeats each fault: `bench/chaos.sh` (`CHAOS_ROUNDS`, more trials).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::netns::{Hosts, can_make_hosts};
use common::*;
use nix::sys::signal::{Signal, kill};
use serde_json::Value;

const N: usize = 5;
/// Every replica is Ready again this long after a fault at most.
const READY_BOUND: Duration = Duration::from_secs(20);
/// Desired state and placement agree on every node this soon after a heal.
const CONVERGE_BOUND: Duration = Duration::from_secs(10);

/// Whether phase `name` runs (`CHAOS_PHASES`: a comma-separated list;
/// all by default).
fn phase(name: &str) -> bool {
    std::env::var("CHAOS_PHASES").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

fn rounds() -> usize {
    std::env::var("CHAOS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// The fenced replica's command: a number no other process uses.
fn fenced_tag() -> String {
    format!("{}", 900_000 + std::process::id() % 90_000)
}

fn deployment(name: &str, replicas: u32, fenced: bool, arg: &str) -> String {
    let fencing = if fenced { "  fencing: Majority\n" } else { "" };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n{fencing}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers: [{{name: c, command: [\"sleep\", \"{arg}\"]}}]\n"
    )
}

/// Counts the running copies of the fenced replica every 50 ms, on every
/// host at once (namespaces share the pid space); keeps the time two or
/// more ran together, and when each copy was first and last seen.
struct FencedWatch {
    stop: Arc<AtomicBool>,
    overlap: Arc<Mutex<Duration>>,
    seen: Sightings,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Each copy ("pid in netns") → when it was first and last seen.
type Sightings = Arc<Mutex<BTreeMap<String, (Instant, Instant)>>>;

impl FencedWatch {
    fn start(tag: String, logs: Vec<std::path::PathBuf>) -> FencedWatch {
        let (stop, overlap) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Duration::ZERO)));
        let seen = Sightings::default();
        let (s, o, sn) = (stop.clone(), overlap.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let want = format!("sleep\0{tag}\0");
            let mut last = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let copies: Vec<String> = std::fs::read_dir("/proc")
                    .map(|d| {
                        d.flatten()
                            .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
                            .map(|e| {
                                let ns = std::fs::read_link(e.path().join("ns/net")).unwrap_or_default();
                                format!("{} in {}", e.file_name().to_string_lossy(), ns.display())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let now = Instant::now();
                for copy in &copies {
                    sn.lock().unwrap().entry(copy.clone()).or_insert((now, now)).1 = now;
                }
                if copies.len() > 1 {
                    if *o.lock().unwrap() == Duration::ZERO {
                        for l in &logs {
                            let text = std::fs::read_to_string(l).unwrap_or_default();
                            let name = l
                                .parent()
                                .and_then(|p| p.file_name())
                                .map(|n| n.to_string_lossy().to_string())
                                .unwrap_or_default();
                            let _ = std::fs::write(format!("/tmp/chaoslogs/{name}.log"), &text);
                            for line in text.lines().filter(|x| {
                                x.contains("db-")
                                    || x.contains("is Dead")
                                    || x.contains("node started")
                                    || x.contains("is Ready")
                            }) {
                                eprintln!("{}: {line}", l.display());
                            }
                        }
                    }
                    *o.lock().unwrap() += now - last;
                    eprintln!("chaos: the fenced replica runs {} times: {copies:?}", copies.len());
                }
                last = now;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        FencedWatch { stop, overlap, seen, thread: Some(thread) }
    }

    /// The copies seen so far.
    fn sightings(&self) -> BTreeMap<String, (Instant, Instant)> {
        self.seen.lock().unwrap().clone()
    }

    fn finish(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.overlap.lock().unwrap()
    }
}

/// A "node X is Dead" line of some node's log: who said it, about whom, when.
#[derive(Debug, Clone)]
struct DeadMark {
    by: String,
    about: String,
    at: SystemTime,
}

/// Every Dead mark in a node's log (its timestamps are its own clock; from
/// byte `skew.0` on, that clock was off by `skew.1` seconds).
fn dead_marks(node: &TestNode, skew: (usize, i64)) -> Vec<DeadMark> {
    let log = node.log();
    let mut at_byte = 0;
    log.split_inclusive('\n')
        .filter_map(|l| {
            let start = at_byte;
            at_byte += l.len();
            let (_, rest) = l.split_once("node ")?;
            let (about, tail) = rest.split_once(' ')?;
            if !tail.starts_with("is Dead") {
                return None;
            }
            let ts = l.split_whitespace().next()?;
            let mut at = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok()?;
            if start >= skew.0 {
                if skew.1 > 0 {
                    at -= Duration::from_secs(skew.1 as u64);
                } else {
                    at += Duration::from_secs(skew.1.unsigned_abs());
                }
            }
            Some(DeadMark { by: node.name.clone(), about: about.to_string(), at })
        })
        .collect()
}

/// A span of time in which `who` may be declared Dead by `by` (any node
/// when `by` is empty).
#[derive(Debug, Clone)]
struct Excused {
    who: String,
    by: Vec<String>,
    from: SystemTime,
    to: Option<SystemTime>,
}

struct Chaos {
    hosts: Hosts,
    nodes: Vec<TestNode>,
    token: String,
    _tmp: tempfile::TempDir,
    excused: Vec<Excused>,
    /// Acknowledged writes: ConfigMap name → value, the last acked one.
    acked: BTreeMap<String, String>,
    writes: usize,
    acked_writes: usize,
    report: Vec<(String, String)>,
}

impl Chaos {
    fn start() -> Chaos {
        let hosts = Hosts::create(N);
        let tmp = tempfile::tempdir().unwrap();
        let cfg = FAST.to_string();
        // A host's API listens on its own address (the default is loopback).
        // The CLI reaches it over HTTPS; this test's raw probes (`get_json`)
        // speak plain HTTP, which a node serves beyond loopback only when
        // told to.
        let api = |i: usize| {
            vec!["--api-addr".to_string(), format!("{}:7420", hosts.ip(i)), "--api-plain-http".into(), "any".into()]
        };
        let first = TestNode::start_in("n1", hosts.ip(1), tmp.path().join("n1"), &cfg, &api(1), Some(hosts.ns(1)));
        first.wait_healthy();
        let token = first.ok(&["token"]).trim().to_string();
        let mut nodes = vec![first];
        for i in 2..=N {
            let mut args = vec!["--join".into(), format!("{}:7421", hosts.ip(1)), "--token".into(), token.clone()];
            args.extend(api(i));
            let name = format!("n{i}");
            nodes.push(TestNode::start_in(&name, hosts.ip(i), tmp.path().join(&name), &cfg, &args, Some(hosts.ns(i))));
        }
        let c = Chaos {
            hosts,
            nodes,
            token,
            _tmp: tmp,
            excused: Vec::new(),
            acked: BTreeMap::new(),
            writes: 0,
            acked_writes: 0,
            report: Vec::new(),
        };
        for n in &c.nodes {
            n.wait_healthy();
        }
        c.wait_all_ready(Duration::from_secs(40));
        c
    }

    fn live(&self) -> impl Iterator<Item = &TestNode> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Node name → state, as node `i` sees it (straight from its API).
    fn states(&self, i: usize) -> Result<BTreeMap<String, String>, String> {
        let n = &self.nodes[i];
        let v = get_json(n, "/api/v1/nodes")?;
        Ok(v["items"]
            .as_array()
            .ok_or("no items")?
            .iter()
            .map(|x| {
                (
                    x["metadata"]["name"].as_str().unwrap_or("").into(),
                    x["status"]["state"].as_str().unwrap_or("").into(),
                )
            })
            .collect())
    }

    /// Waits until every live node sees every live node Ready.
    fn wait_all_ready(&self, within: Duration) {
        let live: Vec<String> = self.live().map(|n| n.name.clone()).collect();
        poll(within.as_secs(), "every live node Ready on every live node", || {
            for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.child.is_some()) {
                let st = self.states(i)?;
                if live.iter().any(|l| st.get(l).map(String::as_str) != Some("Ready")) {
                    return Err(format!("{} sees {st:?}", n.name));
                }
            }
            Ok(())
        });
    }

    /// Waits until `web` (5) and `db` (1) are Ready; returns how long it took.
    fn wait_replicas(&self, since: Instant, what: &str) -> Duration {
        let via = self.live().next().expect("a live node");
        for (d, n) in [("web", 5), ("db", 1)] {
            let left = READY_BOUND.saturating_sub(since.elapsed()).as_secs().max(1);
            via.wait_ready(d, n, left);
        }
        let took = since.elapsed();
        assert!(took <= READY_BOUND, "{what}: replicas Ready again after {took:?}");
        took
    }

    /// The fenced replica's host (node index), as node 0 sees it.
    fn db_host(&self) -> usize {
        let host = poll(10, "the fenced replica placed", || self.db_on(0).map(|(h, _)| h));
        self.nodes.iter().position(|n| n.name == host).expect("a known node")
    }

    /// Where node `i` sees the fenced replica's pod, and whether it is Ready.
    fn db_on(&self, i: usize) -> Result<(String, bool), String> {
        let pods = get_json(&self.nodes[i], "/api/v1/namespaces/default/pods")?;
        let db = pods["items"]
            .as_array()
            .ok_or("no items")?
            .iter()
            .find(|p| p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("db-")))
            .ok_or("no db pod")?;
        let ready = db["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        Ok((db["spec"]["nodeName"].as_str().unwrap_or_default().to_string(), ready))
    }

    /// Kills node `i`'s shoal (its pods run on; its fenced one dies with its watchdog).
    fn kill_shoal(&mut self, i: usize) -> SystemTime {
        let at = SystemTime::now();
        self.nodes[i].kill9();
        self.excuse(i, at, Vec::new());
        at
    }

    fn excuse(&mut self, i: usize, from: SystemTime, by: Vec<String>) {
        self.excused.push(Excused { who: self.nodes[i].name.clone(), by, from, to: None });
    }

    /// Ends node `i`'s excuse once it is Ready everywhere again.
    fn unexcuse(&mut self, i: usize) {
        let name = self.nodes[i].name.clone();
        let now = SystemTime::now();
        for e in self.excused.iter_mut().filter(|e| e.who == name && e.to.is_none()) {
            e.to = Some(now);
        }
    }

    /// Restarts node `i` and waits until it is Ready everywhere.
    fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_all_ready(Duration::from_secs(30));
        self.unexcuse(i);
    }

    /// The time from `at` until every other live node logged `i` Dead.
    fn detected(&self, i: usize, at: SystemTime) -> Duration {
        let about = self.nodes[i].name.clone();
        let others: Vec<&TestNode> = self.live().filter(|n| n.name != about).collect();
        poll(10, &format!("{about} Dead in every other node's log"), || {
            let mut last = Duration::ZERO;
            for n in &others {
                let m = dead_marks(n, (usize::MAX, 0))
                    .into_iter()
                    .filter(|m| m.about == about && m.at >= at)
                    .map(|m| m.at)
                    .min();
                match m {
                    Some(t) => last = last.max(t.duration_since(at).unwrap_or_default()),
                    None => return Err(format!("{} has not marked {about} Dead", n.name)),
                }
            }
            Ok(last)
        })
    }

    /// Writes ConfigMap `name` = `value` through node `i`; records it if acknowledged.
    fn write(&mut self, i: usize, name: &str, value: &str) -> bool {
        let yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{v: \"{value}\"}}\n");
        self.writes += 1;
        let o = self.nodes[i].cli_stdin(&["apply", "-f", "-"], &yaml);
        if o.status.success() {
            self.acked.insert(name.to_string(), value.to_string());
            self.acked_writes += 1;
        }
        o.status.success()
    }

    /// Waits until every live node holds every acknowledged write and they
    /// all agree on where every pod runs; returns how long that took.
    fn converge(&self, since: Instant, what: &str) -> Duration {
        let want = self.acked.clone();
        poll(CONVERGE_BOUND.as_secs() + 5, &format!("{what}: convergence"), || {
            let mut placements = Vec::new();
            for n in self.live() {
                let v = get_json(n, "/api/v1/namespaces/default/configmaps")?;
                let have: BTreeMap<String, String> = v["items"]
                    .as_array()
                    .ok_or("no items")?
                    .iter()
                    .filter_map(|c| {
                        Some((c["metadata"]["name"].as_str()?.to_string(), c["data"]["v"].as_str()?.to_string()))
                    })
                    .collect();
                for (k, val) in &want {
                    if have.get(k) != Some(val) {
                        return Err(format!("{} has {k} = {:?}, acknowledged {val:?}", n.name, have.get(k)));
                    }
                }
                let pods = get_json(n, "/api/v1/namespaces/default/pods")?;
                let owners: BTreeMap<String, String> = pods["items"]
                    .as_array()
                    .ok_or("no items")?
                    .iter()
                    .filter_map(|p| {
                        Some((p["metadata"]["name"].as_str()?.into(), p["spec"]["nodeName"].as_str()?.into()))
                    })
                    .collect();
                placements.push((n.name.clone(), owners));
            }
            if placements.windows(2).any(|w| w[0].1 != w[1].1) {
                return Err(format!("placements differ: {placements:?}"));
            }
            Ok(())
        });
        let took = since.elapsed();
        assert!(took <= CONVERGE_BOUND, "{what}: converged only after {took:?}");
        took
    }

    /// Dead marks that no fault explains.
    fn false_deaths(&self, skewed: &BTreeMap<String, (usize, i64)>) -> Vec<DeadMark> {
        let slack = Duration::from_secs(1);
        self.nodes
            .iter()
            .flat_map(|n| dead_marks(n, skewed.get(&n.name).copied().unwrap_or((usize::MAX, 0))))
            .filter(|m| {
                !self.excused.iter().any(|e| {
                    (e.who == m.about || e.who == "*")
                        && (e.by.is_empty() || e.by.contains(&m.by))
                        && m.at + slack >= e.from
                        && e.to.is_none_or(|to| m.at <= to + slack)
                })
            })
            .collect()
    }
}

fn get_json(n: &TestNode, path: &str) -> Result<Value, String> {
    let raw = http_get_auth(SocketAddr::from((n.ip, 7420)), path, &n.token())?;
    let body = raw.split_once("\r\n\r\n").ok_or("no body")?.1;
    serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
}

fn spread(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_millis();
    let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    format!("p50 {} ms, p99 {} ms, max {} ms ({} trials)", ms(p(0.5)), ms(p(0.99)), ms(v[v.len() - 1]), v.len())
}

fn faketime_lib() -> Option<String> {
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

#[test]
fn chaos_suite() {
    if !can_make_hosts() {
        return;
    }
    let Some(faketime) = faketime_lib() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the chaos suite needs libfaketime under CI");
        eprintln!("SKIPPED: the chaos suite needs libfaketime (apt install faketime)");
        return;
    };
    let started = Instant::now();
    let r = rounds();
    let mut c = Chaos::start();
    let tag = fenced_tag();
    c.nodes[0].apply(&deployment("web", 5, false, "100000"));
    c.nodes[0].apply(&deployment("db", 1, true, &tag));
    c.wait_replicas(Instant::now(), "start");
    let fenced = FencedWatch::start(tag, c.nodes.iter().map(|n| n.dir.join("node.log")).collect());

    // 1. `shoal` alone killed (kill -9), on a host that answers: Dead at once.
    eprintln!("chaos: 1. `shoal` alone killed");
    let mut kills = Vec::new();
    let n_kills = std::env::var("CHAOS_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(3 * r);
    for k in 0..if phase("kill") { n_kills } else { 0 } {
        let i = 1 + k % (N - 1);
        let t = Instant::now();
        let at = c.kill_shoal(i);
        kills.push(c.detected(i, at));
        c.wait_replicas(t, "shoal killed");
        c.restart(i);
    }
    if !kills.is_empty() {
        c.report.push(("`shoal` killed: Dead on every other node".into(), spread(kills.clone())));
    }

    // 2. The machine gone (cable out, everything on it killed): silence.
    eprintln!("chaos: 2. The machine gone");
    let mut silent = Vec::new();
    for k in 0..if phase("crash") { 2 * r } else { 0 } {
        let i = 1 + (k + 2) % (N - 1);
        let t = Instant::now();
        let at = SystemTime::now();
        c.hosts.cable(i + 1, false);
        c.excuse(i, at, Vec::new());
        c.nodes[i].kill9_with_pods();
        silent.push(c.detected(i, at));
        c.wait_replicas(t, "machine crash");
        c.hosts.cable(i + 1, true);
        c.restart(i);
    }
    if !silent.is_empty() {
        c.report.push(("machine gone (silent host): Dead on every other node".into(), spread(silent.clone())));
    }

    // 3. One host cut off for 12 s, then back.
    if phase("isolate") {
        eprintln!("chaos: 3. One host cut off");
        let i = 2;
        let t = Instant::now();
        let at = SystemTime::now();
        c.hosts.cable(i + 1, false);
        c.excuse(i, at, Vec::new());
        let others: Vec<String> =
            c.nodes.iter().filter(|n| n.name != c.nodes[i].name).map(|n| n.name.clone()).collect();
        for o in 0..N {
            if o != i {
                c.excuse(o, at, vec![c.nodes[i].name.clone()]);
            }
        }
        c.wait_replicas(t, "isolated host");
        std::thread::sleep(Duration::from_secs(12).saturating_sub(t.elapsed()));
        c.hosts.cable(i + 1, true);
        let healed = Instant::now();
        c.wait_all_ready(Duration::from_secs(CONVERGE_BOUND.as_secs()));
        let iso = c.converge(healed, "isolation healed");
        for o in 0..N {
            c.unexcuse(o);
        }
        let _ = others;
        c.report.push(("one host cut off 12 s: converged after the heal".into(), format!("{} ms", iso.as_millis())));
    }

    // 3b. The fenced replica's host muted: its packets to the other hosts
    // are lost, theirs still reach it. It hears a majority but nobody hears
    // it: its peers declare it Dead and start the replica elsewhere, so it
    // must stop renewing the lease, and not restart the replica, on its own.
    if phase("mute") {
        eprintln!("chaos: 3b. The fenced replica's host muted (one-way loss)");
        let i = c.db_host();
        let via = (i + 1) % N;
        let before = fenced.sightings();
        let at = SystemTime::now();
        c.hosts.mute(i + 1);
        eprintln!(
            "chaos: muted {} at {:?}",
            c.nodes[i].name,
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
        );
        // Its peers find it Dead; and over QUIC it soon stops hearing them
        // too (their streams stall without its acknowledgements), so it
        // may find them Dead as well: both are true.
        for o in (0..N).filter(|o| *o != i) {
            c.excuse(i, at, vec![c.nodes[o].name.clone()]);
            c.excuse(o, at, vec![c.nodes[i].name.clone()]);
        }
        let moved =
            poll(READY_BOUND.as_secs() + 10, "the fenced replica Ready on another host", || match c.db_on(via)? {
                (host, true) if host != c.nodes[i].name => Ok(host),
                other => Err(format!("db on {other:?}")),
            });
        let took = at.elapsed().unwrap_or_default();
        // The old copy must have ended well before the new one started: by
        // the lease rule, at least fence_delay - (ttl × (1 + drift) +
        // NOTICE_SLACK) = 10 - 5.03 s; about 7 s when the muted node stops
        // renewing as soon as a majority no longer hears it. (When it went
        // by hearing alone, it renewed until QUIC gave up on its silent
        // connections, ~10 s in, and the gap was 0.4 s.)
        let after = fenced.sightings();
        let old_end = before.keys().filter_map(|k| after.get(k)).map(|s| s.1).max().expect("the old copy");
        let new_start = after.iter().filter(|(k, _)| !before.contains_key(*k)).map(|(_, s)| s.0).min();
        let gap = new_start.expect("the new copy").saturating_duration_since(old_end);
        eprintln!("chaos: the muted host's copy ended {} ms before the new one started", gap.as_millis());
        assert!(
            gap >= Duration::from_secs(4),
            "the fenced replica's old copy ended only {gap:?} before the new one started"
        );
        c.hosts.heal();
        let healed = Instant::now();
        c.wait_all_ready(CONVERGE_BOUND);
        let conv = c.converge(healed, "mute healed");
        for o in 0..N {
            c.unexcuse(o);
        }
        c.wait_replicas(Instant::now(), "after the mute");
        c.report.push((
            "fenced replica's host muted (sends lost, receives): replica moved, never two".into(),
            format!(
                "to {moved} after {} ms, {} ms after the old copy ended; converged {} ms after the heal",
                took.as_millis(),
                gap.as_millis(),
                conv.as_millis()
            ),
        ));
    }

    // 4. A 2|3 split with writes on both sides, then the heal.
    if phase("split") {
        eprintln!("chaos: 4. A 2|3 split");
        let (a, b) = ([1usize, 2], [3usize, 4, 5]);
        let at = SystemTime::now();
        c.hosts.split(&a, &b);
        for (side, other) in [(&a[..], &b[..]), (&b[..], &a[..])] {
            for &x in side {
                for &y in other {
                    c.excuse(y - 1, at, vec![format!("n{x}")]);
                }
            }
        }
        let mut acked_during = 0;
        for k in 0..6 {
            let via = if k % 2 == 0 { 0 } else { 2 };
            acked_during += c.write(via, &format!("split-{k}"), &format!("v{k}")) as usize;
            std::thread::sleep(Duration::from_millis(700));
        }
        // Both sides write the same key last: the later write wins everywhere.
        c.write(0, "split-both", "minority");
        std::thread::sleep(Duration::from_millis(300));
        c.write(2, "split-both", "majority");
        std::thread::sleep(Duration::from_secs(4));
        c.hosts.heal();
        let healed = Instant::now();
        let split = c.converge(healed, "split healed");
        c.wait_all_ready(Duration::from_secs(15));
        for o in 0..N {
            c.unexcuse(o);
        }
        c.wait_replicas(Instant::now(), "after the split");
        c.report.push((
            "2|3 split, writes on both sides: converged after the heal".into(),
            format!("{} ms; {acked_during} of 6 writes acknowledged during the split, none lost", split.as_millis()),
        ));
    }

    // 5. 20 % packet loss on every host: no false death, writes go on.
    if phase("loss") {
        eprintln!("chaos: 5. 20 % packet loss");
        let t = Instant::now();
        c.hosts.loss(20);
        let mut k = 0;
        while t.elapsed() < Duration::from_secs(30 * r as u64) {
            c.write(k % N, &format!("loss-{k}"), "x");
            k += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
        c.hosts.heal();
        c.converge(Instant::now(), "loss");
        c.report.push((
            format!("20 % loss for {} s: writes acknowledged", 30 * r),
            format!("{} of {k}", c.acked.keys().filter(|x| x.starts_with("loss-")).count()),
        ));
    }

    // 6. Pauses: a node stopped for 2 s every 10 s (SIGSTOP, SIGCONT).
    if phase("pause") {
        eprintln!("chaos: 6. Pauses:");
        let pauses = 4 * r;
        for p in 0..pauses {
            let i = 1 + p % (N - 1);
            let pid = nix::unistd::Pid::from_raw(c.nodes[i].pid().unwrap());
            kill(pid, Signal::SIGSTOP).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            kill(pid, Signal::SIGCONT).unwrap();
            std::thread::sleep(Duration::from_secs(8));
        }
        c.report.push(("2 s pauses (SIGSTOP) every 10 s".into(), format!("{pauses} pauses")));
    }

    // 7. Clocks an hour off: the last write still wins.
    let mut skewed = BTreeMap::new();
    if phase("skew") {
        eprintln!("chaos: 7. Clocks an hour off");
        let mut lww = Vec::new();
        for (i, offset, sign) in [(4usize, "+1h", 1i64), (3usize, "-1h", -1)] {
            c.kill_shoal(i);
            c.nodes[i].env = vec![
                ("LD_PRELOAD".into(), faketime.clone()),
                ("FAKETIME".into(), offset.into()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                ("FAKETIME_DONT_RESET".into(), "1".into()),
            ];
            let log_before = c.nodes[i].log().len();
            c.restart(i);
            skewed.insert(c.nodes[i].name.clone(), (log_before, sign * 3600));
            // It finds its clock off against its peers' and corrects it.
            let fixed = poll(10, "the skewed node to correct its clock", || {
                let log = c.nodes[i].log();
                log.get(log_before..)
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.contains("this host's clock is"))
                    .map(|l| l.split_once("clock is ").map_or(l, |x| x.1).chars().take(40).collect::<String>())
                    .ok_or_else(|| "not yet".to_string())
            });
            eprintln!("chaos: {} (FAKETIME {offset}): clock is {fixed}", c.nodes[i].name);
            let mut last = String::new();
            for k in 0..6 {
                let via = if k % 2 == 0 { i } else { 0 };
                let value = format!("{offset}-{k}-via-{}", c.nodes[via].name);
                if !c.write(via, "lww", &value) {
                    eprintln!("chaos: write {k} through {} refused", c.nodes[via].name);
                }
                last = value;
                std::thread::sleep(Duration::from_millis(150));
            }
            c.converge(Instant::now(), "skewed clock");
            lww.push(format!("{offset}: {last}"));
        }
        c.report.push(("a clock 1 h ahead, then 1 h behind: last write wins".into(), lww.join("; ")));
    }

    if std::env::var("CHAOS_DEBUG").is_ok() {
        for n in &c.nodes {
            for l in n.log().lines().filter(|l| {
                ["db-", "is Dead", "is Suspect", "node started", "majority", "lease", "paused", "quorum", "cut off"]
                    .iter()
                    .any(|k| l.contains(k))
            }) {
                eprintln!("{}: {l}", n.name);
            }
        }
    }
    // The invariants over the whole run.
    let overlap = fenced.finish();
    let false_deaths = c.false_deaths(&skewed);
    c.report.push(("fenced replica: time with two copies".into(), format!("{} ms", overlap.as_millis())));
    c.report.push(("false deaths".into(), false_deaths.len().to_string()));
    c.report.push((
        "acknowledged writes lost".into(),
        format!(
            "0 of {} acknowledged ({} tried; {} keys, each checked on every node)",
            c.acked_writes,
            c.writes,
            c.acked.len()
        ),
    ));
    c.report.push(("duration".into(), format!("{:.0} s", started.elapsed().as_secs_f64())));
    eprintln!("\n| chaos suite ({} round(s)) | |\n|---|---|", r);
    for (k, v) in &c.report {
        eprintln!("| {k} | {v} |");
    }
    assert_eq!(overlap, Duration::ZERO, "the fenced replica ran twice");
    for m in &false_deaths {
        if let Some(n) = c.nodes.iter().find(|n| n.name == m.by) {
            let about = format!("node {} ", m.about);
            for l in
                n.log().lines().filter(|l| l.contains(&about) || l.contains("node started") || l.contains("clock is"))
            {
                eprintln!("{}: {l}", n.name);
            }
        }
    }
    assert!(false_deaths.is_empty(), "false deaths: {false_deaths:?}");
    assert_eq!(kills.len(), if phase("kill") { n_kills } else { 0 }, "every kill of shoal was timed");
    assert_eq!(silent.len(), if phase("crash") { 2 * r } else { 0 }, "every machine gone was timed");
    let worst = kills.iter().max().copied().unwrap_or_default();
    assert!(worst < Duration::from_millis(1500), "a killed shoal was found Dead only after {worst:?}");
    let worst = silent.iter().max().copied().unwrap_or_default();
    assert!(worst < Duration::from_secs(5), "a silent host was found Dead only after {worst:?}");
    let _ = &c.token;
}
