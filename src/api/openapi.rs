//! OpenAPI documents, as kubectl and the client libraries fetch them
//! before they write (`/openapi/v3`, `/openapi/v3/apis/apps/v1`...).
//!
//! What they learn here is what the server does: one document per group
//! version with every path `server::router` serves for it, each operation
//! tagged with its kind (`x-kubernetes-group-version-kind`) and action,
//! and the write options Shoal honours (`fieldValidation`, `fieldManager`).
//! Because PATCH names `fieldValidation`, kubectl leaves validation to the
//! server (`--validate=strict` is its default) instead of checking the
//! object against schemas itself, and sends `fieldValidation=Strict`, which
//! the server's parser applies (see `handlers`).
//!
//! Schemas describe each kind's top level and its `metadata`; the rest of
//! an object is open (`x-kubernetes-preserve-unknown-fields`), since
//! Shoal's manifest parser is what checks it. PATCH's request body names
//! the merge and JSON patch types but not the strategic merge patch,
//! which the server takes all the same: kubectl would otherwise compute
//! strategic patches from these open schemas (every list atomic); without
//! it, kubectl computes them from its compiled-in types, whose list keys
//! (containers by name...) `patch` merges by.
//!
//! `/openapi/v2` answers a valid, empty document (protobuf, as kubectl
//! 1.27 asks for it before it looks at v3).
//!
//! Pure builders from `discovery::RESOURCES`; the handlers are at the end.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::discovery::{RESOURCES, Resource, groups};
use super::error::ApiError;

/// The group versions with documents, as `/openapi/v3` names them.
pub fn group_versions() -> Vec<String> {
    let mut out = vec!["api/v1".to_string()];
    out.extend(groups().into_iter().map(|g| format!("apis/{g}/v1")));
    out.push("apis/autoscaling/v1".into());
    out
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// The schema name Kubernetes gives a kind (`io.k8s.api.apps.v1.Deployment`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let g = if group.is_empty() { "core" } else { group };
    format!("io.k8s.api.{g}.{version}.{kind}")
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query("fieldManager", "the name of the actor making the change (recorded, not enforced)"),
        query(
            "fieldValidation",
            "Ignore, Warn or Strict (the default): what to do with fields Shoal does not know; \
             Warn and Strict answer them in Warning headers, Strict refuses unknown top-level \
             and metadata fields",
        ),
    ]
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn operation(
    action: &str,
    id: String,
    gvk_of: &Value,
    schema: &str,
    params: Vec<Value>,
    body: Option<&[&str]>,
) -> Value {
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk_of,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference(schema)}}}},
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(types) = body {
        let content: Map<String, Value> =
            types.iter().map(|t| (t.to_string(), json!({"schema": reference(schema)}))).collect();
        op["requestBody"] = json!({"required": true, "content": content});
    }
    op
}

const PATCH_TYPES: &[&str] = &["application/json-patch+json", "application/merge-patch+json"];

fn camel(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// The paths of one resource (and its subresources), as routed.
fn paths_of(r: &Resource, out: &mut Map<String, Value>) {
    let prefix = if r.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", r.group, r.version) };
    let (plural, sub) = match r.name.split_once('/') {
        Some((p, s)) => (p, Some(s)),
        None => (r.name, None),
    };
    let (og, ov) = r.object_gv.unwrap_or((r.group, r.version));
    let schema = schema_name(og, ov, r.kind);
    let g = gvk(og, ov, r.kind);
    let scope =
        if r.namespaced { format!("{prefix}/namespaces/{{namespace}}/{plural}") } else { format!("{prefix}/{plural}") };
    let ns_param = || if r.namespaced { vec![path_param("namespace")] } else { vec![] };
    let id = |verb: &str, what: &str| format!("{verb}{}{}{}", camel(r.group), camel(r.version), what);
    let has = |v: &str| r.verbs.contains(&v);
    if let Some(sub) = sub {
        let mut item = Map::new();
        let what = format!("{}{}", r.kind, camel(sub));
        if has("get") {
            item.insert("get".into(), operation("get", id("read", &what), &g, &schema, vec![], None));
        }
        if has("update") {
            item.insert(
                "put".into(),
                operation("put", id("replace", &what), &g, &schema, write_params(), Some(&["application/json"])),
            );
        }
        if has("patch") {
            item.insert(
                "patch".into(),
                operation("patch", id("patch", &what), &g, &schema, write_params(), Some(PATCH_TYPES)),
            );
        }
        let mut params = ns_param();
        params.push(path_param("name"));
        item.insert("parameters".into(), Value::Array(params));
        out.insert(format!("{scope}/{{name}}/{sub}"), Value::Object(item));
        return;
    }
    let list_schema = format!("{schema}List");
    let mut coll = Map::new();
    if has("list") {
        let mut op = operation("list", id("list", r.kind), &g, &list_schema, vec![], None);
        op["parameters"] = json!([
            query("labelSelector", "a label selector"),
            query("fieldSelector", "a field selector (dotted paths)"),
            query("resourceVersion", "where a watch starts: a version this node's list or watch returned"),
            query("watch", "stream changes as newline-delimited events"),
            query("allowWatchBookmarks", "send BOOKMARK events"),
            query("timeoutSeconds", "end a watch after this long"),
        ]);
        coll.insert("get".into(), op);
    }
    if has("create") {
        coll.insert(
            "post".into(),
            operation("post", id("create", r.kind), &g, &schema, write_params(), Some(&["application/json"])),
        );
    }
    if !coll.is_empty() {
        coll.insert("parameters".into(), Value::Array(ns_param()));
        out.insert(scope.clone(), Value::Object(coll));
    }
    if r.namespaced && has("list") {
        let mut all = Map::new();
        all.insert(
            "get".into(),
            operation("list", id("list", &format!("{}ForAllNamespaces", r.kind)), &g, &list_schema, vec![], None),
        );
        out.insert(format!("{prefix}/{plural}"), Value::Object(all));
    }
    let mut item = Map::new();
    if has("get") {
        item.insert("get".into(), operation("get", id("read", r.kind), &g, &schema, vec![], None));
    }
    if has("update") {
        item.insert(
            "put".into(),
            operation("put", id("replace", r.kind), &g, &schema, write_params(), Some(&["application/json"])),
        );
    }
    if has("patch") {
        item.insert(
            "patch".into(),
            operation("patch", id("patch", r.kind), &g, &schema, write_params(), Some(PATCH_TYPES)),
        );
    }
    if has("delete") {
        item.insert(
            "delete".into(),
            operation("delete", id("delete", r.kind), &g, "io.k8s.apimachinery.pkg.apis.meta.v1.Status", vec![], None),
        );
    }
    if !item.is_empty() {
        let mut params = ns_param();
        params.push(path_param("name"));
        item.insert("parameters".into(), Value::Array(params));
        out.insert(format!("{scope}/{{name}}"), Value::Object(item));
    }
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn open(description: &str) -> Value {
    json!({"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": true})
}

/// Each kind's top-level fields beside apiVersion, kind and metadata.
fn top_fields(kind: &str) -> Vec<(&'static str, Value)> {
    match kind {
        "ConfigMap" => vec![
            ("data", json!({"type": "object", "additionalProperties": {"type": "string"}})),
            ("binaryData", json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}})),
            ("immutable", json!({"type": "boolean"})),
        ],
        "Secret" => vec![
            ("data", json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}})),
            ("stringData", json!({"type": "object", "additionalProperties": {"type": "string"}})),
            ("type", json!({"type": "string"})),
            ("immutable", json!({"type": "boolean"})),
        ],
        "Event" => ["type", "reason", "message", "lastTimestamp", "eventTime"]
            .into_iter()
            .map(|f| (f, json!({"type": "string"})))
            .chain([("involvedObject", open("the object the event is about")), ("source", open("who reported it"))])
            .collect(),
        _ => vec![
            ("spec", open("the desired state (checked by Shoal's manifest parser)")),
            ("status", open("what the cluster reports")),
        ],
    }
}

fn schemas_for(gv: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let meta_props = json!({
        "name": {"type": "string"}, "generateName": {"type": "string"}, "namespace": {"type": "string"},
        "uid": {"type": "string"}, "resourceVersion": {"type": "string"}, "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": {"type": "string", "format": "date-time"}, "deletionTimestamp": {"type": "string", "format": "date-time"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
    });
    out.insert(OBJECT_META.into(), json!({"type": "object", "properties": meta_props}));
    out.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"type": "object", "properties": {"status": {"type": "string"}, "message": {"type": "string"}, "reason": {"type": "string"}, "code": {"type": "integer"}}}),
    );
    let mut kinds: Vec<(&str, &str, &str)> = Vec::new();
    for r in RESOURCES {
        let (g, v) = r.object_gv.unwrap_or((r.group, r.version));
        let this = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
        if this == gv && !kinds.contains(&(g, v, r.kind)) {
            kinds.push((g, v, r.kind));
        }
    }
    if gv == "apis/autoscaling/v1" {
        kinds = vec![("autoscaling", "v1", "Scale")];
    }
    for (g, v, kind) in kinds {
        let name = schema_name(g, v, kind);
        let mut props = Map::new();
        props.insert("apiVersion".into(), json!({"type": "string"}));
        props.insert("kind".into(), json!({"type": "string"}));
        props.insert("metadata".into(), json!({"allOf": [reference(OBJECT_META)], "default": {}}));
        for (f, s) in top_fields(kind) {
            props.insert(f.into(), s);
        }
        out.insert(
            name.clone(),
            json!({"type": "object", "properties": props, "x-kubernetes-group-version-kind": [gvk(g, v, kind)]}),
        );
        out.insert(
            format!("{name}List"),
            json!({"type": "object", "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "items": {"type": "array", "items": reference(&name)},
            }, "x-kubernetes-group-version-kind": [gvk(g, v, &format!("{kind}List"))]}),
        );
    }
    out
}

/// The document of one group version (`api/v1`, `apis/apps/v1`...).
pub fn document(gv: &str) -> Option<Value> {
    if !group_versions().iter().any(|g| g == gv) {
        return None;
    }
    let mut paths = Map::new();
    for r in RESOURCES {
        let this =
            if r.group.is_empty() { format!("api/{}", r.version) } else { format!("apis/{}/{}", r.group, r.version) };
        if this == gv {
            paths_of(r, &mut paths);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Shoal", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas_for(gv)},
    }))
}

/// A short content hash for a document's URL, so clients cache it.
fn hash(v: &Value) -> String {
    blake3::hash(v.to_string().as_bytes()).to_hex()[..16].to_ascii_uppercase()
}

/// `/openapi/v3`: where each group version's document is.
pub fn root() -> Value {
    let paths: Map<String, Value> = group_versions()
        .into_iter()
        .filter_map(|gv| {
            let d = document(&gv)?;
            let url = format!("/openapi/v3/{gv}?hash={}", hash(&d));
            Some((gv, json!({"serverRelativeURL": url})))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v2` as protobuf (gnostic's `openapi_v2.Document`): swagger
/// "2.0" (field 1) and info (field 2: title 1, version 2); no paths, no
/// definitions.
pub fn v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"Shoal");
    field(&mut info, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

pub async fn get_v2() -> Response {
    let mut r = v2_protobuf().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        // What kube-openapi answers: the media type without the "@" Go cannot parse.
        HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    );
    r
}

pub async fn get_v3_root() -> axum::Json<Value> {
    axum::Json(root())
}

pub async fn get_v3(Path(gv): Path<String>, _q: RawQuery) -> Result<axum::Json<Value>, ApiError> {
    document(&gv).map(axum::Json).ok_or_else(|| {
        ApiError::not_found(format!("no OpenAPI document for {gv:?} (served: {})", group_versions().join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl's field-validation check looks for: a PATCH for the
    /// kind, tagged with it, taking `fieldValidation` in the query.
    fn patch_takes_field_validation(doc: &Value, group: &str, kind: &str) -> bool {
        doc["paths"].as_object().unwrap().values().any(|p| {
            p.get("patch").is_some_and(|op| {
                op["x-kubernetes-group-version-kind"]["kind"] == kind
                    && op["x-kubernetes-group-version-kind"]["group"] == group
                    && op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|q| q["name"] == "fieldValidation" && q["in"] == "query")
            })
        })
    }

    #[test]
    fn every_patchable_kind_declares_field_validation_where_kubectl_looks() {
        for r in RESOURCES.iter().filter(|r| r.verbs.contains(&"patch") && !r.name.contains('/')) {
            let gv = if r.group.is_empty() { "api/v1".to_string() } else { format!("apis/{}/v1", r.group) };
            let doc = document(&gv).unwrap();
            assert!(patch_takes_field_validation(&doc, r.group, r.kind), "{}", r.name);
        }
        let apps = document("apis/apps/v1").unwrap();
        let item = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert!(item["get"].is_object() && item["put"].is_object() && item["delete"].is_object());
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(scale["put"]["x-kubernetes-group-version-kind"], gvk("autoscaling", "v1", "Scale"));
        // ReplicaSets take no PATCH: none is advertised.
        assert!(apps["paths"]["/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"].get("patch").is_none());
        let core = document("api/v1").unwrap();
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"].is_object());
        // Each operation's schema is in the document.
        let schemas = apps["components"]["schemas"].as_object().unwrap();
        assert!(
            schemas.contains_key("io.k8s.api.apps.v1.Deployment")
                && schemas.contains_key("io.k8s.api.apps.v1.DeploymentList")
        );
        assert!(document("apis/networking.k8s.io/v1").is_none());
    }

    #[test]
    fn the_root_points_at_each_document_by_hash() {
        let r = root();
        for gv in group_versions() {
            let url = r["paths"][&gv]["serverRelativeURL"].as_str().unwrap();
            assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
        }
    }

    #[test]
    fn v2_is_a_well_formed_protobuf_document() {
        let b = v2_protobuf();
        // Field 1 (swagger), length 3, "2.0"; then field 2 (info).
        assert_eq!(&b[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(b[5], 0x12);
        assert_eq!(b[6] as usize, b.len() - 7);
    }
}
