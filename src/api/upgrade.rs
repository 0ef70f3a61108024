//! Relays an `Upgrade` request (exec's WebSocket) to the node that can
//! serve it: the request goes on with this node's credentials, the answer
//! comes back as is, and after a `101 Switching Protocols` the two
//! connections are spliced byte for byte until either side closes.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::Method;
use hyper_util::rt::TokioIo;

use super::client::{Client, ClientError};
use super::error::ApiError;

/// The request headers an upgrade needs on the next hop.
const FORWARDED: [HeaderName; 5] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];

pub async fn relay(client: &Client, node: &str, mut req: Request) -> Result<Response, ApiError> {
    let mut headers = HeaderMap::new();
    for name in FORWARDED {
        for v in req.headers().get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let ours = hyper::upgrade::on(&mut req);
    let (_, mut resp) = client.send_with(Method::GET, &path, None, headers).await.map_err(|e| match e {
        ClientError::Unreachable { last, .. } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "BadGateway",
            format!("node {node} runs the pod but does not answer: {last}"),
        ),
        other => ApiError::internal(other.to_string()),
    })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Ok((parts.status, parts.headers, Body::new(body)).into_response());
    }
    let theirs = hyper::upgrade::on(&mut resp);
    let node = node.to_string();
    tokio::spawn(async move {
        match tokio::try_join!(ours, theirs) {
            Ok((a, b)) => {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
            }
            Err(e) => tracing::debug!(node = %node, error = %e, "relayed upgrade failed"),
        }
    });
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    Ok(out)
}
