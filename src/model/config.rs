//! ConfigMaps, and what a pod takes from them: environment variables
//! (`env[].valueFrom.configMapKeyRef`, `envFrom[].configMapRef`) and files
//! (`volumes[].configMap`). Pure: from a pod spec and a lookup of the
//! desired state's ConfigMaps to values and file contents, or to the error
//! a pod waits with (`CreateContainerConfigError`, naming what is missing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;

use super::types::{ConfigMap, ConfigMapVolumeSource, Container, PodSpec};

/// Kubernetes' limit on a ConfigMap's data.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The reason a pod waits with when what it references is missing.
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";

/// Finds a ConfigMap by (namespace, name) in the desired state.
pub type Lookup<'a> = &'a dyn Fn(&str, &str) -> Option<Arc<ConfigMap>>;

/// What a pod references that does not exist (the message names it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A ConfigMap key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn valid_key(k: &str) -> Result<(), String> {
    if k.is_empty() || k.len() > 253 {
        return Err(format!("a key must be 1 to 253 characters (got {})", k.len()));
    }
    if k == "." || k == ".." {
        return Err(format!("{k:?} is not a valid key"));
    }
    if let Some(c) = k.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!(
            "{k:?} has {c:?}: a key may hold only letters, digits, '-', '_' and '.' (a file name, not a path)"
        ));
    }
    Ok(())
}

/// The problems of a ConfigMap, as (field path, message).
pub fn check(cm: &ConfigMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut size = 0usize;
    for (k, v) in &cm.data {
        if let Err(m) = valid_key(k) {
            out.push((format!("data.{k}"), m));
        }
        size += k.len() + v.len();
    }
    for (k, v) in &cm.binary_data {
        if let Err(m) = valid_key(k) {
            out.push((format!("binaryData.{k}"), m));
        }
        if cm.data.contains_key(k) {
            out.push((format!("binaryData.{k}"), "the key is also in data: a key may be in one of them only".into()));
        }
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(b) => size += k.len() + b.len(),
            Err(e) => out.push((format!("binaryData.{k}"), format!("not base64: {e}"))),
        }
    }
    if size > MAX_CONFIG_BYTES {
        out.push(("data".into(), format!("{size} bytes: a ConfigMap holds at most {MAX_CONFIG_BYTES} (1 MiB)")));
    }
    out
}

/// The value of `key` in `cm`, as bytes.
fn value_of(cm: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = cm.data.get(key) {
        return Some(v.as_bytes().to_vec());
    }
    cm.binary_data.get(key).and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
}

fn missing(ns: &str, name: &str) -> ConfigError {
    ConfigError(format!("configmap {name:?} not found in namespace {ns:?}"))
}

fn missing_key(ns: &str, name: &str, key: &str) -> ConfigError {
    ConfigError(format!("couldn't find key {key:?} in ConfigMap {ns}/{name}"))
}

/// One variable of a container's environment from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub name: String,
    pub value: String,
    /// Written in the spec (`value`): `$(VAR)` is expanded in it. Values
    /// taken from a ConfigMap are used as they are, as in Kubernetes.
    pub literal: bool,
}

/// Container `c`'s variables in Kubernetes' order: `envFrom` first, then
/// `env` (a later one overrides an earlier one of the same name).
pub fn container_env(ns: &str, c: &Container, lookup: Lookup<'_>) -> Result<Vec<EnvEntry>, ConfigError> {
    let mut out = Vec::new();
    for from in &c.env_from {
        let Some(r) = &from.config_map_ref else { continue };
        let Some(cm) = lookup(ns, &r.name) else {
            if r.optional == Some(true) {
                continue;
            }
            return Err(missing(ns, &r.name));
        };
        let prefix = from.prefix.as_deref().unwrap_or_default();
        for (k, v) in &cm.data {
            out.push(EnvEntry { name: format!("{prefix}{k}"), value: v.clone(), literal: false });
        }
    }
    for e in &c.env {
        let Some(r) = e.value_from.as_ref().and_then(|f| f.config_map_key_ref.as_ref()) else {
            out.push(EnvEntry { name: e.name.clone(), value: e.value.clone(), literal: true });
            continue;
        };
        let optional = r.optional == Some(true);
        let value = match lookup(ns, &r.name) {
            None if optional => continue,
            None => return Err(missing(ns, &r.name)),
            Some(cm) => match value_of(&cm, &r.key) {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None if optional => continue,
                None => return Err(missing_key(ns, &r.name, &r.key)),
            },
        };
        out.push(EnvEntry { name: e.name.clone(), value, literal: false });
    }
    Ok(out)
}

/// The files of a `configMap` volume: relative path → contents. Every key,
/// or only `items` (each key to its path). An optional volume whose
/// ConfigMap is missing is empty.
pub fn volume_files(
    ns: &str,
    v: &ConfigMapVolumeSource,
    lookup: Lookup<'_>,
) -> Result<BTreeMap<String, Vec<u8>>, ConfigError> {
    let optional = v.optional == Some(true);
    let Some(cm) = lookup(ns, &v.name) else {
        return if optional { Ok(BTreeMap::new()) } else { Err(missing(ns, &v.name)) };
    };
    let mut out = BTreeMap::new();
    if v.items.is_empty() {
        for k in cm.data.keys().chain(cm.binary_data.keys()) {
            if let Some(b) = value_of(&cm, k) {
                out.insert(k.clone(), b);
            }
        }
        return Ok(out);
    }
    for it in &v.items {
        match value_of(&cm, &it.key) {
            Some(b) => {
                out.insert(it.path.clone(), b);
            }
            None if optional => {}
            None => return Err(missing_key(ns, &v.name, &it.key)),
        }
    }
    Ok(out)
}

/// Every ConfigMap a pod spec references (env, envFrom, volumes).
pub fn references(spec: &PodSpec) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in &spec.containers {
        out.extend(c.env_from.iter().filter_map(|f| f.config_map_ref.as_ref()).map(|r| r.name.clone()));
        out.extend(
            c.env
                .iter()
                .filter_map(|e| e.value_from.as_ref().and_then(|f| f.config_map_key_ref.as_ref()))
                .map(|r| r.name.clone()),
        );
    }
    out.extend(spec.volumes.iter().filter_map(|v| v.config_map.as_ref()).map(|c| c.name.clone()));
    out
}

/// A volume item's path: relative, without `..`, not empty.
pub fn valid_item_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("a path is needed".into());
    }
    if p.starts_with('/') {
        return Err(format!("{p:?} must be relative (it is a file in the volume)"));
    }
    if p.split('/').any(|s| s == ".." || s.is_empty()) {
        return Err(format!("{p:?} may not contain '..' or empty parts"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
