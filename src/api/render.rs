//! Objects, pods and nodes rendered as Kubernetes JSON.
//!
//! Pure: from the desired state, the plan and the cluster view to the JSON
//! that `kubectl` habits expect (`metadata`, `spec`, `status`, lists as
//! `{kind: ...List, items}`). Pods are not stored objects in Shoal: they are
//! derived from Deployments and Jobs, placed, and reported by their owners.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::membership::view::{ClusterView, NodeView};
use crate::model::node::NodeName;
use crate::model::pods::{DesiredPod, job_progress};
use crate::model::quantity::{format_cpu_millis, format_memory_bytes};
use crate::model::status::{ContainerState, Phase, PodStatus};
use crate::model::{Kind, Object};
use crate::placement::plan::PlanView;
use crate::state::{Snapshot, StoredObject};

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix)).to_string()
}

/// A list in Kubernetes' shape.
pub fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {}, "items": items})
}

/// The status a pod's owner (or, during a handoff, another node) reports.
pub fn pod_report<'a>(view: &'a ClusterView, id: &str, owner: Option<&str>) -> Option<&'a PodStatus> {
    // Rank the live copies: a ready copy first (during a handoff the old
    // owner's copy serves until the new one is ready), the owner's before
    // others, a terminating copy last.
    let rank = |node: &str, s: &PodStatus| (s.ready && !s.terminating, !s.terminating, Some(node) == owner);
    let mut best: Option<((bool, bool, bool), &PodStatus)> = None;
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        if let Some(s) = n.pods.get(id) {
            let r = rank(&n.info.name, s);
            if best.as_ref().is_none_or(|(b, _)| r > *b) {
                best = Some((r, s));
            }
        }
    }
    best.map(|(_, s)| s)
}

fn container_state_json(s: &ContainerState) -> Value {
    match s {
        ContainerState::Waiting { reason, message } => {
            let mut m = json!({"reason": reason});
            if !message.is_empty() {
                m["message"] = json!(message);
            }
            json!({"waiting": m})
        }
        ContainerState::Running { started_at } => {
            json!({"running": {"startedAt": rfc3339(*started_at)}})
        }
        ContainerState::Terminated { exit_code, reason, signal, finished_at } => {
            let mut m = json!({"exitCode": exit_code, "reason": reason, "finishedAt": rfc3339(*finished_at)});
            if let Some(sig) = signal {
                m["signal"] = json!(sig);
            }
            json!({"terminated": m})
        }
    }
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// A pod as Kubernetes JSON.
pub fn pod_json(
    d: &DesiredPod,
    owner: Option<&str>,
    pending: Option<&str>,
    report: Option<&PodStatus>,
    created: &str,
) -> Value {
    let mut containers: Vec<Value> = Vec::new();
    for c in &d.spec.containers {
        let mut cj = serde_json::to_value(c).unwrap_or(Value::Null);
        if let (Some(r), Some(ports)) = (report, cj.get_mut("ports").and_then(|p| p.as_array_mut())) {
            for p in ports {
                let cp = p.get("containerPort").and_then(|v| v.as_u64()).unwrap_or(0);
                if let Some(m) = r.ports.iter().find(|m| u64::from(m.container_port) == cp) {
                    p["hostPort"] = json!(m.host_port);
                }
            }
        }
        containers.push(cj);
    }
    let node = report.map(|r| r.node.clone()).or(owner.map(String::from));
    let mut spec = json!({
        "containers": containers,
        "restartPolicy": d.spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
    });
    if let Some(n) = &node {
        spec["nodeName"] = json!(n);
    }
    if !d.spec.node_selector.is_empty() {
        spec["nodeSelector"] = json!(d.spec.node_selector);
    }
    let mut status = Map::new();
    let mut conditions = vec![condition(
        "PodScheduled",
        owner.is_some() || report.is_some(),
        if owner.is_none() && report.is_none() { "Unschedulable" } else { "" },
        pending.unwrap_or(""),
    )];
    match report {
        Some(r) => {
            status.insert("phase".into(), json!(r.phase.as_str()));
            conditions.push(condition("Ready", r.ready, "", ""));
            status.insert("hostIP".into(), json!(r.host_ip));
            status.insert("podIP".into(), json!(r.host_ip));
            if r.started_at > 0 {
                status.insert("startTime".into(), json!(rfc3339(r.started_at)));
            }
            let cs: Vec<Value> = r
                .containers
                .iter()
                .map(|c| {
                    // A peer's gossiped summary has no image: the spec's is the one it runs.
                    let image = if c.image.is_empty() { spec_image(d, &c.name) } else { c.image.clone() };
                    let mut v = json!({
                        "name": c.name, "ready": c.ready, "restartCount": c.restart_count,
                        "state": container_state_json(&c.state), "image": image,
                        // Required by strict clients; Shoal does not track image digests.
                        "imageID": "",
                    });
                    if let Some(l) = &c.last_state {
                        v["lastState"] = container_state_json(l);
                    }
                    if !c.container_id.is_empty() {
                        v["containerID"] = json!(c.container_id);
                    }
                    v
                })
                .collect();
            status.insert("containerStatuses".into(), json!(cs));
            if r.terminating {
                status.insert("reason".into(), json!("Terminating"));
            } else if !r.reason.is_empty() {
                status.insert("reason".into(), json!(r.reason));
                status.insert("message".into(), json!(r.message));
            }
        }
        None => {
            status.insert("phase".into(), json!("Pending"));
            conditions.push(condition("Ready", false, "", ""));
            if let Some(why) = pending {
                status.insert("reason".into(), json!("Unschedulable"));
                status.insert("message".into(), json!(why));
            } else if let Some(o) = owner {
                status.insert("reason".into(), json!("ContainerCreating"));
                status.insert("message".into(), json!(format!("waiting for {o} to start it")));
            }
        }
    }
    status.insert("conditions".into(), json!(conditions));
    let mut labels = (*d.labels).clone();
    labels.insert("shoal.dev/pod-template-hash".into(), d.template_hash.clone());
    match d.owner.kind {
        crate::model::Kind::Deployment => {
            labels.insert("pod-template-hash".into(), d.template_hash.clone());
        }
        crate::model::Kind::DaemonSet => {
            labels.insert("controller-revision-hash".into(), d.template_hash.clone());
        }
        _ => {}
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": d.name,
            "namespace": d.namespace,
            // One run of the replica on one node: a pod that moves is a new pod.
            "uid": pod_uid(d, owner),
            "labels": labels,
            // A finished Job pod's report has no start time: it is dated by its end.
            "creationTimestamp": report
                .filter(|r| r.started_at > 0)
                .map(|r| rfc3339(r.started_at))
                .unwrap_or_else(|| created.to_string()),
            "ownerReferences": [owner_ref(d)],
        },
        "spec": spec,
        "status": Value::Object(status),
    });
    if let Some(i) = d.labels.get(crate::model::pods::COMPLETION_INDEX_KEY) {
        pod["metadata"]["annotations"] = json!({crate::model::pods::COMPLETION_INDEX_KEY: i});
    }
    pod
}

/// The image a container of `d` runs, as its node reports it: the image, or
/// the command of a process container.
fn spec_image(d: &DesiredPod, container: &str) -> String {
    d.spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .map(|c| c.image.clone().unwrap_or_else(|| c.command.join(" ")))
        .unwrap_or_default()
}

/// A pod's uid: its replica, template and node.
fn pod_uid(d: &DesiredPod, node: Option<&str>) -> String {
    super::rollouts::rs_uid(&format!("{}@{}", d.id(), node.unwrap_or("")), &d.template_hash)
}

/// Who owns a pod: a Job, or the ReplicaSet of its Deployment's revision.
fn owner_ref(d: &DesiredPod) -> Value {
    if d.owner.kind == crate::model::Kind::Deployment {
        return json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": crate::model::revision::revision_name(&d.owner.name, &d.template_hash),
            "uid": super::rollouts::rs_uid(&d.owner.uid, &d.template_hash), "controller": true,
        });
    }
    json!({"apiVersion": d.owner.kind.api_version(), "kind": d.owner.kind.as_str(),
           "name": d.owner.name, "uid": d.owner.uid, "controller": true})
}

/// Every pod in `namespace` (all when `None`): desired pods, pods still
/// stopping somewhere, and completed Job pods.
pub fn pods(snapshot: &Snapshot, plan: &PlanView, view: &ClusterView, namespace: Option<&str>) -> Vec<Value> {
    let mut out: BTreeMap<(String, String), Value> = BTreeMap::new();
    let created_of = |d: &DesiredPod| -> String {
        let kind = d.owner.kind;
        let key = crate::model::ObjectKey { kind, namespace: d.namespace.clone(), name: d.owner.name.clone() };
        snapshot.get(&key).and_then(|o| o.object.meta().creation_timestamp.clone()).unwrap_or_default()
    };
    let mut desired_ids = BTreeSet::new();
    for d in plan.desired.iter().filter(|d| namespace.is_none_or(|ns| d.namespace == ns)) {
        let id = d.id();
        desired_ids.insert(id.clone());
        let owner = plan.placement.owners.get(&id).map(NodeName::as_str);
        let pending = plan.placement.pending.get(&id).map(String::as_str);
        let report = pod_report(view, &id, owner);
        out.insert((d.namespace.clone(), d.name.clone()), pod_json(d, owner, pending, report, &created_of(d)));
    }
    // Pods no longer desired but still reported (stopping, or finished Job pods).
    // Their owners, by uid (a pod's name may be shortened: the uid is sure).
    let templates: BTreeMap<&str, &StoredObject> = snapshot
        .objects
        .values()
        .filter(|o| matches!(o.object.kind(), Kind::Deployment | Kind::Job | Kind::DaemonSet))
        .filter_map(|o| Some((o.object.meta().uid.as_deref()?, &**o)))
        .collect();
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        for (id, s) in n.pods.iter() {
            if desired_ids.contains(id) || namespace.is_some_and(|ns| s.namespace != ns) {
                continue;
            }
            let key = (s.namespace.clone(), s.name.clone());
            if out.contains_key(&key) {
                continue;
            }
            let d = templates.get(s.owner_uid.as_str()).and_then(|o| ghost_pod(&o.object, s));
            if let Some(d) = d {
                out.insert(key, pod_json(&d, Some(&n.info.name), None, Some(s), ""));
            } else {
                out.insert(key, orphan_pod_json(s));
            }
        }
    }
    // Finished Job pods, from their recorded results: those that succeeded,
    // and those that failed for good (their index given up, or the Job over).
    for o in snapshot.of_kind(Kind::Job) {
        let Object::Job(j) = &o.object else { continue };
        let ns = j.metadata.namespace.clone().unwrap_or_default();
        if namespace.is_some_and(|x| x != ns) {
            continue;
        }
        let uid = j.metadata.uid.clone().unwrap_or_default();
        let progress = job_progress(j, snapshot.job_facts());
        for i in 0..j.spec.completions.unwrap_or(1).max(1) {
            let name = crate::model::pods::job_pod_name(&j.metadata.name, i as u32);
            let Some(r) = snapshot.pod_results.get(&(ns.clone(), name.clone())) else {
                continue;
            };
            let failed_for_good = progress.failed_indexes.contains(&(i as u32)) || progress.failed();
            let done = r.succeeded || (r.failures > 0 && failed_for_good);
            if !done || r.job_uid != uid || out.contains_key(&(ns.clone(), name.clone())) {
                continue;
            }
            let mut st = PodStatus {
                namespace: ns.clone(),
                name: name.clone(),
                node: r.node.clone(),
                owner_uid: uid.clone(),
                phase: if r.succeeded { Phase::Succeeded } else { Phase::Failed },
                ..Default::default()
            };
            for c in &j.spec.template.spec.containers {
                st.containers.push(crate::model::status::ContainerStatus {
                    name: c.name.clone(),
                    state: ContainerState::Terminated {
                        exit_code: r.exit_code.unwrap_or(0),
                        reason: if r.succeeded { "Completed" } else { "Error" }.into(),
                        signal: None,
                        finished_at: 0,
                    },
                    ..Default::default()
                });
            }
            if let Some(d) = ghost_pod(&o.object, &st) {
                out.insert((ns.clone(), name), pod_json(&d, Some(&r.node), None, Some(&st), &r.finished_at));
            }
        }
    }
    out.into_values().collect()
}

/// A `DesiredPod` for a pod that is no longer desired (for rendering only).
fn ghost_pod(owner: &Object, s: &PodStatus) -> Option<DesiredPod> {
    if let Object::DaemonSet(ds) = owner {
        let m = &ds.metadata;
        let owner = crate::model::pods::OwnerRef {
            kind: Kind::DaemonSet,
            name: m.name.clone(),
            uid: m.uid.clone().unwrap_or_default(),
        };
        let ns = m.namespace.clone().unwrap_or_default();
        let mut d = crate::model::pods::daemon_pod(
            &ns,
            owner,
            &s.node,
            0,
            &crate::model::pods::Template::of(&ds.spec.template),
            &s.template_hash,
        );
        d.name = s.name.clone();
        return Some(d);
    }
    let index: u32 = s.name.rsplit_once('-')?.1.parse().ok()?;
    if let Object::Job(j) = owner {
        // A Job whose pods are all done yields no desired pod: build one.
        let m = &j.metadata;
        let o = crate::model::pods::OwnerRef {
            kind: Kind::Job,
            name: m.name.clone(),
            uid: m.uid.clone().unwrap_or_default(),
        };
        let ns = m.namespace.clone().unwrap_or_default();
        let indexed = crate::model::pods::is_indexed(j);
        let mut d = crate::model::pods::job_pod(
            &ns,
            o,
            index,
            &crate::model::pods::Template::of(&j.spec.template),
            &s.template_hash,
            indexed,
        );
        d.name = s.name.clone();
        return Some(d);
    }
    let none = crate::model::pods::Results::new();
    let no_ends = crate::model::pods::JobEnds::new();
    let facts = crate::model::pods::JobFacts { results: &none, ends: &no_ends };
    let mut d = crate::model::pods::desired_pods([owner], facts).into_iter().next()?;
    d.index = index;
    d.name = s.name.clone();
    d.template_hash = s.template_hash.clone();
    Some(d)
}

fn orphan_pod_json(s: &PodStatus) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": s.name, "namespace": s.namespace, "creationTimestamp": rfc3339(s.started_at)},
        "spec": {"nodeName": s.node, "containers": s.containers.iter().map(|c| json!({"name": c.name})).collect::<Vec<_>>()},
        "status": {
            "phase": s.phase.as_str(), "hostIP": s.host_ip, "podIP": s.host_ip, "reason": "Terminating",
            "conditions": [condition("Ready", s.ready, "", "")],
            "containerStatuses": s.containers.iter().map(|c| json!({
                "name": c.name, "ready": c.ready, "restartCount": c.restart_count, "state": container_state_json(&c.state),
                "image": c.image, "imageID": "",
            })).collect::<Vec<_>>(),
        },
    })
}

/// A stored object with its status and who last wrote it.
pub fn object_json(o: &StoredObject, plan: &PlanView, view: &ClusterView, snapshot: &Snapshot) -> Value {
    let mut v = o.object.to_json();
    // Shoal keeps who last wrote an object, not which fields each manager
    // owns: an empty field set (clients such as kubectl's apply read
    // `fieldsV1` and need it present).
    v["metadata"]["managedFields"] = json!([{
        "manager": o.origin, "operation": "Update", "time": o.stamp.rfc3339(),
        "fieldsType": "FieldsV1", "fieldsV1": {},
    }]);
    let key = o.object.key();
    let mine: Vec<&DesiredPod> = plan
        .desired
        .iter()
        .filter(|d| d.namespace == key.namespace && d.owner.name == key.name && d.owner.kind == key.kind)
        .collect();
    let reports: Vec<Option<&PodStatus>> = mine
        .iter()
        .map(|d| pod_report(view, &d.id(), plan.placement.owners.get(&d.id()).map(NodeName::as_str)))
        .collect();
    match &o.object {
        Object::Deployment(_) => {
            let p = plan.progress.get(&(key.namespace.clone(), key.name.clone()));
            v["status"] = super::rollouts::deployment_status(p, &key.name);
            if let Some(p) = p.filter(|p| p.revision > 0) {
                v["metadata"]["annotations"][crate::model::revision::REVISION_ANNOTATION] =
                    json!(p.revision.to_string());
            }
        }
        Object::Job(j) => {
            let p = job_progress(j, snapshot.job_facts());
            let active = reports
                .iter()
                .filter(|r| r.is_some_and(|r| r.phase == Phase::Running || r.phase == Phase::Pending))
                .count();
            let mut st = json!({
                "active": active, "succeeded": p.succeeded, "failed": p.failures,
                "startTime": j.metadata.creation_timestamp,
            });
            let mut conds = Vec::new();
            if p.complete() {
                conds.push(condition("Complete", true, "", ""));
                if let Some(t) = crate::model::pods::job_finished_at(j, snapshot.job_facts()) {
                    st["completionTime"] = json!(t);
                }
            } else if let Some(f) = p.failure() {
                conds.push(condition("Failed", true, &f.reason, &f.message));
            }
            // Shoal's: the nodes that keep its deadline and TTL.
            if crate::placement::jobs::has_timer(j) {
                st["keeperNodes"] = json!(crate::placement::jobs::keepers(&key.namespace, &key.name, &plan.plan.nodes));
            }
            if crate::model::pods::is_indexed(j) {
                st["completedIndexes"] = json!(crate::model::pods::index_ranges(&p.completed_indexes));
                if p.per_index.is_some() {
                    st["failedIndexes"] = json!(crate::model::pods::index_ranges(&p.failed_indexes));
                }
            }
            st["conditions"] = json!(conds);
            v["status"] = st;
        }
        Object::DaemonSet(ds) => {
            let p = plan.daemons.get(&(key.namespace.clone(), key.name.clone()));
            v["status"] = daemonset_status(p, ds.metadata.generation.unwrap_or(1));
        }
        Object::CronJob(cj) => v["status"] = cronjob_status(cj, plan, snapshot),
        Object::Service(_) | Object::Namespace(_) | Object::ConfigMap(_) | Object::Secret(_) => {
            if matches!(o.object, Object::Namespace(_)) {
                v["status"] = json!({"phase": "Active"});
            }
        }
    }
    v
}

/// A CronJob's status as Kubernetes reports it (its active Jobs, the last
/// scheduled and the last successful time), plus Shoal's: which nodes fire
/// it and how many times were missed.
fn cronjob_status(cj: &crate::model::CronJob, plan: &PlanView, snapshot: &Snapshot) -> Value {
    use crate::placement::cron::{self, JobState};
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let jobs = cron::jobs_of(snapshot, cj);
    let active: Vec<Value> = jobs
        .iter()
        .filter(|j| j.state == JobState::Active)
        .map(|j| json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": j.name}))
        .collect();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let record = snapshot.cron_records.get(&(ns.clone(), cj.metadata.name.clone())).filter(|r| r.cronjob_uid == uid);
    let last = record.and_then(|r| r.last_schedule).into_iter().chain(jobs.iter().filter_map(|j| j.scheduled)).max();
    let mut st = json!({"active": active});
    if let Some(t) = last {
        st["lastScheduleTime"] = json!(crate::model::cron::rfc3339(t));
    }
    if let Some(t) = jobs.iter().filter(|j| j.state == JobState::Succeeded).filter_map(|j| j.finished_at.clone()).max()
    {
        st["lastSuccessfulTime"] = json!(t);
    }
    let key = cron::trigger_key(&ns, &cj.metadata.name);
    st["triggerNodes"] = json!(plan.plan.triggers.get(&key).cloned().unwrap_or_default());
    st["missedSchedules"] = json!(record.map_or(0, |r| r.missed));
    st
}

/// A DaemonSet's status as Kubernetes reports it, from this node's view.
fn daemonset_status(p: Option<&crate::placement::daemonsets::DaemonProgress>, generation: u64) -> Value {
    let Some(p) = p else {
        return json!({"desiredNumberScheduled": 0, "currentNumberScheduled": 0, "numberReady": 0,
                      "numberMisscheduled": 0, "updatedNumberScheduled": 0, "numberAvailable": 0,
                      "numberUnavailable": 0, "observedGeneration": generation});
    };
    let desired = p.nodes.len() as u32;
    let s = &p.status;
    json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": s.replicas.min(desired),
        "numberReady": s.ready,
        "numberMisscheduled": p.misscheduled,
        "updatedNumberScheduled": s.updated,
        "numberAvailable": s.available,
        "numberUnavailable": desired.saturating_sub(s.available),
        "observedGeneration": p.generation,
    })
}

/// The `default` namespace, which exists without being stored.
pub fn default_namespace_json() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}, "spec": {}, "status": {"phase": "Active"}})
}

/// A node as Kubernetes JSON (plus `status.state`: Ready/Suspect/Dead/Left).
pub fn node_json(
    n: &NodeView,
    schedulable: bool,
    maintenance: Option<crate::model::node::NodeMaintenance>,
    allocated: crate::model::pods::Resources,
    pod_count: usize,
) -> Value {
    let i = &n.info;
    let cordoned = maintenance.is_some_and(|m| m.unschedulable);
    let mut annotations = json!({"shoal.dev/generation": i.generation.to_string(), "shoal.dev/api-url": i.api_url});
    if let Some(m) = maintenance.filter(|m| m.unschedulable) {
        annotations["shoal.dev/maintenance"] = json!(if m.draining { "draining" } else { "cordoned" });
    } else if !schedulable {
        annotations["shoal.dev/maintenance"] = json!("settling");
    }
    let res = |r: crate::model::pods::Resources, pods: u32| json!({"cpu": format_cpu_millis(r.cpu_millis), "memory": format_memory_bytes(r.memory_bytes), "pods": pods.to_string()});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": i.name,
            "labels": i.labels,
            "creationTimestamp": rfc3339(i.started_at),
            "annotations": annotations,
        },
        "spec": {"unschedulable": cordoned || !schedulable},
        "status": {
            "state": n.state.as_str(),
            "stateSince": rfc3339(n.since),
            "conditions": [condition("Ready", n.state == crate::membership::view::NodeState::Ready, n.state.as_str(), "")],
            "addresses": [{"type": "InternalIP", "address": i.node_ip}, {"type": "Hostname", "address": i.hostname}],
            "capacity": res(i.capacity, i.max_pods),
            "allocatable": res(i.allocatable, i.max_pods),
            "allocated": {"cpu": format_cpu_millis(allocated.cpu_millis), "memory": format_memory_bytes(allocated.memory_bytes), "pods": pod_count.to_string()},
            // Every field Kubernetes' NodeSystemInfo requires (strict
            // clients such as the Python client refuse a node without
            // them); "" where a node does not gossip the fact.
            "nodeInfo": {
                "architecture": i.arch, "operatingSystem": i.os, "kubeletVersion": i.version,
                "containerRuntimeVersion": i.runtimes.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
                "containerRuntimes": i.runtimes.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "kubeProxyVersion": "", "kernelVersion": "", "osImage": "", "machineID": "", "systemUUID": "", "bootID": "",
            },
            // What the node itself reports running (a pod moving away counts
            // until its new copy is ready and the old one stopped).
            "shoal": {"pods": n.pods.iter().filter(|(_, s)| !s.terminating && matches!(s.phase, Phase::Pending | Phase::Running)).map(|(id, _)| id.clone()).collect::<Vec<_>>()},
        },
    })
}
