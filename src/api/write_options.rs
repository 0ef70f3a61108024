//! The options of a REST write (`POST`, `PUT`, `PATCH`): `fieldValidation`
//! and `dryRun`, and the `Warning:` headers a write answers with.
//!
//! Shoal's parser knows its own subset of each kind; a field outside it
//! may be a Kubernetes field Shoal does not use (`affinity`) or a typo
//! (`replicaz`), and inside `spec` it cannot tell which. So:
//!
//! - `Ignore`: nothing is said;
//! - `Warn` (the default, as in Kubernetes): each field Shoal ignores
//!   comes back as a `Warning: 299 - "..."` header, which kubectl prints;
//! - `Strict` (kubectl's default): the same warnings, and a field Kubernetes
//!   itself does not have where Shoal knows the whole vocabulary (an
//!   object's top level and its `metadata`) is refused, 400
//!   `strict decoding error: unknown field "..."`, as Kubernetes words it.

use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::error::ApiError;
use crate::model::parse::Issue;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteQuery {
    pub field_validation: Option<String>,
    pub dry_run: Option<String>,
    pub field_manager: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl WriteQuery {
    pub fn validation(&self) -> Result<FieldValidation, ApiError> {
        match self.field_validation.as_deref() {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => {
                Err(ApiError::bad_request(format!("fieldValidation {other:?} is not one of Ignore, Warn, Strict")))
            }
        }
    }

    /// A dry run is refused rather than written.
    pub fn refuse_dry_run(&self) -> Result<(), ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(()),
            Some(d) => Err(ApiError::bad_request(format!(
                "dryRun={d} is not served by Shoal's REST writes (nothing was written); \
                 `shoal apply --dry-run -f FILE` checks manifests against the cluster"
            ))),
        }
    }
}

/// Fields every Kubernetes object of the kinds Shoal serves may have at
/// its top level.
const TOP_LEVEL: &[&str] =
    &["apiVersion", "kind", "metadata", "spec", "status", "data", "binaryData", "stringData", "type", "immutable"];

/// `ObjectMeta`'s fields.
const METADATA: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Whether a field the parser ignored is one Kubernetes does not have.
pub fn unknown_to_kubernetes(field: &str) -> bool {
    let mut parts = field.split('.');
    match (parts.next(), parts.next()) {
        (Some(top), None) => !TOP_LEVEL.contains(&top),
        (Some("metadata"), Some(m)) => !METADATA.contains(&m),
        _ => false,
    }
}

/// Fields the cluster sets: a client sending them back (a PATCH of what a
/// GET returned, `kubectl replace` of a saved object) is not warned.
fn set_by_cluster(field: &str) -> bool {
    field == "status"
        || field.starts_with("status.")
        || matches!(
            field,
            "metadata.uid"
                | "metadata.resourceVersion"
                | "metadata.generation"
                | "metadata.creationTimestamp"
                | "metadata.managedFields"
                | "metadata.selfLink"
                | "metadata.deletionTimestamp"
        )
        // (kubectl's `rollout undo` sends a template with `creationTimestamp: null`.)
        || field.ends_with("template.metadata.creationTimestamp")
}

/// A `Warning:` header (code 299) saying `text`: visible ASCII, with
/// quotes and backslashes escaped.
pub fn warning_header(text: &str) -> Option<HeaderValue> {
    let clean: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    HeaderValue::from_str(&format!("299 - \"{clean}\"")).ok()
}

/// What the parser's warnings become under `v`: an error (Strict, with
/// fields Kubernetes lacks), or the `Warning` headers to answer with.
pub fn warnings(v: FieldValidation, issues: &[Issue]) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    if v == FieldValidation::Ignore {
        return Ok(headers);
    }
    if v == FieldValidation::Strict {
        let unknown: Vec<String> = issues
            .iter()
            .filter(|i| unknown_to_kubernetes(&i.field))
            .map(|i| format!("unknown field {:?}", i.field))
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::bad_request(format!("strict decoding error: {}", unknown.join(", "))));
        }
    }
    for i in issues.iter().filter(|i| !set_by_cluster(&i.field)) {
        let text = if i.field.is_empty() { i.message.clone() } else { format!("{}: {}", i.field, i.message) };
        if let Some(h) = warning_header(&text) {
            headers.append(axum::http::header::WARNING, h);
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(field: &str) -> Issue {
        Issue { field: field.into(), message: "not supported, ignored".into(), ..Default::default() }
    }

    #[test]
    fn strict_refuses_only_what_kubernetes_lacks() {
        let ok = [issue("spec.template.spec.affinity"), issue("metadata.managedFields"), issue("status")];
        let h = warnings(FieldValidation::Strict, &ok).unwrap();
        assert_eq!(h.get_all("warning").iter().count(), 1, "what the cluster sets is not warned about");
        assert_eq!(
            h.get("warning").unwrap(),
            "299 - \"spec.template.spec.affinity: not supported, ignored\"",
            "Kubernetes' Warning header form"
        );
        for bad in ["spce", "metadata.lables"] {
            let e = warnings(FieldValidation::Strict, &[issue(bad)]).unwrap_err();
            assert!(e.status().message.contains(&format!("unknown field \"{bad}\"")), "{bad}");
            assert!(warnings(FieldValidation::Warn, &[issue(bad)]).is_ok(), "Warn only warns: {bad}");
        }
        assert!(warnings(FieldValidation::Ignore, &ok).unwrap().is_empty());
    }

    #[test]
    fn options_are_read_and_bad_ones_named() {
        let q = |v: &str| WriteQuery { field_validation: Some(v.into()), ..Default::default() };
        assert_eq!(WriteQuery::default().validation().unwrap(), FieldValidation::Warn);
        assert_eq!(q("Strict").validation().unwrap(), FieldValidation::Strict);
        assert!(q("strict").validation().is_err());
        let dry = WriteQuery { dry_run: Some("All".into()), ..Default::default() };
        assert!(dry.refuse_dry_run().unwrap_err().status().message.contains("nothing was written"));
    }
}
