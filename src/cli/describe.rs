//! `shoal describe`: one object in human terms, with its recent events.

use std::fmt::Write;

use serde_json::Value;

use super::output::{age_of, n, pod_status, s};

fn map_line(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr).and_then(Value::as_object) {
        Some(m) if !m.is_empty() => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".into(),
    }
}

fn header(out: &mut String, v: &Value) {
    let _ = writeln!(out, "Name:         {}", s(v, "/metadata/name"));
    if let Some(ns) = v.pointer("/metadata/namespace").and_then(Value::as_str) {
        let _ = writeln!(out, "Namespace:    {ns}");
    }
    let _ = writeln!(out, "Labels:       {}", map_line(v, "/metadata/labels"));
    if let Some(t) = v.pointer("/metadata/creationTimestamp").and_then(Value::as_str) {
        let _ = writeln!(out, "Created:      {t} ({} ago)", age_of(Some(t)));
    }
    if let Some(mf) = v.pointer("/metadata/managedFields/0") {
        let _ = writeln!(out, "Last write:   by node {} at {}", s(mf, "/manager"), s(mf, "/time"));
    }
    if let Some(rv) = v.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        let _ = writeln!(out, "Version:      {rv} (generation {})", n(v, "/metadata/generation"));
    }
}

fn state_line(st: &Value) -> String {
    if let Some(r) = st.get("running") {
        format!("Running (since {})", s(r, "/startedAt"))
    } else if let Some(w) = st.get("waiting") {
        let m = s(w, "/message");
        if m.is_empty() {
            format!("Waiting: {}", s(w, "/reason"))
        } else {
            format!("Waiting: {} ({m})", s(w, "/reason"))
        }
    } else if let Some(t) = st.get("terminated") {
        let sig = t.get("signal").and_then(Value::as_i64).map(|x| format!(", signal {x}")).unwrap_or_default();
        format!("Terminated: {} (exit code {}{sig}, at {})", s(t, "/reason"), n(t, "/exitCode"), s(t, "/finishedAt"))
    } else {
        "<unknown>".into()
    }
}

fn containers(out: &mut String, pod: &Value) {
    let empty = Vec::new();
    let specs = pod.pointer("/spec/containers").and_then(Value::as_array).unwrap_or(&empty);
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array).unwrap_or(&empty);
    let _ = writeln!(out, "Containers:");
    for c in specs {
        let name = s(c, "/name");
        let _ = writeln!(out, "  {name}:");
        match c.get("image").and_then(Value::as_str) {
            Some(img) => {
                let _ = writeln!(out, "    Image:      {img}");
            }
            None => {
                let cmd: Vec<&str> = c
                    .get("command")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let _ = writeln!(out, "    Command:    {}", cmd.join(" "));
            }
        }
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            let host =
                p.get("hostPort").and_then(Value::as_u64).map(|h| format!(" -> host port {h}")).unwrap_or_default();
            let _ = writeln!(out, "    Port:       {} {}{host}", n(p, "/containerPort"), s(p, "/name"));
        }
        if let Some(st) = statuses.iter().find(|x| s(x, "/name") == name) {
            let _ = writeln!(out, "    State:      {}", state_line(&st["state"]));
            if let Some(l) = st.get("lastState") {
                let _ = writeln!(out, "    Last State: {}", state_line(l));
            }
            let _ = writeln!(out, "    Ready:      {}", st.get("ready").and_then(Value::as_bool).unwrap_or(false));
            let _ = writeln!(out, "    Restarts:   {}", n(st, "/restartCount"));
            let id = s(st, "/containerID");
            if !id.is_empty() {
                let _ = writeln!(out, "    ID:         {id}");
            }
        }
        for (label, key) in [("Liveness", "livenessProbe"), ("Readiness", "readinessProbe")] {
            if let Some(p) = c.get(key) {
                let port = |v: &Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                let what = if let Some(h) = p.get("httpGet") {
                    format!("http-get :{}{}", port(&h["port"]), s(h, "/path"))
                } else if let Some(t) = p.get("tcpSocket") {
                    format!("tcp-socket :{}", port(&t["port"]))
                } else {
                    "exec".into()
                };
                let _ = writeln!(
                    out,
                    "    {label}:{}{what} delay={}s period={}s timeout={}s failure={}",
                    " ".repeat(11 - label.len()),
                    n(p, "/initialDelaySeconds"),
                    p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(10),
                    p.get("timeoutSeconds").and_then(Value::as_i64).unwrap_or(1),
                    p.get("failureThreshold").and_then(Value::as_i64).unwrap_or(3)
                );
            }
        }
    }
}

fn conditions(out: &mut String, v: &Value) {
    let conds = v.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    if conds.is_empty() {
        return;
    }
    let _ = writeln!(out, "Conditions:");
    for c in conds {
        let extra = [s(&c, "/reason"), s(&c, "/message")]
            .iter()
            .filter(|x| !x.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(": ");
        let _ = writeln!(out, "  {:<14} {:<6} {extra}", s(&c, "/type"), s(&c, "/status"));
    }
}

/// Renders `v` (a Kubernetes-shaped object) and the events about it.
pub fn describe(kind: &str, v: &Value, events: &[Value]) -> String {
    let mut out = String::new();
    header(&mut out, v);
    match kind {
        "Pod" => {
            let _ = writeln!(
                out,
                "Node:         {}",
                if s(v, "/spec/nodeName").is_empty() { "<none>" } else { s(v, "/spec/nodeName") }
            );
            let _ = writeln!(out, "Status:       {}", pod_status(v));
            let msg = s(v, "/status/message");
            if !msg.is_empty() {
                let _ = writeln!(out, "Message:      {msg}");
            }
            let _ = writeln!(
                out,
                "IP:           {}",
                if s(v, "/status/hostIP").is_empty() { "<none>" } else { s(v, "/status/hostIP") }
            );
            if let Some(o) = v.pointer("/metadata/ownerReferences/0") {
                let _ = writeln!(out, "Controlled By: {}/{}", s(o, "/kind"), s(o, "/name"));
            }
            containers(&mut out, v);
            conditions(&mut out, v);
        }
        "Deployment" => {
            let _ = writeln!(out, "Selector:     {}", map_line(v, "/spec/selector/matchLabels"));
            let want = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let _ = writeln!(
                out,
                "Replicas:     {want} desired | {} updated | {} ready | {} unavailable",
                n(v, "/status/updatedReplicas"),
                n(v, "/status/readyReplicas"),
                n(v, "/status/unavailableReplicas")
            );
            if let Some(f) = v.pointer("/spec/fencing").and_then(Value::as_str) {
                let _ = writeln!(out, "Fencing:      {f}");
            }
            let tmpl = serde_json::json!({"spec": v.pointer("/spec/template/spec").cloned().unwrap_or_default()});
            containers(&mut out, &tmpl);
            conditions(&mut out, v);
        }
        "DaemonSet" => {
            let _ = writeln!(out, "Selector:     {}", map_line(v, "/spec/selector/matchLabels"));
            let _ = writeln!(out, "Node-Selector: {}", map_line(v, "/spec/template/spec/nodeSelector"));
            let _ = writeln!(
                out,
                "Desired Number of Nodes Scheduled: {}\nCurrent Number of Nodes Scheduled: {}\nNumber of Nodes Scheduled with Up-to-date Pods: {}\nNumber of Nodes Scheduled with Available Pods: {}\nNumber of Nodes Misscheduled: {}",
                n(v, "/status/desiredNumberScheduled"),
                n(v, "/status/currentNumberScheduled"),
                n(v, "/status/updatedNumberScheduled"),
                n(v, "/status/numberAvailable"),
                n(v, "/status/numberMisscheduled"),
            );
            let _ = writeln!(
                out,
                "Pods Status:  {} Ready / {} Unavailable",
                n(v, "/status/numberReady"),
                n(v, "/status/numberUnavailable")
            );
            let strategy = v.pointer("/spec/updateStrategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
            let _ = writeln!(out, "Update Strategy: {strategy}");
            let tmpl = serde_json::json!({"spec": v.pointer("/spec/template/spec").cloned().unwrap_or_default()});
            containers(&mut out, &tmpl);
        }
        "Job" => {
            let _ = writeln!(
                out,
                "Completions:  {} of {} succeeded, {} active, {} failed (backoffLimit {})",
                n(v, "/status/succeeded"),
                v.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1),
                n(v, "/status/active"),
                n(v, "/status/failed"),
                v.pointer("/spec/backoffLimit").and_then(Value::as_i64).unwrap_or(6)
            );
            let _ =
                writeln!(out, "Parallelism:  {}", v.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1));
            let mode = v.pointer("/spec/completionMode").and_then(Value::as_str).unwrap_or("NonIndexed");
            let _ = writeln!(out, "Completion Mode:  {mode}");
            if mode == "Indexed" {
                let done = s(v, "/status/completedIndexes");
                let _ = writeln!(out, "Completed Indexes:  {}", if done.is_empty() { "<none>" } else { done });
                if let Some(f) = v.pointer("/status/failedIndexes").and_then(Value::as_str) {
                    let _ = writeln!(out, "Failed Indexes:  {}", if f.is_empty() { "<none>" } else { f });
                }
            }
            for (label, p) in [
                ("Active Deadline Seconds", "/spec/activeDeadlineSeconds"),
                ("TTL After Finished", "/spec/ttlSecondsAfterFinished"),
            ] {
                if let Some(x) = v.pointer(p).and_then(Value::as_i64) {
                    let _ = writeln!(out, "{label}:  {x}s");
                }
            }
            conditions(&mut out, v);
        }
        "ConfigMap" => {
            let _ = writeln!(out, "\nData\n====");
            for (k, val) in v.pointer("/data").and_then(Value::as_object).into_iter().flatten() {
                let _ = writeln!(out, "{k}:\n----\n{}\n", val.as_str().unwrap_or_default());
            }
            let _ = writeln!(out, "\nBinaryData\n====");
            for (k, bytes) in decoded_sizes(v, "/binaryData") {
                let _ = writeln!(out, "{k}: {bytes} bytes");
            }
        }
        "Secret" => {
            // Sizes only, as kubectl: a Secret's values are never printed.
            let _ = writeln!(out, "\nType:  {}", v.pointer("/type").and_then(Value::as_str).unwrap_or("Opaque"));
            let _ = writeln!(out, "\nData\n====");
            for (k, bytes) in decoded_sizes(v, "/data") {
                let _ = writeln!(out, "{k}:  {bytes} bytes");
            }
        }
        "CronJob" => {
            let opt = |p: &str| {
                v.pointer(p)
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .unwrap_or("<unset>".into())
            };
            let _ = writeln!(out, "Schedule:                      {}", s(v, "/spec/schedule"));
            let _ = writeln!(out, "Time Zone:                     {}", opt("/spec/timeZone").replace("<unset>", "UTC"));
            let _ = writeln!(
                out,
                "Concurrency Policy:            {}",
                opt("/spec/concurrencyPolicy").replace("<unset>", "Allow")
            );
            let _ =
                writeln!(out, "Suspend:                       {}", opt("/spec/suspend").replace("<unset>", "false"));
            let _ = writeln!(
                out,
                "Successful Job History Limit:  {}",
                opt("/spec/successfulJobsHistoryLimit").replace("<unset>", "3")
            );
            let _ = writeln!(
                out,
                "Failed Job History Limit:      {}",
                opt("/spec/failedJobsHistoryLimit").replace("<unset>", "1")
            );
            let _ = writeln!(out, "Starting Deadline Seconds:     {}", opt("/spec/startingDeadlineSeconds"));
            let _ = writeln!(out, "Last Schedule Time:            {}", opt("/status/lastScheduleTime"));
            let _ = writeln!(out, "Last Successful Time:          {}", opt("/status/lastSuccessfulTime"));
            let active: Vec<&str> = v
                .pointer("/status/active")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|j| s(j, "/name"))
                .collect();
            let _ = writeln!(
                out,
                "Active Jobs:                   {}",
                if active.is_empty() { "<none>".into() } else { active.join(", ") }
            );
            let nodes: Vec<&str> = v
                .pointer("/status/triggerNodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let _ = writeln!(
                out,
                "Trigger:                       {}",
                match nodes.as_slice() {
                    [] => "<no live node>".to_string(),
                    [one] => format!("{one} (no fallback)"),
                    [owner, fallback, ..] => format!("{owner}, fallback {fallback}"),
                }
            );
            let _ = writeln!(out, "Missed Schedules:              {}", n(v, "/status/missedSchedules"));
            let tmpl = serde_json::json!({"spec": v.pointer("/spec/jobTemplate/spec/template/spec").cloned().unwrap_or_default()});
            containers(&mut out, &tmpl);
        }
        "Service" => {
            let _ = writeln!(out, "Selector:     {}", map_line(v, "/spec/selector"));
            let _ = writeln!(
                out,
                "Type:         {}",
                v.pointer("/spec/type").and_then(Value::as_str).unwrap_or("NodePort")
            );
            if v.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") {
                let ip = v.pointer("/spec/loadBalancerIP").and_then(Value::as_str).unwrap_or("<pending>");
                let _ = writeln!(out, "LoadBalancer: {ip}");
                for c in v.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "Address:      {} ({}): {}",
                        s(c, "/reason"),
                        if s(c, "/status") == "True" { "serving" } else { "not serving" },
                        s(c, "/message")
                    );
                }
            }
            for p in v.pointer("/status/ports").and_then(Value::as_array).into_iter().flatten() {
                let np =
                    p.get("nodePort").and_then(Value::as_i64).map(|x| x.to_string()).unwrap_or_else(|| "<none>".into());
                let name = s(p, "/name");
                let _ = writeln!(
                    out,
                    "Port:         {} {}/{}, node port {np} on every node",
                    if name.is_empty() { "<unset>" } else { name },
                    n(p, "/port"),
                    p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                );
                let eps: Vec<String> = p
                    .get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|e| format!("{}:{} ({} on {})", s(e, "/ip"), n(e, "/port"), s(e, "/pod"), s(e, "/node")))
                    .collect();
                if eps.is_empty() {
                    let _ = writeln!(out, "Endpoints:    <none> (no Ready pod matches the selector)");
                } else {
                    let _ = writeln!(out, "Endpoints:    {}", eps.join("\n              "));
                }
            }
            if let Some(c) = v.pointer("/status/conflicts").and_then(Value::as_array) {
                for x in c {
                    let _ = writeln!(out, "Warning:      {}", x.as_str().unwrap_or(""));
                }
            }
        }
        "Node" => {
            let _ = writeln!(out, "State:        {} (since {})", s(v, "/status/state"), s(v, "/status/stateSince"));
            let _ = writeln!(out, "Generation:   {}", s(v, "/metadata/annotations/shoal.dev~1generation"));
            let _ = writeln!(out, "API:          {}", s(v, "/metadata/annotations/shoal.dev~1api-url"));
            for a in v.pointer("/status/addresses").and_then(Value::as_array).into_iter().flatten() {
                let _ = writeln!(out, "Address:      {} {}", s(a, "/type"), s(a, "/address"));
            }
            let _ = writeln!(
                out,
                "Capacity:     cpu {} memory {} pods {}",
                s(v, "/status/capacity/cpu"),
                s(v, "/status/capacity/memory"),
                s(v, "/status/capacity/pods")
            );
            let _ = writeln!(
                out,
                "Allocatable:  cpu {} memory {} pods {}",
                s(v, "/status/allocatable/cpu"),
                s(v, "/status/allocatable/memory"),
                s(v, "/status/allocatable/pods")
            );
            let _ = writeln!(
                out,
                "Allocated:    cpu {} memory {} pods {}",
                s(v, "/status/allocated/cpu"),
                s(v, "/status/allocated/memory"),
                s(v, "/status/allocated/pods")
            );
            let rts: Vec<&str> = v
                .pointer("/status/nodeInfo/containerRuntimes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let _ = writeln!(out, "Runtimes:     {}", rts.join(", "));
            let _ = writeln!(
                out,
                "System:       {}/{} shoal {}",
                s(v, "/status/nodeInfo/operatingSystem"),
                s(v, "/status/nodeInfo/architecture"),
                s(v, "/status/nodeInfo/kubeletVersion")
            );
        }
        _ => {}
    }
    let _ = writeln!(out, "Events:");
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
    }
    for e in events {
        let _ = writeln!(
            out,
            "  {:<8} {:<9} {:<18} {:<10} {}",
            age_of(e.pointer("/lastTimestamp").and_then(Value::as_str)),
            s(e, "/type"),
            s(e, "/reason"),
            s(e, "/source/host"),
            s(e, "/message")
        );
    }
    out
}

/// The keys of a base64 map at `pointer` and the size of each decoded value.
fn decoded_sizes<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = (&'a String, usize)> {
    use base64::Engine as _;
    v.pointer(pointer).and_then(Value::as_object).into_iter().flatten().map(|(k, val)| {
        let bytes =
            val.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()).map_or(0, |b| b.len());
        (k, bytes)
    })
}
