//! Server-side tables: what `kubectl get` shows. kubectl asks for a
//! `meta.k8s.io/v1` `Table` in its `Accept` header and prints the columns
//! the server names, so the columns and cells here are Kubernetes' own for
//! each kind (those with priority 1 only under `-o wide`).
//!
//! `table` is pure (an object or a list in, a Table out); `negotiate` is
//! the middleware that answers a Table to clients that ask for one.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// One column: its name, type, and whether only `-o wide` shows it.
struct Col(&'static str, &'static str, u8);

const NAME: Col = Col("Name", "string", 0);
const AGE: Col = Col("Age", "string", 0);

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            NAME,
            Col("Ready", "string", 0),
            Col("Status", "string", 0),
            Col("Restarts", "string", 0),
            AGE,
            Col("IP", "string", 1),
            Col("Node", "string", 1),
        ],
        "Deployment" => vec![
            NAME,
            Col("Ready", "string", 0),
            Col("Up-to-date", "integer", 0),
            Col("Available", "integer", 0),
            AGE,
            Col("Containers", "string", 1),
            Col("Images", "string", 1),
            Col("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            NAME,
            Col("Desired", "integer", 0),
            Col("Current", "integer", 0),
            Col("Ready", "integer", 0),
            AGE,
            Col("Containers", "string", 1),
            Col("Images", "string", 1),
        ],
        "DaemonSet" => vec![
            NAME,
            Col("Desired", "integer", 0),
            Col("Current", "integer", 0),
            Col("Ready", "integer", 0),
            Col("Up-to-date", "integer", 0),
            Col("Available", "integer", 0),
            Col("Node Selector", "string", 0),
            AGE,
        ],
        "Job" => vec![NAME, Col("Status", "string", 0), Col("Completions", "string", 0), AGE],
        "CronJob" => vec![
            NAME,
            Col("Schedule", "string", 0),
            Col("Suspend", "boolean", 0),
            Col("Active", "integer", 0),
            Col("Last Schedule", "string", 0),
            AGE,
        ],
        "Service" => vec![
            NAME,
            Col("Type", "string", 0),
            Col("Cluster-IP", "string", 0),
            Col("External-IP", "string", 0),
            Col("Port(s)", "string", 0),
            AGE,
            Col("Selector", "string", 1),
        ],
        "Node" => vec![
            NAME,
            Col("Status", "string", 0),
            Col("Roles", "string", 0),
            AGE,
            Col("Version", "string", 0),
            Col("Internal-IP", "string", 1),
            Col("OS-Image", "string", 1),
            Col("Container-Runtime", "string", 1),
        ],
        "Namespace" => vec![NAME, Col("Status", "string", 0), AGE],
        "ConfigMap" => vec![NAME, Col("Data", "integer", 0), AGE],
        "Secret" => vec![NAME, Col("Type", "string", 0), Col("Data", "integer", 0), AGE],
        "Event" => vec![
            Col("Last Seen", "string", 0),
            Col("Type", "string", 0),
            Col("Reason", "string", 0),
            Col("Object", "string", 0),
            Col("Message", "string", 0),
        ],
        _ => vec![NAME, AGE],
    }
}

/// Kubernetes' `duration.HumanDuration`: how `kubectl get` writes ages.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / (24 * 365));
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 && d % 365 != 0 => format!("{y}y{}d", d % 365),
        _ => format!("{y}y"),
    }
}

fn unix_of(ts: &Value) -> Option<i64> {
    ts.as_str()?.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

fn age(o: &Value, now: i64) -> String {
    unix_of(&o["metadata"]["creationTimestamp"]).map_or_else(|| "<unknown>".into(), |t| human_duration(now - t))
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn or_none(x: String) -> Value {
    json!(if x.is_empty() { "<none>".to_string() } else { x })
}

fn containers(o: &Value) -> (String, String) {
    let cs = o["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<String> = cs.iter().map(|c| s(&c["image"])).filter(|i| !i.is_empty()).collect();
    (names.join(","), images.join(","))
}

fn selector(o: &Value) -> String {
    let m = o["spec"]["selector"]["matchLabels"].as_object().or_else(|| o["spec"]["selector"].as_object());
    m.map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// A pod's Status column, as kubectl's printer derives it.
fn pod_status(o: &Value) -> String {
    if !o["metadata"]["deletionTimestamp"].is_null() || o["status"]["reason"] == "Terminating" {
        return "Terminating".into();
    }
    let mut reason = s(&o["status"]["phase"]);
    if let Some(r) = o["status"]["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.into();
    }
    for c in o["status"]["containerStatuses"].as_array().into_iter().flatten() {
        let st = &c["state"];
        if let Some(w) = st["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
            return w.into();
        }
        if !st["terminated"].is_null() && reason != "Succeeded" && reason != "Failed" {
            let t = &st["terminated"];
            return match t["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => r.into(),
                None if n(&t["signal"]) != 0 => format!("Signal:{}", n(&t["signal"])),
                None => format!("ExitCode:{}", n(&t["exitCode"])),
            };
        }
    }
    reason
}

fn cells(kind: &str, o: &Value, now: i64) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    let st = &o["status"];
    match kind {
        "Pod" => {
            let cs = st["containerStatuses"].as_array().cloned().unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(cs.len(), |c| c.len().max(cs.len()));
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs.iter().map(|c| n(&c["restartCount"])).sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                json!(age(o, now)),
                or_none(s(&st["podIP"])),
                or_none(s(&o["spec"]["nodeName"])),
            ]
        }
        "Deployment" => {
            let (c, i) = containers(o);
            vec![
                name,
                json!(format!("{}/{}", n(&st["readyReplicas"]), n(&o["spec"]["replicas"]))),
                json!(n(&st["updatedReplicas"])),
                json!(n(&st["availableReplicas"])),
                json!(age(o, now)),
                json!(c),
                json!(i),
                json!(selector(o)),
            ]
        }
        "ReplicaSet" => {
            let (c, i) = containers(o);
            vec![
                name,
                json!(n(&o["spec"]["replicas"])),
                json!(n(&st["replicas"])),
                json!(n(&st["readyReplicas"])),
                json!(age(o, now)),
                json!(c),
                json!(i),
            ]
        }
        "DaemonSet" => {
            let sel = o["spec"]["template"]["spec"]["nodeSelector"].as_object().map(|m| {
                m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
            });
            vec![
                name,
                json!(n(&st["desiredNumberScheduled"])),
                json!(n(&st["currentNumberScheduled"])),
                json!(n(&st["numberReady"])),
                json!(n(&st["updatedNumberScheduled"])),
                json!(n(&st["numberAvailable"])),
                or_none(sel.unwrap_or_default()),
                json!(age(o, now)),
            ]
        }
        "Job" => {
            let conds = st["conditions"].as_array().cloned().unwrap_or_default();
            let has = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else {
                "Running"
            };
            let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
            vec![name, json!(status), json!(format!("{}/{completions}", n(&st["succeeded"]))), json!(age(o, now))]
        }
        "CronJob" => {
            let last = unix_of(&st["lastScheduleTime"]).map_or_else(|| "<none>".into(), |t| human_duration(now - t));
            vec![
                name,
                json!(s(&o["spec"]["schedule"])),
                json!(o["spec"]["suspend"].as_bool().unwrap_or(false)),
                json!(st["active"].as_array().map_or(0, |a| a.len())),
                json!(last),
                json!(age(o, now)),
            ]
        }
        "Service" => {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", n(&p["port"])),
                        None => format!("{}/{proto}", n(&p["port"])),
                    }
                })
                .collect();
            let ext = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .map(|a| a.iter().map(|i| s(&i["ip"])).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            let kind = o["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let ext = if ext.is_empty() && kind == "LoadBalancer" { json!("<pending>") } else { or_none(ext) };
            vec![
                name,
                json!(kind),
                or_none(s(&o["spec"]["clusterIP"])),
                ext,
                or_none(ports.join(",")),
                json!(age(o, now)),
                or_none(selector(o)),
            ]
        }
        "Node" => {
            let ready = st["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let mut status = if ready { "Ready".to_string() } else { "NotReady".to_string() };
            if o["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let ip = st["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .map(|a| s(&a["address"]))
                .unwrap_or_default();
            let info = &st["nodeInfo"];
            vec![
                name,
                json!(status),
                json!("<none>"),
                json!(age(o, now)),
                json!(s(&info["kubeletVersion"])),
                or_none(ip),
                or_none(format!("{} {}", s(&info["operatingSystem"]), s(&info["architecture"])).trim().to_string()),
                or_none(
                    info["containerRuntimes"]
                        .as_array()
                        .map(|r| r.iter().map(s).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                ),
            ]
        }
        "Namespace" => vec![name, json!(st["phase"].as_str().unwrap_or("Active")), json!(age(o, now))],
        "ConfigMap" => {
            let count =
                o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(count), json!(age(o, now))]
        }
        "Secret" => {
            let count =
                o["data"].as_object().map_or(0, |m| m.len()) + o["stringData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(o["type"].as_str().unwrap_or("Opaque")), json!(count), json!(age(o, now))]
        }
        "Event" => {
            let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|k| unix_of(&o[*k]))
                .or_else(|| unix_of(&o["metadata"]["creationTimestamp"]));
            let obj = &o["involvedObject"];
            vec![
                json!(last.map_or_else(|| "<unknown>".into(), |t| human_duration(now - t))),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(format!("{}/{}", s(&obj["kind"]).to_ascii_lowercase(), s(&obj["name"]))),
                json!(s(&o["message"])),
            ]
        }
        _ => vec![name, json!(age(o, now))],
    }
}

/// An object or a list as a `meta.k8s.io/v1` Table (`None`: not an object).
/// Each row embeds its object, as kubectl needs for `-A`, `-L` and
/// `--show-labels`.
pub fn table(v: &Value, now: i64) -> Option<Value> {
    let list_kind = v["kind"].as_str()?;
    let (kind, items): (String, Vec<Value>) = match (list_kind.strip_suffix("List"), v["items"].as_array()) {
        (Some(k), Some(items)) => (k.to_string(), items.clone()),
        _ => (list_kind.to_string(), vec![v.clone()]),
    };
    let cols: Vec<Value> = columns(&kind)
        .into_iter()
        .map(|Col(name, ty, priority)| {
            let format = if name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut obj = o.clone();
            if obj["kind"].is_null() {
                obj["kind"] = json!(kind);
                obj["apiVersion"] = v["apiVersion"].clone();
            }
            json!({"cells": cells(&kind, o, now), "object": obj})
        })
        .collect();
    Some(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": v["metadata"]["resourceVersion"].clone()},
        "columnDefinitions": cols,
        "rows": rows,
    }))
}

/// Whether an `Accept` header asks for a Table first.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let parts: Vec<&str> = first.split(';').map(str::trim).collect();
        parts.contains(&"as=Table") && parts.contains(&"g=meta.k8s.io")
    })
}

/// Answers a Table to a GET that asks for one; other requests pass.
pub async fn negotiate(req: Request, next: Next) -> Response {
    let asks = req.method() == axum::http::Method::GET
        && req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(wants_table)
        && !req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let resp = next.run(req).await;
    if !asks || !resp.status().is_success() {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, super::server::MAX_BODY_BYTES * 8).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let table = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| table(&v, crate::util::unix_secs() as i64));
    let Some(t) = table else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let out = serde_json::to_vec(&t).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"));
    Response::from_parts(parts, axum::body::Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_writes_them() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 5, "3h"),
            (7 * 3600 + 60, "7h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (-5, "<invalid>"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn a_pod_list_becomes_kubectls_pod_table() {
        let now = "2026-12-04T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
            {"metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2026-12-04T09:55:00Z"},
             "spec": {"nodeName": "n1", "containers": [{"name": "c"}, {"name": "d"}]},
             "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [
                {"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "d", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}},
        ]});
        let t = table(&list, now).unwrap();
        assert_eq!(t["kind"], "Table");
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"]);
        assert_eq!(t["rows"][0]["cells"], json!(["web-0", "1/2", "CrashLoopBackOff", "3", "5m", "10.0.0.1", "n1"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "Pod", "each row carries its object");
        // A single object is a one-row table; an unknown kind gets Name and Age.
        let one = table(&json!({"kind": "Widget", "metadata": {"name": "w"}}), now).unwrap();
        assert_eq!(one["rows"][0]["cells"], json!(["w", "<unknown>"]));
        assert!(table(&json!([1, 2]), now).is_none());
    }

    #[test]
    fn only_a_table_first_in_accept_is_a_table_request() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"));
    }
}
