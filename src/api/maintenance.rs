//! Node maintenance on the API: `POST /shoal/v1/nodes/{name}/cordon`,
//! `/uncordon` and `/drain`. The state lives in the desired state, so every
//! node agrees on it (`placement::maintenance` acts on it).
//!
//! kubectl's way in: `kubectl cordon|uncordon` PATCH a Node's
//! `spec.unschedulable` (the only field of a Node a client may change), and
//! `kubectl drain` then evicts the node's pods one by one (`POST
//! .../pods/{name}/eviction`): an eviction from a cordoned node drains it,
//! which moves every replica it runs. (A pod's uid names its run on one
//! node, so kubectl sees an evicted pod as gone once it runs elsewhere.)

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::error::ApiError;
use super::handlers::commit;
use super::handlers::get_node;
use super::server::{Ctx, Limited};
use crate::model::node::NodeMaintenance;
use crate::state::Key;
use crate::state::entry::kinds;

/// Writes a node's maintenance record (`None`: none); whether it changed.
async fn set_maintenance(ctx: &Ctx, name: &str, record: Option<NodeMaintenance>) -> Result<bool, ApiError> {
    let key = Key::new(kinds::NODE_MAINTENANCE, "", name.to_string());
    let _guard = ctx.apply_lock.lock().await;
    let current = ctx.db.snapshot().maintenance.get(name).copied();
    if current == record {
        return Ok(false);
    }
    let value = record.map(|r| serde_json::to_vec(&r)).transpose().map_err(|e| ApiError::internal(e.to_string()))?;
    commit(ctx, vec![(key, value)]).await?;
    Ok(true)
}

/// `PATCH /api/v1/nodes/{name}`: cordon or uncordon through
/// `spec.unschedulable`; any other change is refused.
pub async fn patch_node(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Limited(body): Limited,
) -> Result<Json<Value>, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ty = super::patch::PatchType::from_content_type(ct)?;
    let Json(current) = get_node(State(ctx.clone()), Path(name.clone())).await?;
    let patched = super::patch::apply(&current, ty, &body)?;
    let without = |v: &Value| {
        let mut v = v.clone();
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("unschedulable");
        }
        v
    };
    if without(&patched) != without(&current) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "only spec.unschedulable can be changed on node {name} (kubectl cordon/uncordon); \
                 a node's labels and capacity come from its own configuration"
            ),
        ));
    }
    let cordoned = ctx.db.snapshot().maintenance.get(&name).is_some_and(|m| m.unschedulable);
    let want = patched.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
    if want != cordoned {
        let record = want.then_some(NodeMaintenance { unschedulable: true, draining: false });
        set_maintenance(&ctx, &name, record).await?;
    }
    let Json(now) = get_node(State(ctx), Path(name)).await?;
    Ok(Json(now))
}

/// `POST .../pods/{name}/eviction` (policy/v1 Eviction, what `kubectl
/// drain` sends): drains the pod's node if it is cordoned.
pub async fn evict_pod(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = format!("{ns}/{name}");
    let plan = ctx.plan.borrow().clone();
    let view = ctx.view.borrow().clone();
    let node = plan.placement.owners.get(&id).map(|n| n.to_string()).or_else(|| {
        view.nodes.values().find(|n| n.state.alive() && n.pods.contains_key(&id)).map(|n| n.info.name.clone())
    });
    let Some(node) = node else {
        if plan.desired.iter().any(|d| d.id() == id) {
            // Placed nowhere: nothing runs to evict.
            return Ok((StatusCode::CREATED, Json(evicted(&name))));
        }
        return Err(ApiError::not_found(format!("pod {name:?} in namespace {ns:?}")));
    };
    let m = ctx.db.snapshot().maintenance.get(&node).copied();
    if !m.is_some_and(|m| m.unschedulable) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!(
                "Shoal evicts pods only from a cordoned node, by draining it (placement would run pod {name} on \
                 {node} again): `kubectl drain {node}` or `kubectl cordon {node}` first"
            ),
        ));
    }
    if !m.is_some_and(|m| m.draining) {
        set_maintenance(&ctx, &node, Some(NodeMaintenance { unschedulable: true, draining: true })).await?;
    }
    Ok((StatusCode::CREATED, Json(evicted(&name))))
}

/// `DELETE .../pods/{name}`: a pod is not deleted on its own (its owner
/// declares it); the answer says what does what the user wants.
pub async fn delete_pod(Path((_ns, name)): Path<(String, String)>) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "pod {name} exists through its Deployment, DaemonSet or Job, so it is not deleted on its own: \
             `kubectl rollout restart deployment/NAME` restarts a Deployment's pods, `kubectl drain NODE` \
             moves a node's pods elsewhere, and deleting the owner deletes its pods"
        ),
    )
}

fn evicted(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
           "details": {"name": name, "kind": "pods"}})
}

pub async fn node_action(
    State(ctx): State<Ctx>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !ctx.view.borrow().nodes.contains_key(name.as_str()) {
        return Err(ApiError::not_found(format!("node {name:?} (see `shoal get nodes`)")));
    }
    let record = match action.as_str() {
        "cordon" => Some(NodeMaintenance { unschedulable: true, draining: false }),
        "drain" => Some(NodeMaintenance { unschedulable: true, draining: true }),
        "uncordon" => None,
        other => {
            return Err(ApiError::bad_request(format!("unknown node action {other:?}: use cordon, uncordon or drain")));
        }
    };
    let changed = set_maintenance(&ctx, &name, record).await?;
    let done = match action.as_str() {
        "cordon" => "cordoned",
        "drain" => "draining",
        _ => "uncordoned",
    };
    Ok(Json(json!({"node": name, "action": done, "changed": changed})))
}
