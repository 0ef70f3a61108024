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
use super::types::{EnvVar, Job, PodSpec, PodTemplateSpec};
use super::{Kind, Object};

/// Kubernetes' default grace period.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;
/// Kubernetes' default Job backoff limit.
pub const DEFAULT_BACKOFF_LIMIT: i64 = 6;
/// The env var, label and annotation that tell an Indexed Job's pod its index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
pub const COMPLETION_INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

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
    /// The template's labels and spec, shared by every pod of one template
    /// (a node holds every pod of the cluster: one copy, not one per replica).
    pub labels: Arc<BTreeMap<String, String>>,
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

/// A process pod of Deployment `d` (uid `u`) for unit tests.
#[cfg(test)]
pub(crate) fn test_pod(namespace: &str, name: &str, hash: &str, fenced: bool) -> DesiredPod {
    DesiredPod {
        namespace: namespace.into(),
        name: name.into(),
        owner: OwnerRef { kind: super::Kind::Deployment, name: "d".into(), uid: "u".into() },
        index: 0,
        labels: Default::default(),
        spec: Arc::new(Default::default()),
        template_hash: hash.into(),
        requests: Resources::default(),
        runtime: RuntimeKind::Process,
        restart_policy: RestartPolicy::Always,
        grace: Duration::from_secs(1),
        fenced,
        node: None,
    }
}

/// `namespace/name`.
pub fn pod_id(namespace: &str, name: &str) -> String {
    // Not `format!`: placement builds one per replica (a million at scale).
    let mut id = String::with_capacity(namespace.len() + 1 + name.len());
    id.push_str(namespace);
    id.push('/');
    id.push_str(name);
    id
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

/// How a Job ended when its pods' results do not say it: written once by
/// the Job's keeper (`placement::jobs`) when `activeDeadlineSeconds` passed.
/// Every node reading it stops the Job's pods.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEnd {
    /// The Job's uid: a re-created Job with the same name starts over.
    pub job_uid: String,
    /// Kubernetes' condition reason (`DeadlineExceeded`).
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub at: String,
    /// The node that wrote it.
    #[serde(default)]
    pub node: String,
}

/// Job ends keyed by (namespace, Job name).
pub type JobEnds = imbl::OrdMap<(String, String), Arc<JobEnd>>;

/// What the pods of Jobs have done so far: their results and the Jobs'
/// recorded ends.
#[derive(Debug, Clone, Copy)]
pub struct JobFacts<'a> {
    pub results: &'a Results,
    pub ends: &'a JobEnds,
}

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

/// A pod template as pods are made from it: its labels and spec, copied once
/// and shared by every pod made from it.
#[derive(Debug, Clone)]
pub struct Template {
    labels: Arc<BTreeMap<String, String>>,
    spec: Arc<PodSpec>,
}

impl Template {
    pub fn of(t: &PodTemplateSpec) -> Template {
        Template { labels: Arc::new(t.metadata.labels.clone()), spec: Arc::new(t.spec.clone()) }
    }
}

/// Replica `index` of a Deployment's revision `hash` (`<name>-<hash>-<index>`).
pub fn deployment_pod(ns: &str, owner: OwnerRef, index: u32, t: &Template, hash: &str, fenced: bool) -> DesiredPod {
    let name = super::revision::pod_name(&owner.name, hash, index);
    make_pod(ns, name, owner, index, t, hash, fenced)
}

fn make_pod(ns: &str, name: String, owner: OwnerRef, index: u32, t: &Template, hash: &str, fenced: bool) -> DesiredPod {
    let spec = &*t.spec;
    DesiredPod {
        namespace: ns.to_string(),
        name,
        owner,
        index,
        labels: t.labels.clone(),
        spec: t.spec.clone(),
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
pub fn daemon_pod(ns: &str, owner: OwnerRef, node: &str, index: u32, t: &Template, hash: &str) -> DesiredPod {
    let name = daemon_pod_name(&owner.name, node);
    let mut d = make_pod(ns, name, owner, index, t, hash, false);
    d.node = Some(node.to_string());
    d
}

/// The name of completion `index` of Job `job` (`<job>-<index>`).
pub fn job_pod_name(job: &str, index: u32) -> String {
    super::names::derived_pod_name(job, &index.to_string())
}

/// Completion `index` of a Job (`<name>-<index>`). An Indexed Job's pod is
/// told its index as Kubernetes does: `JOB_COMPLETION_INDEX` in every
/// container's environment, and a label and annotation.
pub fn job_pod(ns: &str, owner: OwnerRef, index: u32, t: &Template, hash: &str, indexed: bool) -> DesiredPod {
    let name = job_pod_name(&owner.name, index);
    let mut d = make_pod(ns, name, owner, index, t, hash, false);
    if indexed {
        Arc::make_mut(&mut d.labels).insert(COMPLETION_INDEX_KEY.into(), index.to_string());
        let spec = Arc::make_mut(&mut d.spec);
        for c in &mut spec.containers {
            c.env.retain(|e| e.name != COMPLETION_INDEX_ENV);
            c.env.push(EnvVar { name: COMPLETION_INDEX_ENV.into(), value: index.to_string(), value_from: None });
        }
    }
    d
}

/// Whether a Job is `completionMode: Indexed`.
pub fn is_indexed(job: &Job) -> bool {
    job.spec.completion_mode.as_deref() == Some("Indexed")
}

/// Kubernetes' text for a set of indices: ranges, `1,3-5,7`.
pub fn index_ranges(indices: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        out.push(if end == start { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    out.join(",")
}

/// Progress of a Job, derived from its pods' recorded results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub completions: u32,
    pub parallelism: u32,
    pub backoff_limit: u32,
    /// `backoffLimitPerIndex` (Indexed Jobs): an index failing more than
    /// this is given up; the others go on.
    pub per_index: Option<u32>,
    pub max_failed_indexes: Option<u32>,
    pub succeeded: u32,
    pub failures: u32,
    /// Indices still to run, in order.
    pub pending: Vec<u32>,
    /// Indices that succeeded, and those given up (`backoffLimitPerIndex`).
    pub completed_indexes: Vec<u32>,
    pub failed_indexes: Vec<u32>,
    /// The recorded end (the deadline passed), for the Job's current uid.
    pub end: Option<Arc<JobEnd>>,
}

/// Why a Job failed: Kubernetes' reason and message of its `Failed` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub reason: String,
    pub message: String,
}

impl JobProgress {
    pub fn complete(&self) -> bool {
        self.end.is_none() && self.succeeded >= self.completions
    }
    pub fn failed(&self) -> bool {
        self.failure().is_some()
    }
    /// Whether the Job is over, either way.
    pub fn finished(&self) -> bool {
        self.complete() || self.failed()
    }
    /// Why the Job failed, if it did.
    pub fn failure(&self) -> Option<JobFailure> {
        let f = |reason: &str, message: &str| Some(JobFailure { reason: reason.into(), message: message.into() });
        if let Some(e) = &self.end {
            return f(&e.reason, &e.message);
        }
        if self.succeeded >= self.completions {
            return None;
        }
        match self.per_index {
            None if self.failures > self.backoff_limit => {
                f("BackoffLimitExceeded", "Job has reached the specified backoff limit")
            }
            None => None,
            Some(_) if self.max_failed_indexes.is_some_and(|m| self.failed_indexes.len() as u32 > m) => {
                f("MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes")
            }
            Some(_) if self.pending.is_empty() && !self.failed_indexes.is_empty() => {
                f("FailedIndexes", "Job has failed indexes")
            }
            Some(_) => None,
        }
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

/// When `job` ended (RFC 3339): its recorded end, or else when its last
/// recorded pod finished, if any did.
pub fn job_finished_at(job: &Job, facts: JobFacts<'_>) -> Option<String> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if let Some(e) = facts.ends.get(&(ns.clone(), job.metadata.name.clone())).filter(|e| e.job_uid == uid) {
        return Some(e.at.clone());
    }
    facts
        .results
        .iter()
        .filter(|((n, _), r)| *n == ns && r.job_uid == uid && !r.finished_at.is_empty())
        .map(|(_, r)| r.finished_at.clone())
        .max()
}

/// Computes a Job's progress from the recorded results of its pods (keyed
/// by pod name in its namespace) and its recorded end.
pub fn job_progress(job: &Job, facts: JobFacts<'_>) -> JobProgress {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let completions = job.spec.completions.unwrap_or(1).max(1) as u32;
    let per_index = job.spec.backoff_limit_per_index.map(|n| n.max(0) as u32);
    let mut p = JobProgress {
        completions,
        parallelism: job.spec.parallelism.unwrap_or(1).max(0) as u32,
        backoff_limit: job.spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT).max(0) as u32,
        per_index,
        max_failed_indexes: per_index.and(job.spec.max_failed_indexes.map(|n| n.max(0) as u32)),
        end: facts.ends.get(&(ns.clone(), job.metadata.name.clone())).filter(|e| e.job_uid == uid).cloned(),
        ..Default::default()
    };
    for i in 0..completions {
        let name = job_pod_name(&job.metadata.name, i);
        match facts.results.get(&(ns.clone(), name)) {
            Some(r) if r.job_uid == uid => {
                p.failures = p.failures.saturating_add(r.failures);
                if r.succeeded {
                    p.succeeded += 1;
                    p.completed_indexes.push(i);
                } else if per_index.is_some_and(|limit| r.failures > limit) {
                    p.failed_indexes.push(i);
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
pub fn desired_pods<'a>(objects: impl IntoIterator<Item = &'a Object>, facts: JobFacts<'_>) -> Vec<DesiredPod> {
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
                let t = Template::of(&d.spec.template);
                for i in 0..d.spec.replicas.unwrap_or(1).max(0) as u32 {
                    out.push(deployment_pod(&ns, owner.clone(), i, &t, &hash, fenced));
                }
            }
            Object::Job(j) => {
                let owner = OwnerRef { kind: Kind::Job, name: meta.name.clone(), uid };
                let hash = template_hash(&j.spec.template);
                let progress = job_progress(j, facts);
                let indexed = is_indexed(j);
                let t = Template::of(&j.spec.template);
                for &i in progress.active() {
                    out.push(job_pod(&ns, owner.clone(), i, &t, &hash, indexed));
                }
            }
            // A DaemonSet's pods depend on the nodes: `placement::daemonsets`.
            // A CronJob makes Jobs (`placement::cron`); they have the pods.
            Object::Namespace(_)
            | Object::Service(_)
            | Object::DaemonSet(_)
            | Object::CronJob(_)
            | Object::ConfigMap(_)
            | Object::Secret(_) => {}
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

    fn facts(results: &Results) -> JobFacts<'_> {
        static ENDS: std::sync::LazyLock<JobEnds> = std::sync::LazyLock::new(JobEnds::new);
        JobFacts { results, ends: &ENDS }
    }

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
        let pods = desired_pods(&objs, facts(&results));
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["j-0", "j-1"]);
        assert_eq!(pods[0].requests.cpu_millis, 500, "limit stands in for request");
        results.insert(
            ("default".into(), "j-0".into()),
            PodResult { job_uid: "u1".into(), succeeded: true, ..Default::default() },
        );
        let pods = desired_pods(&objs, facts(&results));
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["j-1", "j-2"]);
        // A result of an older Job with the same name does not count.
        results.insert(
            ("default".into(), "j-1".into()),
            PodResult { job_uid: "old".into(), succeeded: true, ..Default::default() },
        );
        assert_eq!(desired_pods(&objs, facts(&results)).len(), 2);
        // Failures beyond backoffLimit fail the job: nothing runs.
        results.insert(
            ("default".into(), "j-2".into()),
            PodResult { job_uid: "u1".into(), failures: 2, ..Default::default() },
        );
        assert!(desired_pods(&objs, facts(&results)).is_empty());
    }

    const INDEXED: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: m}\nspec:\n  completionMode: Indexed\n  completions: 4\n  parallelism: 4\n  backoffLimitPerIndex: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, command: [\"true\"], env: [{name: A, value: b}]}]\n";

    fn result(succeeded: bool, failures: u32) -> PodResult {
        PodResult { job_uid: "u1".into(), succeeded, failures, ..Default::default() }
    }

    #[test]
    fn an_indexed_pod_is_told_its_index() {
        let objs = objects(INDEXED);
        let pods = desired_pods(&objs, facts(&Results::new()));
        assert_eq!(pods.len(), 4);
        for (i, p) in pods.iter().enumerate() {
            let env: Vec<(&str, &str)> =
                p.spec.containers[0].env.iter().map(|e| (e.name.as_str(), e.value.as_str())).collect();
            assert_eq!(env, [("A", "b"), (COMPLETION_INDEX_ENV, i.to_string().as_str())]);
            assert_eq!(p.labels.get(COMPLETION_INDEX_KEY), Some(&i.to_string()));
        }
        // A NonIndexed Job's pods are not.
        let plain = desired_pods(&objects(JOB), facts(&Results::new()));
        assert!(plain[0].spec.containers[0].env.is_empty());
        assert!(!plain[0].labels.contains_key(COMPLETION_INDEX_KEY));
    }

    #[test]
    fn a_failed_index_is_given_up_and_the_others_go_on() {
        let objs = objects(INDEXED);
        let Object::Job(j) = &objs[0] else { panic!("a Job") };
        let mut results = Results::new();
        results.insert(("default".into(), "m-1".into()), result(false, 1));
        let p = job_progress(j, facts(&results));
        assert_eq!(p.pending, [0, 1, 2, 3], "one failure is within backoffLimitPerIndex: 1");
        results.insert(("default".into(), "m-1".into()), result(false, 2));
        results.insert(("default".into(), "m-0".into()), result(true, 0));
        let p = job_progress(j, facts(&results));
        assert_eq!(
            (p.pending.clone(), p.completed_indexes.clone(), p.failed_indexes.clone()),
            (vec![2, 3], vec![0], vec![1])
        );
        assert!(!p.failed(), "the other indices still run");
        assert_eq!(p.active(), [2, 3]);
        results.insert(("default".into(), "m-2".into()), result(true, 0));
        results.insert(("default".into(), "m-3".into()), result(true, 1));
        let p = job_progress(j, facts(&results));
        assert_eq!(p.failure().map(|f| f.reason), Some("FailedIndexes".to_string()));
        assert_eq!((index_ranges(&p.completed_indexes), index_ranges(&p.failed_indexes)), ("0,2-3".into(), "1".into()));
        // maxFailedIndexes: 0 fails the Job at its first failed index.
        let strict =
            objects(&INDEXED.replace("backoffLimitPerIndex: 1", "backoffLimitPerIndex: 1\n  maxFailedIndexes: 0"));
        let Object::Job(j) = &strict[0] else { panic!("a Job") };
        let mut results = Results::new();
        results.insert(("default".into(), "m-3".into()), result(false, 2));
        let p = job_progress(j, facts(&results));
        assert_eq!(p.failure().map(|f| f.reason), Some("MaxFailedIndexesExceeded".to_string()));
        assert!(p.active().is_empty());
    }

    #[test]
    fn index_ranges_are_written_as_kubernetes_does() {
        assert_eq!(index_ranges(&[]), "");
        assert_eq!(index_ranges(&[0, 1, 2, 4, 6, 7]), "0-2,4,6-7");
        assert_eq!(index_ranges(&[5]), "5");
    }

    #[test]
    fn template_hash_changes_with_template() {
        let a = objects(JOB);
        let b = objects(&JOB.replace("[\"true\"]", "[\"false\"]"));
        let pa = desired_pods(&a, facts(&Results::new()));
        let pb = desired_pods(&b, facts(&Results::new()));
        assert_ne!(pa[0].template_hash, pb[0].template_hash);
        assert_eq!(pa[0].template_hash, desired_pods(&a, facts(&Results::new()))[0].template_hash);
    }
}
