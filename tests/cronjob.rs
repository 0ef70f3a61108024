//! CronJobs on real nodes: every scheduled time makes exactly one Job across
//! the cluster while the node that fires it dies just before a time, dies
//! just after one, restarts across one, and is cut off by a partition
//! across one; `create job --from=cronjob/`
//! runs one now; a time missed past `startingDeadlineSeconds` is an event
//! on every node.
//!
//! The scenario follows the wall clock (a CronJob's times are minutes), so
//! it waits for the times themselves; everything else is polled.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Blocks until the wall clock reaches `unix_ms`: the scenario is made of
/// moments relative to scheduled times, not of conditions to poll.
fn at(unix_ms: u64) {
    let now = now_ms();
    if unix_ms > now {
        std::thread::sleep(Duration::from_millis(unix_ms - now));
    }
}

fn cronjob(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec:\n  schedule: '{schedule}'\n  successfulJobsHistoryLimit: 20\n{extra}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: c, command: [sh, -c, 'echo ran $SHOAL_POD_NAME']}}]\n"
    )
}

/// Scheduled time (unix seconds) of each Job of `cj` in a jobs list.
fn scheduled_jobs(list: &Value, cj: &str) -> BTreeMap<String, i64> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == cj)
        .filter_map(|j| {
            let t = j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str()?;
            let secs = humantime::parse_rfc3339(t).ok()?.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
            Some((j["metadata"]["name"].as_str()?.to_string(), secs))
        })
        .collect()
}

/// Watches the Jobs through every node's API every 100 ms and records when
/// each was first seen (unix ms).
struct Watcher {
    seen: Arc<Mutex<BTreeMap<String, (i64, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(nodes: &[&TestNode], cj: &str) -> Watcher {
        let addrs: Vec<(SocketAddr, String)> =
            nodes.iter().map(|n| (SocketAddr::from((n.ip, 7420)), n.token())).collect();
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, cj) = (seen.clone(), stop.clone(), cj.to_string());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                for (addr, token) in &addrs {
                    let Ok(body) = http_get_auth(*addr, "/apis/batch/v1/namespaces/default/jobs", token) else {
                        continue;
                    };
                    let Some((_, json)) = body.split_once("\r\n\r\n") else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(json) else { continue };
                    let t = now_ms();
                    let mut m = s.lock().unwrap();
                    for (name, sched) in scheduled_jobs(&v, &cj) {
                        m.entry(name).or_insert((sched, t));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watcher { seen, stop, thread: Some(thread) }
    }

    fn finish(mut self) -> BTreeMap<String, (i64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// The CronJob's trigger nodes as a live node reports them.
fn triggers(c: &Cluster, cj: &str, skip: &[usize]) -> Vec<String> {
    poll(30, "the CronJob's trigger nodes", || {
        let i = (0..c.nodes.len()).find(|i| !skip.contains(i)).ok_or("no live node")?;
        let v = c.nodes[i].json(&["get", "cronjob", cj])?;
        let t: Vec<String> = v["status"]["triggerNodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(String::from))
            .collect();
        if t.len() == 2 { Ok(t) } else { Err(format!("{v}")) }
    })
}

fn index_of(c: &Cluster, name: &str) -> usize {
    c.nodes.iter().position(|n| n.name == name).expect("a cluster node")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn exactly_one_job_per_time_while_the_trigger_owner_dies_and_restarts_around_times() {
    let mut c = Cluster::start(3, FAST);
    // The CronJob fires every minute from when it is applied: applied
    // within 12 s of a minute, it would fire at that minute, before the
    // first time watched. So that minute passes first.
    let next_minute = (now_ms() / 60_000 + 1) * 60_000;
    if next_minute - now_ms() < 12_000 {
        at(next_minute + 1000);
    }
    c.nodes[0].apply(&cronjob("tick", "* * * * *", ""));
    // The first time at least 10 s away, so that every node has the CronJob.
    let first = (now_ms() / 1000 + 10).div_ceil(60) * 60;
    let watcher = Watcher::start(&c.nodes.iter().collect::<Vec<_>>(), "tick");
    let times: Vec<i64> = (0..5).map(|k| (first + 60 * k) as i64).collect();
    let ms = |t: i64, off: i64| (t * 1000 + off) as u64;

    // Time 1: nothing happens.
    // Time 2: the owner's machine dies 2 s before it; back 15 s after.
    at(ms(times[1], -2000));
    let owner = index_of(&c, &triggers(&c, "tick", &[])[0]);
    c.nodes[owner].kill9_with_pods();
    at(ms(times[1], 15_000));
    c.nodes[owner].restart();
    c.wait_settled(60);
    // Time 3: the owner dies 300 ms after it (its write may or may not
    // have spread); back 15 s later.
    at(ms(times[2], -3000));
    let owner = index_of(&c, &triggers(&c, "tick", &[])[0]);
    at(ms(times[2], 300));
    c.nodes[owner].kill9_with_pods();
    at(ms(times[2], 15_000));
    c.nodes[owner].restart();
    c.wait_settled(60);
    // Time 4: the owner stops 1 s before it and starts 1 s after.
    at(ms(times[3], -3000));
    let owner = index_of(&c, &triggers(&c, "tick", &[])[0]);
    at(ms(times[3], -1000));
    c.nodes[owner].stop();
    at(ms(times[3], 1000));
    c.nodes[owner].restart();
    // Time 5: a partition cuts the owner off from the others 5 s before
    // it and heals 20 s after (both sides may fire: one Job either way).
    at(ms(times[4], -5000));
    let owner = index_of(&c, &triggers(&c, "tick", &[])[0]);
    let cut = can_partition().then(|| {
        let others: Vec<_> = c.nodes.iter().enumerate().filter(|(i, _)| *i != owner).map(|(_, n)| n.ip).collect();
        Partition::new(&[c.nodes[owner].ip], &others)
    });
    at(ms(times[4], 20_000));
    drop(cut);
    let seen = watcher.finish();

    // Exactly one Job per time, named after it; none for other times.
    let list = c.nodes[0].json(&["get", "jobs"]).expect("jobs");
    let jobs = scheduled_jobs(&list, "tick");
    let want: BTreeMap<String, i64> = times.iter().map(|t| (format!("tick-{}", t / 60), *t)).collect();
    assert_eq!(jobs, want, "one Job per scheduled time");
    for (name, (sched, _)) in &seen {
        assert_eq!(want.get(name), Some(sched), "a Job for an unexpected time was seen: {name}");
    }
    // Every node agrees, and each Job ran to completion.
    for n in &c.nodes {
        poll(90, &format!("{} lists the five Jobs complete", n.name), || {
            let l = n.json(&["get", "jobs"])?;
            let mine = scheduled_jobs(&l, "tick");
            let complete = l["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| {
                    j["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete"))
                })
                .count();
            if mine == want && complete == want.len() { Ok(()) } else { Err(format!("{mine:?}, {complete} complete")) }
        });
    }
    // How late each time fired, as a client polling every 100 ms saw it.
    let mut delays: Vec<i64> = seen.values().map(|(s, t)| *t as i64 - s * 1000).collect();
    delays.sort();
    eprintln!(
        "trigger delay (ms, first seen by a 100 ms poller) per time: {:?}; p50 {} max {}",
        seen.iter().map(|(n, (s, t))| (n.clone(), *t as i64 - s * 1000)).collect::<Vec<_>>(),
        percentile(&delays, 0.5),
        delays.last().copied().unwrap_or(0)
    );
    assert_eq!(delays.len(), 5);
    let d = c.nodes[1].ok(&["describe", "cronjob", "tick"]);
    assert!(d.contains("Schedule:") && d.contains("* * * * *") && d.contains("Trigger:"), "{d}");
    let table = c.nodes[2].ok(&["get", "cronjobs"]);
    assert!(table.contains("SCHEDULE") && table.contains("LAST SCHEDULE") && table.contains("tick"), "{table}");
}

#[test]
fn a_job_made_by_hand_runs_now_and_a_missed_deadline_is_an_event_everywhere() {
    let c = Cluster::start(2, FAST);
    // Suspended: only the hand-made Job runs.
    c.nodes[0].apply(&cronjob("manual", "0 0 1 1 *", "  suspend: true\n"));
    let out = c.nodes[1].ok(&["create", "job", "now", "--from=cronjob/manual"]);
    assert!(out.contains("job.batch/now created"), "{out}");
    poll(60, "the hand-made Job completes", || {
        let item = c.nodes[0].json(&["get", "job", "now"])?;
        let done = item["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete"));
        let owned = item["metadata"]["ownerReferences"][0]["name"] == "manual";
        if done && owned { Ok(()) } else { Err(format!("{item}")) }
    });
    let bad = c.nodes[0].cli(&["create", "job", "x", "--from=deployment/web"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CronJob only"));
    let missing = c.nodes[0].cli(&["create", "job", "x", "--from=cronjob/nope"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // A CronJob created suspended just after a time, resumed 20 s later
    // with a 5 s deadline: that time is missed and said, on both nodes.
    let t = (now_ms() / 1000).div_ceil(60) * 60;
    at(t * 1000 + 500);
    c.nodes[0].apply(&cronjob("late", "* * * * *", "  suspend: true\n  startingDeadlineSeconds: 5\n"));
    // Created after the time: nothing is due yet. Suspend across the next one.
    at((t + 60) * 1000 + 8000);
    c.nodes[0].apply(&cronjob("late", "* * * * *", "  suspend: false\n  startingDeadlineSeconds: 5\n"));
    for n in &c.nodes {
        poll(30, &format!("{} lists the MissSchedule event", n.name), || {
            let e = n.json(&["get", "events"])?;
            let hit = e["items"].as_array().into_iter().flatten().find(|e| {
                e["involvedObject"]["name"] == "late"
                    && e["reason"] == "MissSchedule"
                    && e["message"].as_str().is_some_and(|m| m.contains("startingDeadlineSeconds"))
            });
            hit.map(|_| ()).ok_or_else(|| format!("{e}"))
        });
    }
    let jobs = scheduled_jobs(&c.nodes[0].json(&["get", "jobs"]).unwrap(), "late");
    assert!(jobs.is_empty(), "a time past its deadline must not run: {jobs:?}");
    let d = c.nodes[1].ok(&["describe", "cronjob", "late"]);
    assert!(d.contains("Missed Schedules:              1") && d.contains("MissSchedule"), "{d}");
}
