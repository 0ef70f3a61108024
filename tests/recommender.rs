//! The founding scenario on 3 real nodes: the movie recommender of
//! `configs/examples/recommender/` (five services as process pods: real
//! Python programs on real ports), driven by `bench/recommender.py`, the
//! load generator a user runs. One cluster goes through every claim in
//! turn, under load:
//!
//! 1. the CronJob retrains every minute and serving switches to the new
//!    model within 15 s of the minute the run was due (seen in the load
//!    generator's answers);
//! 2. serving scaled 2 → 6 alone: no pod of the other services restarts or
//!    moves, no request fails;
//! 3. a training run crashes: serving keeps answering, ingestion keeps
//!    accepting;
//! 4. serving rolled to a new build and model format: 0 failed requests;
//! 5. a node killed with its pods: < 1 % failed requests over the minute
//!    around it, on serving and on the UI (clients retry through another
//!    node's proxy), every service fully Ready again, and no acknowledged
//!    rating lost.
//!
//! Figures are printed (`--nocapture`) for the README and the notes.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use common::recommender::*;
use common::{Cluster, FAST, poll};
use serde_json::Value;

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

/// (version, second of its minute it was trained, seconds from the minute
/// its run was due to the end of the second in which serving's first
/// answer with it was asked for): versions are
/// `<YYYYmmddTHHMMSSZ>-<events>`, trained within the minute they were due.
/// A load's seconds are the seconds requests were *sent* in, so a request
/// sent just before the due minute can come back with the new model; the
/// end of its second is the bound that never comes before the switch.
fn delays(switches: &[(String, f64)]) -> Vec<(String, i64, i64)> {
    switches
        .iter()
        .map(|(version, at)| {
            let trained = version
                .get(..16)
                .and_then(|t| jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", t).ok())
                .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .unwrap_or_else(|| panic!("model version {version:?} is not <YYYYmmddTHHMMSSZ>-<events>"));
            let (minute, second) = (trained.timestamp().as_second() / 60 * 60, i64::from(trained.second()));
            (version.clone(), second, (at + 1.0).ceil() as i64 - minute)
        })
        .collect()
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
    // 1. Scheduled retraining: with a load running, the next CronJob run's
    //    model, against the minute it was due.
    let load = Load::start(&ips, 50, json("retraining"));
    load.wait_seconds(3);
    // The newest model answered now (two, if a run just ended).
    let first = load.last_models().into_iter().max().expect("serving answers with a model");
    poll(90, "serving answering with the next scheduled model", || {
        let now = load.last_models();
        if now.iter().any(|m| *m > first) { Ok(()) } else { Err(format!("{now:?}")) }
    });
    load.wait_seconds(load.reported() + 2);
    let retraining = load.finish();
    let retrained = delays(&switches(std::slice::from_ref(&retraining)));
    println!(
        "scheduled retraining: (version, second of its minute it was trained, seconds from the due minute to the end \
         of the second serving first answered with it in): {retrained:?}; {} of {} requests failed",
        retraining["failed"], retraining["sent"]
    );
    assert!(!retrained.is_empty(), "serving switched to no new model: {retraining}");
    for (v, _, delay) in &retrained {
        assert!((-5..=15).contains(delay), "serving switched to {v} {delay} s after its run was due");
    }
    assert_eq!(retraining["failed"], 0, "{retraining}");
    let mut runs = Vec::new();

    // 2. Scale serving alone, 2 -> 6, while the load runs.
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

    // 3. A training run crashes (its features URL is wrong): serving keeps
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

    // 4. Serving alone rolled to a new build that reads a new part of the
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

    // 5. Lose a machine: node 3 and every pod on it, kill -9, in the middle
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
    // And on the UI's API (through to serving), as a browser would.
    let ui_load = Load::start_on(&ips, UI_PORT, "/api/recommend?user={user}", 30, json("node-loss-ui"));
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
    let ui_loss = ui_load.finish();
    println!(
        "kill -9 of {victim} and its pods: every service Ready again in {:.1} s; {} of {} requests failed ({:.2} %), {} retried through another node",
        recovered.as_secs_f64(),
        loss["failed"],
        loss["sent"],
        100.0 * failed_fraction(&loss),
        loss["retried"]
    );
    println!(
        "the UI meanwhile: {} of {} requests failed ({:.2} %)",
        ui_loss["failed"],
        ui_loss["sent"],
        100.0 * failed_fraction(&ui_loss)
    );
    assert!(failed_fraction(&loss) < 0.01, "{loss}");
    assert!(failed_fraction(&ui_loss) < 0.01, "{ui_loss}");
    for id in &acked {
        poll(30, &format!("acknowledged rating {id} held by ingestion"), || {
            match http(ips[0], INGESTION_PORT, "GET", &format!("/has?kind=rating&key={id}"), None)? {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    runs.push(loss);

    // Every later CronJob run, for the record (not asserted: a run can fall
    // between two loads, or on the node killed).
    let jobs = c.nodes[0].ok(&["get", "jobs", "-n", NS]);
    println!("later model switches: {:?}\n{jobs}", delays(&switches(&runs)));
}
