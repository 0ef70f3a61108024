//! Request handlers: read views, plan changes with `apply`, write through
//! the node's `Writer`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::delete::{DeleteQuery, delete_collection, delete_one};
use super::error::ApiError;
use super::render;
use super::server::{Ctx, Limited};
use super::write_options::WriteQuery;
use crate::model::parse::{self, Issue, SourceFile};
use crate::model::pods::Resources;
use crate::model::{DEFAULT_NAMESPACE, Kind, ObjectKey};
use crate::state::WriteError;
use crate::state::apply::{Changes, Mode, ObjectResult, plan_apply, plan_delete};

type Res = Result<Json<Value>, ApiError>;
type Written = Result<(StatusCode, axum::http::HeaderMap, Json<Value>), ApiError>;

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "0", "minor": "1",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        "shoalVersion": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn metrics(State(ctx): State<Ctx>) -> String {
    let snap = ctx.db.snapshot();
    ctx.metrics.state_entries.set(snap.entries as i64);
    ctx.metrics.state_tombstones.set(snap.tombstones as i64);
    let view = ctx.view.borrow().clone();
    if let Some(me) = view.nodes.get(view.self_name.as_str()) {
        ctx.metrics.pods_running.set(me.pods.len() as i64);
    }
    for state in ["Ready", "Suspect", "Dead", "Left"] {
        let n = view.nodes.values().filter(|n| n.state.as_str() == state).count();
        ctx.metrics.nodes.get_or_create(&vec![("state".into(), state.into())]).set(n as i64);
    }
    ctx.metrics.ae_rounds.inner().store(
        ctx.db.counters.ae_rounds.load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    ctx.metrics.state_refused.inner().store(
        ctx.db.counters.remote_refused.load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    ctx.metrics.encode()
}

fn write_error(e: WriteError) -> ApiError {
    match e {
        // The disk said no (full, read-only, failing): nothing was stored.
        WriteError::Store(s) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!(
                "this node could not store the change, so nothing was applied ({s}); is its disk full or read-only? retry, or use another node"
            ),
        ),
        WriteError::Replicas { reached, wanted, .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string())
                .with_info(json!({"replicasReached": reached, "replicasRequired": wanted}))
        }
        other => ApiError::internal(other.to_string()),
    }
}

pub(crate) async fn commit(ctx: &Ctx, changes: Changes) -> Result<(), ApiError> {
    if changes.is_empty() {
        return Ok(());
    }
    ctx.writer.write(changes).await.map(|_| ()).map_err(write_error)
}

// ---------- objects ----------

/// The objects of one kind as the API shows them (Secrets with their
/// values only if `reveal`): what lists and the watch cache serve.
pub(crate) fn objects(ctx: &Ctx, kind: Kind, ns: Option<&str>, reveal: bool) -> Result<Vec<Value>, ApiError> {
    let snap = ctx.db.snapshot();
    let plan = ctx.plan.borrow().clone();
    let view = ctx.view.borrow().clone();
    let mut items: Vec<Value> = snap
        .of_kind(kind)
        .filter(|o| ns.is_none_or(|n| o.object.key().namespace == n))
        .map(|o| render::object_json(o, &plan, &view, &snap))
        .collect();
    if kind == Kind::Namespace && !snap.objects.keys().any(|k| k.kind == Kind::Namespace && k.name == DEFAULT_NAMESPACE)
    {
        items.insert(0, render::default_namespace_json());
    }
    if kind == Kind::Service {
        for item in &mut items {
            super::services::decorate(item, &snap, &plan, &view, ctx.proxy.as_deref());
        }
    }
    if kind == Kind::Secret && reveal {
        for item in &mut items {
            super::secrets::reveal(ctx, &snap, item)?;
        }
    }
    Ok(items)
}

fn list_of(ctx: &Ctx, kind: Kind, ns: Option<&str>) -> Res {
    Ok(Json(render::list(kind.as_str(), kind.api_version(), objects(ctx, kind, ns, true)?)))
}

pub(crate) fn get_of(ctx: &Ctx, key: ObjectKey) -> Res {
    let snap = ctx.db.snapshot();
    if key.kind == Kind::Namespace && key.name == DEFAULT_NAMESPACE && snap.get(&key).is_none() {
        return Ok(Json(render::default_namespace_json()));
    }
    let o = snap.get(&key).ok_or_else(|| ApiError::not_found(&key))?;
    let plan = ctx.plan.borrow().clone();
    let view = ctx.view.borrow().clone();
    let mut v = render::object_json(o, &plan, &view, &snap);
    if key.kind == Kind::Service {
        super::services::decorate(&mut v, &snap, &plan, &view, ctx.proxy.as_deref());
    }
    if key.kind == Kind::Secret {
        super::secrets::reveal(ctx, &snap, &mut v)?;
    }
    Ok(Json(v))
}

fn parse_body(
    ctx: &Ctx,
    body: &[u8],
    kind: Kind,
    ns: &str,
) -> Result<(crate::model::parse::Parsed, Vec<Issue>), ApiError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    // The endpoint names the kind: a body may leave it out, as Kubernetes
    // allows (typed clients do).
    if let Some(m) = value.as_object_mut() {
        m.entry("kind").or_insert_with(|| json!(kind.as_str()));
        m.entry("apiVersion").or_insert_with(|| json!(kind.api_version()));
    }
    // A version from a watch event (the watch cache's) stands for the
    // object's own version at that time.
    if let Some(rv) = value.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let scope = if kind.namespaced() { ns } else { "" };
        let own = ctx.watch_cache.stamp_version(rv, kind.plural(), scope, name);
        value["metadata"]["resourceVersion"] = json!(own);
    }
    let out = parse::parse_json(value, &ctx.validation, ns);
    if !out.errors.is_empty() {
        let msg =
            format!("{} is invalid: {}", kind, out.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "));
        return Err(ApiError::invalid(msg, &out.errors));
    }
    let p = out.objects.into_iter().next().ok_or_else(|| ApiError::bad_request("no object in the request body"))?;
    if p.object.kind() != kind {
        return Err(ApiError::bad_request(format!("this endpoint takes a {kind}, the body is a {}", p.object.kind())));
    }
    if kind.namespaced() && p.object.key().namespace != ns {
        return Err(ApiError::bad_request(format!(
            "the body's metadata.namespace ({}) does not match the URL's namespace ({ns})",
            p.object.key().namespace
        )));
    }
    Ok((p, out.warnings))
}

async fn write_one(
    ctx: &Ctx,
    kind: Kind,
    ns: &str,
    name: Option<&str>,
    body: &[u8],
    mode: Mode,
    q: &WriteQuery,
) -> Written {
    let validation = q.validation()?;
    q.refuse_dry_run()?;
    let (parsed, warnings) = parse_body(ctx, body, kind, ns)?;
    let headers = super::write_options::warnings(validation, &warnings)?;
    let key = parsed.object.key();
    if let Some(n) = name
        && key.name != n
    {
        return Err(ApiError::bad_request(format!(
            "the body's metadata.name ({}) does not match the URL ({n})",
            key.name
        )));
    }
    {
        let _guard = ctx.apply_lock.lock().await;
        let snap = ctx.db.snapshot();
        let mut objects = vec![parsed];
        super::services::assign(ctx.as_ref(), &snap, &mut objects)?;
        super::secrets::seal_objects(ctx, &snap, &mut objects).await?;
        let (_results, changes) = plan_apply(&snap, objects, ctx.db.now(), mode)?;
        commit(ctx, changes).await?;
    }
    let code = if mode == Mode::Create { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, headers, get_of(ctx, key)?))
}

fn key(kind: Kind, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: if kind.namespaced() { ns.to_string() } else { String::new() },
        name: name.to_string(),
    }
}

macro_rules! kind_handlers {
    ($kind:expr, $list_all:ident, $list:ident, $get:ident, $create:ident, $replace:ident, $delete:ident, $delete_all:ident) => {
        pub async fn $list_all(State(ctx): State<Ctx>) -> Res {
            list_of(&ctx, $kind, None)
        }
        pub async fn $list(State(ctx): State<Ctx>, Path(ns): Path<String>) -> Res {
            list_of(&ctx, $kind, Some(&ns))
        }
        pub async fn $get(State(ctx): State<Ctx>, Path((ns, name)): Path<(String, String)>) -> Res {
            get_of(&ctx, key($kind, &ns, &name))
        }
        pub async fn $create(
            State(ctx): State<Ctx>,
            Path(ns): Path<String>,
            Query(q): Query<WriteQuery>,
            Limited(body): Limited,
        ) -> Written {
            write_one(&ctx, $kind, &ns, None, &body, Mode::Create, &q).await
        }
        pub async fn $replace(
            State(ctx): State<Ctx>,
            Path((ns, name)): Path<(String, String)>,
            Query(q): Query<WriteQuery>,
            Limited(body): Limited,
        ) -> Written {
            write_one(&ctx, $kind, &ns, Some(&name), &body, Mode::Replace, &q).await
        }
        pub async fn $delete(
            State(ctx): State<Ctx>,
            Path((ns, name)): Path<(String, String)>,
            Query(q): Query<DeleteQuery>,
            Limited(body): Limited,
        ) -> Written {
            delete_one(&ctx, key($kind, &ns, &name), &q, &body).await
        }
        pub async fn $delete_all(
            State(ctx): State<Ctx>,
            Path(ns): Path<String>,
            Query(q): Query<DeleteQuery>,
            Limited(body): Limited,
        ) -> Written {
            delete_collection(&ctx, $kind, &ns, &q, &body).await
        }
    };
}

/// PATCH of one object (see `patch`): the patch applied to the object as
/// GET shows it, the result written as a PUT.
async fn patch_of(
    ctx: &Ctx,
    kind: Kind,
    ns: &str,
    name: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    q: &WriteQuery,
) -> Written {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ty = super::patch::PatchType::from_content_type(ct)?;
    if ty == super::patch::PatchType::Apply {
        require_field_manager(q)?;
    }
    let current = match (get_of(ctx, key(kind, ns, name)), ty) {
        (Ok(Json(c)), _) => c,
        // Server-side apply creates what is not there yet.
        (Err(e), super::patch::PatchType::Apply) if e.code == StatusCode::NOT_FOUND => {
            let applied = super::patch::applied_object(body, &kind.to_string(), name)?;
            let bytes = serde_json::to_vec(&applied).map_err(|e| ApiError::bad_request(e.to_string()))?;
            return write_one(ctx, kind, ns, None, &bytes, Mode::Create, q).await;
        }
        (Err(e), _) => return Err(e),
    };
    let mut patched = super::patch::apply(&current, ty, body)?;
    // The version read here is no precondition, unless the patch sets one.
    if !String::from_utf8_lossy(body).contains("resourceVersion")
        && let Some(m) = patched["metadata"].as_object_mut()
    {
        m.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&patched).map_err(|e| ApiError::bad_request(e.to_string()))?;
    write_one(ctx, kind, ns, Some(name), &bytes, Mode::Replace, q).await
}

/// Server-side apply names who applies (Kubernetes refuses it otherwise).
fn require_field_manager(q: &WriteQuery) -> Result<(), ApiError> {
    match q.field_manager.as_deref() {
        Some(m) if !m.is_empty() => Ok(()),
        _ => Err(ApiError::bad_request(
            "PATCH with application/apply-patch+yaml needs a fieldManager query parameter (kubectl sends one)",
        )),
    }
}

macro_rules! patch_handler {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(ctx): State<Ctx>,
            Path((ns, name)): Path<(String, String)>,
            headers: axum::http::HeaderMap,
            Query(q): Query<WriteQuery>,
            Limited(body): Limited,
        ) -> Written {
            patch_of(&ctx, $kind, &ns, &name, &headers, &body, &q).await
        }
    };
}

patch_handler!(patch_deployment, Kind::Deployment);
patch_handler!(patch_daemonset, Kind::DaemonSet);
patch_handler!(patch_job, Kind::Job);
patch_handler!(patch_cronjob, Kind::CronJob);
patch_handler!(patch_configmap, Kind::ConfigMap);
patch_handler!(patch_service, Kind::Service);
patch_handler!(patch_secret, Kind::Secret);

pub async fn patch_namespace(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    Query(q): Query<WriteQuery>,
    Limited(body): Limited,
) -> Written {
    patch_of(&ctx, Kind::Namespace, "", &name, &headers, &body, &q).await
}

kind_handlers!(
    Kind::Deployment,
    list_all_deployments,
    list_deployments,
    get_deployment,
    create_deployment,
    replace_deployment,
    delete_deployment,
    delete_all_deployments
);
kind_handlers!(Kind::Job, list_all_jobs, list_jobs, get_job, create_job, replace_job, delete_job, delete_all_jobs);
kind_handlers!(
    Kind::DaemonSet,
    list_all_daemonsets,
    list_daemonsets,
    get_daemonset,
    create_daemonset,
    replace_daemonset,
    delete_daemonset,
    delete_all_daemonsets
);
kind_handlers!(
    Kind::ConfigMap,
    list_all_configmaps,
    list_configmaps,
    get_configmap,
    create_configmap,
    replace_configmap,
    delete_configmap,
    delete_all_configmaps
);
kind_handlers!(
    Kind::Secret,
    list_all_secrets,
    list_secrets,
    get_secret,
    create_secret,
    replace_secret,
    delete_secret,
    delete_all_secrets
);
kind_handlers!(
    Kind::CronJob,
    list_all_cronjobs,
    list_cronjobs,
    get_cronjob,
    create_cronjob,
    replace_cronjob,
    delete_cronjob,
    delete_all_cronjobs
);
kind_handlers!(
    Kind::Service,
    list_all_services,
    list_services,
    get_service,
    create_service,
    replace_service,
    delete_service,
    delete_all_services
);

pub async fn list_namespaces(State(ctx): State<Ctx>) -> Res {
    list_of(&ctx, Kind::Namespace, None)
}
pub async fn get_namespace(State(ctx): State<Ctx>, Path(name): Path<String>) -> Res {
    get_of(&ctx, key(Kind::Namespace, "", &name))
}
pub async fn create_namespace(State(ctx): State<Ctx>, Query(q): Query<WriteQuery>, Limited(body): Limited) -> Written {
    write_one(&ctx, Kind::Namespace, "", None, &body, Mode::Create, &q).await
}
pub async fn replace_namespace(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<WriteQuery>,
    Limited(body): Limited,
) -> Written {
    write_one(&ctx, Kind::Namespace, "", Some(&name), &body, Mode::Replace, &q).await
}
pub async fn delete_namespace(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
    Limited(body): Limited,
) -> Written {
    delete_one(&ctx, key(Kind::Namespace, "", &name), &q, &body).await
}

// ---------- scale ----------

#[derive(Deserialize)]
pub struct ScaleBody {
    spec: ScaleSpec,
}
#[derive(Deserialize)]
struct ScaleSpec {
    replicas: i64,
}

fn scale_json(ns: &str, name: &str, want: i64, have: u64) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": want}, "status": {"replicas": have}})
}

pub async fn get_scale(State(ctx): State<Ctx>, Path((ns, name)): Path<(String, String)>) -> Res {
    let v = get_of(&ctx, key(Kind::Deployment, &ns, &name))?.0;
    let want = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let have = v.pointer("/status/readyReplicas").and_then(Value::as_u64).unwrap_or(0);
    Ok(Json(scale_json(&ns, &name, want, have)))
}

pub async fn put_scale(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    Limited(body): Limited,
) -> Res {
    let s: ScaleBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"spec\":{{\"replicas\":N}}}}: {e}")))?;
    let max = crate::model::validate::MAX_REPLICAS;
    if !(0..=max).contains(&s.spec.replicas) {
        return Err(ApiError::invalid(
            format!("spec.replicas must be between 0 and {max} (got {})", s.spec.replicas),
            &[Issue {
                file: String::new(),
                document: 0,
                field: "spec.replicas".into(),
                line: None,
                column: None,
                message: format!("must be between 0 and {max}"),
            }],
        ));
    }
    let k = key(Kind::Deployment, &ns, &name);
    let _guard = ctx.apply_lock.lock().await;
    let snap = ctx.db.snapshot();
    let existing = snap.get(&k).ok_or_else(|| ApiError::not_found(&k))?;
    let mut obj = existing.object.clone();
    if let crate::model::Object::Deployment(d) = &mut obj {
        d.spec.replicas = Some(s.spec.replicas);
    }
    obj.meta_mut().resource_version = None;
    let parsed = parse::Parsed { object: obj, file: String::new(), document: 0 };
    let (_r, changes) = plan_apply(&snap, vec![parsed], ctx.db.now(), Mode::Replace)?;
    commit(&ctx, changes).await?;
    Ok(Json(scale_json(&ns, &name, s.spec.replicas, 0)))
}

// ---------- apply / delete with manifests ----------

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyRequest {
    pub files: Vec<SourceFile>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// For delete: missing objects are not an error.
    #[serde(default)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub results: Vec<ObjectResult>,
    pub warnings: Vec<Issue>,
}

fn parse_request(ctx: &Ctx, body: &[u8]) -> Result<(ApplyRequest, parse::Outcome), ApiError> {
    let req: ApplyRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    if let Some(ns) = &req.namespace {
        crate::model::names::dns_label(ns, 63).map_err(|m| ApiError::bad_request(format!("namespace: {m}")))?;
    }
    let out = parse::parse_files(&req.files, &ctx.validation, req.namespace.as_deref());
    if !out.errors.is_empty() {
        let n = out.errors.len();
        let msg = format!(
            "{n} error{} in the manifests; nothing was applied:\n{}",
            if n == 1 { "" } else { "s" },
            out.errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
        );
        return Err(ApiError::invalid(msg, &out.errors));
    }
    Ok((req, out))
}

pub async fn apply(State(ctx): State<Ctx>, Limited(body): Limited) -> Result<Json<ApplyResponse>, ApiError> {
    let (req, out) = parse_request(&ctx, &body)?;
    let _guard = ctx.apply_lock.lock().await;
    let snap = ctx.db.snapshot();
    let mut objects = out.objects;
    super::services::assign(ctx.as_ref(), &snap, &mut objects)?;
    super::secrets::seal_objects(&ctx, &snap, &mut objects).await?;
    let (results, changes) = plan_apply(&snap, objects, ctx.db.now(), Mode::Apply)?;
    if !req.dry_run {
        commit(&ctx, changes).await?;
        ctx.metrics.applies.inc();
    }
    Ok(Json(ApplyResponse { results, warnings: out.warnings }))
}

pub async fn delete_manifests(State(ctx): State<Ctx>, Limited(body): Limited) -> Result<Json<ApplyResponse>, ApiError> {
    let (req, out) = parse_request(&ctx, &body)?;
    let _guard = ctx.apply_lock.lock().await;
    let snap = ctx.db.snapshot();
    let mut results = Vec::new();
    let mut changes = Vec::new();
    for p in out.objects {
        let k = p.object.key();
        match plan_delete(&snap, &k) {
            Ok((r, c)) => {
                results.push(r);
                changes.extend(c);
            }
            Err(crate::state::apply::ApplyError::NotFound(_)) if req.ignore_not_found => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !req.dry_run {
        commit(&ctx, changes).await?;
    }
    Ok(Json(ApplyResponse { results, warnings: Vec::new() }))
}

// ---------- pods ----------

/// Pods in `ns` (all when `None`), each with its details from the node that
/// runs it (`details`), and a `Warning` for nodes that did not answer.
async fn pods_with_details(ctx: &Ctx, ns: Option<&str>, name: Option<&str>) -> (HeaderMap, Vec<Value>) {
    let (snap, plan, view) = (ctx.db.snapshot(), ctx.plan.borrow().clone(), ctx.view.borrow().clone());
    let filter = super::details::Filter { namespace: ns.map(String::from), name: name.map(String::from) };
    let (view, warnings) = super::details::with_details(ctx, &view, filter).await;
    (warnings, render::pods(&snap, &plan, &view, ns))
}

pub async fn list_all_pods(State(ctx): State<Ctx>) -> (HeaderMap, Json<Value>) {
    let (warnings, pods) = pods_with_details(&ctx, None, None).await;
    (warnings, Json(render::list("Pod", "v1", pods)))
}

pub async fn list_pods(State(ctx): State<Ctx>, Path(ns): Path<String>) -> (HeaderMap, Json<Value>) {
    let (warnings, pods) = pods_with_details(&ctx, Some(&ns), None).await;
    (warnings, Json(render::list("Pod", "v1", pods)))
}

pub async fn get_pod(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<(HeaderMap, Json<Value>), ApiError> {
    let (warnings, pods) = pods_with_details(&ctx, Some(&ns), Some(&name)).await;
    pods.into_iter()
        .find(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str()))
        .map(|p| (warnings, Json(p)))
        .ok_or_else(|| ApiError::not_found(format!("pod {name:?} in namespace {ns:?}")))
}

// ---------- nodes, events, cluster ----------

fn allocated(ctx: &Ctx) -> BTreeMap<String, (Resources, usize)> {
    let plan = ctx.plan.borrow().clone();
    let mut out: BTreeMap<String, (Resources, usize)> = BTreeMap::new();
    for d in plan.desired.iter() {
        if let Some(n) = plan.placement.owners.get(&d.id()) {
            let e = out.entry(n.to_string()).or_default();
            e.0 = e.0.saturating_add(d.requests);
            e.1 += 1;
        }
    }
    out
}

/// Every node as the API shows it.
pub(crate) fn nodes(ctx: &Ctx) -> Vec<Value> {
    let view = ctx.view.borrow().clone();
    let plan = ctx.plan.borrow().clone();
    let alloc = allocated(ctx);
    let snap = ctx.db.snapshot();
    view.nodes
        .values()
        .map(|n| {
            let (r, c) = alloc.get(&n.info.name).copied().unwrap_or_default();
            let m = snap.maintenance.get(&n.info.name).copied();
            render::node_json(n, plan.schedulable(&n.info.name), m, r, c)
        })
        .collect()
}

pub async fn list_nodes(State(ctx): State<Ctx>) -> Json<Value> {
    Json(render::list("Node", "v1", nodes(&ctx)))
}

pub async fn get_node(State(ctx): State<Ctx>, Path(name): Path<String>) -> Res {
    let view = ctx.view.borrow().clone();
    let n = view
        .nodes
        .get(name.as_str())
        .ok_or_else(|| ApiError::not_found(format!("node {name:?} (see `shoal get nodes`)")))?;
    let (r, c) = allocated(&ctx).get(&name).copied().unwrap_or_default();
    let sched = ctx.plan.borrow().schedulable(&name);
    let m = ctx.db.snapshot().maintenance.get(&name).copied();
    Ok(Json(render::node_json(n, sched, m, r, c)))
}

pub(crate) fn events_json(ctx: &Ctx, ns: Option<&str>) -> Value {
    let mut events = ctx.events.list(|e| ns.is_none_or(|n| e.namespace == n));
    // A CronJob's missed times are reported by whichever node fired it;
    // its record carries them to every node, so any node lists them.
    let snapshot = ctx.db.snapshot();
    for ((rns, name), r) in snapshot.cron_records.iter().filter(|((rns, _), _)| ns.is_none_or(|n| rns == n)) {
        for m in &r.recent_misses {
            if events.iter().any(|e| e.reason == "MissSchedule" && e.name == *name && e.message == m.message) {
                continue;
            }
            events.push(crate::events::Event {
                time_ms: (m.reported.max(0) as u64) * 1000,
                kind: "Warning".into(),
                reason: "MissSchedule".into(),
                object_kind: "CronJob".into(),
                namespace: rns.clone(),
                name: name.clone(),
                message: m.message.clone(),
                node: m.node.clone(),
            });
        }
    }
    events.sort_by_key(|e| e.time_ms);
    let items: Vec<Value> = events
        .into_iter()
        .map(|e| {
            let t =
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(e.time_ms)).to_string();
            // Named as Kubernetes names events (object name, a unique
            // suffix), so that watches and `kubectl get events` key them.
            let id = blake3::hash(
                format!("{}\0{}\0{}\0{}\0{}", e.time_ms, e.object_kind, e.reason, e.message, e.node).as_bytes(),
            );
            let name = format!("{}.{}", e.name, &id.to_hex()[..16]);
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"namespace": e.namespace, "name": name, "creationTimestamp": t},
                "type": e.kind, "reason": e.reason, "message": e.message,
                "involvedObject": {"kind": e.object_kind, "namespace": e.namespace, "name": e.name},
                "source": {"host": e.node}, "lastTimestamp": t, "eventTime": t,
            })
        })
        .collect();
    render::list("Event", "v1", items)
}

pub async fn list_all_events(State(ctx): State<Ctx>) -> Json<Value> {
    Json(events_json(&ctx, None))
}

pub async fn list_events(State(ctx): State<Ctx>, Path(ns): Path<String>) -> Json<Value> {
    Json(events_json(&ctx, Some(&ns)))
}

pub async fn cluster(State(ctx): State<Ctx>) -> Json<Value> {
    let view = ctx.view.borrow().clone();
    let nodes: Vec<Value> = view
        .nodes
        .values()
        .map(|n| json!({"name": n.info.name, "apiUrl": n.info.api_url, "state": n.state.as_str()}))
        .collect();
    Json(json!({"self": view.self_name, "nodes": nodes, "apiUrls": view.api_urls()}))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
}

fn cluster_error(e: crate::api::server::ClusterOpError) -> ApiError {
    match e {
        crate::api::server::ClusterOpError::Write(w) => write_error(w),
        crate::api::server::ClusterOpError::Internal(m) => ApiError::internal(m),
    }
}

pub async fn get_token(State(ctx): State<Ctx>) -> Res {
    let c =
        ctx.cluster.as_ref().ok_or_else(|| ApiError::not_found("join token (this node has no cluster identity)"))?;
    let t = c.join_token().ok_or_else(|| ApiError::not_found("join token"))?;
    Ok(Json(json!({"token": t})))
}

pub async fn rotate_token(State(ctx): State<Ctx>, Query(q): Query<TokenQuery>) -> Res {
    let c =
        ctx.cluster.as_ref().ok_or_else(|| ApiError::not_found("join token (this node has no cluster identity)"))?;
    match q.action.as_deref() {
        Some("rotate") => c.rotate_join_token().await.map(|t| Json(json!({"token": t}))).map_err(cluster_error),
        Some("create") => {
            let ttl = q.ttl.as_deref().unwrap_or("24h");
            let d = humantime::parse_duration(ttl).map_err(|e| ApiError::bad_request(format!("ttl {ttl:?}: {e}")))?;
            c.create_join_token(d.as_secs()).await.map(|t| Json(json!({"token": t}))).map_err(cluster_error)
        }
        other => {
            Err(ApiError::bad_request(format!("unknown action {other:?}: use ?action=rotate or ?action=create&ttl=1h")))
        }
    }
}
