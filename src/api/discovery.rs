//! Kubernetes API discovery: what kubectl and the client libraries ask
//! first to learn which resources a server has, in which group, under
//! which short names, with which verbs (`/api`, `/api/v1`, `/apis`,
//! `/apis/GROUP`, `/apis/GROUP/VERSION`).
//!
//! One table (`RESOURCES`) lists what Shoal serves; the documents are
//! built from it (pure), so a resource is advertised exactly as routed:
//! verbs name only what works (every list can be watched, see `watch`).

use axum::extract::Path;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::error::ApiError;

/// One resource (or subresource) Shoal serves.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural name, or `plural/sub` for a subresource.
    pub name: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// A subresource whose object is of another group/version (`Scale`).
    pub object_gv: Option<(&'static str, &'static str)>,
}

const CRUD: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Namespaces: no deletecollection (a cluster's namespaces go one by one).
const NAMESPACE: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// Secrets take no PATCH: a GET shows them without their values.
const READ: &[&str] = &["get", "list", "watch"];
const ALL: &[&str] = &["all"];

const fn r(
    group: &'static str,
    name: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
) -> Resource {
    Resource { group, version: "v1", name, kind, namespaced, verbs, short_names, categories, object_gv: None }
}

/// Everything Shoal serves, as routed in `server::router`.
pub const RESOURCES: &[Resource] = &[
    r("", "namespaces", "Namespace", false, NAMESPACE, &["ns"], &[]),
    r("", "nodes", "Node", false, &["get", "list", "patch", "watch"], &["no"], &[]),
    r("", "pods", "Pod", true, READ, &["po"], ALL),
    r("", "pods/log", "Pod", true, &["get"], &[], &[]),
    r("", "pods/exec", "PodExecOptions", true, &["get", "create"], &[], &[]),
    Resource { object_gv: Some(("policy", "v1")), ..r("", "pods/eviction", "Eviction", true, &["create"], &[], &[]) },
    r("", "services", "Service", true, CRUD, &["svc"], ALL),
    r("", "endpoints", "Endpoints", true, &["get"], &["ep"], &[]),
    r("", "configmaps", "ConfigMap", true, CRUD, &["cm"], &[]),
    r("", "secrets", "Secret", true, CRUD, &[], &[]),
    r("", "events", "Event", true, &["list", "watch"], &["ev"], &[]),
    r("apps", "deployments", "Deployment", true, CRUD, &["deploy"], ALL),
    Resource {
        object_gv: Some(("autoscaling", "v1")),
        ..r("apps", "deployments/scale", "Scale", true, &["get", "patch", "update"], &[], &[])
    },
    r("apps", "replicasets", "ReplicaSet", true, READ, &["rs"], ALL),
    r("apps", "daemonsets", "DaemonSet", true, CRUD, &["ds"], ALL),
    r("batch", "jobs", "Job", true, CRUD, &[], ALL),
    r("batch", "cronjobs", "CronJob", true, CRUD, &["cj"], ALL),
];

/// The API groups other than core, in order.
pub fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = RESOURCES.iter().map(|r| r.group).filter(|g| !g.is_empty()).collect();
    g.dedup();
    g
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

/// `/api`: the core group's versions. `server` is the address the client
/// reached (kubectl shows it, nothing relies on it).
pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

fn api_group(name: &str) -> Value {
    let gv = json!({"groupVersion": group_version(name, "v1"), "version": "v1"});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis`: every named group.
pub fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().into_iter().map(api_group).collect::<Vec<_>>()})
}

/// `/apis/GROUP/VERSION` (or `/api/v1` for the core group): its resources.
/// `None` for a group or version Shoal does not serve.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let mut v = json!({
                "name": r.name,
                // Kubernetes' singular names are the kind in lower case;
                // subresources have none.
                "singularName": if r.name.contains('/') { String::new() } else { r.kind.to_ascii_lowercase() },
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                v["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                v["categories"] = json!(r.categories);
            }
            if let Some((g, ver)) = r.object_gv {
                v["group"] = json!(g);
                v["version"] = json!(ver);
            }
            v
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

fn host(headers: &HeaderMap) -> String {
    headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string()
}

pub async fn get_api(headers: HeaderMap) -> axum::Json<Value> {
    axum::Json(api_versions(&host(&headers)))
}

pub async fn get_core_v1() -> Result<axum::Json<Value>, ApiError> {
    resource_list("", "v1").map(axum::Json).ok_or_else(|| ApiError::not_found("no core v1 resources"))
}

pub async fn get_apis() -> axum::Json<Value> {
    axum::Json(group_list())
}

pub async fn get_group(Path(group): Path<String>) -> Result<axum::Json<Value>, ApiError> {
    if groups().contains(&group.as_str()) {
        let mut v = api_group(&group);
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        return Ok(axum::Json(v));
    }
    Err(ApiError::not_found(format!("API group {group:?} is not served here (served: {})", groups().join(", "))))
}

pub async fn get_group_version(Path((group, version)): Path<(String, String)>) -> Result<axum::Json<Value>, ApiError> {
    resource_list(&group, &version).map(axum::Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "API group version {group}/{version} is not served here (served: v1, {})",
            groups().iter().map(|g| format!("{g}/v1")).collect::<Vec<_>>().join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectls_short_names_resolve_to_their_resources() {
        let find = |short: &str| RESOURCES.iter().find(|r| r.short_names.contains(&short)).map(|r| r.name);
        for (short, name) in [
            ("deploy", "deployments"),
            ("svc", "services"),
            ("po", "pods"),
            ("ns", "namespaces"),
            ("cm", "configmaps"),
            ("ds", "daemonsets"),
            ("cj", "cronjobs"),
        ] {
            assert_eq!(find(short), Some(name), "{short}");
        }
    }

    #[test]
    fn every_group_lists_its_resources_and_subresources() {
        assert_eq!(groups(), ["apps", "batch"]);
        let core = resource_list("", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let names: Vec<&str> =
            core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/log") && names.contains(&"nodes"));
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!(
            (&scale["group"], &scale["version"], &scale["kind"]),
            (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
        );
        let deploy = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments").unwrap();
        assert_eq!(deploy["categories"], json!(["all"]));
        assert!(resource_list("apps", "v2").is_none());
        assert!(resource_list("networking.k8s.io", "v1").is_none());
        let list = group_list();
        assert_eq!(list["groups"][0]["preferredVersion"]["groupVersion"], "apps/v1");
    }
}
