//! `GET .../pods/{name}/log`: a pod's container logs, from this node's files
//! or, when another node runs the pod, relayed from that node's API.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::Method;
use serde::Deserialize;
use tokio_stream::StreamExt;

use super::client::{Client, ClientError};
use super::error::ApiError;
use super::server::Ctx;
use crate::agent::logs::{follow, log_path, read_tail};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    pub container: Option<String>,
    #[serde(default)]
    pub follow: bool,
    pub tail_lines: Option<usize>,
}

fn text(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

pub async fn pod_log(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let id = format!("{ns}/{name}");
    let view = ctx.view.borrow().clone();
    let plan = ctx.plan.borrow().clone();
    // A finished Job pod is neither desired nor reported any more: its
    // recorded result names the node that ran it, which keeps its log. (A
    // pod some node reports is running again, a retry: its log is there.)
    let reported = view.nodes.values().any(|n| n.state.alive() && n.pods.contains_key(&id));
    let finished = if reported { None } else { finished_job_pod(&ctx.db.snapshot(), &ns, &name) };
    let containers: Vec<String> = super::exec::pod_containers(&plan, &view, &id)
        .or_else(|| finished.as_ref().map(|(_, c)| c.clone()))
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(ApiError::not_found(format!("pod {name:?} in namespace {ns:?}")));
    }
    let container = super::exec::choose_container(&name, &containers, q.container)?;
    let here = view.nodes.get(view.self_name.as_str()).is_some_and(|n| n.pods.contains_key(&id));
    let path = log_path(&ctx.logs_dir, &ns, &name, &container);
    // A finished Job pod's log is the one of the node that finished it (an
    // attempt cut short here, when the pod moved, left another).
    let ran_here = finished.as_ref().is_none_or(|(node, _)| *node == view.self_name);
    if here || (path.exists() && ran_here) {
        let limits = ctx.log_limits;
        let p2 = path.clone();
        let tail = q.tail_lines;
        let (data, offset) = tokio::task::spawn_blocking(move || {
            let data = read_tail(&p2, tail, limits);
            let len = std::fs::metadata(&p2).map(|m| m.len()).unwrap_or(0);
            (data, len)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let data = data.unwrap_or_default();
        if !q.follow {
            return Ok(text(Body::from(data)));
        }
        let first = tokio_stream::once(Ok::<_, Infallible>(bytes::Bytes::from(data)));
        let rest = tokio_stream::wrappers::ReceiverStream::new(follow(path, offset))
            .map(|b| Ok::<_, Infallible>(bytes::Bytes::from(b)));
        return Ok(text(Body::from_stream(first.chain(rest))));
    }
    // Another node runs it (or ran it, for a finished Job pod): relay from
    // that node's API.
    let ran_on = finished.as_ref().map(|(node, _)| node.as_str()).filter(|n| *n != view.self_name);
    let runner = view.nodes.values().find(|n| {
        n.state.alive()
            && n.info.name != view.self_name
            && (n.pods.contains_key(&id) || Some(n.info.name.as_str()) == ran_on)
    });
    let Some(runner) = runner else {
        if let Some(node) = ran_on {
            return Err(ApiError::bad_request(format!(
                "pod {name} ran on node {node}, which is not live now: its log is there"
            )));
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} is not running on any node yet; no logs (see `shoal describe pod {name}`)"
        )));
    };
    let mut qs = format!("container={container}&follow={}", q.follow);
    if let Some(t) = q.tail_lines {
        qs.push_str(&format!("&tailLines={t}"));
    }
    let client = Client::new(vec![runner.info.api_url.clone()], Some(ctx.token.clone()))
        .with_tls(ctx.api_tls.clone())
        .with_timeout(std::time::Duration::from_secs(24 * 3600));
    let (_, resp) = client
        .send(Method::GET, &format!("/api/v1/namespaces/{ns}/pods/{name}/log?{qs}"), None)
        .await
        .map_err(|e| match e {
            ClientError::Unreachable { last, .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                format!("node {} runs the pod but does not answer: {last}", runner.info.name),
            ),
            other => ApiError::internal(other.to_string()),
        })?;
    let code = resp.status();
    Ok((code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::new(resp.into_body())).into_response())
}

/// The node that ran a finished pod of a Job, and the Job's containers, from
/// the pod's recorded result.
fn finished_job_pod(snapshot: &crate::state::Snapshot, ns: &str, name: &str) -> Option<(String, Vec<String>)> {
    let r = snapshot.pod_results.get(&(ns.to_string(), name.to_string()))?;
    let job = snapshot.of_kind(crate::model::Kind::Job).find_map(|o| match &o.object {
        crate::model::Object::Job(j)
            if j.metadata.namespace.as_deref() == Some(ns) && j.metadata.uid.as_deref() == Some(r.job_uid.as_str()) =>
        {
            Some(j.clone())
        }
        _ => None,
    })?;
    let containers = job.spec.template.spec.containers.iter().map(|c| c.name.clone()).collect();
    Some((r.node.clone(), containers))
}
