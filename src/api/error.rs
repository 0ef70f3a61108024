//! API errors as Kubernetes `Status` objects, plus Shoal's `{error, message}`.
//!
//! A body looks like:
//! `{"kind":"Status","apiVersion":"v1","status":"Failure","code":422,
//!   "reason":"Invalid","error":"Invalid","message":"...",
//!   "details":{"causes":[{"field":"spec.replicas","message":"...","file":"web.yaml","line":7}]}}`

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::model::parse::Issue;
use crate::state::apply::ApplyError;

/// One cause of an error: which field, where, what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub document: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl From<&Issue> for Cause {
    fn from(i: &Issue) -> Cause {
        Cause {
            field: i.field.clone(),
            message: i.message.clone(),
            file: i.file.clone(),
            document: i.document,
            line: i.line,
            column: i.column,
        }
    }
}

impl Cause {
    pub fn to_issue(&self) -> Issue {
        Issue {
            file: self.file.clone(),
            document: self.document,
            field: self.field.clone(),
            line: self.line,
            column: self.column,
            message: self.message.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
    /// Extra machine-readable facts (e.g. replicas reached for a 503).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub info: serde_json::Value,
}

/// The error body of every API failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub status: String,
    pub code: u16,
    pub reason: String,
    /// Same as `reason` (Shoal's `{error, message}` convention).
    pub error: String,
    pub message: String,
    #[serde(default)]
    pub details: Details,
}

/// An API error: HTTP status, Kubernetes reason and a message a user can act on.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Details,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: Details::default() }
    }
    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("{what} not found"))
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "Conflict", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or invalid bearer token: pass --token, set SHOAL_TOKEN, or run on the node (the token is in its data dir)",
        )
    }
    pub fn too_large(limit_name: &str, limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("request body exceeds {limit_name} ({limit} bytes); split it into smaller applies"),
        )
    }
    pub fn invalid(message: impl Into<String>, issues: &[Issue]) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
        e.details.causes = issues.iter().map(Cause::from).collect();
        e
    }
    pub fn with_info(mut self, info: serde_json::Value) -> ApiError {
        self.details.info = info;
        self
    }

    pub fn status(&self) -> Status {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            code: self.code.as_u16(),
            reason: self.reason.into(),
            error: self.reason.into(),
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.status())).into_response()
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> ApiError {
        let message = e.to_string();
        match e {
            ApplyError::NamespaceNotFound { .. } | ApplyError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
            }
            ApplyError::Conflict { .. } => ApiError::conflict(message),
            ApplyError::AlreadyExists(_) => ApiError::new(StatusCode::CONFLICT, "AlreadyExists", message),
            ApplyError::DefaultNamespace => ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message),
            ApplyError::Encode { .. } => ApiError::internal(message),
            ApplyError::Immutable(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message),
            ApplyError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", message)
            }
        }
    }
}
