//! The pods the desired state asks for: `<owner>-<index>` for every replica of
//! a Deployment and every active completion index of a Job.
//!
//! Pure: from objects (and the recorded results of Job pods) to a sorted list
//! of `DesiredPod`s. Placement decides where each runs; the agent runs them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::quantity::{QuantityText, parse_cpu_millis, parse_memory_bytes};
use super::types::{Job, PodSpec, PodTemplateSpec};
use super::{Kind, Object};

/// Kubernetes' default grace period.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;
/// Kubernetes' default Job backoff limit.
pub const DEFAULT_BACKOFF_LIMIT: i64 = 6;

/// CPU (millicores) and memory (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Resources {
    pub fn saturating_add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }
    pub fn fits_within(self, o: Resources) -> bool {
        self.cpu_millis <= o.cpu_millis && self.memory_bytes <= o.memory_bytes
    }
}

/// What restarts a pod's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }
}

/// Which runtime a pod needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuntimeKind {
    Process,
    Docker,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// The object a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRef {
    pub kind: Kind,
    pub name: String,
    pub uid: String,
}

/// One pod the desired state asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    pub namespace: String,
    pub name: String,
    pub owner: OwnerRef,
    pub index: u32,
    pub labels: BTreeMap<String, String>,
    pub spec: Arc<PodSpec>,
    /// Changes whenever the template changes: a running pod with another hash
    /// is replaced.
    pub template_hash: String,
    pub requests: Resources,
    pub runtime: RuntimeKind,
    pub restart_policy: RestartPolicy,
    pub grace: Duration,
    pub fenced: bool,
    /// The one node this pod may run on (a DaemonSet's pod): placed there
    /// or nowhere, whatever the node's cordon.
    pub node: Option<String>,
}

impl DesiredPod {
    /// `namespace/name`, the pod's identity everywhere.
    pub fn id(&self) -> String {
        pod_id(&self.namespace, &self.name)
    }
}

/// `namespace/name`.
pub fn pod_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Outcome of one Job pod index, recorded in the desired state by the node
/// that ran it so that it survives that node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodResult {
    /// The Job's uid: a re-created Job with the same name starts over.
    pub job_uid: String,
    pub succeeded: bool,
    /// Failed attempts so far (count toward `backoffLimit`).
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub node: String,
    /// RFC 3339.
    #[serde(default)]
    pub finished_at: String,
}

/// Recorded Job pod outcomes keyed by (namespace, pod name); a persistent
/// map so that snapshots of the desired state share it.
pub type Results = imbl::OrdMap<(String, String), PodResult>;

/// Sum of container requests (a limit stands in for a missing request, as in
/// Kubernetes).
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        let get = |name: &str| c.resources.requests.get(name).or_else(|| c.resources.limits.get(name));
        let q = |v: Option<&QuantityText>, f: fn(&str) -> Result<u64, _>| {
            v.and_then(|q| f(&q.to_string()).ok()).unwrap_or(0)
        };
        total = total.saturating_add(Resources {
            cpu_millis: q(get("cpu"), parse_cpu_millis),
            memory_bytes: q(get("memory"), parse_memory_bytes),
        });
    }
    total
}

/// The runtime a pod needs: Docker if any container names an image.
pub fn runtime_of(spec: &PodSpec) -> RuntimeKind {
    if spec.containers.iter().any(|c| c.image.is_some()) { RuntimeKind::Docker } else { RuntimeKind::Process }
}

/// Short stable hash of a pod template (blake3 of its canonical JSON).
pub fn template_hash(t: &PodTemplateSpec) -> String {
    // serde_json writes struct fields in declaration order and maps sorted
    // (BTreeMap), so the bytes are canonical for a given template.
    let bytes = serde_json::to_vec(t).unwrap_or_default();
    blake3::hash(&bytes).to_hex()[..10].to_string()
}

/// Replica `index` of a Deployment's revision `hash` (`<name>-<hash>-<index>`).
pub fn deployment_pod(
    ns: &str,
    owner: OwnerRef,
    index: u32,
    t: &PodTemplateSpec,
    hash: &str,
    fenced: bool,
) -> DesiredPod {
    let name = super::revision::pod_name(&owner.name, hash, index);
    make_pod(ns, name, owner, index, t, hash, fenced)
}

fn make_pod(
    ns: &str,
    name: String,
    owner: OwnerRef,
    index: u32,
    t: &PodTemplateSpec,
    hash: &str,
    fenced: bool,
) -> DesiredPod {
    let spec = &t.spec;
    DesiredPod {
        namespace: ns.to_string(),
        name,
        owner,
        index,
        labels: t.metadata.labels.clone(),
        spec: Arc::new(spec.clone()),
        template_hash: hash.to_string(),
        requests: pod_requests(spec),
        runtime: runtime_of(spec),
        restart_policy: RestartPolicy::parse(spec.restart_policy.as_deref()),
        grace: Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS).max(0) as u64),
        fenced,
        node: None,
    }
}

/// The name of a DaemonSet's pod on `node` (`<daemonset>-<node>`, shortened
/// with a hash past 63 characters).
pub fn daemon_pod_name(daemonset: &str, node: &str) -> String {
    super::names::derived_pod_name(daemonset, node)
}

/// The pod of a DaemonSet on `node`, slot `index` among its nodes.
pub fn daemon_pod(ns: &str, owner: OwnerRef, node: &str, index: u32, t: &PodTemplateSpec, hash: &str) -> DesiredPod {
    let name = daemon_pod_name(&owner.name, node);
    let mut d = make_pod(ns, name, owner, index, t, hash, false);
    d.node = Some(node.to_string());
    d
}

/// The name of completion `index` of Job `job` (`<job>-<index>`).
pub fn job_pod_name(job: &str, index: u32) -> String {
    super::names::derived_pod_name(job, &index.to_string())
}

/// Completion `index` of a Job (`<name>-<index>`).
pub fn job_pod(ns: &str, owner: OwnerRef, index: u32, t: &PodTemplateSpec, hash: &str) -> DesiredPod {
    let name = job_pod_name(&owner.name, index);
    make_pod(ns, name, owner, index, t, hash, false)
}

/// Progress of a Job, derived from its pods' recorded results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub completions: u32,
    pub parallelism: u32,
    pub backoff_limit: u32,
    pub succeeded: u32,
    pub failures: u32,
    /// Indices still to run, in order.
    pub pending: Vec<u32>,
}

impl JobProgress {
    pub fn complete(&self) -> bool {
        self.succeeded >= self.completions
    }
    pub fn failed(&self) -> bool {
        self.failures > self.backoff_limit
    }
    /// Indices that should be running now.
    pub fn active(&self) -> &[u32] {
        if self.complete() || self.failed() {
            return &[];
        }
        let n = (self.parallelism as usize).min(self.pending.len());
        &self.pending[..n]
    }
}

/// When the last recorded pod of `job` finished (RFC 3339), if any did.
pub fn job_finished_at(job: &Job, results: &Results) -> Option<String> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    results
        .iter()
        .filter(|((n, _), r)| *n == ns && r.job_uid == uid && !r.finished_at.is_empty())
        .map(|(_, r)| r.finished_at.clone())
        .max()
}

/// Computes a Job's progress from `results` (keyed by pod name in its namespace).
pub fn job_progress(job: &Job, results: &Results) -> JobProgress {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let completions = job.spec.completions.unwrap_or(1).max(1) as u32;
    let mut p = JobProgress {
        completions,
        parallelism: job.spec.parallelism.unwrap_or(1).max(0) as u32,
        backoff_limit: job.spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT).max(0) as u32,
        ..Default::default()
    };
    for i in 0..completions {
        let name = job_pod_name(&job.metadata.name, i);
        match results.get(&(ns.clone(), name)) {
            Some(r) if r.job_uid == uid => {
                p.failures = p.failures.saturating_add(r.failures);
                if r.succeeded {
                    p.succeeded += 1;
                } else {
                    p.pending.push(i);
                }
            }
            _ => p.pending.push(i),
        }
    }
    p
}

/// Every pod the desired state asks for once every rollout is over, sorted
/// by id (the planner works out the pods of Deployments in a rollout with
/// `placement::rollout`).
pub fn desired_pods<'a>(objects: impl IntoIterator<Item = &'a Object>, results: &Results) -> Vec<DesiredPod> {
    let mut out = Vec::new();
    for obj in objects {
        let meta = obj.meta();
        let ns = meta.namespace.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        match obj {
            Object::Deployment(d) => {
                let owner = OwnerRef { kind: Kind::Deployment, name: meta.name.clone(), uid };
                let hash = template_hash(&d.spec.template);
                let fenced = d.spec.fencing.as_deref() == Some("Majority");
                for i in 0..d.spec.replicas.unwrap_or(1).max(0) as u32 {
                    out.push(deployment_pod(&ns, owner.clone(), i, &d.spec.template, &hash, fenced));
                }
            }
            Object::Job(j) => {
                let owner = OwnerRef { kind: Kind::Job, name: meta.name.clone(), uid };
                let hash = template_hash(&j.spec.template);
                let progress = job_progress(j, results);
                for &i in progress.active() {
                    out.push(job_pod(&ns, owner.clone(), i, &j.spec.template, &hash));
                }
            }
            // A DaemonSet's pods depend on the nodes: `placement::daemonsets`.
            // A CronJob makes Jobs (`placement::cron`); they have the pods.
            Object::Namespace(_) | Object::Service(_) | Object::DaemonSet(_) | Object::CronJob(_) => {}
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests may read the clock for a base instant
mod tests {
    use super::*;
    use crate::model::parse::{SourceFile, parse_files};
    use crate::model::validate::Context;

    fn objects(text: &str) -> Vec<Object> {
        let out = parse_files(&[SourceFile { name: "t".into(), content: text.into() }], &Context::default(), None);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.objects
            .into_iter()
            .map(|p| {
                let mut o = p.object;
                o.meta_mut().uid = Some("u1".into());
                o
            })
            .collect()
    }

    const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  completions: 4\n  parallelism: 2\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, command: [\"true\"], resources: {limits: {cpu: 500m}}}]\n";

    #[test]
    fn job_runs_parallelism_pending_indices() {
        let objs = objects(JOB);
        let mut results = Results::new();
        let pods = desired_pods(&objs, &results);
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["j-0", "j-1"]);
        assert_eq!(pods[0].requests.cpu_millis, 500, "limit stands in for request");
        results.insert(
            ("default".into(), "j-0".into()),
            PodResult { job_uid: "u1".into(), succeeded: true, ..Default::default() },
        );
        let pods = desired_pods(&objs, &results);
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["j-1", "j-2"]);
        // A result of an older Job with the same name does not count.
        results.insert(
            ("default".into(), "j-1".into()),
            PodResult { job_uid: "old".into(), succeeded: true, ..Default::default() },
        );
        assert_eq!(desired_pods(&objs, &results).len(), 2);
        // Failures beyond backoffLimit fail the job: nothing runs.
        results.insert(
            ("default".into(), "j-2".into()),
            PodResult { job_uid: "u1".into(), failures: 2, ..Default::default() },
        );
        assert!(desired_pods(&objs, &results).is_empty());
    }

    #[test]
    fn template_hash_changes_with_template() {
        let a = objects(JOB);
        let b = objects(&JOB.replace("[\"true\"]", "[\"false\"]"));
        let pa = desired_pods(&a, &Results::new());
        let pb = desired_pods(&b, &Results::new());
        assert_ne!(pa[0].template_hash, pb[0].template_hash);
        assert_eq!(pa[0].template_hash, desired_pods(&a, &Results::new())[0].template_hash);
    }
}
