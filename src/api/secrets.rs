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
use crate::state::keys::sealed_with;
use crate::state::seal::SealError;

/// kubectl's record of what `kubectl apply` sent; never kept on a Secret.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a peer answered to a data key exchange.
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    pub node: String,
    /// `None`: it did not answer.
    pub answer: Option<PeerKeys>,
}

/// A peer's keys (ids only) and what its Secrets are sealed with.
#[derive(Debug, Clone, Default)]
pub struct PeerKeys {
    pub usable: Vec<String>,
    pub sealed_with: std::collections::BTreeMap<String, usize>,
}

/// The node's peers, for the data keys (implemented by the node over
/// mutual TLS).
#[async_trait]
pub trait KeyPeers: Send + Sync {
    /// Exchanges data keys now with every live peer, or with every member
    /// that has not left (`every_member`); returns what each answered.
    async fn exchange(&self, every_member: bool) -> Vec<PeerAnswer>;
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

/// Makes sure this node holds a key to seal with: asks the live peers,
/// and makes the cluster's first key only when no node can have one (this
/// node is alone, or every live peer answered holding none) and the
/// cluster holds no Secret yet.
async fn ensure_key(ctx: &Ctx, snap: &Snapshot) -> Result<(), ApiError> {
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    if keys.usable() > 0 {
        return Ok(());
    }
    let answers = match &ctx.key_peers {
        Some(p) => p.exchange(false).await,
        None => Vec::new(),
    };
    if keys.usable() > 0 {
        return Ok(());
    }
    let none_anywhere = answers.iter().all(|a| a.answer.as_ref().is_some_and(|k| k.usable.is_empty()));
    if none_anywhere && snap.of_kind(Kind::Secret).next().is_none() {
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
        // Data the cluster holds already keeps its sealed bytes (whatever
        // key sealed them), so an unchanged apply stays `unchanged` and an
        // immutable Secret compares equal across a rotation.
        let same = snap.secret(&key.namespace, &key.name).filter(|old| keys.open_secret(old).is_ok_and(|d| d == data));
        s.sealed = match same.and_then(|old| old.sealed.clone()) {
            Some(kept) => Some(kept),
            None => Some(keys.seal(&key.namespace, &key.name, &data).map_err(unavailable)?),
        };
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
    let counts = sealed_with(&ctx.db.snapshot());
    let list: Vec<Value> = ring
        .keys
        .iter()
        .map(|(id, k)| {
            let state = if k.material.is_none() {
                "retired"
            } else if primary.as_deref() == Some(id) {
                "primary"
            } else {
                "old"
            };
            json!({
                "id": id,
                "created": crate::model::cron::rfc3339((k.created_ms / 1000) as i64),
                "state": state,
                "secrets": counts.get(id).copied().unwrap_or(0),
            })
        })
        .collect();
    Ok(Json(json!({"node": ctx.node_name, "file": keys.path().display().to_string(), "keys": list})))
}

/// Seals again, with key `primary`, every Secret this node holds sealed
/// with another key, a hundred per write. A Secret written meanwhile (its
/// stamp changed) is left to the next pass, never overwritten with what
/// was read before. Returns (sealed again, left).
async fn reseal_stale(ctx: &Ctx, primary: &str) -> Result<(usize, usize), ApiError> {
    let Some(keys) = ctx.keys.as_ref() else { return Err(unavailable(SealError::NoKey)) };
    let snap = ctx.db.snapshot();
    let mut todo = Vec::new();
    for o in snap.of_kind(Kind::Secret) {
        let Object::Secret(s) = &o.object else { continue };
        if s.sealed.as_ref().is_none_or(|x| x.key == primary) {
            continue;
        }
        let key = o.object.key();
        let data =
            keys.open_secret(s).map_err(|e| unavailable(format!("secret {}/{}: {e}", key.namespace, key.name)))?;
        todo.push((key, o.stamp, o.object.clone(), data));
    }
    let (mut done, mut left) = (0, 0);
    for chunk in todo.chunks(100) {
        let now = ctx.db.snapshot();
        let mut changes = Vec::new();
        for (key, stamp, obj, data) in chunk {
            if now.get(key).map(|o| o.stamp) != Some(*stamp) {
                left += 1;
                continue;
            }
            let mut obj = obj.clone();
            if let Object::Secret(s) = &mut obj {
                s.sealed = Some(keys.seal(&key.namespace, &key.name, data).map_err(unavailable)?);
            }
            obj.meta_mut().resource_version = None;
            changes.push(put_made(&obj)?);
        }
        done += changes.len();
        super::handlers::commit(ctx, changes).await?;
    }
    Ok((done, left))
}

/// `POST /shoal/v1/data-keys/rotate`: a new key seals from now on; it is
/// sent to every live node, and every Secret is sealed again with it. The
/// old keys still open what a node may hold sealed with them until
/// `retire` erases them.
pub async fn rotate(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    let _guard = ctx.apply_lock.lock().await;
    ensure_key(&ctx, &ctx.db.snapshot()).await?;
    let new = keys.generate(crate::util::unix_millis()).map_err(|e| ApiError::internal(e.to_string()))?;
    let answers = match &ctx.key_peers {
        Some(p) => p.exchange(false).await,
        None => Vec::new(),
    };
    let holding = answers.iter().filter(|a| a.answer.as_ref().is_some_and(|k| k.usable.contains(&new))).count();
    let (resealed, left) = reseal_stale(&ctx, &new).await?;
    tracing::info!(key = %new, resealed, left, "rotated the cluster data key");
    Ok(Json(json!({
        "key": new, "resealed": resealed, "changedMeanwhile": left,
        "peers": {"asked": answers.len(), "holding": holding},
    })))
}

/// `POST /shoal/v1/data-keys/retire`: erases the keys older than the one
/// that seals, on every node, once it is safe: every member that has not
/// left answers, holds the sealing key and stores no Secret sealed with an
/// old one (this node seals its own stale ones again first). Otherwise
/// nothing is retired and the answer (409) names what to wait for.
pub async fn retire(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let keys = ctx.keys.as_ref().ok_or_else(|| unavailable(SealError::NoKey))?;
    let _guard = ctx.apply_lock.lock().await;
    let primary = keys.primary_id().ok_or_else(|| unavailable(SealError::NoKey))?;
    reseal_stale(&ctx, &primary).await?;
    let answers = match &ctx.key_peers {
        Some(p) => p.exchange(true).await,
        None => Vec::new(),
    };
    let old = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter().filter(|(k, _)| **k != primary).map(|(_, n)| n).sum::<usize>()
    };
    let mut problems = Vec::new();
    let mine = old(&sealed_with(&ctx.db.snapshot()));
    if mine > 0 {
        problems.push(format!("this node holds {mine} Secrets sealed with an old key (written meanwhile)"));
    }
    for a in &answers {
        match &a.answer {
            None => problems.push(format!("{} did not answer", a.node)),
            Some(k) if !k.usable.contains(&primary) => {
                problems.push(format!("{} does not hold key {primary} yet", a.node))
            }
            Some(k) if old(&k.sealed_with) > 0 => problems.push(format!(
                "{} holds {} Secrets sealed with an old key (not yet replicated there)",
                a.node,
                old(&k.sealed_with)
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "no key was retired: {}; retry in a moment (a node that is down must come back, or be removed)",
                problems.join("; ")
            ),
        ));
    }
    let retired = keys.retire_older_than(&primary).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(p) = &ctx.key_peers {
        p.exchange(false).await;
    }
    tracing::info!(key = %primary, retired = ?retired, "retired the old data keys");
    Ok(Json(json!({"key": primary, "retired": retired, "peers": answers.len()})))
}
