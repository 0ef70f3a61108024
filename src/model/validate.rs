//! Semantic checks of a typed object, each failure tied to a field path.
//!
//! Owns the rules a manifest must follow beyond its shape (names, ranges,
//! selectors matching templates, probes naming real ports...). It returns
//! errors and warnings; it never changes the object and does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::cron;
use super::names::{self, MAX_OBJECT_NAME};
use super::quantity::{QuantityText, parse_cpu_millis, parse_memory_bytes};
use super::types::*;
use super::yaml::{join_index, join_key};
use super::{Invalid, Kind, Object};

/// Most replicas one Deployment may ask for.
pub const MAX_REPLICAS: i64 = 10_000;
/// Most completions or parallel pods one Job may ask for.
pub const MAX_JOB_PODS: i64 = 10_000;
/// Most containers in one pod.
pub const MAX_CONTAINERS: usize = 16;
/// Most ports one container may declare.
pub const MAX_PORTS: usize = 32;
/// Longest grace period a pod may ask for, in seconds.
pub const MAX_GRACE_SECONDS: i64 = 3600;
/// Largest `backoffLimit`.
pub const MAX_BACKOFF_LIMIT: i64 = 1000;
/// Longest minReadySeconds / progressDeadlineSeconds (a day).
pub const MAX_SECONDS: i64 = 86_400;
/// Most old revisions a Deployment keeps.
pub const MAX_REVISION_HISTORY: i64 = 100;

/// One problem with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    pub path: String,
    pub message: String,
}

/// What validation needs to know about the node taking the request.
#[derive(Debug, Clone)]
pub struct Context {
    /// Inclusive range of service node ports.
    pub node_port_range: (u16, u16),
}

impl Default for Context {
    fn default() -> Self {
        Self { node_port_range: (30000, 32767) }
    }
}

#[derive(Default)]
struct Report {
    errors: Vec<FieldIssue>,
    warnings: Vec<FieldIssue>,
}

impl Report {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldIssue { path: path.into(), message: message.into() });
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldIssue { path: path.into(), message: message.into() });
    }
    fn check(&mut self, path: &str, r: Result<(), Invalid>) {
        if let Err(m) = r {
            self.err(path, m.0);
        }
    }
}

/// Validates an object; returns `(errors, warnings)`.
pub fn validate(obj: &Object, ctx: &Context) -> (Vec<FieldIssue>, Vec<FieldIssue>) {
    let mut r = Report::default();
    let kind = obj.kind();
    let meta = obj.meta();
    if matches!(kind, Kind::Deployment | Kind::Job | Kind::DaemonSet | Kind::CronJob | Kind::ConfigMap | Kind::Secret) {
        r.check("metadata.name", names::dns_subdomain(&meta.name, MAX_OBJECT_NAME));
    } else {
        r.check("metadata.name", names::dns_label(&meta.name, 63));
    }
    if let Some(ns) = &meta.namespace
        && kind.namespaced()
    {
        r.check("metadata.namespace", names::dns_label(ns, 63));
    }
    labels(&mut r, "metadata.labels", &meta.labels);
    annotations(&mut r, "metadata.annotations", &meta.annotations);
    match obj {
        Object::Namespace(_) => {}
        Object::ConfigMap(c) => {
            for (path, message) in super::config::check(c) {
                r.err(path, message);
            }
        }
        Object::Secret(s) => {
            for (path, message) in super::config::check_secret(s) {
                r.err(path, message);
            }
        }
        Object::Deployment(d) => deployment(&mut r, &d.spec),
        Object::Job(j) => job(&mut r, "spec", &j.spec),
        Object::CronJob(c) => cronjob(&mut r, &meta.name, &c.spec),
        Object::Service(s) => {
            service(&mut r, &s.spec, ctx);
            if let Some(v) = s.metadata.annotations.get(super::types::PROXY_PROTOCOL)
                && let Err(e) = super::types::ProxyProtocol::parse(v)
            {
                r.err(format!("metadata.annotations[{}]", super::types::PROXY_PROTOCOL), e);
            }
        }
        Object::DaemonSet(d) => daemonset(&mut r, &d.spec),
    }
    (r.errors, r.warnings)
}

fn labels(r: &mut Report, path: &str, m: &BTreeMap<String, String>) {
    for (k, v) in m {
        let p = join_key(path, k);
        r.check(&p, names::label_key(k));
        r.check(&p, names::label_value(v));
    }
}

fn annotations(r: &mut Report, path: &str, m: &BTreeMap<String, String>) {
    for k in m.keys() {
        r.check(&join_key(path, k), names::label_key(k));
    }
}

fn range(r: &mut Report, path: &str, v: Option<i64>, min: i64, max: i64) {
    if let Some(v) = v
        && (v < min || v > max)
    {
        r.err(path, format!("must be between {min} and {max} (got {v})"));
    }
}

fn deployment(r: &mut Report, s: &DeploymentSpec) {
    range(r, "spec.replicas", s.replicas, 0, MAX_REPLICAS);
    selector(r, "spec.selector", &s.selector, &s.template.metadata.labels, true);
    match s.template.spec.restart_policy.as_deref() {
        None | Some("Always") => {}
        Some(other) => r.err(
            "spec.template.spec.restartPolicy",
            format!("a Deployment's pods must use Always (got {other:?}); use a Job for pods that run to completion"),
        ),
    }
    match s.fencing.as_deref() {
        None | Some("None") | Some("Majority") => {}
        Some(other) => r.err("spec.fencing", format!("must be None or Majority (got {other:?})")),
    }
    strategy(r, s);
    range(r, "spec.minReadySeconds", s.min_ready_seconds, 0, MAX_SECONDS);
    range(r, "spec.progressDeadlineSeconds", s.progress_deadline_seconds, 1, MAX_SECONDS);
    range(r, "spec.revisionHistoryLimit", s.revision_history_limit, 0, MAX_REVISION_HISTORY);
    if let (Some(d), Some(m)) = (s.progress_deadline_seconds, s.min_ready_seconds)
        && d <= m
    {
        r.err("spec.progressDeadlineSeconds", format!("must be greater than minReadySeconds ({m}), got {d}"));
    }
    pod_template(r, "spec.template", &s.template);
}

/// An absolute number, or a percentage `0%`..`100%`.
fn int_or_percent(r: &mut Report, path: &str, v: &IntOrString) {
    match v {
        IntOrString::Int(i) if *i < 0 => r.err(path, format!("must not be negative (got {i})")),
        IntOrString::Int(_) => {}
        IntOrString::Str(s) => match s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()) {
            Some(p) if p <= 100 => {}
            _ => r.err(path, format!("must be a number or a percentage like 25% (got {s:?})")),
        },
    }
}

/// Whether a count or percentage is 0 (`0`, `"0"` or `"0%"`).
fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(i) => *i == 0,
        IntOrString::Str(p) => p.trim_end_matches('%').parse::<u32>() == Ok(0),
    }
}

fn strategy(r: &mut Report, s: &DeploymentSpec) {
    let Some(st) = &s.strategy else { return };
    match (st.kind.as_deref(), &st.rolling_update) {
        (None | Some("RollingUpdate"), Some(ru)) => {
            let zero = |v: &Option<IntOrString>| v.as_ref().is_some_and(is_zero);
            for (name, v) in [("maxSurge", &ru.max_surge), ("maxUnavailable", &ru.max_unavailable)] {
                if let Some(v) = v {
                    int_or_percent(r, &format!("spec.strategy.rollingUpdate.{name}"), v);
                }
            }
            if zero(&ru.max_surge) && zero(&ru.max_unavailable) {
                r.err(
                    "spec.strategy.rollingUpdate",
                    "maxSurge and maxUnavailable cannot both be 0: a rollout could never replace a pod",
                );
            }
        }
        (None | Some("RollingUpdate"), None) => {}
        (Some("Recreate"), Some(_)) => {
            r.err("spec.strategy.rollingUpdate", "must not be set when spec.strategy.type is Recreate")
        }
        (Some("Recreate"), None) => {}
        (Some(other), _) => r.err("spec.strategy.type", format!("must be RollingUpdate or Recreate (got {other:?})")),
    }
}

fn daemonset(r: &mut Report, s: &DaemonSetSpec) {
    selector(r, "spec.selector", &s.selector, &s.template.metadata.labels, true);
    match s.template.spec.restart_policy.as_deref() {
        None | Some("Always") => {}
        Some(other) => r.err(
            "spec.template.spec.restartPolicy",
            format!("a DaemonSet's pods must use Always (got {other:?}); use a Job for pods that run to completion"),
        ),
    }
    if let Some(st) = &s.update_strategy {
        match (st.kind.as_deref(), &st.rolling_update) {
            (None | Some("RollingUpdate"), Some(ru)) => {
                let path = "spec.updateStrategy.rollingUpdate";
                if let Some(v) = &ru.max_unavailable {
                    int_or_percent(r, &format!("{path}.maxUnavailable"), v);
                    if is_zero(v) {
                        r.err(
                            format!("{path}.maxUnavailable"),
                            "must not be 0: a node runs one pod of a DaemonSet, so an update stops it before its successor starts",
                        );
                    }
                }
                if ru.max_surge.as_ref().is_some_and(|v| !is_zero(v)) {
                    r.err(
                        format!("{path}.maxSurge"),
                        "must be 0: Shoal runs one pod of a DaemonSet per node and updates it in place; set maxUnavailable instead",
                    );
                }
            }
            (None | Some("RollingUpdate"), None) | (Some("OnDelete"), None) => {}
            (Some("OnDelete"), Some(_)) => {
                r.err("spec.updateStrategy.rollingUpdate", "must not be set when spec.updateStrategy.type is OnDelete")
            }
            (Some(other), _) => {
                r.err("spec.updateStrategy.type", format!("must be RollingUpdate or OnDelete (got {other:?})"))
            }
        }
    }
    range(r, "spec.minReadySeconds", s.min_ready_seconds, 0, MAX_SECONDS);
    range(r, "spec.revisionHistoryLimit", s.revision_history_limit, 0, MAX_REVISION_HISTORY);
    pod_template(r, "spec.template", &s.template);
}

fn job(r: &mut Report, p: &str, s: &JobSpec) {
    range(r, &format!("{p}.completions"), s.completions, 1, MAX_JOB_PODS);
    range(r, &format!("{p}.parallelism"), s.parallelism, 0, MAX_JOB_PODS);
    range(r, &format!("{p}.backoffLimit"), s.backoff_limit, 0, MAX_BACKOFF_LIMIT);
    let indexed = match s.completion_mode.as_deref() {
        None | Some("NonIndexed") => false,
        Some("Indexed") => true,
        Some(other) => {
            r.err(format!("{p}.completionMode"), format!("must be NonIndexed or Indexed (got {other:?})"));
            false
        }
    };
    if s.backoff_limit_per_index.is_some() {
        if !indexed {
            r.err(format!("{p}.backoffLimitPerIndex"), "needs completionMode: Indexed");
        }
        range(r, &format!("{p}.backoffLimitPerIndex"), s.backoff_limit_per_index, 0, MAX_BACKOFF_LIMIT);
        if s.template.spec.restart_policy.as_deref() == Some("OnFailure") {
            r.err(
                format!("{p}.template.spec.restartPolicy"),
                "must be Never with backoffLimitPerIndex (a failed index is a failed pod)",
            );
        }
    }
    if s.max_failed_indexes.is_some() {
        if s.backoff_limit_per_index.is_none() {
            r.err(format!("{p}.maxFailedIndexes"), "needs backoffLimitPerIndex");
        }
        let completions = s.completions.unwrap_or(1).clamp(1, MAX_JOB_PODS);
        range(r, &format!("{p}.maxFailedIndexes"), s.max_failed_indexes, 0, completions);
    }
    range(r, &format!("{p}.activeDeadlineSeconds"), s.active_deadline_seconds, 1, i64::from(i32::MAX));
    range(r, &format!("{p}.ttlSecondsAfterFinished"), s.ttl_seconds_after_finished, 0, i64::from(i32::MAX));
    if let Some(sel) = &s.selector {
        selector(r, &format!("{p}.selector"), sel, &s.template.metadata.labels, false);
    }
    let policy = format!("{p}.template.spec.restartPolicy");
    match s.template.spec.restart_policy.as_deref() {
        Some("Never") | Some("OnFailure") => {}
        None => r.err(policy, "a Job's pods need restartPolicy Never or OnFailure"),
        Some(other) => r.err(policy, format!("a Job's pods need Never or OnFailure (got {other:?})")),
    }
    pod_template(r, &format!("{p}.template"), &s.template);
}

fn cronjob(r: &mut Report, name: &str, s: &CronJobSpec) {
    if name.len() > cron::MAX_CRONJOB_NAME {
        r.err(
            "metadata.name",
            format!(
                "must be at most {} characters (got {}): its Jobs add the scheduled minute to it",
                cron::MAX_CRONJOB_NAME,
                name.len()
            ),
        );
    }
    if s.schedule.trim().is_empty() {
        r.err("spec.schedule", "missing: say when to run, e.g. \"0 3 * * *\" or @daily");
    } else if let Err((c, z)) = cron::Schedule::parse(&s.schedule, s.time_zone.as_deref()) {
        if let Some(c) = c {
            r.err("spec.schedule", c.0);
        }
        if let Some(z) = z {
            r.err("spec.timeZone", z.0);
        }
    }
    if let Err(e) = cron::Concurrency::parse(s.concurrency_policy.as_deref()) {
        r.err("spec.concurrencyPolicy", e.0);
    }
    range(r, "spec.startingDeadlineSeconds", s.starting_deadline_seconds, 1, i64::from(i32::MAX));
    range(r, "spec.successfulJobsHistoryLimit", s.successful_jobs_history_limit, 0, MAX_REVISION_HISTORY);
    range(r, "spec.failedJobsHistoryLimit", s.failed_jobs_history_limit, 0, MAX_REVISION_HISTORY);
    labels(r, "spec.jobTemplate.metadata.labels", &s.job_template.metadata.labels);
    annotations(r, "spec.jobTemplate.metadata.annotations", &s.job_template.metadata.annotations);
    job(r, "spec.jobTemplate.spec", &s.job_template.spec);
}

fn selector(
    r: &mut Report,
    path: &str,
    sel: &LabelSelector,
    template_labels: &BTreeMap<String, String>,
    required: bool,
) {
    if sel.match_expressions.is_some() {
        r.err(join_key(path, "matchExpressions"), "not supported: use matchLabels");
    }
    if sel.match_labels.is_empty() {
        if required {
            r.err(
                join_key(path, "matchLabels"),
                "must not be empty: list the labels that identify this workload's pods",
            );
        }
        return;
    }
    labels(r, &join_key(path, "matchLabels"), &sel.match_labels);
    for (k, v) in &sel.match_labels {
        if template_labels.get(k) != Some(v) {
            r.err(
                join_key(&join_key(path, "matchLabels"), k),
                format!("selector {k}={v} does not match the template's labels (spec.template.metadata.labels)"),
            );
        }
    }
}

fn pod_template(r: &mut Report, path: &str, t: &PodTemplateSpec) {
    labels(r, &join_key(path, "metadata.labels"), &t.metadata.labels);
    annotations(r, &join_key(path, "metadata.annotations"), &t.metadata.annotations);
    pod_spec(r, &join_key(path, "spec"), &t.spec);
    spread(r, &join_key(path, "spec.topologySpreadConstraints"), t);
}

fn spread(r: &mut Report, path: &str, t: &PodTemplateSpec) {
    let mut keys = BTreeSet::new();
    for (i, c) in t.spec.topology_spread_constraints.iter().enumerate() {
        let p = join_index(path, i);
        range(r, &join_key(&p, "maxSkew"), Some(c.max_skew), 1, i64::from(i32::MAX));
        r.check(&join_key(&p, "topologyKey"), names::label_key(&c.topology_key));
        if c.topology_key.is_empty() {
            r.err(join_key(&p, "topologyKey"), "must name a node label, e.g. kubernetes.io/hostname");
        }
        if !keys.insert((c.topology_key.as_str(), c.hard())) {
            r.err(join_key(&p, "topologyKey"), format!("{:?} appears twice", c.topology_key));
        }
        match c.when_unsatisfiable.as_deref() {
            None | Some("DoNotSchedule") | Some("ScheduleAnyway") => {}
            Some(other) => r.err(
                join_key(&p, "whenUnsatisfiable"),
                format!("must be DoNotSchedule or ScheduleAnyway (got {other:?})"),
            ),
        }
        if let Some(sel) = &c.label_selector {
            let own = sel.match_expressions.is_none()
                && sel.match_labels.iter().all(|(k, v)| t.metadata.labels.get(k) == Some(v));
            if !own {
                r.err(
                    join_key(&p, "labelSelector"),
                    "must select the pod's own labels (matchLabels only): Shoal spreads a workload's own replicas",
                );
            }
        }
    }
}

fn pod_spec(r: &mut Report, path: &str, s: &PodSpec) {
    let cpath = join_key(path, "containers");
    if s.containers.is_empty() {
        r.err(&cpath, "a pod needs at least one container");
    }
    if s.containers.len() > MAX_CONTAINERS {
        r.err(&cpath, format!("at most {MAX_CONTAINERS} containers per pod (has {})", s.containers.len()));
    }
    range(
        r,
        &join_key(path, "terminationGracePeriodSeconds"),
        s.termination_grace_period_seconds,
        0,
        MAX_GRACE_SECONDS,
    );
    for (k, v) in &s.node_selector {
        let p = join_key(&join_key(path, "nodeSelector"), k);
        r.check(&p, names::label_key(k));
        r.check(&p, names::label_value(v));
    }
    let mut volume_names = BTreeSet::new();
    for (i, v) in s.volumes.iter().enumerate() {
        let vp = join_index(&join_key(path, "volumes"), i);
        r.check(&join_key(&vp, "name"), names::dns_label(&v.name, 63));
        if !volume_names.insert(v.name.as_str()) {
            r.err(join_key(&vp, "name"), format!("duplicate volume name {:?}", v.name));
        }
        let sources = [v.empty_dir.is_some(), v.host_path.is_some(), v.config_map.is_some(), v.secret.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            r.err(&vp, "a volume needs exactly one source: emptyDir, hostPath, configMap or secret");
            continue;
        }
        if let Some(sv) = &v.secret {
            let sp = join_key(&vp, "secret");
            r.check(&join_key(&sp, "secretName"), names::dns_subdomain(&sv.secret_name, MAX_OBJECT_NAME));
            key_items(r, &sp, sv.default_mode, &sv.items);
        }
        match (&v.empty_dir, &v.host_path, &v.config_map) {
            (None, None, Some(cm)) => config_map_volume(r, &join_key(&vp, "configMap"), cm),
            (None, Some(h), None) => {
                if !h.path.starts_with('/') {
                    r.err(join_key(&vp, "hostPath.path"), format!("must be an absolute path (got {:?})", h.path));
                }
                match h.kind.as_deref() {
                    None
                    | Some("")
                    | Some("Directory")
                    | Some("DirectoryOrCreate")
                    | Some("File")
                    | Some("FileOrCreate") => {}
                    Some(other) => r.err(
                        join_key(&vp, "hostPath.type"),
                        format!("unsupported type {other:?}: use Directory, DirectoryOrCreate, File or FileOrCreate"),
                    ),
                }
            }
            _ => {}
        }
    }
    let mut container_names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, c) in s.containers.iter().enumerate() {
        let p = join_index(&cpath, i);
        r.check(&join_key(&p, "name"), names::dns_label(&c.name, 63));
        if !container_names.insert(c.name.as_str()) {
            r.err(join_key(&p, "name"), format!("duplicate container name {:?}", c.name));
        }
        container(r, &p, c, &volume_names, &mut port_names);
    }
}

fn container(r: &mut Report, path: &str, c: &Container, volumes: &BTreeSet<&str>, port_names: &mut BTreeSet<String>) {
    match &c.image {
        None if c.command.is_empty() => {
            r.err(join_key(path, "command"), "set command (runs as a host process) or image (runs in Docker)")
        }
        None => {}
        Some(img) => r.check(&join_key(path, "image"), image_reference(img)),
    }
    match c.image_pull_policy.as_deref() {
        None | Some("Always") | Some("IfNotPresent") | Some("Never") => {}
        Some(other) => {
            r.err(join_key(path, "imagePullPolicy"), format!("must be Always, IfNotPresent or Never (got {other:?})"))
        }
    }
    if c.image.is_none() && c.image_pull_policy.is_some() {
        r.warn(join_key(path, "imagePullPolicy"), "has no effect without an image, ignored");
    }
    for (i, e) in c.env.iter().enumerate() {
        let ep = join_index(&join_key(path, "env"), i);
        r.check(&join_key(&ep, "name"), names::env_name(&e.name));
        let Some(from) = &e.value_from else { continue };
        let fp = join_key(&ep, "valueFrom");
        if !e.value.is_empty() {
            r.err(join_key(&ep, "value"), "set value or valueFrom, not both");
        }
        let refs = [("configMapKeyRef", &from.config_map_key_ref), ("secretKeyRef", &from.secret_key_ref)];
        let set: Vec<_> = refs.iter().filter_map(|(n, k)| k.as_ref().map(|k| (*n, k))).collect();
        if set.len() != 1 {
            r.err(&fp, "needs exactly one of configMapKeyRef and secretKeyRef");
        }
        for (n, k) in set {
            let kp = join_key(&fp, n);
            r.check(&join_key(&kp, "name"), names::dns_subdomain(&k.name, MAX_OBJECT_NAME));
            if let Err(m) = super::config::valid_key(&k.key) {
                r.err(join_key(&kp, "key"), m);
            }
        }
    }
    for (i, f) in c.env_from.iter().enumerate() {
        let fp = join_index(&join_key(path, "envFrom"), i);
        let refs = [("configMapRef", &f.config_map_ref), ("secretRef", &f.secret_ref)];
        let set: Vec<_> = refs.iter().filter_map(|(n, k)| k.as_ref().map(|k| (*n, k))).collect();
        if set.len() != 1 {
            r.err(&fp, "needs exactly one of configMapRef and secretRef");
        }
        for (n, k) in set {
            r.check(&join_key(&join_key(&fp, n), "name"), names::dns_subdomain(&k.name, MAX_OBJECT_NAME));
        }
        if let Some(p) = f.prefix.as_deref().filter(|p| !p.is_empty()) {
            r.check(&join_key(&fp, "prefix"), names::env_name(p));
        }
    }
    if c.ports.len() > MAX_PORTS {
        r.err(join_key(path, "ports"), format!("at most {MAX_PORTS} ports per container"));
    }
    let mut numbers = BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let pp = join_index(&join_key(path, "ports"), i);
        range(r, &join_key(&pp, "containerPort"), Some(port.container_port), 1, 65535);
        if !numbers.insert((port.container_port, port.proto())) {
            r.err(join_key(&pp, "containerPort"), format!("duplicate port {}/{}", port.container_port, port.proto()));
        }
        if let Some(n) = &port.name {
            r.check(&join_key(&pp, "name"), names::port_name(n));
            if !port_names.insert(n.clone()) {
                r.err(join_key(&pp, "name"), format!("duplicate port name {n:?} in this pod"));
            }
        }
        if let Err(e) = Protocol::parse(port.protocol.as_deref()) {
            r.err(join_key(&pp, "protocol"), e);
        }
    }
    resources(r, &join_key(path, "resources"), &c.resources);
    let declared: BTreeSet<&str> = c.ports.iter().filter_map(|p| p.name.as_deref()).collect();
    if let Some(p) = &c.liveness_probe {
        probe(r, &join_key(path, "livenessProbe"), p, &declared, true);
    }
    if let Some(p) = &c.readiness_probe {
        probe(r, &join_key(path, "readinessProbe"), p, &declared, false);
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = join_index(&join_key(path, "volumeMounts"), i);
        if !volumes.contains(m.name.as_str()) {
            r.err(join_key(&mp, "name"), format!("no volume named {:?} in spec.volumes", m.name));
        }
        if !m.mount_path.starts_with('/') {
            r.err(join_key(&mp, "mountPath"), format!("must be an absolute path (got {:?})", m.mount_path));
        }
        if !mount_paths.insert(m.mount_path.as_str()) {
            r.err(join_key(&mp, "mountPath"), format!("duplicate mount path {:?}", m.mount_path));
        }
    }
}

fn quantity(r: &mut Report, path: &str, name: &str, q: &QuantityText) {
    let text = q.to_string();
    let res = match name {
        "cpu" => parse_cpu_millis(&text).map(|_| ()),
        "memory" => parse_memory_bytes(&text).map(|_| ()),
        _ => {
            r.warn(path, format!("resource {name:?} is not supported (only cpu and memory), ignored"));
            return;
        }
    };
    if let Err(e) = res {
        r.err(path, e.to_string());
    }
}

fn resources(r: &mut Report, path: &str, res: &ResourceRequirements) {
    for (name, q) in &res.requests {
        quantity(r, &join_key(&join_key(path, "requests"), name), name, q);
    }
    for (name, q) in &res.limits {
        quantity(r, &join_key(&join_key(path, "limits"), name), name, q);
    }
    for name in ["cpu", "memory"] {
        let (Some(req), Some(lim)) = (res.requests.get(name), res.limits.get(name)) else {
            continue;
        };
        let parse = |q: &QuantityText| {
            let t = q.to_string();
            if name == "cpu" { parse_cpu_millis(&t).ok() } else { parse_memory_bytes(&t).ok() }
        };
        if let (Some(a), Some(b)) = (parse(req), parse(lim))
            && a > b
        {
            r.err(
                join_key(&join_key(path, "requests"), name),
                format!("request {req} is greater than the limit {lim}"),
            );
        }
    }
}

fn probe(r: &mut Report, path: &str, p: &Probe, ports: &BTreeSet<&str>, liveness: bool) {
    let n = [p.http_get.is_some(), p.tcp_socket.is_some(), p.exec.is_some()].iter().filter(|b| **b).count();
    if n != 1 {
        r.err(path, "a probe needs exactly one of httpGet, tcpSocket or exec");
    }
    let port_ref = |r: &mut Report, pp: &str, port: &IntOrString| match port {
        IntOrString::Int(i) => range(r, pp, Some(*i), 1, 65535),
        IntOrString::Str(name) => {
            if !ports.contains(name.as_str()) {
                r.err(pp, format!("no container port named {name:?}"));
            }
        }
    };
    if let Some(h) = &p.http_get {
        port_ref(r, &join_key(path, "httpGet.port"), &h.port);
        match h.scheme.as_deref() {
            None | Some("HTTP") => {}
            Some(other) => r.err(join_key(path, "httpGet.scheme"), format!("only HTTP is supported (got {other:?})")),
        }
        if let Some(pth) = &h.path
            && !pth.starts_with('/')
        {
            r.err(join_key(path, "httpGet.path"), format!("must start with '/' (got {pth:?})"));
        }
    }
    if let Some(t) = &p.tcp_socket {
        port_ref(r, &join_key(path, "tcpSocket.port"), &t.port);
    }
    if let Some(e) = &p.exec
        && e.command.is_empty()
    {
        r.err(join_key(path, "exec.command"), "must not be empty");
    }
    range(r, &join_key(path, "initialDelaySeconds"), p.initial_delay_seconds, 0, 86_400);
    range(r, &join_key(path, "periodSeconds"), p.period_seconds, 1, 86_400);
    range(r, &join_key(path, "timeoutSeconds"), p.timeout_seconds, 1, 3600);
    range(r, &join_key(path, "failureThreshold"), p.failure_threshold, 1, 1000);
    if liveness {
        range(r, &join_key(path, "successThreshold"), p.success_threshold, 1, 1);
    } else {
        range(r, &join_key(path, "successThreshold"), p.success_threshold, 1, 1000);
    }
}

fn service(r: &mut Report, s: &ServiceSpec, ctx: &Context) {
    labels(r, "spec.selector", &s.selector);
    match s.kind.as_deref() {
        None | Some("ClusterIP") | Some("NodePort") | Some("LoadBalancer") => {}
        Some(other) => r.err("spec.type", format!("must be ClusterIP, NodePort or LoadBalancer (got {other:?})")),
    }
    if let Some(ip) = &s.load_balancer_ip {
        if s.kind.as_deref() != Some("LoadBalancer") {
            r.err("spec.loadBalancerIP", "is only allowed with type: LoadBalancer");
        } else if ip.parse::<std::net::IpAddr>().is_err() {
            r.err("spec.loadBalancerIP", format!("{ip:?} is not an IP address"));
        }
    }
    if s.ports.is_empty() {
        r.err("spec.ports", "a service needs at least one port");
    }
    match s.session_affinity.as_deref() {
        None | Some("None") | Some("ClientIP") => {}
        Some(other) => r.err("spec.sessionAffinity", format!("must be None or ClientIP (got {other:?})")),
    }
    if let Some(t) = s.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()?.timeout_seconds) {
        range(r, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", Some(t), 1, 86_400);
        if s.session_affinity.as_deref() != Some("ClientIP") {
            r.err("spec.sessionAffinityConfig", "is only allowed with sessionAffinity: ClientIP");
        }
    }
    for (field, v) in [
        ("spec.externalTrafficPolicy", &s.external_traffic_policy),
        ("spec.internalTrafficPolicy", &s.internal_traffic_policy),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !matches!(*v, "Cluster" | "Local")) {
            r.err(field, format!("must be Cluster or Local (got {v:?})"));
        }
    }
    let mut names_seen = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let pp = join_index("spec.ports", i);
        range(r, &join_key(&pp, "port"), Some(p.port), 1, 65535);
        if !ports.insert((p.port, p.proto())) {
            r.err(join_key(&pp, "port"), format!("duplicate port {}/{}", p.port, p.proto()));
        }
        match &p.name {
            Some(n) => {
                r.check(&join_key(&pp, "name"), names::dns_label(n, 63));
                if !names_seen.insert(n.clone()) {
                    r.err(join_key(&pp, "name"), format!("duplicate port name {n:?}"));
                }
            }
            None if s.ports.len() > 1 => r.err(join_key(&pp, "name"), "must be set when a service has several ports"),
            None => {}
        }
        match &p.target_port {
            Some(IntOrString::Int(t)) => range(r, &join_key(&pp, "targetPort"), Some(*t), 1, 65535),
            Some(IntOrString::Str(n)) => r.check(&join_key(&pp, "targetPort"), names::port_name(n)),
            None => {}
        }
        if let Err(e) = Protocol::parse(p.protocol.as_deref()) {
            r.err(join_key(&pp, "protocol"), e);
        }
        if let Some(np) = p.node_port {
            let (lo, hi) = ctx.node_port_range;
            range(r, &join_key(&pp, "nodePort"), Some(np), i64::from(lo), i64::from(hi));
            if !node_ports.insert((np, p.proto())) {
                r.err(join_key(&pp, "nodePort"), format!("duplicate node port {np}/{}", p.proto()));
            }
        }
    }
}

/// A Docker image reference: `[registry[:port]/]path[:tag][@digest]`,
/// lower-case path components.
pub fn image_reference(s: &str) -> Result<(), Invalid> {
    let bad = |why: &str| Err(Invalid(format!("invalid image reference {s:?}: {why}")));
    if s.is_empty() {
        return bad("empty");
    }
    if s.len() > 512 {
        return bad("longer than 512 characters");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace");
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d
            .split_once(':')
            .is_some_and(|(alg, hex)| !alg.is_empty() && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return bad("the digest must look like sha256:<hex>");
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !t.starts_with(['.', '-']);
        if !ok {
            return bad("the tag must be letters, digits, '_', '.' or '-'");
        }
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    let first = parts[0];
    let has_registry = parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        parts.remove(0);
    }
    for comp in parts {
        let ok = !comp.is_empty()
            && comp.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && comp.as_bytes()[0].is_ascii_alphanumeric()
            && comp.as_bytes()[comp.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return bad("path components must be lower-case letters, digits and separators");
        }
    }
    Ok(())
}

fn config_map_volume(r: &mut Report, path: &str, v: &crate::model::types::ConfigMapVolumeSource) {
    r.check(&join_key(path, "name"), names::dns_subdomain(&v.name, MAX_OBJECT_NAME));
    key_items(r, path, v.default_mode, &v.items);
}

/// A configMap or secret volume's `defaultMode` and `items`.
fn key_items(r: &mut Report, path: &str, mode: Option<i64>, items: &[crate::model::types::KeyToPath]) {
    range(r, &join_key(path, "defaultMode"), mode, 0, 0o777);
    let mut paths = BTreeSet::new();
    for (i, it) in items.iter().enumerate() {
        let ip = join_index(&join_key(path, "items"), i);
        if let Err(m) = super::config::valid_key(&it.key) {
            r.err(join_key(&ip, "key"), m);
        }
        if let Err(m) = super::config::valid_item_path(&it.path) {
            r.err(join_key(&ip, "path"), m);
        }
        if !paths.insert(it.path.as_str()) {
            r.err(join_key(&ip, "path"), format!("duplicate path {:?}", it.path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "localhost:5000/a/b:c",
            "shoal-test/httpd:1",
            "a@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert!(image_reference(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Busybox", "a b", "a:", "a:-x", "a//b", "a@md5", "-a"] {
            assert!(image_reference(bad).is_err(), "{bad}");
        }
    }
}
