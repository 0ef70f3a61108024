//! Apply, create, replace and delete as decisions over a snapshot.
//!
//! Given what the cluster holds and what the client sent, decide per object
//! `created`, `configured` or `unchanged`, fill in cluster-set metadata
//! (uid, creationTimestamp, generation), enforce optimistic concurrency
//! (`metadata.resourceVersion`), and return the changes to write. The caller
//! writes them in one transaction: all or nothing. Errors are domain errors
//! (`ApplyError`); the API turns them into HTTP statuses.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::entry::kinds;
use super::{Key, Snapshot, Stamp, object_key};
use std::sync::Arc;

use crate::model::parse::Parsed;
use crate::model::pods::template_hash;
use crate::model::revision::{CHANGE_CAUSE_ANNOTATION, Revision, RolloutParams};
use crate::model::types::{Manifest, PodTemplateSpec};
use crate::model::{Kind, Object, ObjectKey, ObjectMeta};
use crate::util::new_uid;

/// Why an apply, create, replace or delete is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "namespace {namespace:?} not found (for {key}); create it first (`shoal apply` a Namespace, or put one in the same apply)"
    )]
    NamespaceNotFound { namespace: String, key: ObjectKey },
    #[error("{key} has been modified since resourceVersion {given} (now {current}); read it again and retry")]
    Conflict { key: ObjectKey, given: String, current: String },
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error("the default namespace cannot be deleted")]
    DefaultNamespace,
    #[error("cannot encode {key}: {message}")]
    Encode { key: ObjectKey, message: String },
    #[error("{0} is immutable (immutable: true): its data cannot change; delete it and create it again")]
    Immutable(ObjectKey),
    #[error(
        "{key} is {size} bytes as stored (at most {max}); make it smaller (a Secret is stored sealed and base64-encoded, about 1.4 times its data)"
    )]
    TooLarge { key: ObjectKey, size: usize, max: usize },
}

/// An object's stored bytes, refused beyond what every peer accepts.
fn encode(obj: &Object, key: &ObjectKey) -> Result<Vec<u8>, ApplyError> {
    let bytes = serde_json::to_vec(&obj.to_json())
        .map_err(|e| ApplyError::Encode { key: key.clone(), message: e.to_string() })?;
    let max = super::entry::MAX_VALUE_BYTES;
    if bytes.len() > max {
        return Err(ApplyError::TooLarge { key: key.clone(), size: bytes.len(), max });
    }
    Ok(bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
        }
    }
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectResult {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
}

/// How strictly existence is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create or update (`shoal apply`).
    Apply,
    /// Must not exist (REST POST).
    Create,
    /// Must exist (REST PUT).
    Replace,
}

pub type Changes = Vec<(Key, Option<Vec<u8>>)>;

/// Plans writing `objects`. Errors name the object and what to do.
pub fn plan_apply(
    snapshot: &Snapshot,
    objects: Vec<Parsed>,
    now: Stamp,
    mode: Mode,
) -> Result<(Vec<ObjectResult>, Changes), ApplyError> {
    let mut results = Vec::new();
    let mut changes = Vec::new();
    let new_namespaces: BTreeSet<String> =
        objects.iter().filter(|p| p.object.kind() == Kind::Namespace).map(|p| p.object.meta().name.clone()).collect();
    for p in objects {
        let mut obj = p.object;
        let key = obj.key();
        if key.kind.namespaced()
            && !snapshot.namespace_exists(&key.namespace)
            && !new_namespaces.contains(&key.namespace)
        {
            return Err(ApplyError::NamespaceNotFound { namespace: key.namespace.clone(), key });
        }
        let existing = snapshot.get(&key);
        if let Some(rv) = obj.meta().resource_version.clone() {
            let current = existing.map(|e| e.stamp.resource_version());
            if current.as_deref() != Some(rv.as_str()) {
                return Err(ApplyError::Conflict {
                    key,
                    given: rv,
                    current: current.unwrap_or_else(|| "deleted".into()),
                });
            }
        }
        match (mode, existing) {
            (Mode::Create, Some(_)) => return Err(ApplyError::AlreadyExists(key)),
            (Mode::Replace, None) => return Err(ApplyError::NotFound(key)),
            _ => {}
        }
        if let (Some(e), Object::ConfigMap(new)) = (existing, &obj)
            && let Object::ConfigMap(old) = &e.object
            && old.immutable == Some(true)
            && (old.data != new.data || old.binary_data != new.binary_data || new.immutable != Some(true))
        {
            return Err(ApplyError::Immutable(key));
        }
        if let (Some(e), Object::Secret(new)) = (existing, &obj)
            && let Object::Secret(old) = &e.object
            && old.immutable == Some(true)
            && (old.sealed != new.sealed || new.immutable != Some(true))
        {
            return Err(ApplyError::Immutable(key));
        }
        let outcome = match existing {
            Some(e) if e.object.declared() == obj.declared() => Outcome::Unchanged,
            Some(e) => {
                let same_spec = e.object.spec_json() == obj.spec_json();
                let m = obj.meta_mut();
                m.uid = e.object.meta().uid.clone();
                m.creation_timestamp = e.object.meta().creation_timestamp.clone();
                let generation = e.object.meta().generation.unwrap_or(1);
                m.generation = Some(if same_spec { generation } else { generation + 1 });
                Outcome::Configured
            }
            None => {
                let m = obj.meta_mut();
                m.uid = Some(new_uid());
                m.creation_timestamp = Some(now.rfc3339());
                m.generation = Some(1);
                Outcome::Created
            }
        };
        if outcome != Outcome::Unchanged {
            obj.meta_mut().resource_version = None;
            changes.push((object_key(&key), Some(encode(&obj, &key)?)));
            match &obj {
                Object::Deployment(d) => {
                    let history = RolloutParams::of(&d.spec).history_limit;
                    let owner =
                        Owner { kind: Kind::Deployment, meta: &d.metadata, template: &d.spec.template, history };
                    changes.extend(revision_changes(snapshot, owner, now)?);
                }
                Object::DaemonSet(d) => {
                    let history = RolloutParams::of_daemonset(&d.spec, 0).history_limit;
                    let owner = Owner { kind: Kind::DaemonSet, meta: &d.metadata, template: &d.spec.template, history };
                    changes.extend(revision_changes(snapshot, owner, now)?);
                }
                _ => {}
            }
        }
        results.push(ObjectResult {
            kind: key.kind.as_str().into(),
            namespace: key.namespace,
            name: key.name,
            outcome,
        });
    }
    Ok((results, changes))
}

/// The write of an object the cluster made itself (a CronJob's Job), with
/// its metadata already complete.
pub fn put_made(obj: &Object) -> Result<(Key, Option<Vec<u8>>), ApplyError> {
    let key = obj.key();
    Ok((object_key(&key), Some(encode(obj, &key)?)))
}

/// Tombstones that also remove what an object owns: a Namespace's objects,
/// a Job's recorded pod results.
pub fn plan_delete(snapshot: &Snapshot, key: &ObjectKey) -> Result<(ObjectResult, Changes), ApplyError> {
    let Some(existing) = snapshot.get(key) else {
        return Err(ApplyError::NotFound(key.clone()));
    };
    if key.kind == Kind::Namespace && key.name == crate::model::DEFAULT_NAMESPACE {
        return Err(ApplyError::DefaultNamespace);
    }
    let mut changes: Changes = vec![(object_key(key), None)];
    match &existing.object {
        Object::Namespace(_) => {
            for k in snapshot.objects.keys().filter(|k| k.namespace == key.name) {
                changes.push((object_key(k), None));
            }
            for (ns, name) in snapshot.pod_results.keys().filter(|(ns, _)| *ns == key.name) {
                changes.push((Key::new(kinds::POD_RESULT, ns.clone(), name.clone()), None));
            }
            for (ns, name) in snapshot.cron_records.keys().filter(|(ns, _)| *ns == key.name) {
                changes.push((Key::new(kinds::CRON_RECORD, ns.clone(), name.clone()), None));
            }
            for (ns, name) in snapshot.job_ends.keys().filter(|(ns, _)| *ns == key.name) {
                changes.push((Key::new(kinds::JOB_END, ns.clone(), name.clone()), None));
            }
        }
        Object::Job(j) => changes.extend(job_results(snapshot, j)),
        Object::CronJob(cj) => {
            // Its Jobs go with it (Kubernetes' cascading delete), and its record.
            let uid = cj.metadata.uid.clone().unwrap_or_default();
            for o in snapshot.of_kind(Kind::Job) {
                if let Object::Job(j) = &o.object
                    && j.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                    && crate::model::cron::owned_by(j, &uid)
                {
                    changes.push((object_key(&o.object.key()), None));
                    changes.extend(job_results(snapshot, j));
                }
            }
            if snapshot.cron_records.contains_key(&(key.namespace.clone(), key.name.clone())) {
                changes.push((Key::new(kinds::CRON_RECORD, key.namespace.clone(), key.name.clone()), None));
            }
        }
        Object::Deployment(Manifest { metadata: m, .. }) | Object::DaemonSet(Manifest { metadata: m, .. }) => {
            for (name, _) in revisions_of(snapshot, &key.namespace, &m.name, m.uid.as_deref()) {
                changes.push((Key::new(kinds::REVISION, key.namespace.clone(), name), None));
            }
        }
        _ => {}
    }
    let res = ObjectResult {
        kind: key.kind.as_str().into(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        outcome: Outcome::Deleted,
    };
    Ok((res, changes))
}

/// Tombstones of the recorded pod results of Job `j`.
fn job_results(snapshot: &Snapshot, j: &crate::model::Job) -> Changes {
    let ns = j.metadata.namespace.clone().unwrap_or_default();
    let uid = j.metadata.uid.clone().unwrap_or_default();
    let mut changes: Changes = snapshot
        .pod_results
        .iter()
        .filter(|((n, _), r)| *n == ns && r.job_uid == uid)
        .map(|((n, name), _)| (Key::new(kinds::POD_RESULT, n.clone(), name.clone()), None))
        .collect();
    if snapshot.job_ends.contains_key(&(ns.clone(), j.metadata.name.clone())) {
        changes.push((Key::new(kinds::JOB_END, ns, j.metadata.name.clone()), None));
    }
    changes
}

/// The revisions of Deployment or DaemonSet `name` (of its current uid),
/// oldest first.
pub fn revisions_of(snapshot: &Snapshot, ns: &str, name: &str, uid: Option<&str>) -> Vec<(String, Arc<Revision>)> {
    let mut v: Vec<(String, Arc<Revision>)> = snapshot
        .revisions
        .iter()
        .filter(|((n, _), r)| n == ns && r.deployment == name && Some(r.deployment_uid.as_str()) == uid)
        .map(|((_, k), r)| (k.clone(), r.clone()))
        .collect();
    v.sort_by_key(|(_, r)| r.revision);
    v
}

/// A workload whose pod templates are kept as revisions.
struct Owner<'a> {
    kind: Kind,
    meta: &'a ObjectMeta,
    template: &'a PodTemplateSpec,
    /// Old revisions kept (`revisionHistoryLimit`).
    history: u32,
}

/// What writing a Deployment or DaemonSet does to its revisions: its
/// template becomes the newest revision (a new one, or an old one brought
/// back, as `rollout undo` does), and revisions beyond
/// `revisionHistoryLimit` are deleted.
fn revision_changes(snapshot: &Snapshot, d: Owner<'_>, now: Stamp) -> Result<Changes, ApplyError> {
    let ns = d.meta.namespace.clone().unwrap_or_default();
    let uid = d.meta.uid.clone().unwrap_or_default();
    let hash = template_hash(d.template);
    let mine = revisions_of(snapshot, &ns, &d.meta.name, Some(&uid));
    let newest = mine.iter().map(|(_, r)| r.revision).max().unwrap_or(0);
    let mut changes = Changes::new();
    let current = mine.iter().find(|(_, r)| r.hash == hash);
    if current.is_none_or(|(_, r)| r.revision < newest) {
        let r = Revision {
            deployment: d.meta.name.clone(),
            deployment_uid: uid,
            hash: hash.clone(),
            revision: newest + 1,
            template: d.template.clone(),
            created: now.rfc3339(),
            change_cause: d.meta.annotations.get(CHANGE_CAUSE_ANNOTATION).cloned(),
            owner_kind: (d.kind != Kind::Deployment).then_some(d.kind),
        };
        let name = r.key_name();
        let bytes = serde_json::to_vec(&r).map_err(|e| ApplyError::Encode {
            key: ObjectKey { kind: d.kind, namespace: ns.clone(), name: name.clone() },
            message: e.to_string(),
        })?;
        changes.push((Key::new(kinds::REVISION, ns.clone(), name), Some(bytes)));
    }
    let keep = d.history as usize;
    let old: Vec<&(String, Arc<Revision>)> = mine.iter().filter(|(_, r)| r.hash != hash).collect();
    for (name, _) in old.iter().take(old.len().saturating_sub(keep)) {
        changes.push((Key::new(kinds::REVISION, ns.clone(), name.clone()), None));
    }
    Ok(changes)
}
