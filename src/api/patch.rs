//! PATCH: what `kubectl patch`, `label`, `annotate` and the client
//! libraries send. The patch is applied to the object as a GET returns it,
//! and the result is written as a PUT would be (same validation, same
//! conflict rules).
//!
//! - `application/merge-patch+json`: RFC 7386 (`merge`, pure);
//! - `application/json-patch+json`: RFC 6902 (the `json-patch` crate);
//! - `application/strategic-merge-patch+json`: Kubernetes' strategic merge
//!   (`strategic`), which differs from a merge patch in how it merges lists
//!   (by key, such as a container's name) and in its directives.
//! - `application/apply-patch+yaml`: server-side apply (`kubectl apply
//!   --server-side`). The body is the whole object as its manager wants
//!   it; it creates the object, or is merged into it as a strategic merge
//!   patch would be. (Fields a manager stops applying are left as they
//!   are: Shoal keeps no managedFields, so it knows no owners and reports
//!   no conflicts.)
//! - anything else: 415.

use serde_json::Value;

use super::error::ApiError;

/// RFC 7386: `patch` merged into `target`; `null` removes a key.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The kinds of patch, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            other => Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the patch type {other:?} is not supported: use application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml"
                ),
            )),
        }
    }
}

/// The object a server-side apply request carries (YAML or JSON), checked
/// against the URL: its kind (if it names one) and its name.
pub fn applied_object(body: &[u8], kind: &str, name: &str) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the applied object is not UTF-8 text"))?;
    // The manifests' YAML reader: YAML 1.2 booleans, Kubernetes' octal modes.
    let mut docs = crate::model::yaml::parse_documents(text).map_err(|e| {
        let at = e.pos.map(|p| format!(" (line {}, column {})", p.line, p.column)).unwrap_or_default();
        ApiError::bad_request(format!("the applied object is not YAML or JSON: {}{at}", e.message))
    })?;
    if docs.len() != 1 {
        return Err(ApiError::bad_request(format!("server-side apply takes one object, the body has {}", docs.len())));
    }
    let v = docs.remove(0).value;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the applied object must be a mapping (an object with apiVersion, kind, metadata)",
        ));
    }
    if let Some(k) = v.get("kind").and_then(Value::as_str)
        && k != kind
    {
        return Err(ApiError::bad_request(format!("this endpoint applies a {kind}, the body is a {k}")));
    }
    match v.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == name => Ok(v),
        Some(n) => {
            Err(ApiError::bad_request(format!("the body's metadata.name ({n}) does not match the URL ({name})")))
        }
        None => Err(ApiError::bad_request("the applied object has no metadata.name")),
    }
}

/// Applies `body` (a patch of type `ty`) to `object`.
pub fn apply(object: &Value, ty: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let mut out = object.clone();
    match ty {
        PatchType::Apply => {
            let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
            let p = applied_object(body, kind, name)?;
            out = super::strategic::apply(object, &p)
                .map_err(|e| ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string()))?;
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not JSON: {e}")))?;
            merge(&mut out, &p);
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not JSON: {e}")))?;
            out = super::strategic::apply(object, &p)
                .map_err(|e| ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string()))?;
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is not a list of operations: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the JSON patch does not apply: {e}"),
                )
            })?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn rfc_7386_examples() {
        // The RFC's appendix A, a few of its cases.
        for (t, p, want) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ] {
            let mut x = t.clone();
            merge(&mut x, &p);
            assert_eq!(x, want, "{t} + {p}");
        }
    }

    #[test]
    fn labels_by_strategic_patch_and_lists_by_key() {
        let obj = json!({"metadata": {"name": "w", "labels": {"a": "1"}}, "spec": {"replicas": 2}});
        let out = apply(&obj, PatchType::Strategic, br#"{"metadata":{"labels":{"b":"2","a":null}}}"#).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        let out = apply(&obj, PatchType::Strategic, br#"{"spec":{"template":{"spec":{"containers":[{"name":"c"}]}}}}"#)
            .unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["name"], "c");
        let e =
            apply(&obj, PatchType::Strategic, br#"{"spec":{"template":{"spec":{"containers":[{}]}}}}"#).unwrap_err();
        assert_eq!(e.code.as_u16(), 422, "an element without its merge key");
        let out = apply(&obj, PatchType::Json, br#"[{"op":"replace","path":"/spec/replicas","value":5}]"#).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        let e = apply(&obj, PatchType::Json, br#"[{"op":"remove","path":"/spec/nothing"}]"#).unwrap_err();
        assert_eq!(e.code.as_u16(), 422);
        assert!(PatchType::from_content_type("application/apply-patch+cbor").is_err());
        // Server-side apply: YAML, merged by key like a strategic patch.
        let obj = json!({"kind": "Deployment", "metadata": {"name": "w", "labels": {"a": "1"}},
                         "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let body = b"kind: Deployment\nmetadata: {name: w, labels: {b: '2'}}\nspec:\n  template: {spec: {containers: [{name: c, image: y}]}}\n";
        let out = apply(&obj, PatchType::from_content_type("application/apply-patch+yaml").unwrap(), body).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "c", "image": "y"}]));
        let e = apply(&obj, PatchType::Apply, b"kind: Service\nmetadata: {name: w}\n").unwrap_err();
        assert!(e.to_string().contains("applies a Deployment, the body is a Service"), "{e}");
        let e = apply(&obj, PatchType::Apply, b"metadata: {name: v}\n").unwrap_err();
        assert!(e.to_string().contains("does not match the URL"), "{e}");
    }

    fn small_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![Just(Value::Null), any::<i8>().prop_map(|i| json!(i)), "[a-c]".prop_map(Value::from)];
        leaf.prop_recursive(3, 16, 3, |inner| {
            proptest::collection::btree_map("[a-c]", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        /// Where no list is involved, a strategic merge patch and a merge
        /// patch must agree (Kubernetes' strategic merge is a merge patch
        /// on maps).
        #[test]
        fn strategic_equals_merge_without_lists(t in small_json(), p in small_json()) {
            // A strategic patch is an object (Kubernetes refuses others).
            prop_assume!(p.is_object());
            let body = serde_json::to_vec(&p).unwrap();
            let a = apply(&t, PatchType::Merge, &body).unwrap();
            let b = apply(&t, PatchType::Strategic, &body).unwrap();
            prop_assert_eq!(a, b);
        }

        /// A merge patch is idempotent.
        #[test]
        fn merging_twice_is_merging_once(t in small_json(), p in small_json()) {
            let mut once = t.clone();
            merge(&mut once, &p);
            let mut twice = once.clone();
            merge(&mut twice, &p);
            prop_assert_eq!(once, twice);
        }
    }
}
