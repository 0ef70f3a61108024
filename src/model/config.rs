//! ConfigMaps and Secrets, and what a pod takes from them: environment
//! variables (`env[].valueFrom.configMapKeyRef` / `secretKeyRef`,
//! `envFrom[].configMapRef` / `secretRef`) and files (`volumes[].configMap`
//! / `secret`). Pure: from a pod spec and a lookup of the desired state's
//! values to variables and file contents, or to the error a pod waits with
//! (`CreateContainerConfigError`, naming what is missing, never a value).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;

use super::types::{ConfigMap, Container, KeyToPath, PodSpec, Secret, Volume};

/// Kubernetes' limit on a ConfigMap's data.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The reason a pod waits with when what it references is missing.
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";

/// Where a pod's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    ConfigMap,
    Secret,
}

/// A ConfigMap's or a Secret's values as a pod reads them.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Values {
    pub entries: BTreeMap<String, Vec<u8>>,
    /// The keys `envFrom` turns into variables: a ConfigMap's `data` (not
    /// its `binaryData`, as in Kubernetes), every key of a Secret.
    pub env_keys: BTreeSet<String>,
}

/// `Debug` names the keys only: a Secret's values are never printed.
impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values").field("keys", &self.entries.keys().collect::<Vec<_>>()).finish()
    }
}

impl Values {
    pub fn of_config_map(cm: &ConfigMap) -> Values {
        let mut entries: BTreeMap<String, Vec<u8>> =
            cm.data.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
        for (k, v) in &cm.binary_data {
            if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(v) {
                entries.insert(k.clone(), b);
            }
        }
        Values { entries, env_keys: cm.data.keys().cloned().collect() }
    }
    pub fn of_secret(data: BTreeMap<String, Vec<u8>>) -> Values {
        Values { env_keys: data.keys().cloned().collect(), entries: data }
    }
}

/// Finds a ConfigMap's or Secret's values by (namespace, name) in the
/// desired state: `Ok(None)` when there is none, `Err` when it cannot be
/// read here (a Secret on a node without the cluster data key).
pub type Lookup<'a> = &'a dyn Fn(Source, &str, &str) -> Result<Option<Arc<Values>>, ConfigError>;

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

/// The limit on a Secret's data: 700 KiB (Kubernetes allows 1 MiB), so
/// that sealed and base64-encoded it fits the 1 MiB every peer accepts.
pub const MAX_SECRET_BYTES: usize = 700 << 10;

/// The problems of a Secret as a client sent it, as (field path, message).
/// Messages never quote a value.
pub fn check_secret(s: &Secret) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.sealed.is_some() && !(s.data.is_empty() && s.string_data.is_empty()) {
        out.push(("sealed".into(), "is set by the cluster: give the values under data or stringData only".into()));
    }
    let mut size = 0usize;
    for (k, v) in &s.data {
        if let Err(m) = valid_key(k) {
            out.push((format!("data.{k}"), m));
        }
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(b) => size += k.len() + b.len(),
            Err(_) => out.push((
                format!("data.{k}"),
                "is not base64: give data values base64-encoded, or the text under stringData".into(),
            )),
        }
    }
    for (k, v) in &s.string_data {
        if let Err(m) = valid_key(k) {
            out.push((format!("stringData.{k}"), m));
        }
        size += k.len() + v.len();
    }
    if let Some(t) = s.type_.as_deref()
        && (t.is_empty() || t.len() > 253)
    {
        out.push(("type".into(), "must be 1 to 253 characters (Opaque by default)".into()));
    }
    if size > MAX_SECRET_BYTES {
        out.push(("data".into(), format!("{size} bytes: a Secret holds at most {MAX_SECRET_BYTES} (700 KiB; it is stored sealed and base64-encoded)")));
    }
    out
}

/// A Secret's data as bytes: `data` (base64) with `stringData` over it, as
/// Kubernetes merges them on write. `None` when a value is not base64.
pub fn secret_bytes(s: &Secret) -> Option<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for (k, v) in &s.data {
        out.insert(k.clone(), base64::engine::general_purpose::STANDARD.decode(v).ok()?);
    }
    for (k, v) in &s.string_data {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    Some(out)
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

fn kind_word(source: Source) -> (&'static str, &'static str) {
    match source {
        Source::ConfigMap => ("configmap", "ConfigMap"),
        Source::Secret => ("secret", "Secret"),
    }
}

fn missing(source: Source, ns: &str, name: &str) -> ConfigError {
    ConfigError(format!("{} {name:?} not found in namespace {ns:?}", kind_word(source).0))
}

fn missing_key(source: Source, ns: &str, name: &str, key: &str) -> ConfigError {
    ConfigError(format!("couldn't find key {key:?} in {} {ns}/{name}", kind_word(source).1))
}

/// One variable of a container's environment from its spec.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub name: String,
    pub value: String,
    /// Written in the spec (`value`): `$(VAR)` is expanded in it. Values
    /// taken from a ConfigMap or Secret are used as they are, as in Kubernetes.
    pub literal: bool,
}

/// `Debug` hides values taken from ConfigMaps and Secrets.
impl std::fmt::Debug for EnvEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.literal { self.value.as_str() } else { "<from a ConfigMap or Secret>" };
        f.debug_struct("EnvEntry").field("name", &self.name).field("value", &value).finish()
    }
}

/// Container `c`'s variables in Kubernetes' order: `envFrom` first, then
/// `env` (a later one overrides an earlier one of the same name).
pub fn container_env(ns: &str, c: &Container, lookup: Lookup<'_>) -> Result<Vec<EnvEntry>, ConfigError> {
    let mut out = Vec::new();
    for from in &c.env_from {
        let (source, r) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (Source::ConfigMap, r),
            (None, Some(r)) => (Source::Secret, r),
            (None, None) => continue,
        };
        let Some(values) = lookup(source, ns, &r.name)? else {
            if r.optional == Some(true) {
                continue;
            }
            return Err(missing(source, ns, &r.name));
        };
        let prefix = from.prefix.as_deref().unwrap_or_default();
        for k in &values.env_keys {
            let Some(v) = values.entries.get(k) else { continue };
            out.push(EnvEntry {
                name: format!("{prefix}{k}"),
                value: String::from_utf8_lossy(v).into_owned(),
                literal: false,
            });
        }
    }
    for e in &c.env {
        let from = e.value_from.as_ref();
        let (source, r) = match from.map(|f| (&f.config_map_key_ref, &f.secret_key_ref)) {
            Some((Some(r), _)) => (Source::ConfigMap, r),
            Some((None, Some(r))) => (Source::Secret, r),
            _ => {
                out.push(EnvEntry { name: e.name.clone(), value: e.value.clone(), literal: true });
                continue;
            }
        };
        let optional = r.optional == Some(true);
        let value = match lookup(source, ns, &r.name)? {
            None if optional => continue,
            None => return Err(missing(source, ns, &r.name)),
            Some(values) => match values.entries.get(&r.key) {
                Some(v) => String::from_utf8_lossy(v).into_owned(),
                None if optional => continue,
                None => return Err(missing_key(source, ns, &r.name, &r.key)),
            },
        };
        out.push(EnvEntry { name: e.name.clone(), value, literal: false });
    }
    Ok(out)
}

/// A volume made of a ConfigMap's or a Secret's keys.
#[derive(Debug, Clone, Copy)]
pub struct VolumeRef<'a> {
    pub source: Source,
    pub name: &'a str,
    pub items: &'a [KeyToPath],
    pub optional: bool,
    /// File mode of its files (Kubernetes' default 0644).
    pub mode: u32,
}

/// What volume `v` takes from a ConfigMap or a Secret, if anything.
pub fn volume_ref(v: &Volume) -> Option<VolumeRef<'_>> {
    let mode = |m: Option<i64>| m.map_or(0o644, |m| (m & 0o777) as u32);
    if let Some(c) = &v.config_map {
        return Some(VolumeRef {
            source: Source::ConfigMap,
            name: &c.name,
            items: &c.items,
            optional: c.optional == Some(true),
            mode: mode(c.default_mode),
        });
    }
    v.secret.as_ref().map(|s| VolumeRef {
        source: Source::Secret,
        name: &s.secret_name,
        items: &s.items,
        optional: s.optional == Some(true),
        mode: mode(s.default_mode),
    })
}

/// The files of a `configMap` or `secret` volume: relative path →
/// contents. Every key, or only `items` (each key to its path). An
/// optional volume whose object is missing is empty.
pub fn volume_files(ns: &str, v: &VolumeRef<'_>, lookup: Lookup<'_>) -> Result<BTreeMap<String, Vec<u8>>, ConfigError> {
    let Some(values) = lookup(v.source, ns, v.name)? else {
        return if v.optional { Ok(BTreeMap::new()) } else { Err(missing(v.source, ns, v.name)) };
    };
    if v.items.is_empty() {
        return Ok(values.entries.clone());
    }
    let mut out = BTreeMap::new();
    for it in v.items {
        match values.entries.get(&it.key) {
            Some(b) => {
                out.insert(it.path.clone(), b.clone());
            }
            None if v.optional => {}
            None => return Err(missing_key(v.source, ns, v.name, &it.key)),
        }
    }
    Ok(out)
}

/// Every ConfigMap and Secret a pod spec references (env, envFrom, volumes).
pub fn references(spec: &PodSpec) -> BTreeSet<(Source, String)> {
    let mut out = BTreeSet::new();
    for c in &spec.containers {
        for f in &c.env_from {
            out.extend(f.config_map_ref.iter().map(|r| (Source::ConfigMap, r.name.clone())));
            out.extend(f.secret_ref.iter().map(|r| (Source::Secret, r.name.clone())));
        }
        for f in c.env.iter().filter_map(|e| e.value_from.as_ref()) {
            out.extend(f.config_map_key_ref.iter().map(|r| (Source::ConfigMap, r.name.clone())));
            out.extend(f.secret_key_ref.iter().map(|r| (Source::Secret, r.name.clone())));
        }
    }
    out.extend(spec.volumes.iter().filter_map(volume_ref).map(|v| (v.source, v.name.to_string())));
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
