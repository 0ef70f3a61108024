//! Deployments' rollouts on the API: their status and conditions as
//! Kubernetes reports them, their revisions as ReplicaSets
//! (`/apis/apps/v1/.../replicasets`), and `rollout undo|restart|pause|resume`
//! (`POST /shoal/v1/namespaces/{ns}/deployments/{name}/rollout`).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::handlers::commit;
use super::render;
use super::server::{Ctx, Limited};
use crate::membership::view::ClusterView;
use crate::model::parse::Parsed;
use crate::model::pods::template_hash;
use crate::model::revision::{
    CHANGE_CAUSE_ANNOTATION, RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION, Revision, parse_pod_name, revision_name,
};
use crate::model::{Deployment, Kind, Object, ObjectKey};
use crate::placement::deployments::Progress;
use crate::placement::plan::PlanView;
use crate::state::Snapshot;
use crate::state::apply::{Mode, plan_apply, revisions_of};

type Res = Result<Json<Value>, ApiError>;

fn condition(kind: &str, status: &str, reason: &str, message: String) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message})
}

/// A Deployment's `status` (Kubernetes' fields, plus `shoal`: the current
/// revision, its template hash and the slots still to roll).
pub fn deployment_status(p: Option<&Progress>, name: &str) -> Value {
    let Some(p) = p else {
        // Not planned yet on this node: nothing observed.
        return json!({"observedGeneration": 0, "replicas": 0});
    };
    let s = &p.status;
    let want = p.params.replicas;
    let rs = revision_name(name, &p.hash);
    let available = s.available >= want.saturating_sub(p.params.max_unavailable);
    let progressing = if s.complete {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
        )
    } else if p.params.paused {
        condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
    } else if p.deadline_exceeded {
        condition(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs}\" has timed out progressing."),
        )
    } else {
        condition("Progressing", "True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing."))
    };
    let availability = if available {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    json!({
        "observedGeneration": p.generation,
        "replicas": s.replicas, "updatedReplicas": s.updated, "readyReplicas": s.ready,
        "availableReplicas": s.available, "unavailableReplicas": s.unavailable,
        "conditions": [availability, progressing],
        "shoal": {"revision": p.revision, "templateHash": p.hash, "pending": s.pending, "complete": s.complete},
    })
}

/// The uid a ReplicaSet shows: stable, derived from the Deployment's uid and
/// the template hash.
pub fn rs_uid(deployment_uid: &str, hash: &str) -> String {
    let h = blake3::hash(format!("{deployment_uid}/{hash}").as_bytes()).to_hex();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A revision as a ReplicaSet: its pods are those of its hash.
pub fn replicaset_json(ns: &str, r: &Revision, d: &Deployment, plan: &PlanView, view: &ClusterView) -> Value {
    let name = revision_name(&r.deployment, &r.hash);
    let desired = plan
        .desired
        .iter()
        .filter(|p| p.namespace == ns && p.owner.uid == r.deployment_uid && p.template_hash == r.hash)
        .count();
    let (mut have, mut ready) = (0, 0);
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        for st in n.pods.values() {
            let mine = st.namespace == ns
                && st.owner_uid == r.deployment_uid
                && parse_pod_name(&r.deployment, &st.name).is_some_and(|(h, _)| h == r.hash);
            if mine && !st.terminating {
                have += 1;
                ready += usize::from(st.ready);
            }
        }
    }
    let mut labels = r.template.metadata.labels.clone();
    labels.insert("pod-template-hash".into(), r.hash.clone());
    let mut selector = d.spec.selector.match_labels.clone();
    selector.insert("pod-template-hash".into(), r.hash.clone());
    let mut annotations = serde_json::Map::new();
    annotations.insert(REVISION_ANNOTATION.into(), json!(r.revision.to_string()));
    if let Some(c) = &r.change_cause {
        annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), json!(c));
    }
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": ns, "uid": rs_uid(&r.deployment_uid, &r.hash), "creationTimestamp": r.created,
            "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": r.deployment,
                                 "uid": r.deployment_uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"replicas": desired, "selector": {"matchLabels": selector}, "template": r.template},
        "status": {"replicas": have, "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1},
    })
}

/// Every ReplicaSet in `ns` (all when `None`).
pub(crate) fn replicasets(snapshot: &Snapshot, plan: &PlanView, view: &ClusterView, ns: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for o in snapshot.of_kind(Kind::Deployment) {
        let Object::Deployment(d) = &o.object else { continue };
        let dns = d.metadata.namespace.clone().unwrap_or_default();
        if ns.is_some_and(|n| n != dns) {
            continue;
        }
        for (_, r) in revisions_of(snapshot, &dns, &d.metadata.name, d.metadata.uid.as_deref()) {
            out.push(replicaset_json(&dns, &r, d, plan, view));
        }
    }
    out
}

pub async fn list_all_replicasets(State(ctx): State<Ctx>) -> Res {
    let (snap, plan, view) = (ctx.db.snapshot(), ctx.plan.borrow().clone(), ctx.view.borrow().clone());
    Ok(Json(render::list("ReplicaSet", "apps/v1", replicasets(&snap, &plan, &view, None))))
}

pub async fn list_replicasets(State(ctx): State<Ctx>, Path(ns): Path<String>) -> Res {
    let (snap, plan, view) = (ctx.db.snapshot(), ctx.plan.borrow().clone(), ctx.view.borrow().clone());
    Ok(Json(render::list("ReplicaSet", "apps/v1", replicasets(&snap, &plan, &view, Some(&ns)))))
}

pub async fn get_replicaset(State(ctx): State<Ctx>, Path((ns, name)): Path<(String, String)>) -> Res {
    let (snap, plan, view) = (ctx.db.snapshot(), ctx.plan.borrow().clone(), ctx.view.borrow().clone());
    replicasets(&snap, &plan, &view, Some(&ns))
        .into_iter()
        .find(|v| v.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str()))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("replicasets.apps {name:?} in namespace {ns:?}")))
}

/// `POST .../rollout`: `{"action": "undo"|"restart"|"pause"|"resume", "toRevision": N}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRequest {
    pub action: String,
    #[serde(default)]
    pub to_revision: Option<u64>,
}

/// What an action does to the Deployment, or why it cannot.
fn change(snap: &Snapshot, d: &mut Deployment, req: &RolloutRequest, now: &str) -> Result<Value, ApiError> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone();
    match req.action.as_str() {
        "restart" => {
            d.spec.template.metadata.annotations.insert(RESTARTED_AT_ANNOTATION.into(), now.to_string());
            Ok(json!({"deployment": name, "action": "restarted"}))
        }
        "pause" | "resume" => {
            d.spec.paused = req.action == "pause";
            Ok(json!({"deployment": name, "action": if d.spec.paused { "paused" } else { "resumed" }}))
        }
        "undo" => {
            let revs = revisions_of(snap, &ns, &name, d.metadata.uid.as_deref());
            let current = template_hash(&d.spec.template);
            let now_rev = revs.iter().find(|(_, r)| r.hash == current).map_or(u64::MAX, |(_, r)| r.revision);
            let target = match req.to_revision {
                Some(n) => revs.iter().find(|(_, r)| r.revision == n).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unable to find revision {n} of deployment {name:?}; `shoal rollout history deployment {name}` lists them"
                    ))
                })?,
                None => revs.iter().rev().find(|(_, r)| r.revision < now_rev && r.hash != current).ok_or_else(|| {
                    ApiError::bad_request(format!("no earlier revision of deployment {name:?} to go back to"))
                })?,
            };
            let revision = target.1.revision;
            if target.1.hash == current {
                return Ok(json!({"deployment": name, "action": "skipped", "revision": revision,
                                 "message": "already running that revision"}));
            }
            d.spec.template = target.1.template.clone();
            Ok(json!({"deployment": name, "action": "rolled back", "revision": revision}))
        }
        other => {
            Err(ApiError::bad_request(format!("unknown rollout action {other:?}: use undo, restart, pause or resume")))
        }
    }
}

pub async fn rollout(State(ctx): State<Ctx>, Path((ns, name)): Path<(String, String)>, Limited(body): Limited) -> Res {
    let req: RolloutRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"action\": \"undo|restart|pause|resume\"}}: {e}")))?;
    let key = ObjectKey { kind: Kind::Deployment, namespace: ns.clone(), name: name.clone() };
    let _guard = ctx.apply_lock.lock().await;
    let snap = ctx.db.snapshot();
    let existing = snap.get(&key).ok_or_else(|| ApiError::not_found(&key))?;
    let Object::Deployment(mut d) = existing.object.clone() else { return Err(ApiError::not_found(&key)) };
    let now = ctx.db.now();
    let answer = change(&snap, &mut d, &req, &now.rfc3339())?;
    if answer["action"] != "skipped" {
        let mut obj = Object::Deployment(d);
        obj.meta_mut().resource_version = None;
        let parsed = Parsed { object: obj, file: String::new(), document: 0 };
        let (_r, changes) = plan_apply(&snap, vec![parsed], now, Mode::Replace)?;
        commit(&ctx, changes).await?;
    }
    Ok(Json(answer))
}
