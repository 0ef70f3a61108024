//! How the CLI prints: kubectl-like tables computed from the API's JSON,
//! ages (`5s`, `3m10s`, `2d`), and `-o yaml|json`.

use std::io::Write;

use serde_json::Value;

/// kubectl's age format.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if d < 2 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else {
        format!("{d}d")
    }
}

pub fn now_unix() -> i64 {
    crate::util::unix_secs() as i64
}

/// Seconds since an RFC 3339 time, or `<unknown>`.
pub fn age_of(rfc3339: Option<&str>) -> String {
    match rfc3339.and_then(|t| {
        humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok().or_else(|| humantime::parse_rfc3339(t).ok())
    }) {
        Some(t) => {
            let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            age(now_unix() - secs)
        }
        None => "<unknown>".into(),
    }
}

/// Writes rows as aligned columns (three spaces apart, as kubectl).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(3);
    let _ = writeln!(tw, "{}", header.join("\t"));
    for r in rows {
        let _ = writeln!(tw, "{}", r.join("\t"));
    }
    let _ = tw.flush();
    String::from_utf8(tw.into_inner().unwrap_or_default()).unwrap_or_default()
}

pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}

/// kubectl's pod STATUS column.
pub fn pod_status(p: &Value) -> String {
    let reason = s(p, "/status/reason");
    if reason == "Terminating" {
        return reason.into();
    }
    let phase = s(p, "/status/phase");
    let empty = Vec::new();
    let cs = p.pointer("/status/containerStatuses").and_then(Value::as_array).unwrap_or(&empty);
    for c in cs {
        if let Some(w) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
            && (w != "ContainerCreating" || phase == "Pending")
        {
            return w.into();
        }
    }
    if phase == "Failed" || phase == "Running" {
        for c in cs {
            if let Some(t) = c.pointer("/state/terminated/reason").and_then(Value::as_str)
                && (phase == "Failed" || t != "Completed")
            {
                return t.into();
            }
        }
    }
    if phase == "Succeeded" {
        return "Completed".into();
    }
    if phase == "Pending" && !reason.is_empty() {
        return reason.into();
    }
    phase.into()
}

fn ready_count(p: &Value) -> String {
    let empty = Vec::new();
    let cs = p.pointer("/status/containerStatuses").and_then(Value::as_array).unwrap_or(&empty);
    let total = p.pointer("/spec/containers").and_then(Value::as_array).map_or(cs.len(), Vec::len);
    let ready = cs.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
    format!("{ready}/{total}")
}

fn restarts(p: &Value) -> String {
    let empty = Vec::new();
    let cs = p.pointer("/status/containerStatuses").and_then(Value::as_array).unwrap_or(&empty);
    let total: i64 = cs.iter().map(|c| n(c, "/restartCount")).sum();
    total.to_string()
}

/// Table rows of a list; `wide` adds columns; `ns` prefixes the namespace.
pub fn rows(kind: &str, items: &[Value], wide: bool, ns: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut header: Vec<&'static str> = match kind {
        "Pod" if wide => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "PORTS"],
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "ReplicaSet" => vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "DaemonSet" => vec!["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
        "Job" => vec!["NAME", "STATUS", "COMPLETIONS", "AGE"],
        "CronJob" => vec!["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
        "Service" => vec!["NAME", "TYPE", "EXTERNAL-IP", "PORT(S)", "ENDPOINTS", "AGE"],
        "Namespace" => vec!["NAME", "STATUS", "AGE"],
        "ConfigMap" => vec!["NAME", "DATA", "AGE"],
        "Secret" => vec!["NAME", "TYPE", "DATA", "AGE"],
        "Node" if wide => vec![
            "NAME",
            "STATUS",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "CPU(ALLOC/CAP)",
            "MEMORY(ALLOC/CAP)",
            "PODS",
            "RUNTIMES",
            "OS-ARCH",
            "LABELS",
        ],
        "Node" => vec!["NAME", "STATUS", "AGE", "VERSION", "INTERNAL-IP"],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "NODE", "MESSAGE"],
        _ => vec!["NAME", "AGE"],
    };
    let mut out = Vec::new();
    for it in items {
        let name = s(it, "/metadata/name").to_string();
        let created = it.pointer("/metadata/creationTimestamp").and_then(Value::as_str);
        let mut row = match kind {
            "Pod" => {
                let mut r = vec![name, ready_count(it), pod_status(it), restarts(it), age_of(created)];
                if wide {
                    let ip = s(it, "/status/hostIP");
                    let ports: Vec<String> = it
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
                        .filter_map(|p| {
                            p.get("hostPort")
                                .and_then(Value::as_u64)
                                .map(|h| format!("{}->{h}", n(&p, "/containerPort")))
                        })
                        .collect();
                    r.push(if ip.is_empty() { "<none>".into() } else { ip.into() });
                    let node = s(it, "/spec/nodeName");
                    r.push(if node.is_empty() { "<none>".into() } else { node.into() });
                    r.push(if ports.is_empty() { "<none>".into() } else { ports.join(",") });
                }
                r
            }
            "Deployment" => vec![
                name,
                format!(
                    "{}/{}",
                    n(it, "/status/readyReplicas"),
                    it.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
                ),
                n(it, "/status/updatedReplicas").to_string(),
                n(it, "/status/availableReplicas").to_string(),
                age_of(created),
            ],
            "DaemonSet" => {
                let sel = it
                    .pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .filter(|m| !m.is_empty())
                    .map(|m| {
                        m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
                    })
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    name,
                    n(it, "/status/desiredNumberScheduled").to_string(),
                    n(it, "/status/currentNumberScheduled").to_string(),
                    n(it, "/status/numberReady").to_string(),
                    n(it, "/status/updatedNumberScheduled").to_string(),
                    n(it, "/status/numberAvailable").to_string(),
                    sel,
                    age_of(created),
                ]
            }
            "ConfigMap" => {
                let count = |p: &str| it.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len());
                vec![name, (count("/data") + count("/binaryData")).to_string(), age_of(created)]
            }
            "Secret" => {
                let count = it.pointer("/data").and_then(Value::as_object).map_or(0, |m| m.len());
                let t = it.pointer("/type").and_then(Value::as_str).unwrap_or("Opaque").to_string();
                vec![name, t, count.to_string(), age_of(created)]
            }
            "CronJob" => {
                let tz = it.pointer("/spec/timeZone").and_then(Value::as_str).unwrap_or("<none>");
                let suspend = it.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
                let active = it.pointer("/status/active").and_then(Value::as_array).map_or(0, Vec::len);
                let last = it.pointer("/status/lastScheduleTime").and_then(Value::as_str);
                vec![
                    name,
                    s(it, "/spec/schedule").to_string(),
                    tz.to_string(),
                    if suspend { "True" } else { "False" }.to_string(),
                    active.to_string(),
                    last.map_or_else(|| "<none>".to_string(), |t| age_of(Some(t))),
                    age_of(created),
                ]
            }
            "ReplicaSet" => vec![
                name,
                n(it, "/spec/replicas").to_string(),
                n(it, "/status/replicas").to_string(),
                n(it, "/status/readyReplicas").to_string(),
                age_of(created),
            ],
            "Job" => {
                let conds = it.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                let status = if conds.iter().any(|c| s(c, "/type") == "Complete") {
                    "Complete"
                } else if conds.iter().any(|c| s(c, "/type") == "Failed") {
                    "Failed"
                } else {
                    "Running"
                };
                let comp = it.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
                vec![name, status.into(), format!("{}/{comp}", n(it, "/status/succeeded")), age_of(created)]
            }
            "Service" => {
                let ports: Vec<String> = it
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                        match p.get("nodePort").and_then(Value::as_i64) {
                            Some(np) => format!("{}:{np}/{proto}", n(p, "/port")),
                            None => format!("{}/{proto}", n(p, "/port")),
                        }
                    })
                    .collect();
                let eps: usize = it
                    .pointer("/status/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .map(|p| p.get("endpoints").and_then(Value::as_array).map_or(0, Vec::len))
                            .max()
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                let t = it.pointer("/spec/type").and_then(Value::as_str).unwrap_or("NodePort");
                let ext: Vec<&str> = it
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.get("ip").and_then(Value::as_str))
                    .collect();
                let ext = match (ext.is_empty(), t) {
                    (false, _) => ext.join(","),
                    (true, "LoadBalancer") => "<pending>".into(),
                    (true, _) => "<none>".into(),
                };
                vec![name, t.into(), ext, ports.join(","), eps.to_string(), age_of(created)]
            }
            "Namespace" => vec![
                name,
                it.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Active").into(),
                age_of(created),
            ],
            "Node" => {
                let mut state = s(it, "/status/state").to_string();
                if it.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                    state.push_str(match s(it, "/metadata/annotations/shoal.dev~1maintenance") {
                        "draining" => ",SchedulingDisabled,Draining",
                        "cordoned" => ",SchedulingDisabled",
                        _ if state == "Ready" => ",Settling",
                        _ => "",
                    });
                }
                let ip = it
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| s(x, "/type") == "InternalIP"))
                    .map(|x| s(x, "/address").to_string())
                    .unwrap_or_default();
                let mut r = vec![name, state, age_of(created), s(it, "/status/nodeInfo/kubeletVersion").into(), ip];
                if wide {
                    r.push(format!("{}/{}", s(it, "/status/allocated/cpu"), s(it, "/status/allocatable/cpu")));
                    r.push(format!("{}/{}", s(it, "/status/allocated/memory"), s(it, "/status/allocatable/memory")));
                    r.push(format!("{}/{}", s(it, "/status/allocated/pods"), s(it, "/status/allocatable/pods")));
                    let rts: Vec<&str> = it
                        .pointer("/status/nodeInfo/containerRuntimes")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    r.push(rts.join(","));
                    r.push(format!(
                        "{}/{}",
                        s(it, "/status/nodeInfo/operatingSystem"),
                        s(it, "/status/nodeInfo/architecture")
                    ));
                    let labels: Vec<String> = it
                        .pointer("/metadata/labels")
                        .and_then(Value::as_object)
                        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
                        .unwrap_or_default();
                    r.push(if labels.is_empty() { "<none>".into() } else { labels.join(",") });
                }
                r
            }
            "Event" => vec![
                age_of(it.pointer("/lastTimestamp").and_then(Value::as_str)),
                s(it, "/type").into(),
                s(it, "/reason").into(),
                format!("{}/{}", s(it, "/involvedObject/kind").to_lowercase(), s(it, "/involvedObject/name")),
                s(it, "/source/host").into(),
                s(it, "/message").into(),
            ],
            _ => vec![name, age_of(created)],
        };
        if ns {
            let nsv = it.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
            row.insert(0, nsv);
        }
        out.push(row);
    }
    if ns {
        header.insert(0, "NAMESPACE");
    }
    (header, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(190), "3m10s");
        assert_eq!(age(30 * 60), "30m");
        assert_eq!(age(4 * 3600 + 60), "4h1m");
        assert_eq!(age(10 * 3600), "10h");
        assert_eq!(age(3 * 86400 + 3600), "3d1h");
        assert_eq!(age(30 * 86400), "30d");
    }

    #[test]
    fn pod_status_column() {
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&crash), "CrashLoopBackOff");
        let done = json!({"status": {"phase": "Succeeded"}});
        assert_eq!(pod_status(&done), "Completed");
        let pending = json!({"status": {"phase": "Pending", "reason": "Unschedulable"}});
        assert_eq!(pod_status(&pending), "Unschedulable");
    }

    #[test]
    fn table_aligns() {
        let t = table(&["NAME", "AGE"], &[vec!["a-long-name".into(), "5s".into()]]);
        assert_eq!(t, "NAME          AGE\na-long-name   5s\n");
    }
}
