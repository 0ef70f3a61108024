//! Lists and watches of every collection (`GET /api/v1/pods`,
//! `GET /apis/apps/v1/namespaces/NS/deployments?watch=1`...), over the
//! handlers that render them:
//!
//! - a list gets its `labelSelector` and `fieldSelector` applied, and the
//!   `metadata.resourceVersion` of this node's watch cache (`watchcache`),
//!   from which a watch can start;
//! - a watch (`?watch=1` or `true`) streams newline-delimited events
//!   (`{"type":"ADDED","object":{...}}`; `MODIFIED`, `DELETED`,
//!   `BOOKMARK` when `allowWatchBookmarks` asks, `ERROR`) until
//!   `timeoutSeconds` (default 30 min) or the client leaves. With no
//!   `resourceVersion` (or "0") it first sends every current object as
//!   ADDED; from a version this node issued, what changed since; from any
//!   other (too old, another node's, an object's own) one ERROR event
//!   with a 410 Expired `Status`, after which clients list again.
//!
//! A watch that asks for a Table (kubectl get -w) gets each object as a
//! one-row Table.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::discovery::{RESOURCES, Resource};
use super::error::ApiError;
use super::selector::Selectors;
use super::server::Ctx;
use super::watchcache::{Change, Start, changes, current};

/// A watch's default length, as a client sees it (Kubernetes picks 30–60
/// minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often a watch that allows them gets a BOOKMARK.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// The list and watch options Shoal honours (others are ignored, as
/// `limit`: every list comes whole).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
}

fn yes(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1"))
}

/// The collection a path names: its resource and namespace (`None`: all
/// namespaces, or a cluster-scoped resource). Pure.
pub fn collection(path: &str) -> Option<(&'static Resource, Option<String>)> {
    let (group, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("", rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let (group, rest) = rest.split_once('/')?;
        (group, rest.strip_prefix("v1/")?)
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (ns, plural) = match parts.as_slice() {
        [plural] => (None, *plural),
        ["namespaces", ns, plural] if !ns.is_empty() => (Some(ns.to_string()), *plural),
        _ => return None,
    };
    let r = RESOURCES.iter().find(|r| r.group == group && r.name == plural && r.verbs.contains(&"list"))?;
    if ns.is_some() && !r.namespaced {
        return None;
    }
    Some((r, ns))
}

/// Serves lists and watches of collections; other requests pass.
pub async fn lists(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let Some((resource, ns)) = collection(req.uri().path()) else { return next.run(req).await };
    let q = match Query::<ListQuery>::try_from_uri(req.uri()) {
        Ok(Query(q)) => q,
        Err(e) => return bad_option(format!("list options: {e}")).into_response(),
    };
    let sel = match Selectors::parse(q.label_selector.as_deref(), q.field_selector.as_deref()) {
        Ok(s) => s,
        Err(e) => return bad_option(e).into_response(),
    };
    if yes(&q.watch) {
        let table =
            req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(super::tables::wants_table);
        return watch(ctx, resource, ns, sel, q, table);
    }
    // A list: the version comes first, so a watch from it misses nothing.
    let version = ctx.watch_cache.touch(&ctx);
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("list body could not be read").into_response();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.retain(|o| sel.matches(o));
    }
    v["metadata"]["resourceVersion"] = json!(ctx.watch_cache.rv(version.seq));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(serde_json::to_vec(&v).unwrap_or_default()))
}

fn watch(
    ctx: Ctx,
    resource: &'static Resource,
    ns: Option<String>,
    sel: Selectors,
    q: ListQuery,
    table: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let timeout = q.timeout_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT);
        let w = Watcher { ctx, resource, ns, sel, table, tx, bookmarks: yes(&q.allow_watch_bookmarks) };
        let _ = tokio::time::timeout(timeout, w.run(q.resource_version.as_deref(), yes(&q.send_initial_events))).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A `resourceVersion` that starts nowhere: a 410 Expired `Status`, as a
/// watch sends it in an ERROR event.
pub fn expired(message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": "Expired", "code": 410,
    })
}

/// Bad list or watch options.
pub fn bad_option(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// The client is gone.
struct Gone;

struct Watcher {
    ctx: Ctx,
    resource: &'static Resource,
    ns: Option<String>,
    sel: Selectors,
    table: bool,
    tx: mpsc::Sender<Bytes>,
    bookmarks: bool,
}

impl Watcher {
    async fn send(&self, kind: &str, object: Value) -> Result<(), Gone> {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.map_err(|_| Gone)
    }

    async fn error(&self, message: &str) -> Result<(), Gone> {
        self.send("ERROR", expired(message)).await
    }

    /// Sends an object as it stood at version `rv`.
    async fn object(&self, kind: &str, o: &Arc<Value>, rv: &str) -> Result<(), Gone> {
        let mut o = (**o).clone();
        o["metadata"]["resourceVersion"] = json!(rv);
        if self.resource.name == "secrets"
            && let Err(e) = super::secrets::reveal(&self.ctx, &self.ctx.db.snapshot(), &mut o)
        {
            let status = serde_json::to_value(e.status()).unwrap_or(Value::Null);
            self.send("ERROR", status).await?;
            return Err(Gone);
        }
        if self.table
            && let Some(t) = super::tables::table(&o, crate::util::unix_secs() as i64)
        {
            o = t;
        }
        self.send(kind, o).await
    }

    async fn bookmark(&self, rv: &str, initial_end: bool) -> Result<(), Gone> {
        let (group, version) = (self.resource.group, self.resource.version);
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        let mut meta = json!({"resourceVersion": rv});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.send("BOOKMARK", json!({"kind": self.resource.kind, "apiVersion": api_version, "metadata": meta})).await
    }

    async fn run(self, rv: Option<&str>, initial_events: bool) -> Result<(), Gone> {
        let cache = &self.ctx.watch_cache;
        // Subscribed before anything is read: no change slips between.
        let mut changed = cache.subscribe();
        let now = cache.touch(&self.ctx);
        let keep = |v: &Value| self.sel.matches(v);
        let (res, ns) = (self.resource.name, self.ns.as_deref());
        let mut base = match cache.start(rv) {
            Start::Now => {
                let at = cache.rv(now.seq);
                for o in current(&now.world, res, ns, &keep) {
                    self.object("ADDED", &o, &at).await?;
                }
                if initial_events && self.bookmarks {
                    self.bookmark(&at, true).await?;
                }
                now
            }
            Start::After(seq) => match cache.get(seq) {
                Some(v) => v,
                None => {
                    let oldest = cache.oldest().map(|s| cache.rv(s)).unwrap_or_default();
                    let msg = format!(
                        "too old resource version: {} (the oldest this node keeps is {oldest}); list again",
                        rv.unwrap_or_default()
                    );
                    return self.error(&msg).await;
                }
            },
            Start::Unknown(why) => return self.error(&why).await,
        };
        let mut bookmark = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            if let Some(latest) = cache.latest()
                && latest.seq > base.seq
            {
                let at = cache.rv(latest.seq);
                for c in changes(&base.world, &latest.world, res, ns, &keep) {
                    match c {
                        Change::Added(o) => self.object("ADDED", &o, &at).await?,
                        Change::Modified(o) => self.object("MODIFIED", &o, &at).await?,
                        Change::Deleted(o) => self.object("DELETED", &o, &at).await?,
                    }
                }
                base = latest;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return Ok(()) },
                _ = bookmark.tick(), if self.bookmarks => self.bookmark(&cache.rv(base.seq), false).await?,
                _ = self.tx.closed() => return Err(Gone),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths_name_their_resource_and_namespace() {
        let c = |p: &str| collection(p).map(|(r, ns)| (r.group, r.name, ns));
        assert_eq!(c("/api/v1/pods"), Some(("", "pods", None)));
        assert_eq!(c("/api/v1/namespaces/dev/pods"), Some(("", "pods", Some("dev".into()))));
        assert_eq!(c("/apis/apps/v1/namespaces/dev/deployments"), Some(("apps", "deployments", Some("dev".into()))));
        assert_eq!(c("/apis/batch/v1/cronjobs"), Some(("batch", "cronjobs", None)));
        assert_eq!(c("/api/v1/namespaces"), Some(("", "namespaces", None)));
        assert_eq!(c("/api/v1/nodes"), Some(("", "nodes", None)));
        for not in [
            "/api/v1/namespaces/dev",
            "/api/v1/namespaces/dev/pods/web-0",
            "/api/v1/namespaces/dev/pods/web-0/log",
            "/api/v1/namespaces/dev/nodes",
            "/api/v1/namespaces/dev/endpoints",
            "/apis/apps/v1/pods",
            "/apis/apps/v2/deployments",
            "/shoal/v1/cluster",
        ] {
            assert_eq!(c(not), None, "{not}");
        }
    }
}
