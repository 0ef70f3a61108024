//! The web dashboard, served by every node at `/ui`, so that it stays
//! reachable whatever node dies.
//!
//! The page and its script and style are embedded in the binary (no CDN)
//! and hold no data, so they are served without the token. The page asks
//! for the API token in a login form, keeps it in the tab's session
//! storage, and reads everything through the authenticated JSON API it
//! already has (nodes, pods, Deployments, Services), plus two that ask
//! every alive node, with a deadline, and name those that did not answer:
//! `/shoal/v1/bandwidth?all=true` (each node's gossip byte counters) and
//! `/shoal/v1/events` (each node keeps its own events).

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::Client;
use super::server::Ctx;

/// How long a fan-out (bandwidth, events) waits for each node.
pub const FAN_OUT_DEADLINE: Duration = Duration::from_secs(1);

/// Paths served without the token: the embedded assets.
pub fn is_asset(path: &str) -> bool {
    matches!(path, "/ui" | "/ui/" | "/ui/app.js" | "/ui/style.css")
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

pub async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", include_str!("dashboard/index.html"))
}

pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", include_str!("dashboard/app.js"))
}

pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", include_str!("dashboard/style.css"))
}

#[derive(Deserialize)]
pub struct AllQuery {
    #[serde(default)]
    pub all: bool,
}

fn own_counters(ctx: &Ctx) -> Value {
    json!({
        "node": ctx.node_name,
        "gossipBytesSent": ctx.metrics.gossip_bytes_sent.get(),
        "gossipBytesReceived": ctx.metrics.gossip_bytes_received.get(),
        "syncBytesSent": ctx.metrics.sync_bytes_sent.get(),
    })
}

/// Asks every other alive node for `path` (GET, JSON) in parallel:
/// (node, answer) of those that answered within `FAN_OUT_DEADLINE`, and the
/// others with why.
async fn fan_out(ctx: &Ctx, path: &'static str) -> (Vec<(String, Value)>, Vec<Value>) {
    let view = ctx.view.borrow().clone();
    let mut asks = tokio::task::JoinSet::new();
    for n in view.nodes.values().filter(|n| n.state.alive() && n.info.name != ctx.node_name) {
        let client = Client::new(vec![n.info.api_url.clone()], Some(ctx.token.clone()))
            .with_tls(ctx.api_tls.clone())
            .with_timeout(FAN_OUT_DEADLINE);
        let name = n.info.name.clone();
        asks.spawn(async move { (name, tokio::time::timeout(FAN_OUT_DEADLINE, client.get_json(path)).await) });
    }
    let mut answers = Vec::new();
    let mut unreachable = Vec::new();
    while let Some(done) = asks.join_next().await {
        let Ok((name, got)) = done else { continue };
        match got {
            Ok(Ok(v)) => answers.push((name, v)),
            Ok(Err(e)) => unreachable.push(json!({"node": name, "error": e.to_string()})),
            Err(_) => {
                unreachable.push(json!({"node": name, "error": format!("no answer within {FAN_OUT_DEADLINE:?}")}))
            }
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    (answers, unreachable)
}

/// This node's gossip byte counters; with `?all=true`, every alive node's,
/// asked in parallel, and the nodes that did not answer within
/// `FAN_OUT_DEADLINE` (with why).
pub async fn bandwidth(State(ctx): State<Ctx>, Query(q): Query<AllQuery>) -> Json<Value> {
    if !q.all {
        return Json(own_counters(&ctx));
    }
    let (answers, mut unreachable) = fan_out(&ctx, "/shoal/v1/bandwidth").await;
    let mut items = vec![own_counters(&ctx)];
    for (name, v) in answers {
        if v["node"] == name.as_str() {
            items.push(v);
        } else {
            unreachable.push(json!({"node": name, "error": format!("answered as {}", v["node"])}));
        }
    }
    items.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
    Json(json!({"items": items, "unreachable": unreachable}))
}

/// Most events `cluster_events` returns (the newest).
pub const MAX_EVENTS: usize = 200;

/// The events of every alive node (each node keeps its own), newest first,
/// at most `MAX_EVENTS`, and the nodes that did not answer.
pub async fn cluster_events(State(ctx): State<Ctx>) -> Json<Value> {
    let own = super::handlers::events_json(&ctx, None);
    let (answers, unreachable) = fan_out(&ctx, "/api/v1/events").await;
    let mut items: Vec<Value> = own["items"].as_array().cloned().unwrap_or_default();
    for (_, v) in answers {
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
    }
    let time = |e: &Value| e["lastTimestamp"].as_str().unwrap_or("").to_string();
    items.sort_by_key(|e| std::cmp::Reverse(time(e)));
    items.truncate(MAX_EVENTS);
    Json(json!({"items": items, "unreachable": unreachable}))
}
