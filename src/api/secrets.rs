//! Secrets through the API: sealed on the way in (a client's `data` and
//! `stringData` become `sealed`, never stored in the clear), opened on the
//! way out (`data` in base64, as Kubernetes returns it), and the cluster
//! data keys' status and rotation (`/shoal/v1/data-keys`).
//!
//! A node that has not received the cluster data key serves no Secret: it
//! answers 503 naming why, and asks its peers for the key at once.

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};

use super::error::ApiError;
use super::server::Ctx;
use crate::model::parse::Parsed;
use crate::model::{Kind, Object};
use crate::state::Snapshot;
use crate::state::apply::put_made;
use crate::state::seal::SealError;

/// kubectl's record of what `kubectl apply` sent; never kept on a Secret.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The node's peers, for the data keys (implemented by the node over
/// mutual TLS).
#[async_trait]
pub trait KeyPeers: Send + Sync {
    /// Exchanges data keys with every live peer now; returns how many
    /// answered and how many were asked.
    async fn exchange_all(&self) -> (usize, usize);
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!(
            "{e}; Secrets cannot be read or written on this node until it has (it asks its peers now; retry, or use another node)"
        ),
    )
}

/// Makes sure this node holds a key to seal with: asks the peers, and
/// makes the cluster's first key when none answered with one and the
/// cluster holds no Secret yet (so no key can be missing).
async fn ensure_key(ctx: &Ctx, snap: &Snapshot) -> Result<(), ApiError> {
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    if keys.usable() > 0 {
        return Ok(());
    }
    if let Some(p) = &ctx.key_peers {
        p.exchange_all().await;
    }
    if keys.usable() > 0 {
        return Ok(());
    }
    if snap.of_kind(Kind::Secret).next().is_none() {
        let id = keys.generate(crate::util::unix_millis()).map_err(|e| ApiError::internal(e.to_string()))?;
        tracing::info!(key = %id, file = %keys.path().display(), "made the cluster's first data key");
        return Ok(());
    }
    Err(unavailable(SealError::NoKey))
}

/// Seals every Secret among `objects`: its `data` and `stringData` become
/// `sealed`. Refuses a client's own `sealed`.
pub async fn seal_objects(ctx: &Ctx, snap: &Snapshot, objects: &mut [Parsed]) -> Result<(), ApiError> {
    if !objects.iter().any(|p| p.object.kind() == Kind::Secret) {
        return Ok(());
    }
    ensure_key(ctx, snap).await?;
    let Some(keys) = ctx.keys.as_ref() else { return Err(unavailable(SealError::NoKey)) };
    for p in objects.iter_mut() {
        if p.object.kind() != Kind::Secret {
            continue;
        }
        let key = p.object.key();
        let Object::Secret(s) = &mut p.object else { continue };
        if s.sealed.is_some() {
            return Err(ApiError::bad_request(format!(
                "{key}: sealed is set by the cluster; give the values under data (base64) or stringData (text)"
            )));
        }
        let data = crate::model::config::secret_bytes(s)
            .ok_or_else(|| ApiError::bad_request(format!("{key}: a data value is not base64")))?;
        s.sealed = Some(keys.seal(&key.namespace, &key.name, &data).map_err(unavailable)?);
        s.data.clear();
        s.string_data.clear();
        s.type_.get_or_insert_with(|| "Opaque".into());
        // kubectl's client-side apply copies the whole object, values
        // included, into this annotation: it would be stored in the clear.
        s.metadata.annotations.remove(LAST_APPLIED);
    }
    Ok(())
}

/// Turns a rendered, stored Secret into what a client reads: `data` in
/// base64 instead of `sealed`, and `type` (Opaque by default).
pub fn reveal(ctx: &Ctx, snap: &Snapshot, v: &mut Value) -> Result<(), ApiError> {
    let ns = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(s) = snap.secret(&ns, &name) else { return Ok(()) };
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    let data = keys.open_secret(s).map_err(|e| match e {
        SealError::Corrupt(_) => ApiError::internal(format!("secret {ns}/{name}: {e}")),
        other => unavailable(format!("secret {ns}/{name}: {other}")),
    })?;
    let Some(m) = v.as_object_mut() else { return Ok(()) };
    m.remove("sealed");
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = data.into_iter().map(|(k, b)| (k, json!(b64.encode(b)))).collect();
    m.insert("data".into(), Value::Object(data));
    m.entry("type").or_insert_with(|| json!("Opaque"));
    Ok(())
}

/// `GET /shoal/v1/data-keys`: the keys this node holds (ids, never material).
pub async fn key_status(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    let ring = keys.ring();
    let primary = keys.primary_id();
    let snap = ctx.db.snapshot();
    let mut sealed_with: std::collections::BTreeMap<String, usize> = Default::default();
    for o in snap.of_kind(Kind::Secret) {
        if let Object::Secret(s) = &o.object
            && let Some(x) = &s.sealed
        {
            *sealed_with.entry(x.key.clone()).or_default() += 1;
        }
    }
    let list: Vec<Value> = ring
        .keys
        .iter()
        .map(|(id, k)| {
            json!({
                "id": id,
                "created": crate::model::cron::rfc3339((k.created_ms / 1000) as i64),
                "state": if k.material.is_none() { "retired" } else if primary.as_deref() == Some(id) { "primary" } else { "usable" },
                "secrets": sealed_with.get(id).copied().unwrap_or(0),
            })
        })
        .collect();
    Ok(Json(json!({"node": ctx.node_name, "file": keys.path().display().to_string(), "keys": list})))
}

/// `POST /shoal/v1/data-keys/rotate`: a new key seals from now on; every
/// Secret is sealed again with it; the old keys are retired (their
/// material erased on every node) once every live peer has the new key and
/// no Secret is sealed with an old one.
pub async fn rotate(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    let _guard = ctx.apply_lock.lock().await;
    {
        let snap = ctx.db.snapshot();
        ensure_key(&ctx, &snap).await?;
    }
    // Every Secret must open here before a new key is made.
    let snap = ctx.db.snapshot();
    let mut opened = Vec::new();
    for o in snap.of_kind(Kind::Secret) {
        if let Object::Secret(s) = &o.object {
            let key = o.object.key();
            let data =
                keys.open_secret(s).map_err(|e| unavailable(format!("secret {}/{}: {e}", key.namespace, key.name)))?;
            opened.push((o.object.clone(), data));
        }
    }
    let new = keys.generate(crate::util::unix_millis()).map_err(|e| ApiError::internal(e.to_string()))?;
    let (answered, asked) = match &ctx.key_peers {
        Some(p) => p.exchange_all().await,
        None => (0, 0),
    };
    let mut changes = Vec::new();
    for (mut obj, data) in opened {
        let key = obj.key();
        if let Object::Secret(s) = &mut obj {
            s.sealed = Some(keys.seal(&key.namespace, &key.name, &data).map_err(unavailable)?);
        }
        obj.meta_mut().resource_version = None;
        changes.push(put_made(&obj)?);
    }
    let resealed = changes.len();
    super::handlers::commit(&ctx, changes).await?;
    let snap = ctx.db.snapshot();
    let stale = snap
        .of_kind(Kind::Secret)
        .filter(|o| matches!(&o.object, Object::Secret(s) if s.sealed.as_ref().is_some_and(|x| x.key != new)))
        .count();
    let mut retired = Vec::new();
    let kept = if answered < asked {
        Some(format!("{} of {asked} live peers did not answer", asked - answered))
    } else if stale > 0 {
        Some(format!("{stale} Secrets are still sealed with an old key"))
    } else {
        None
    };
    if kept.is_none() {
        retired = keys.retire_all_but(&new).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(p) = &ctx.key_peers {
            p.exchange_all().await;
        }
    }
    tracing::info!(key = %new, resealed, retired = ?retired, "rotated the cluster data key");
    Ok(Json(json!({
        "key": new, "resealed": resealed, "retired": retired,
        "peers": {"asked": asked, "answered": answered},
        "oldKeysKept": kept,
    })))
}
