//! Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`),
//! what `kubectl apply`, `set image`, `set env`, `label` and `patch`
//! send by default. Pure.
//!
//! It is a JSON merge patch (RFC 7386) except for lists and directives:
//!
//! - lists whose Kubernetes field has a merge key are merged element by
//!   element (containers by `name`, a container's ports by
//!   `containerPort`, a Service's ports by `port`, env by `name`, volume
//!   mounts by `mountPath`...; see `strategy`); primitive lists with the
//!   merge strategy (`finalizers`) are unions; every other list is
//!   replaced;
//! - directives: `$patch: replace|delete|merge` on a map or a list
//!   element, `$retainKeys`, `$setElementOrder/FIELD` and
//!   `$deleteFromPrimitiveList/FIELD`, as client-go's `strategicpatch`
//!   writes them.
//!
//! The list keys are Kubernetes' (`patchMergeKey` in its Go types), for the
//! fields of the kinds Shoal serves.

use serde_json::{Map, Value};

/// A patch this cannot apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid strategic merge patch at {path}: {why}")]
pub struct StrategicError {
    pub path: String,
    pub why: String,
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Elements are maps merged by this key.
    Merge(&'static str),
    /// A list of scalars merged as a set.
    MergePrimitive,
    /// The patch's list replaces the object's.
    Replace,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The strategy of the list at `path` (field names from the object's root,
/// list elements not counted).
pub fn strategy(path: &[String]) -> Strategy {
    let Some(field) = path.last().map(String::as_str) else { return Strategy::Replace };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str()).unwrap_or("");
    match field {
        f if CONTAINER_LISTS.contains(&f) => Strategy::Merge("name"),
        "volumes" | "imagePullSecrets" | "env" => Strategy::Merge("name"),
        "volumeMounts" => Strategy::Merge("mountPath"),
        "volumeDevices" => Strategy::Merge("devicePath"),
        "hostAliases" => Strategy::Merge("ip"),
        "topologySpreadConstraints" => Strategy::Merge("topologyKey"),
        "ownerReferences" => Strategy::Merge("uid"),
        "conditions" => Strategy::Merge("type"),
        "finalizers" if parent == "metadata" => Strategy::MergePrimitive,
        "ports" if CONTAINER_LISTS.contains(&parent) => Strategy::Merge("containerPort"),
        // A Service's ports: spec.ports.
        "ports" if path.len() == 2 && parent == "spec" => Strategy::Merge("port"),
        _ => Strategy::Replace,
    }
}

fn err(path: &[String], why: impl Into<String>) -> StrategicError {
    StrategicError { path: if path.is_empty() { "(root)".into() } else { path.join(".") }, why: why.into() }
}

/// Applies `patch` to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, StrategicError> {
    let mut out = original.clone();
    let mut path = Vec::new();
    match patch {
        Value::Object(p) => {
            if !out.is_object() {
                out = Value::Object(Map::new());
            }
            if !merge_map(&mut out, p, &mut path)? {
                return Ok(Value::Object(Map::new()));
            }
            Ok(out)
        }
        _ => Err(err(&path, "a strategic merge patch is a JSON object")),
    }
}

fn without_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip(v))).collect()
}

/// A value with every directive removed (for values that replace).
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(without_directives(m)),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| {
                    !e.get("$patch").is_some_and(|p| p == "replace" && e.as_object().is_some_and(|m| m.len() == 1))
                })
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Merges patch map `p` into `target` (a map). Returns false if the map
/// is to be deleted (`$patch: delete`).
fn merge_map(target: &mut Value, p: &Map<String, Value>, path: &mut Vec<String>) -> Result<bool, StrategicError> {
    match p.get("$patch").map(|v| v.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            *target = Value::Object(without_directives(p));
            return Ok(true);
        }
        Some(Some("delete")) => return Ok(false),
        Some(other) => return Err(err(path, format!("unknown $patch directive {other:?}"))),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return Ok(true) };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Object(pm) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                if !merge_map(slot, pm, path)? {
                    t.remove(k);
                }
            }
            Value::Array(pl) => {
                let current = t.remove(k).unwrap_or(Value::Array(Vec::new()));
                let merged = merge_list(current, pl, path)?;
                t.insert(k.clone(), merged);
            }
            scalar => {
                t.insert(k.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    // Directives about fields, after the fields merged.
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v.as_array().ok_or_else(|| err(path, format!("{k} must be a list")))?;
            if let Some(Value::Array(list)) = t.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().ok_or_else(|| err(path, format!("{k} must be a list")))?;
            path.push(field.to_string());
            let key = match strategy(path) {
                Strategy::Merge(key) => Some(key),
                _ => None,
            };
            path.pop();
            if let Some(Value::Array(list)) = t.get_mut(field) {
                reorder(list, order, key);
            }
        } else if k == "$retainKeys" {
            let keep: Vec<&str> = v
                .as_array()
                .ok_or_else(|| err(path, "$retainKeys must be a list"))?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            t.retain(|name, _| keep.contains(&name.as_str()));
        } else if k.starts_with('$') && k != "$patch" {
            return Err(err(path, format!("unknown directive {k:?}")));
        }
    }
    Ok(true)
}

/// Puts `list`'s elements in the order `order` names (by `key`, or by
/// value for scalars); the ones it does not name keep their order, after.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let id = |v: &Value| match key {
        Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
        None => v.clone(),
    };
    let mut rest: Vec<Value> = std::mem::take(list);
    for o in order {
        let want = id(o);
        if let Some(i) = rest.iter().position(|e| id(e) == want) {
            list.push(rest.remove(i));
        }
    }
    list.extend(rest);
}

fn merge_list(current: Value, patch: &[Value], path: &mut Vec<String>) -> Result<Value, StrategicError> {
    let strat = strategy(path);
    // `[{"$patch": "replace"}, ...]`: the rest replaces the list.
    let replace = patch.iter().any(|e| e.get("$patch").is_some_and(|p| p == "replace"));
    if replace || strat == Strategy::Replace {
        return Ok(strip(&Value::Array(patch.to_vec())));
    }
    let mut list = match current {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    match strat {
        Strategy::MergePrimitive => {
            for e in patch {
                if !list.contains(e) {
                    list.push(e.clone());
                }
            }
        }
        Strategy::Merge(key) => {
            for e in patch {
                let Value::Object(pm) = e else {
                    return Err(err(path, format!("elements must be maps with the merge key {key:?}")));
                };
                let Some(k) = pm.get(key) else {
                    return Err(err(path, format!("an element has no merge key {key:?}: {e}")));
                };
                let at = list.iter().position(|x| x.get(key) == Some(k));
                if pm.get("$patch").is_some_and(|p| p == "delete") {
                    if let Some(i) = at {
                        list.remove(i);
                    }
                    continue;
                }
                match at {
                    Some(i) => {
                        if !merge_map(&mut list[i], pm, path)? {
                            list.remove(i);
                        }
                    }
                    None => {
                        // A new element goes through the same merge (its
                        // own lists by their keys, its directives obeyed).
                        let mut fresh = Value::Null;
                        if merge_map(&mut fresh, pm, path)? {
                            list.push(fresh);
                        }
                    }
                }
            }
        }
        Strategy::Replace => {}
    }
    Ok(Value::Array(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Value {
        json!({"metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "v1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "side", "image": "s1"}]}}}})
    }

    #[test]
    fn containers_merge_by_name_and_their_lists_by_their_keys() {
        // What `kubectl set image deploy/web web=v2` sends.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "v2"}]}}}});
        let out = apply(&deploy(), &p).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!((cs[0]["image"].as_str(), cs[1]["image"].as_str()), (Some("v2"), Some("s1")));
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2, "untouched fields stay");
        // `kubectl set env deploy/web B=3 C=4`.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}});
        let out = apply(&deploy(), &p).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        // A port by containerPort; a container removed by $patch: delete.
        let p = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "ports": [{"containerPort": 80, "name": "web"}]},
            {"name": "side", "$patch": "delete"}]}}}});
        let out = apply(&deploy(), &p).unwrap();
        let cs = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["ports"], json!([{"containerPort": 80, "name": "web"}]));
    }

    #[test]
    fn kubectl_apply_patches_with_directives() {
        // Shaped as kubectl apply computes it when a manifest drops the
        // sidecar, adds an env var, and reorders.
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"name": "web", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}, {"name": "D"}],
                            "env": [{"name": "D", "value": "4"}]},
                           {"name": "side", "$patch": "delete"}]}}},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"app": null, "tier": "x"}}});
        let out = apply(&deploy(), &p).unwrap();
        let env: Vec<&str> = out["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(env, ["B", "A", "D"]);
        assert_eq!(out["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        assert_eq!(out["metadata"]["labels"], json!({"tier": "x"}));
    }

    #[test]
    fn replace_directives_and_plain_lists() {
        let p = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}}}});
        let out = apply(&deploy(), &p).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "o"}]));
        // A list without a merge key (a command) is replaced.
        let orig = json!({"spec": {"template": {"spec": {"containers": [{"name": "w", "command": ["a", "b"]}]}}}});
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "w", "command": ["c"]}]}}}});
        assert_eq!(apply(&orig, &p).unwrap()["spec"]["template"]["spec"]["containers"][0]["command"], json!(["c"]));
        // A map replaced whole; $retainKeys.
        let p = json!({"spec": {"template": {"$patch": "replace", "spec": {}}}});
        assert_eq!(apply(&deploy(), &p).unwrap()["spec"]["template"], json!({"spec": {}}));
        let p = json!({"spec": {"$retainKeys": ["template"], "replicas": 5}});
        assert!(apply(&deploy(), &p).unwrap()["spec"].get("replicas").is_none());
        // A Service's ports merge by port.
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let p = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        assert_eq!(apply(&svc, &p).unwrap()["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}, {"port": 443}]));
    }

    #[test]
    fn a_patch_without_lists_is_the_merge_patch_it_equals() {
        let p = json!({"metadata": {"labels": {"tier": "front", "app": null}}, "spec": {"replicas": 4}});
        let mut merged = deploy();
        super::super::patch::merge(&mut merged, &p);
        assert_eq!(apply(&deploy(), &p).unwrap(), merged);
    }

    fn container() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        ("[a-d]", proptest::option::of("[x-z]"), proptest::collection::vec(("[A-C]", "[0-2]"), 0..3)).prop_map(
            |(name, image, env)| {
                let mut c = json!({"name": name});
                if let Some(i) = image {
                    c["image"] = json!(i);
                }
                if !env.is_empty() {
                    c["env"] = json!(env.into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>());
                }
                c
            },
        )
    }

    proptest::proptest! {
        /// Applying a patch twice is applying it once; containers stay
        /// unique by name; every container the patch names is there, with
        /// the image the patch gives it; containers it does not name are
        /// untouched.
        #[test]
        fn list_merges_are_idempotent_and_keyed(
            orig in proptest::collection::vec(container(), 0..4),
            patch in proptest::collection::vec(container(), 0..4),
        ) {
            let dedup = |v: Vec<Value>| {
                let mut seen = std::collections::BTreeSet::new();
                v.into_iter().filter(|c| seen.insert(c["name"].as_str().unwrap().to_string())).collect::<Vec<_>>()
            };
            let (orig, patch) = (dedup(orig), dedup(patch));
            let o = json!({"spec": {"containers": orig}});
            let p = json!({"spec": {"containers": patch}});
            let once = apply(&o, &p).unwrap();
            proptest::prop_assert_eq!(&apply(&once, &p).unwrap(), &once);
            let out = once["spec"]["containers"].as_array().unwrap();
            let names: Vec<&str> = out.iter().map(|c| c["name"].as_str().unwrap()).collect();
            let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
            proptest::prop_assert_eq!(names.len(), unique.len());
            for pc in &patch {
                let got = out.iter().find(|c| c["name"] == pc["name"]).unwrap();
                if let Some(i) = pc.get("image") {
                    proptest::prop_assert_eq!(&got["image"], i);
                }
            }
            for oc in &orig {
                if !patch.iter().any(|pc| pc["name"] == oc["name"]) {
                    proptest::prop_assert!(out.contains(oc));
                }
            }
        }
    }

    #[test]
    fn bad_patches_say_where() {
        let p = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let e = apply(&deploy(), &p).unwrap_err();
        assert_eq!(e.path, "spec.template.spec.containers");
        assert!(e.why.contains("merge key \"name\""), "{e}");
        assert!(apply(&deploy(), &json!([1])).is_err());
        let e = apply(&deploy(), &json!({"spec": {"$patch": "explode"}})).unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
    }
}
