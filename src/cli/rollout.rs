//! `shoal rollout ...` and `shoal apply --wait`: following a Deployment's
//! rollout as kubectl does (the same messages, from the same status fields),
//! plus which pod each waiting slot is waiting on, and where.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use super::CliError;
use super::args::{RolloutAction, RolloutArgs, RolloutTarget};
use super::commands::client;
use crate::api::client::Client;

/// How often progress is polled.
const POLL: Duration = Duration::from_millis(500);

/// What a rollout command names: a Deployment, or (for `status`) a DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Deployment(String),
    DaemonSet(String),
}

fn target_of(t: &RolloutTarget) -> Result<Target, CliError> {
    let (kind, name) = match t.target.as_slice() {
        [one] => one
            .split_once('/')
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .unwrap_or(("deployment".into(), one.clone())),
        [k, n] => (k.clone(), n.clone()),
        _ => return Err(CliError::Usage("expected `deployment NAME` or `deployment/NAME`".into())),
    };
    match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deployments" | "deploy" | "deployment.apps" => Ok(Target::Deployment(name)),
        "daemonset" | "daemonsets" | "ds" | "daemonset.apps" => Ok(Target::DaemonSet(name)),
        other => Err(CliError::Usage(format!("only deployments and daemonsets have rollouts (got {other:?})"))),
    }
}

fn deployment_name(t: &RolloutTarget) -> Result<String, CliError> {
    match target_of(t)? {
        Target::Deployment(n) => Ok(n),
        Target::DaemonSet(_) => {
            Err(CliError::Usage("a DaemonSet's rollout has `status` only (it updates node by node by itself)".into()))
        }
    }
}

fn timeout_of(s: &str) -> Result<Duration, CliError> {
    humantime::parse_duration(s).map_err(|e| CliError::Usage(format!("--timeout {s:?}: {e}")))
}

pub async fn run(a: RolloutArgs) -> Result<(), CliError> {
    match a.action {
        RolloutAction::Status(t) => {
            let c = client(&t.client);
            let deadline = Instant::now() + timeout_of(&t.timeout)?;
            match target_of(&t)? {
                Target::Deployment(name) => wait_deployment(&c, &t.namespace, &name, deadline).await,
                Target::DaemonSet(name) => wait_daemonset(&c, &t.namespace, &name, deadline).await,
            }
        }
        RolloutAction::History(t) => history(&t).await,
        RolloutAction::Undo(t) => act(&t, "undo").await,
        RolloutAction::Restart(t) => act(&t, "restart").await,
        RolloutAction::Pause(t) => act(&t, "pause").await,
        RolloutAction::Resume(t) => act(&t, "resume").await,
    }
}

async fn act(t: &RolloutTarget, action: &str) -> Result<(), CliError> {
    let name = deployment_name(t)?;
    let c = client(&t.client);
    let path = format!("/shoal/v1/namespaces/{}/deployments/{name}/rollout", t.namespace);
    let body = json!({"action": action, "toRevision": t.to_revision});
    let v = c.send_json(Method::POST, &path, &body).await?;
    let what = v.get("action").and_then(Value::as_str).unwrap_or(action);
    match v.get("message").and_then(Value::as_str) {
        Some(m) => println!("deployment.apps/{name} {what} ({m})"),
        None => println!("deployment.apps/{name} {what}"),
    }
    Ok(())
}

/// The revisions of `name`, oldest first: (revision, ReplicaSet).
async fn revisions(c: &Client, ns: &str, name: &str) -> Result<Vec<(u64, Value)>, CliError> {
    let d = c.get_json(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}")).await?;
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let v = c.get_json(&format!("/apis/apps/v1/namespaces/{ns}/replicasets")).await?;
    let mut out: Vec<(u64, Value)> = v
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rs| rs.pointer("/metadata/ownerReferences/0/uid").and_then(Value::as_str) == Some(uid.as_str()))
        .filter_map(|rs| {
            let n = rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")?.as_str()?.parse().ok()?;
            Some((n, rs.clone()))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

async fn history(t: &RolloutTarget) -> Result<(), CliError> {
    let name = deployment_name(t)?;
    let c = client(&t.client);
    let revs = revisions(&c, &t.namespace, &name).await?;
    if let Some(n) = t.revision {
        let (_, rs) = revs
            .iter()
            .find(|(r, _)| *r == n)
            .ok_or_else(|| CliError::Failed(format!("unable to find revision {n} of deployment {name:?}")))?;
        println!("deployment.apps/{name} with revision #{n}");
        print!("{}", super::output::to_yaml(rs.pointer("/spec/template").unwrap_or(&Value::Null)));
        return Ok(());
    }
    println!("deployment.apps/{name}");
    let rows: Vec<Vec<String>> = revs
        .iter()
        .map(|(n, rs)| {
            let cause = rs
                .pointer("/metadata/annotations/kubernetes.io~1change-cause")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            vec![n.to_string(), cause.to_string()]
        })
        .collect();
    print!("{}", super::output::table(&["REVISION", "CHANGE-CAUSE"], &rows));
    Ok(())
}

/// kubectl's reading of a Deployment's status: Ok(Some(done message)),
/// Ok(None) with a waiting message, or an error past the deadline.
fn reading(name: &str, d: &Value) -> Result<(bool, String), CliError> {
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let conds = d.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let progressing = conds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing"));
    if progressing.and_then(|c| c.get("reason")).and_then(Value::as_str) == Some("ProgressDeadlineExceeded") {
        return Err(CliError::Failed(format!("deployment {name:?} exceeded its progress deadline")));
    }
    if n("/status/observedGeneration") < n("/metadata/generation") {
        return Ok((false, "Waiting for deployment spec update to be observed...".into()));
    }
    let want = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let (updated, replicas, available) =
        (n("/status/updatedReplicas"), n("/status/replicas"), n("/status/availableReplicas"));
    let wait = |m: String| Ok((false, format!("Waiting for deployment {name:?} rollout to finish: {m}")));
    if updated < want {
        return wait(format!("{updated} out of {want} new replicas have been updated..."));
    }
    if replicas > updated {
        return wait(format!("{} old replicas are pending termination...", replicas - updated));
    }
    if available < updated {
        return wait(format!("{available} of {updated} updated replicas are available..."));
    }
    Ok((true, format!("deployment {name:?} successfully rolled out")))
}

/// What the slots still rolling wait on: their current pod, its node and state.
async fn waiting_on(c: &Client, ns: &str, d: &Value) -> Vec<String> {
    let name = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let hash = d.pointer("/status/shoal/templateHash").and_then(Value::as_str).unwrap_or_default();
    let pending: Vec<u64> = d
        .pointer("/status/shoal/pending")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let Ok(pods) = c.get_json(&format!("/api/v1/namespaces/{ns}/pods")).await else { return Vec::new() };
    let items = pods.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for slot in pending.iter().take(8) {
        let pod = format!("{name}-{hash}-{slot}");
        let p = items.iter().find(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(pod.as_str()));
        let line = match p {
            None => format!("  {pod}: waiting for its turn"),
            Some(p) => {
                let node = p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("no node yet");
                let state = super::output::pod_status(p);
                format!("  {pod} on {node}: {state}")
            }
        };
        out.push(line);
    }
    if pending.len() > 8 {
        out.push(format!("  ... and {} more", pending.len() - 8));
    }
    out
}

/// Polls `path` until `read` says it is done (Ok) or has failed (Err), or
/// the deadline passes; prints each new message, and after one that is not
/// the last, the lines `detail` gives (what the rollout waits on).
async fn follow(
    c: &Client,
    path: &str,
    what: &str,
    deadline: Instant,
    read: impl Fn(&Value) -> Result<(bool, String), CliError>,
    detail: impl AsyncFn(&Value) -> Vec<String>,
) -> Result<(), CliError> {
    let mut last = String::new();
    loop {
        let v = c.get_json(path).await?;
        let (done, msg) = read(&v)?;
        if msg != last {
            println!("{msg}");
            if !done {
                for l in detail(&v).await {
                    println!("{l}");
                }
            }
            last = msg;
        }
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::Failed(format!("timed out waiting for {what}")));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until the Deployment has rolled out, printing kubectl's messages.
pub async fn wait_deployment(c: &Client, ns: &str, name: &str, deadline: Instant) -> Result<(), CliError> {
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    let what = format!("deployment {name:?} to roll out");
    follow(c, &path, &what, deadline, |d| reading(name, d), async |d| waiting_on(c, ns, d).await).await
}

/// kubectl's reading of a DaemonSet's rollout: (done, message).
fn daemonset_reading(name: &str, d: &Value) -> Result<(bool, String), CliError> {
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if d.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete") {
        return Err(CliError::Failed("rollout status is only available for RollingUpdate strategy type".into()));
    }
    if n("/status/observedGeneration") < n("/metadata/generation") {
        return Ok((false, "Waiting for daemon set spec update to be observed...".into()));
    }
    let (want, updated, available) =
        (n("/status/desiredNumberScheduled"), n("/status/updatedNumberScheduled"), n("/status/numberAvailable"));
    let wait = |m: String| Ok((false, format!("Waiting for daemon set {name:?} rollout to finish: {m}")));
    if updated < want {
        return wait(format!("{updated} out of {want} new pods have been updated..."));
    }
    if available < want {
        return wait(format!("{available} of {want} updated pods are available..."));
    }
    Ok((true, format!("daemon set {name:?} successfully rolled out")))
}

/// Polls until the DaemonSet has rolled out on every node it runs on.
pub async fn wait_daemonset(c: &Client, ns: &str, name: &str, deadline: Instant) -> Result<(), CliError> {
    let path = format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}");
    let what = format!("daemon set {name:?} to roll out");
    follow(c, &path, &what, deadline, |d| daemonset_reading(name, d), async |_| Vec::new()).await
}

/// How a Job stands: (done, message), or its failure.
fn job_reading(name: &str, j: &Value) -> Result<(bool, String), CliError> {
    let conds = j.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    if conds.iter().any(|c| c.get("type").and_then(Value::as_str) == Some("Complete")) {
        return Ok((true, format!("job {name:?} completed")));
    }
    if let Some(f) = conds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Failed")) {
        let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        return Err(CliError::Failed(format!("job {name:?} failed ({}): {}", s("reason"), s("message"))));
    }
    let n = |p: &str| j.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let want = j.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
    Ok((
        false,
        format!(
            "Waiting for job {name:?}: {} of {want} completions, {} running...",
            n("/status/succeeded"),
            n("/status/active")
        ),
    ))
}

/// Polls until the Job has completed (Ok) or failed (an error).
pub async fn wait_job(c: &Client, ns: &str, name: &str, deadline: Instant) -> Result<(), CliError> {
    let path = format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}");
    let what = format!("job {name:?} to finish");
    follow(c, &path, &what, deadline, |j| job_reading(name, j), async |_| Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(want: i64, updated: i64, replicas: i64, available: i64, reason: &str) -> Value {
        json!({"metadata": {"generation": 2}, "spec": {"replicas": want}, "status": {"observedGeneration": 2, "updatedReplicas": updated, "replicas": replicas,
               "availableReplicas": available, "conditions": [{"type": "Progressing", "reason": reason}]}})
    }

    #[test]
    fn reads_a_job_to_its_end_and_names_why_it_failed() {
        let j = |conds: Value| json!({"spec": {"completions": 3}, "status": {"succeeded": 1, "active": 2, "conditions": conds}});
        assert_eq!(
            job_reading("b", &j(json!([]))).unwrap(),
            (false, "Waiting for job \"b\": 1 of 3 completions, 2 running...".into())
        );
        assert_eq!(job_reading("b", &j(json!([{"type": "Complete"}]))).unwrap(), (true, "job \"b\" completed".into()));
        let e = job_reading(
            "b",
            &j(json!([{"type": "Failed", "reason": "BackoffLimitExceeded", "message": "3 failures"}])),
        );
        assert!(
            matches!(e, Err(CliError::Failed(m)) if m.contains("BackoffLimitExceeded") && m.contains("3 failures"))
        );
    }

    #[test]
    fn reads_a_daemonsets_rollout_as_kubectl_does() {
        let ds = |generation: i64, observed: i64, want: i64, updated: i64, available: i64| {
            json!({"metadata": {"generation": generation}, "spec": {"updateStrategy": {"type": "RollingUpdate"}},
                   "status": {"observedGeneration": observed, "desiredNumberScheduled": want,
                              "updatedNumberScheduled": updated, "numberAvailable": available}})
        };
        let r = |d: &Value| daemonset_reading("agent", d);
        assert_eq!(r(&ds(2, 1, 3, 3, 3)).unwrap().1, "Waiting for daemon set spec update to be observed...");
        assert_eq!(
            r(&ds(2, 2, 3, 1, 3)).unwrap().1,
            "Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated..."
        );
        assert_eq!(
            r(&ds(2, 2, 3, 3, 2)).unwrap().1,
            "Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available..."
        );
        assert_eq!(r(&ds(2, 2, 3, 3, 3)).unwrap(), (true, "daemon set \"agent\" successfully rolled out".to_string()));
        let mut on_delete = ds(1, 1, 1, 1, 1);
        on_delete["spec"]["updateStrategy"]["type"] = json!("OnDelete");
        assert!(r(&on_delete).is_err());
    }

    #[test]
    fn reads_status_as_kubectl_does() {
        let msg = |v: &Value| reading("web", v);
        assert_eq!(
            msg(&d(6, 2, 8, 6, "ReplicaSetUpdated")).unwrap().1,
            "Waiting for deployment \"web\" rollout to finish: 2 out of 6 new replicas have been updated..."
        );
        assert!(
            msg(&d(6, 6, 7, 6, "ReplicaSetUpdated")).unwrap().1.ends_with("1 old replicas are pending termination...")
        );
        assert!(
            msg(&d(6, 6, 6, 5, "ReplicaSetUpdated")).unwrap().1.ends_with("5 of 6 updated replicas are available...")
        );
        assert_eq!(
            msg(&d(6, 6, 6, 6, "NewReplicaSetAvailable")).unwrap(),
            (true, "deployment \"web\" successfully rolled out".into())
        );
        assert!(reading("web", &d(6, 2, 8, 6, "ProgressDeadlineExceeded")).is_err());
        let mut stale = d(6, 6, 6, 6, "NewReplicaSetAvailable");
        stale["metadata"]["generation"] = json!(3);
        assert_eq!(msg(&stale).unwrap(), (false, "Waiting for deployment spec update to be observed...".into()));
    }
}
