//! DELETE: one object with Kubernetes' DeleteOptions (in the body, or as
//! query parameters), and `deletecollection` (DELETE on a collection: every
//! object of the kind in the namespace that the selectors match, in one
//! write).
//!
//! - `preconditions` (`uid`, `resourceVersion`) are checked under the apply
//!   lock: a mismatch is 409 Conflict and deletes nothing;
//! - `propagationPolicy`: `Background` is what Shoal does (a Deployment's
//!   pods stop after it is gone); `Foreground` is served as `Background`
//!   with a warning; `Orphan` cannot be honoured (pods exist only through
//!   the object that declares them) and is refused;
//! - `gracePeriodSeconds` is accepted with a warning: pods stop within their
//!   spec's `terminationGracePeriodSeconds`;
//! - `dryRun` is refused, as for writes.
//!
//! The answer is a `Status`, except for a Service: the deleted Service, as
//! Kubernetes answers (and its clients decode).

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::handlers::{commit, get_of, objects};
use super::selector::Selectors;
use super::server::Ctx;
use super::write_options::warning_header;
use crate::model::{Kind, ObjectKey};
use crate::state::apply::plan_delete;

type Written = Result<(StatusCode, HeaderMap, Json<Value>), ApiError>;

/// DeleteOptions as query parameters (and a collection's selectors).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub dry_run: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// DeleteOptions as a body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    #[serde(default)]
    pub dry_run: Vec<String>,
    pub preconditions: Option<Preconditions>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// The options of one request (the body's, then the query's), checked;
/// with the warnings to send back.
pub fn options(q: &DeleteQuery, body: &[u8]) -> Result<(DeleteOptions, HeaderMap), ApiError> {
    let mut o: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {}: {}", e.path(), e.inner())))?
    };
    o.grace_period_seconds = o.grace_period_seconds.or(q.grace_period_seconds);
    o.propagation_policy = o.propagation_policy.take().or_else(|| q.propagation_policy.clone());
    o.orphan_dependents = o.orphan_dependents.or(q.orphan_dependents);
    if let Some(d) = q.dry_run.as_deref().filter(|d| !d.is_empty()) {
        o.dry_run.push(d.to_string());
    }
    if !o.dry_run.is_empty() {
        return Err(ApiError::bad_request(format!(
            "dryRun={} is not served by Shoal's REST deletes (nothing was deleted)",
            o.dry_run.join(",")
        )));
    }
    let mut warnings = HeaderMap::new();
    let mut warn = |text: &str| {
        if let Some(h) = warning_header(text) {
            warnings.append(axum::http::header::WARNING, h);
        }
    };
    let orphan = "cannot be honoured: a Shoal pod exists only through the object that declares it, \
                  so it goes with it (nothing was deleted; scale to 0 first to keep the object without pods)";
    if o.orphan_dependents == Some(true) {
        return Err(ApiError::bad_request(format!("orphanDependents {orphan}")));
    }
    match o.propagation_policy.as_deref() {
        None | Some("Background") => {}
        Some("Foreground") => {
            warn("propagationPolicy Foreground is served as Background: the object goes now, its pods stop after")
        }
        Some("Orphan") => return Err(ApiError::bad_request(format!("propagationPolicy Orphan {orphan}"))),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            )));
        }
    }
    if o.grace_period_seconds.is_some() {
        warn("gracePeriodSeconds is not honoured: pods stop within their spec's terminationGracePeriodSeconds");
    }
    Ok((o, warnings))
}

/// Why `current` (as GET shows it) fails `pre`, if it does. `own_version`
/// is the precondition's version as this object's own (see
/// `WatchCache::stamp_version`).
pub fn precondition_failure(pre: &Preconditions, current: &Value, own_version: Option<&str>) -> Option<String> {
    let meta = &current["metadata"];
    if let Some(uid) = &pre.uid
        && meta["uid"].as_str() != Some(uid.as_str())
    {
        return Some(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta["uid"].as_str().unwrap_or("")
        ));
    }
    if let Some(rv) = own_version
        && meta["resourceVersion"].as_str() != Some(rv)
    {
        return Some(format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta["resourceVersion"].as_str().unwrap_or("")
        ));
    }
    None
}

pub async fn delete_one(ctx: &Ctx, key: ObjectKey, q: &DeleteQuery, body: &[u8]) -> Written {
    let (opts, warnings) = options(q, body)?;
    let _guard = ctx.apply_lock.lock().await;
    if let Some(pre) = &opts.preconditions {
        let Json(current) = get_of(ctx, key.clone())?;
        let own = pre
            .resource_version
            .as_deref()
            .map(|rv| ctx.watch_cache.stamp_version(rv, key.kind.plural(), &key.namespace, &key.name));
        if let Some(why) = precondition_failure(pre, &current, own.as_deref()) {
            return Err(ApiError::conflict(why));
        }
    }
    // A Service's DELETE answers with the Service (as Kubernetes' does, and
    // as its clients decode it); other kinds answer with a Status.
    let deleted = if key.kind == Kind::Service { Some(get_of(ctx, key.clone())?.0) } else { None };
    let snap = ctx.db.snapshot();
    let uid = snap.get(&key).and_then(|o| o.object.meta().uid.clone());
    let (_res, changes) = plan_delete(&snap, &key)?;
    commit(ctx, changes).await?;
    let body = deleted.unwrap_or_else(|| {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": key.name, "kind": key.kind.plural(), "uid": uid}})
    });
    Ok((StatusCode::OK, warnings, Json(body)))
}

pub async fn delete_collection(ctx: &Ctx, kind: Kind, ns: &str, q: &DeleteQuery, body: &[u8]) -> Written {
    let (opts, warnings) = options(q, body)?;
    if opts.preconditions.is_some() {
        return Err(ApiError::bad_request("preconditions name one object: delete it by name"));
    }
    let sel = Selectors::parse(q.label_selector.as_deref(), q.field_selector.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let _guard = ctx.apply_lock.lock().await;
    let snap = ctx.db.snapshot();
    let mut changes = Vec::new();
    let mut names = Vec::new();
    for v in objects(ctx, kind, Some(ns), false)? {
        if !sel.matches(&v) {
            continue;
        }
        let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = ObjectKey { kind, namespace: ns.to_string(), name: name.clone() };
        let (_res, c) = plan_delete(&snap, &key)?;
        changes.extend(c);
        names.push(name);
    }
    commit(ctx, changes).await?;
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "message": format!("deleted {} {}", names.len(), kind.plural()),
                      "details": {"kind": kind.plural(), "causes": names.iter().map(|n| json!({"field": n})).collect::<Vec<_>>()}});
    Ok((StatusCode::OK, warnings, Json(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(q: DeleteQuery, body: &str) -> Result<(DeleteOptions, HeaderMap), ApiError> {
        options(&q, body.as_bytes())
    }

    #[test]
    fn delete_options_come_from_the_body_or_the_query_and_are_checked() {
        let (o, w) = opts(DeleteQuery::default(), "").unwrap();
        assert!(o.preconditions.is_none() && w.is_empty());
        let body = r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background","preconditions":{"uid":"u1"}}"#;
        let (o, w) = opts(DeleteQuery::default(), body).unwrap();
        assert_eq!(o.preconditions, Some(Preconditions { uid: Some("u1".into()), resource_version: None }));
        assert!(w.is_empty());
        let q = DeleteQuery { grace_period_seconds: Some(0), ..Default::default() };
        let (_, w) = opts(q, "").unwrap();
        assert!(w.get("warning").unwrap().to_str().unwrap().contains("gracePeriodSeconds is not honoured"));
        let q = DeleteQuery { propagation_policy: Some("Foreground".into()), ..Default::default() };
        assert!(opts(q, "").unwrap().1.get("warning").is_some());
        let e = opts(DeleteQuery::default(), r#"{"propagationPolicy":"Orphan"}"#).unwrap_err();
        assert!(e.to_string().contains("nothing was deleted"), "{e}");
        let e = opts(DeleteQuery { propagation_policy: Some("Later".into()), ..Default::default() }, "").unwrap_err();
        assert!(e.to_string().contains("\"Later\" is not one of"), "{e}");
        let e = opts(DeleteQuery { dry_run: Some("All".into()), ..Default::default() }, "").unwrap_err();
        assert!(e.to_string().contains("nothing was deleted"), "{e}");
        let e = opts(DeleteQuery::default(), r#"{"preconditions":{"uid":5}}"#).unwrap_err();
        assert!(e.to_string().contains("DeleteOptions: preconditions.uid"), "{e}");
    }

    #[test]
    fn preconditions_compare_uid_and_version() {
        let cur = json!({"metadata": {"uid": "u1", "resourceVersion": "7"}});
        let pre = |uid: Option<&str>| Preconditions { uid: uid.map(String::from), resource_version: None };
        assert_eq!(precondition_failure(&pre(Some("u1")), &cur, Some("7")), None);
        assert!(precondition_failure(&pre(Some("u2")), &cur, None).unwrap().contains("UID in precondition: u2"));
        assert!(
            precondition_failure(&pre(None), &cur, Some("6")).unwrap().contains("ResourceVersion in precondition: 6")
        );
    }
}
