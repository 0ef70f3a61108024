//! Node maintenance on the API: `POST /shoal/v1/nodes/{name}/cordon`,
//! `/uncordon` and `/drain`. The state lives in the desired state, so every
//! node agrees on it (`placement::maintenance` acts on it).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::ApiError;
use super::handlers::commit;
use super::server::Ctx;
use crate::model::node::NodeMaintenance;
use crate::state::Key;
use crate::state::entry::kinds;

pub async fn node_action(
    State(ctx): State<Ctx>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !ctx.view.borrow().nodes.contains_key(&name) {
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
    let key = Key::new(kinds::NODE_MAINTENANCE, "", name.clone());
    let _guard = ctx.apply_lock.lock().await;
    let current = ctx.db.snapshot().maintenance.get(&name).copied();
    if current != record {
        let value =
            record.map(|r| serde_json::to_vec(&r)).transpose().map_err(|e| ApiError::internal(e.to_string()))?;
        commit(&ctx, vec![(key, value)]).await?;
    }
    let done = match action.as_str() {
        "cordon" => "cordoned",
        "drain" => "draining",
        _ => "uncordoned",
    };
    Ok(Json(json!({"node": name, "action": done, "changed": current != record})))
}
