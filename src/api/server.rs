//! The HTTP API server: routes (Kubernetes' REST layout plus `/shoal/v1`),
//! bearer-token authentication, body limits, and the shared context.
//!
//! Handlers live in `handlers.rs` and `logs.rs`; this file wires them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;

use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::watch;

use super::error::ApiError;
use super::{handlers, logs};
use crate::agent::logs::LogLimits;
use crate::events::EventLog;
use crate::membership::view::ClusterView;
use crate::metrics::Metrics;
use crate::model::validate;
use crate::placement::plan::PlanView;
use crate::state::{StateDb, Writer};

/// Largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// What every handler can reach.
pub struct ApiCtx {
    pub node_name: String,
    pub token: String,
    pub db: Arc<StateDb>,
    pub writer: Arc<dyn Writer>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub plan: watch::Receiver<Arc<PlanView>>,
    pub events: Arc<EventLog>,
    pub validation: validate::Context,
    /// Serializes read-modify-write applies on this node.
    pub apply_lock: tokio::sync::Mutex<()>,
    pub logs_dir: PathBuf,
    pub log_limits: LogLimits,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// Cluster-level operations (tokens, join) provided by the node.
    pub cluster: Option<Arc<dyn ClusterOps>>,
    /// What this node's service proxy reports (port conflicts).
    pub proxy: Option<Arc<crate::proxy::server::ProxyStatus>>,
    /// The cluster data keys this node holds (Secrets); `None`: it serves none.
    pub keys: Option<Arc<crate::state::keys::DataKeys>>,
    /// Who to ask for the data keys.
    pub key_peers: Option<Arc<dyn super::secrets::KeyPeers>>,
    /// TLS to other nodes' APIs (trusting the cluster CA).
    pub api_tls: Option<Arc<rustls::ClientConfig>>,
    /// Recent versions of every listed object, for watches.
    pub watch_cache: super::watchcache::WatchCache,
    /// The containers this node runs, for `exec`.
    pub containers: crate::agent::attach::Containers,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterOpError {
    #[error(transparent)]
    Write(#[from] crate::state::WriteError),
    #[error("{0}")]
    Internal(String),
}

/// Operations on the cluster the API exposes but does not implement.
#[async_trait::async_trait]
pub trait ClusterOps: Send + Sync {
    /// The current join token.
    fn join_token(&self) -> Option<String>;
    /// Replaces the join token; returns the new one.
    async fn rotate_join_token(&self) -> Result<String, ClusterOpError>;
    /// Creates an extra join token that expires after `ttl_secs`.
    async fn create_join_token(&self, ttl_secs: u64) -> Result<String, ClusterOpError>;
}

pub type Ctx = Arc<ApiCtx>;

/// A request body read up to `MAX_BODY_BYTES`, refused beyond with the
/// limit named.
pub struct Limited(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Limited {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > MAX_BODY_BYTES
        {
            return Err(ApiError::too_large("MAX_BODY_BYTES", MAX_BODY_BYTES));
        }
        axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map(Limited)
            .map_err(|_| ApiError::too_large("MAX_BODY_BYTES", MAX_BODY_BYTES))
    }
}

/// Paths anyone may read (health checks and the version, as in Kubernetes).
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/livez" | "/version") || super::dashboard::is_asset(path)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    // The whole body is read first, so that an answer given without it (a
    // refusal, an error) never races the client's write of it: a server
    // that answers and closes mid-body makes the client see a broken pipe
    // instead of the answer.
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::too_large("MAX_BODY_BYTES", MAX_BODY_BYTES).into_response();
    };
    let req = Request::from_parts(parts, axum::body::Body::from(body));
    let method = req.method().to_string();
    if !public(req.uri().path()) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|t| same(t.as_bytes(), ctx.token.as_bytes())) {
            ctx.metrics.api_unauthorized.inc();
            return ApiError::unauthorized().into_response();
        }
    }
    let resp = next.run(req).await;
    ctx.metrics
        .api_requests
        .get_or_create(&vec![("method".into(), method), ("code".into(), resp.status().as_u16().to_string())])
        .inc();
    resp
}

/// Kubernetes' protobuf bodies (kubectl 1.32 and newer send them from
/// `kubectl create configmap|secret|...`) are read as the JSON they encode
/// (`protobuf`); what cannot be read, and CBOR, get 415 with directions.
async fn media_types(req: Request, next: Next) -> Response {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).unwrap_or("").to_string();
    let unsupported = |why: String| {
        ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "{why}. Send JSON instead (Content-Type: application/json); from kubectl: \
                 `kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`, or `kubectl apply -f FILE`"
            ),
        )
        .into_response()
    };
    if ct.starts_with("application/cbor") {
        return unsupported("this server does not read CBOR bodies".into());
    }
    if !ct.starts_with("application/vnd.kubernetes.protobuf") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::too_large("MAX_BODY_BYTES", MAX_BODY_BYTES).into_response();
    };
    let json = match super::protobuf::to_json(&bytes) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(e) => return unsupported(format!("a protobuf body Shoal cannot read: {e}")),
    };
    parts.headers.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, axum::body::Body::from(json))).await
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such API path (see README: API)")
}

pub fn router(ctx: Ctx) -> Router {
    use handlers as h;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/version", get(h::version))
        .route("/metrics", get(h::metrics))
        // Discovery.
        .route("/api", get(super::discovery::get_api))
        .route("/api/v1", get(super::discovery::get_core_v1))
        .route("/apis", get(super::discovery::get_apis))
        .route("/apis/{group}", get(super::discovery::get_group))
        .route("/apis/{group}/{version}", get(super::discovery::get_group_version))
        .route("/openapi/v2", get(super::openapi::get_v2))
        .route("/openapi/v3", get(super::openapi::get_v3_root))
        .route("/openapi/v3/{*gv}", get(super::openapi::get_v3))
        // Namespaces (cluster-scoped).
        .route("/api/v1/namespaces", get(h::list_namespaces).post(h::create_namespace))
        .route(
            "/api/v1/namespaces/{name}",
            get(h::get_namespace).put(h::replace_namespace).patch(h::patch_namespace).delete(h::delete_namespace),
        )
        // Pods (derived).
        .route("/api/v1/pods", get(h::list_all_pods))
        .route("/api/v1/namespaces/{ns}/pods", get(h::list_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(h::get_pod).delete(super::maintenance::delete_pod))
        .route(super::details::PATH, get(super::details::node_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(logs::pod_log))
        .route("/api/v1/namespaces/{ns}/pods/{name}/eviction", post(super::maintenance::evict_pod))
        .route("/api/v1/namespaces/{ns}/pods/{name}/exec", get(super::exec::pod_exec).post(super::exec::pod_exec))
        // Services.
        .route("/api/v1/services", get(h::list_all_services))
        .route(
            "/api/v1/namespaces/{ns}/services",
            get(h::list_services).post(h::create_service).delete(h::delete_all_services),
        )
        .route(
            "/api/v1/namespaces/{ns}/services/{name}",
            get(h::get_service).put(h::replace_service).patch(h::patch_service).delete(h::delete_service),
        )
        .route("/api/v1/namespaces/{ns}/endpoints/{name}", get(super::services::get_endpoints))
        // Deployments.
        .route("/apis/apps/v1/deployments", get(h::list_all_deployments))
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(h::list_deployments).post(h::create_deployment).delete(h::delete_all_deployments),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(h::get_deployment).put(h::replace_deployment).patch(h::patch_deployment).delete(h::delete_deployment),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(h::get_scale).put(h::put_scale).patch(h::put_scale),
        )
        .route("/apis/apps/v1/replicasets", get(super::rollouts::list_all_replicasets))
        .route("/apis/apps/v1/namespaces/{ns}/replicasets", get(super::rollouts::list_replicasets))
        .route("/apis/apps/v1/namespaces/{ns}/replicasets/{name}", get(super::rollouts::get_replicaset))
        .route("/shoal/v1/namespaces/{ns}/deployments/{name}/rollout", post(super::rollouts::rollout))
        // CronJobs.
        .route("/api/v1/configmaps", get(h::list_all_configmaps))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            get(h::list_configmaps).post(h::create_configmap).delete(h::delete_all_configmaps),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(h::get_configmap).put(h::replace_configmap).patch(h::patch_configmap).delete(h::delete_configmap),
        )
        .route("/api/v1/secrets", get(h::list_all_secrets))
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            get(h::list_secrets).post(h::create_secret).delete(h::delete_all_secrets),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(h::get_secret).put(h::replace_secret).patch(h::patch_secret).delete(h::delete_secret),
        )
        .route("/shoal/v1/data-keys", get(super::secrets::key_status))
        .route("/shoal/v1/data-keys/rotate", post(super::secrets::rotate))
        .route("/shoal/v1/data-keys/retire", post(super::secrets::retire))
        .route("/apis/batch/v1/cronjobs", get(h::list_all_cronjobs))
        .route(
            "/apis/batch/v1/namespaces/{ns}/cronjobs",
            get(h::list_cronjobs).post(h::create_cronjob).delete(h::delete_all_cronjobs),
        )
        .route(
            "/apis/batch/v1/namespaces/{ns}/cronjobs/{name}",
            get(h::get_cronjob).put(h::replace_cronjob).patch(h::patch_cronjob).delete(h::delete_cronjob),
        )
        // DaemonSets.
        .route("/apis/apps/v1/daemonsets", get(h::list_all_daemonsets))
        .route(
            "/apis/apps/v1/namespaces/{ns}/daemonsets",
            get(h::list_daemonsets).post(h::create_daemonset).delete(h::delete_all_daemonsets),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/daemonsets/{name}",
            get(h::get_daemonset).put(h::replace_daemonset).patch(h::patch_daemonset).delete(h::delete_daemonset),
        )
        // Jobs.
        .route("/apis/batch/v1/jobs", get(h::list_all_jobs))
        .route("/apis/batch/v1/namespaces/{ns}/jobs", get(h::list_jobs).post(h::create_job).delete(h::delete_all_jobs))
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
            get(h::get_job).put(h::replace_job).patch(h::patch_job).delete(h::delete_job),
        )
        // Nodes and events.
        .route("/api/v1/nodes", get(h::list_nodes))
        .route("/api/v1/nodes/{name}", get(h::get_node).patch(super::maintenance::patch_node))
        .route("/shoal/v1/nodes/{name}/{action}", post(super::maintenance::node_action))
        .route("/api/v1/events", get(h::list_all_events))
        .route("/api/v1/namespaces/{ns}/events", get(h::list_events))
        // Shoal-only.
        .route("/shoal/v1/apply", post(h::apply))
        .route("/shoal/v1/delete", post(h::delete_manifests))
        .route("/shoal/v1/cluster", get(h::cluster))
        .route("/shoal/v1/token", get(h::get_token).post(h::rotate_token))
        .route("/shoal/v1/bandwidth", get(super::dashboard::bandwidth))
        .route("/shoal/v1/events", get(super::dashboard::cluster_events))
        .route("/ui", get(super::dashboard::page))
        .route("/ui/", get(super::dashboard::page))
        .route("/ui/app.js", get(super::dashboard::script))
        .route("/ui/style.css", get(super::dashboard::style))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(ctx.clone(), super::watch::lists))
        .layer(middleware::from_fn(super::tables::negotiate))
        .layer(middleware::from_fn(media_types))
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .with_state(ctx)
}

/// Serves the API until `shutdown` turns true: HTTPS, and plain HTTP as
/// `listen.plain` allows (see `listen`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Ctx,
    listen: super::listen::Listen,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    super::listen::serve(listener, router(ctx), listen, shutdown).await
}
