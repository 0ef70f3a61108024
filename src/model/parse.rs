//! Manifest text (or JSON) to validated objects, with errors that point at
//! the file, the document, the field path and the line.
//!
//! All-or-nothing: `parse_files` returns objects only when every document of
//! every file is valid. Fields outside Shoal's subset come back as warnings
//! naming their path, never silently dropped.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::Manifest;
use super::validate::{self, Context, FieldIssue};
use super::yaml::{self, LocatedDoc, Pos, join_index, join_key};
use super::{DEFAULT_NAMESPACE, Kind, Object};

/// Most documents one apply may carry.
pub const MAX_DOCUMENTS: usize = 1000;

/// Where an issue was found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Issue {
    /// File name as given by the client (`-` for stdin), empty for API bodies.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// 1-based document number within the file; 0 when not applicable.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub document: usize,
    /// Field path, e.g. `spec.template.spec.containers[0].image`; empty for the document.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        if !self.file.is_empty() {
            write!(f, "{}", self.file)?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
                if let Some(c) = self.column {
                    write!(f, ":{c}")?;
                }
            }
            wrote = true;
        }
        if self.document > 0 {
            write!(f, "{}document {}", if wrote { " " } else { "" }, self.document)?;
            wrote = true;
        }
        if wrote {
            f.write_str(": ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// An object parsed from a document, with where it came from.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub object: Object,
    pub file: String,
    pub document: usize,
}

/// The outcome of parsing a set of files.
#[derive(Debug, Default)]
pub struct Outcome {
    pub objects: Vec<Parsed>,
    pub warnings: Vec<Issue>,
    pub errors: Vec<Issue>,
}

struct DocCtx<'a> {
    file: &'a str,
    document: usize,
    doc: &'a LocatedDoc,
}

impl DocCtx<'_> {
    fn issue(&self, field: &str, message: impl Into<String>) -> Issue {
        let pos: Option<Pos> = self.doc.pos(field);
        Issue {
            file: self.file.to_string(),
            document: self.document,
            field: field.to_string(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.into(),
        }
    }
}

fn format_ignored(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => join_index(&format_ignored(parent), *index),
        P::Map { parent, key } => join_key(&format_ignored(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => format_ignored(parent),
    }
}

fn format_error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment as S;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            S::Seq { index } => out = join_index(&out, *index),
            S::Map { key } => out = join_key(&out, key),
            S::Enum { variant } => out = join_key(&out, variant),
            S::Unknown => out = join_key(&out, "?"),
        }
    }
    out
}

/// Deserializes `value` into `T`, collecting the paths of fields `T` does
/// not declare.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<(T, Vec<String>), (String, String)> {
    let mut ignored = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| ignored.push(format_ignored(&p));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok((v, ignored)),
        Err(e) => {
            let path = format_error_path(e.path());
            let msg = friendly(&e.inner().to_string());
            Err((path, msg))
        }
    }
}

fn friendly(msg: &str) -> String {
    if msg.contains("untagged enum QuantityText") {
        "expected a quantity such as 250m, 2 or 128Mi".to_string()
    } else if msg.contains("untagged enum IntOrString") {
        "expected a port number or a port name".to_string()
    } else {
        msg.to_string()
    }
}

fn parse_kind<S>(ctx: &DocCtx<'_>, out: &mut Outcome, wrap: fn(Manifest<S>) -> Object) -> Option<Object>
where
    S: DeserializeOwned + Default,
{
    parse_typed::<Manifest<S>>(ctx, out, wrap)
}

fn parse_typed<T: DeserializeOwned>(ctx: &DocCtx<'_>, out: &mut Outcome, wrap: fn(T) -> Object) -> Option<Object> {
    match typed::<T>(ctx.doc.value.clone()) {
        Ok((m, ignored)) => {
            for path in ignored {
                let msg = if path == "status" || path.starts_with("status.") {
                    "set by the cluster, ignored"
                } else if path.starts_with("metadata.") {
                    "not used by Shoal, ignored"
                } else {
                    "not supported, ignored"
                };
                out.warnings.push(ctx.issue(&path, msg));
            }
            Some(wrap(m))
        }
        Err((path, msg)) => {
            out.errors.push(ctx.issue(&path, msg));
            None
        }
    }
}

/// Parses one document's value into an object, appending issues to `out`.
fn parse_doc(ctx: &DocCtx<'_>, vctx: &Context, default_ns: &str, out: &mut Outcome) -> Option<Object> {
    let v = &ctx.doc.value;
    let Some(map) = v.as_object() else {
        out.errors.push(ctx.issue("", "a manifest must be a mapping with apiVersion, kind, metadata and spec"));
        return None;
    };
    let kind_text = match map.get("kind") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => {
            out.errors.push(ctx.issue("kind", "must be a string"));
            return None;
        }
        None => {
            out.errors
                .push(ctx.issue("kind", "missing: say what this object is (Deployment, Job, Service or Namespace)"));
            return None;
        }
    };
    let Some(kind) = Kind::from_manifest(&kind_text) else {
        out.errors.push(ctx.issue(
            "kind",
            format!(
                "unknown kind {kind_text:?}: Shoal supports Namespace, Deployment, DaemonSet, Job, CronJob, Service, ConfigMap and Secret"
            ),
        ));
        return None;
    };
    match map.get("apiVersion").and_then(|a| a.as_str()) {
        Some(a) if a == kind.api_version() => {}
        Some(a) => {
            out.errors
                .push(ctx.issue("apiVersion", format!("{kind} uses apiVersion {} (got {a:?})", kind.api_version())));
            return None;
        }
        None => {
            out.errors.push(ctx.issue("apiVersion", format!("missing: {kind} uses apiVersion {}", kind.api_version())));
            return None;
        }
    }
    let before = out.errors.len();
    let obj = match kind {
        Kind::Namespace => parse_kind(ctx, out, Object::Namespace),
        Kind::Deployment => parse_kind(ctx, out, Object::Deployment),
        Kind::Job => parse_kind(ctx, out, Object::Job),
        Kind::Service => parse_kind(ctx, out, Object::Service),
        Kind::DaemonSet => parse_kind(ctx, out, Object::DaemonSet),
        Kind::CronJob => parse_kind(ctx, out, Object::CronJob),
        Kind::ConfigMap => parse_typed(ctx, out, Object::ConfigMap),
        Kind::Secret => {
            let o = parse_typed(ctx, out, Object::Secret);
            // A decoding error may quote the value it could not take: never
            // one of a Secret's.
            for e in &mut out.errors[before..] {
                if ["data", "stringData"].iter().any(|f| e.field == *f || e.field.starts_with(&format!("{f}."))) {
                    e.message = "must be a mapping of keys to strings (the value is not shown)".into();
                }
            }
            o
        }
    };
    let mut obj = obj?;
    // Server-set metadata is never taken from a client, except the
    // resourceVersion used for optimistic concurrency.
    {
        let m = obj.meta_mut();
        m.uid = None;
        m.generation = None;
        m.creation_timestamp = None;
        if kind.namespaced() {
            if m.namespace.as_deref().is_none_or(str::is_empty) {
                m.namespace = Some(default_ns.to_string());
            }
        } else if m.namespace.take().is_some_and(|ns| !ns.is_empty()) {
            out.warnings.push(ctx.issue("metadata.namespace", "a Namespace is not namespaced, ignored"));
        }
    }
    let (errs, warns) = validate::validate(&obj, vctx);
    let to_issue = |f: FieldIssue| ctx.issue(&f.path, f.message);
    out.errors.extend(errs.into_iter().map(to_issue));
    out.warnings.extend(warns.into_iter().map(to_issue));
    (out.errors.len() == before).then_some(obj)
}

/// One input file: its name (for messages) and text.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub content: String,
}

/// Parses and validates every document of every file. Objects are returned
/// only if there is no error at all; duplicates across files are errors.
pub fn parse_files(files: &[SourceFile], vctx: &Context, default_ns: Option<&str>) -> Outcome {
    let default_ns = default_ns.unwrap_or(DEFAULT_NAMESPACE);
    let mut out = Outcome::default();
    let mut seen = BTreeSet::new();
    let mut count = 0usize;
    for f in files {
        let docs = match yaml::parse_documents(&f.content) {
            Ok(d) => d,
            Err(e) => {
                out.errors.push(Issue {
                    file: f.name.clone(),
                    document: 0,
                    field: String::new(),
                    line: e.pos.map(|p| p.line),
                    column: e.pos.map(|p| p.column),
                    message: format!("invalid YAML: {}", e.message),
                });
                continue;
            }
        };
        if docs.is_empty() {
            out.warnings.push(Issue {
                file: f.name.clone(),
                document: 0,
                field: String::new(),
                line: None,
                column: None,
                message: "no objects in this file".into(),
            });
        }
        for (i, doc) in docs.iter().enumerate() {
            count += 1;
            if count > MAX_DOCUMENTS {
                out.errors.push(Issue {
                    file: f.name.clone(),
                    document: i + 1,
                    field: String::new(),
                    line: None,
                    column: None,
                    message: format!(
                        "too many objects in one apply (limit MAX_DOCUMENTS = {MAX_DOCUMENTS}); split the files"
                    ),
                });
                return Outcome { objects: Vec::new(), ..out };
            }
            let ctx = DocCtx { file: &f.name, document: i + 1, doc };
            if let Some(obj) = parse_doc(&ctx, vctx, default_ns, &mut out) {
                let key = obj.key();
                if !seen.insert(key.clone()) {
                    out.errors
                        .push(ctx.issue("metadata.name", format!("duplicate object: {key} appears more than once")));
                    continue;
                }
                out.objects.push(Parsed { object: obj, file: f.name.clone(), document: i + 1 });
            }
        }
    }
    if !out.errors.is_empty() {
        out.objects.clear();
    }
    out
}

/// Parses one object sent as JSON to a REST endpoint.
pub fn parse_json(value: serde_json::Value, vctx: &Context, default_ns: &str) -> Outcome {
    let doc = LocatedDoc::from_json(value);
    let ctx = DocCtx { file: "", document: 0, doc: &doc };
    let mut out = Outcome::default();
    if let Some(obj) = parse_doc(&ctx, vctx, default_ns, &mut out) {
        out.objects.push(Parsed { object: obj, file: String::new(), document: 0 });
    }
    if !out.errors.is_empty() {
        out.objects.clear();
    }
    out
}

/// Re-reads an object stored by this or another node (JSON written by
/// `Object::to_json`). Peers are untrusted: this validates fully.
pub fn parse_stored(value: serde_json::Value) -> Result<Object, super::Invalid> {
    let ns = value.pointer("/metadata/namespace").and_then(|v| v.as_str()).unwrap_or(DEFAULT_NAMESPACE).to_string();
    let stored_meta = value.get("metadata").cloned();
    let out = parse_json(value, &Context { node_port_range: (1, 65535) }, &ns);
    match out.objects.into_iter().next() {
        Some(p) => {
            let mut obj = p.object;
            // Keep the cluster-set metadata that parse_doc strips from clients.
            if let Some(m) = stored_meta {
                let meta = obj.meta_mut();
                meta.uid = m.get("uid").and_then(|v| v.as_str()).map(String::from);
                meta.generation = m.get("generation").and_then(|v| v.as_u64());
                meta.creation_timestamp = m.get("creationTimestamp").and_then(|v| v.as_str()).map(String::from);
            }
            Ok(obj)
        }
        None => Err(super::Invalid(out.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Outcome {
        parse_files(&[SourceFile { name: "web.yaml".into(), content: text.into() }], &Context::default(), None)
    }

    const GOOD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          command: ["python3", "-m", "http.server", "$(PORT)"]
          ports: [{name: http, containerPort: 8080}]
          resources:
            requests: {cpu: 250m, memory: 64Mi}
          readinessProbe:
            httpGet: {path: /, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"#;

    #[test]
    fn good_manifest_parses() {
        let out = parse(GOOD);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(out.objects.len(), 2);
        assert_eq!(out.objects[0].object.key().namespace, "default");
        let Object::Deployment(d) = &out.objects[0].object else { panic!("not a deployment") };
        assert_eq!(d.spec.replicas, Some(3));
    }

    #[test]
    fn udp_ports_parse_and_other_protocols_are_named() {
        // DNS: the same port number for TCP and UDP, in the pod and the service.
        let dns = GOOD
            .replace(
                "ports: [{name: http, containerPort: 8080}]",
                "ports: [{name: dns, containerPort: 53, protocol: UDP}, {name: dns-tcp, containerPort: 53}]",
            )
            .replace("httpGet: {path: /, port: http}", "tcpSocket: {port: dns-tcp}")
            .replace(
                "ports: [{port: 80, targetPort: http}]",
                "ports: [{name: dns, port: 53, targetPort: dns, protocol: UDP}, {name: dns-tcp, port: 53, targetPort: dns-tcp, protocol: TCP}]",
            );
        let out = parse(&dns);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let Object::Service(s) = &out.objects[1].object else { panic!("not a service") };
        assert_eq!(s.spec.ports[0].proto(), crate::model::types::Protocol::Udp);
        assert_eq!(s.spec.ports[1].proto(), crate::model::types::Protocol::Tcp);
        let twice = dns.replace(
            "name: dns-tcp, port: 53, targetPort: dns-tcp, protocol: TCP",
            "name: dns-tcp, port: 53, targetPort: dns-tcp, protocol: UDP",
        );
        let out = parse(&twice);
        assert_eq!(out.errors[0].field, "spec.ports[1].port");
        assert!(out.errors[0].message.contains("duplicate port 53/UDP"), "{}", out.errors[0]);
        let sctp = GOOD.replace("{port: 80, targetPort: http}", "{port: 80, targetPort: http, protocol: SCTP}");
        let out = parse(&sctp);
        assert_eq!(out.errors[0].field, "spec.ports[0].protocol");
        assert!(out.errors[0].message.contains("SCTP is not supported: use TCP or UDP"), "{}", out.errors[0]);
        let lower = GOOD.replace("containerPort: 8080}", "containerPort: 8080, protocol: udp}");
        let out = parse(&lower);
        assert_eq!(out.errors[0].field, "spec.template.spec.containers[0].ports[0].protocol");
        assert!(out.errors[0].message.contains("unknown protocol \"udp\""), "{}", out.errors[0]);
    }

    #[test]
    fn unknown_field_is_a_warning_with_path_and_line() {
        let text = GOOD.replace("      containers:", "      affinity: {x: 1}\n      containers:");
        let out = parse(&text);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let w = &out.warnings[0];
        assert_eq!(w.field, "spec.template.spec.affinity");
        assert_eq!(w.line, Some(14));
        assert_eq!(w.to_string(), "web.yaml:14:17 document 1: spec.template.spec.affinity: not supported, ignored");
    }

    #[test]
    fn bad_quantity_names_the_field_and_line() {
        let out = parse(&GOOD.replace("cpu: 250m", "cpu: 250q"));
        assert_eq!(out.objects.len(), 0, "all-or-nothing");
        let e = &out.errors[0];
        assert_eq!(e.field, "spec.template.spec.containers[0].resources.requests.cpu");
        assert_eq!(e.line, Some(19));
        assert!(e.message.contains("unknown suffix"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let out = parse(&GOOD.replace("replicas: 3", "replicas: three"));
        let e = &out.errors[0];
        assert_eq!(e.field, "spec.replicas");
        assert_eq!(e.line, Some(7));
    }

    #[test]
    fn negative_replicas_refused() {
        let out = parse(&GOOD.replace("replicas: 3", "replicas: -1"));
        assert_eq!(out.errors[0].field, "spec.replicas");
        assert!(out.errors[0].message.contains("between 0"));
    }

    const CJ: &str = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: backup}\nspec:\n  schedule: '*/5 * * * *'\n  timeZone: Europe/Berlin\n  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 60\n  jobTemplate:\n    metadata: {labels: {app: backup}}\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers: [{name: c, command: [sh, -c, 'echo hi']}]\n";

    #[test]
    fn cronjobs_parse_and_bad_fields_are_named() {
        let out = parse(CJ);
        assert!(out.errors.is_empty() && out.warnings.is_empty(), "{:?} {:?}", out.errors, out.warnings);
        assert_eq!(out.objects[0].object.kind(), Kind::CronJob);
        assert!(parse(&CJ.replace("'*/5 * * * *'", "'@hourly'")).errors.is_empty());
        let long = "b".repeat(53);
        let cases = [
            ("'*/5 * * * *'", "'*/5 * * *'", "spec.schedule", "five fields"),
            ("'*/5 * * * *'", "'99 * * * *'", "spec.schedule", "invalid schedule"),
            ("'*/5 * * * *'", "'TZ=UTC */5 * * * *'", "spec.schedule", "spec.timeZone"),
            ("'*/5 * * * *'", "''", "spec.schedule", "missing"),
            ("Europe/Berlin", "Mars/Olympus", "spec.timeZone", "IANA"),
            ("Forbid", "Sometimes", "spec.concurrencyPolicy", "Allow, Forbid or Replace"),
            ("startingDeadlineSeconds: 60", "startingDeadlineSeconds: 0", "spec.startingDeadlineSeconds", "between"),
            (
                "restartPolicy: OnFailure",
                "restartPolicy: Always",
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                "Never or OnFailure",
            ),
            ("name: backup", &format!("name: {long}"), "metadata.name", "at most 52"),
            ("{app: backup}", "{'a/b/c': x}", "spec.jobTemplate.metadata.labels.a/b/c", ""),
        ];
        for (from, to, field, says) in cases {
            let out = parse(&CJ.replace(from, to));
            assert!(
                out.errors.iter().any(|e| e.field.contains(field) && e.message.contains(says)),
                "{to}: want {field} saying {says:?}, got {:?}",
                out.errors
            );
        }
    }

    const DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  updateStrategy: {rollingUpdate: {maxUnavailable: 1}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: c, command: [sleep, '100']}]\n";

    #[test]
    fn daemonsets_parse_and_bad_fields_are_named() {
        let out = parse(DS);
        assert!(out.errors.is_empty() && out.warnings.is_empty(), "{:?} {:?}", out.errors, out.warnings);
        assert_eq!(out.objects[0].object.kind(), Kind::DaemonSet);
        let cases = [
            (
                "maxUnavailable: 1",
                "maxUnavailable: 0",
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "must not be 0",
            ),
            (
                "maxUnavailable: 1",
                "maxSurge: 1",
                "spec.updateStrategy.rollingUpdate.maxSurge",
                "maxUnavailable instead",
            ),
            (
                "maxUnavailable: 1",
                "maxUnavailable: 1x",
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "percentage",
            ),
            (
                "{rollingUpdate: {maxUnavailable: 1}}",
                "{type: Sometimes}",
                "spec.updateStrategy.type",
                "RollingUpdate or OnDelete",
            ),
            (
                "{rollingUpdate: {maxUnavailable: 1}}",
                "{type: OnDelete, rollingUpdate: {}}",
                "spec.updateStrategy.rollingUpdate",
                "OnDelete",
            ),
            (
                "matchLabels: {app: agent}",
                "matchLabels: {app: other}",
                "spec.selector.matchLabels.app",
                "does not match",
            ),
            ("containers:", "restartPolicy: Never\n      containers:", "spec.template.spec.restartPolicy", "Always"),
        ];
        for (from, to, field, says) in cases {
            let out = parse(&DS.replace(from, to));
            assert!(
                out.errors.iter().any(|e| e.field == field && e.message.contains(says)),
                "{to}: want {field} saying {says:?}, got {:?}",
                out.errors
            );
        }
        let out = parse(&DS.replace("  updateStrategy", "  replicas: 3\n  updateStrategy"));
        assert!(out.warnings.iter().any(|w| w.field == "spec.replicas"), "{:?}", out.warnings);
    }

    #[test]
    fn load_balancer_fields_are_checked() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: LoadBalancer\n  loadBalancerIP: 10.0.0.7\n  ports: [{port: 80}]\n";
        let out = parse(svc);
        assert!(out.errors.is_empty() && out.warnings.is_empty(), "{:?} {:?}", out.errors, out.warnings);
        let cases = [
            ("loadBalancerIP: 10.0.0.7", "loadBalancerIP: lan", "spec.loadBalancerIP", "\"lan\" is not an IP address"),
            ("type: LoadBalancer", "type: NodePort", "spec.loadBalancerIP", "only allowed with type: LoadBalancer"),
            ("type: LoadBalancer", "type: ExternalName", "spec.type", "ClusterIP, NodePort or LoadBalancer"),
        ];
        for (from, to, field, says) in cases {
            let out = parse(&svc.replace(from, to));
            assert!(
                out.errors.iter().any(|e| e.field == field && e.message.contains(says)),
                "{to}: want {field} saying {says:?}, got {:?}",
                out.errors
            );
        }
    }

    #[test]
    fn indexed_job_errors_name_their_field() {
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: m}\nspec:\n  completions: 4\n  completionMode: Indexed\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, command: [\"true\"]}]\n";
        assert!(parse(job).errors.is_empty(), "{:?}", parse(job).errors);
        let ok = job.replace("  completions: 4", "  completions: 4\n  backoffLimitPerIndex: 2\n  maxFailedIndexes: 1\n  activeDeadlineSeconds: 60\n  ttlSecondsAfterFinished: 0");
        assert!(parse(&ok).errors.is_empty(), "{:?}", parse(&ok).errors);
        let cases = [
            ("completionMode: Indexed", "completionMode: indexed", "spec.completionMode", "NonIndexed or Indexed"),
            (
                "completionMode: Indexed",
                "backoffLimitPerIndex: 1",
                "spec.backoffLimitPerIndex",
                "needs completionMode: Indexed",
            ),
            (
                "completions: 4",
                "completions: 4\n  maxFailedIndexes: 1",
                "spec.maxFailedIndexes",
                "needs backoffLimitPerIndex",
            ),
            (
                "completions: 4",
                "completions: 4\n  backoffLimitPerIndex: 1\n  maxFailedIndexes: 5",
                "spec.maxFailedIndexes",
                "between 0 and 4",
            ),
            ("completions: 4", "completions: 4\n  backoffLimitPerIndex: -1", "spec.backoffLimitPerIndex", "between 0"),
            ("restartPolicy: Never", "restartPolicy: OnFailure", "spec.template.spec.restartPolicy", ""),
            ("completions: 4", "completions: 4\n  activeDeadlineSeconds: 0", "spec.activeDeadlineSeconds", "between 1"),
            (
                "completions: 4",
                "completions: 4\n  ttlSecondsAfterFinished: -5",
                "spec.ttlSecondsAfterFinished",
                "between 0",
            ),
        ];
        for (from, to, field, says) in cases {
            let text = if field.ends_with("restartPolicy") {
                job.replace("completions: 4", "completions: 4\n  backoffLimitPerIndex: 1").replace(from, to)
            } else {
                job.replace(from, to)
            };
            let out = parse(&text);
            assert!(
                out.errors.iter().any(|e| e.field == field && e.message.contains(says)),
                "{to}: want {field} saying {says:?}, got {:?}",
                out.errors
            );
        }
    }

    #[test]
    fn names_as_long_as_kubernetes_accepts() {
        let long = format!("{}.{}.{}", "d".repeat(63), "e".repeat(63), "f".repeat(36));
        let out = parse(&GOOD.replace("name: web\nspec:\n  replicas", &format!("name: {long}\nspec:\n  replicas")));
        assert!(out.errors.is_empty(), "a 164-character Deployment name is a valid DNS subdomain: {:?}", out.errors);
        let out = parse(
            &GOOD.replace("name: web\nspec:\n  replicas", &format!("name: {}\nspec:\n  replicas", "d".repeat(53))),
        );
        assert!(out.errors.is_empty(), "53 characters, refused before: {:?}", out.errors);
        let too_long = format!("{0}.{0}.{0}.{0}", "d".repeat(63));
        let out = parse(&GOOD.replace("name: web\nspec:\n  replicas", &format!("name: {too_long}\nspec:\n  replicas")));
        assert!(out.errors.iter().any(|e| e.field == "metadata.name" && e.message.contains("at most 253")));
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: NAME}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
        let out = parse(&svc.replace("NAME", &"s".repeat(64)));
        assert!(
            out.errors.iter().any(|e| e.field == "metadata.name" && e.message.contains("at most 63")),
            "{:?}",
            out.errors
        );
        let out = parse(&svc.replace("NAME", "a.b"));
        assert!(
            out.errors.iter().any(|e| e.field == "metadata.name"),
            "a Service name is a DNS label: {:?}",
            out.errors
        );
    }

    #[test]
    fn selector_must_match_template() {
        let out = parse(&GOOD.replace("matchLabels: {app: web}", "matchLabels: {app: api}"));
        assert_eq!(out.errors[0].field, "spec.selector.matchLabels.app");
    }

    #[test]
    fn unknown_kind_and_duplicates() {
        let out = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n");
        assert!(out.errors[0].message.contains("unknown kind"), "{:?}", out.errors);
        let dup = format!("{GOOD}\n---\n{}", GOOD.split("---").nth(1).unwrap());
        let out = parse(&dup);
        assert!(out.errors.iter().any(|e| e.message.contains("duplicate object")), "{:?}", out.errors);
    }

    #[test]
    fn bad_yaml_has_a_line() {
        let out = parse("apiVersion: v1\nkind: [Service\n");
        assert!(out.errors[0].line.is_some(), "{:?}", out.errors);
        assert!(out.errors[0].message.starts_with("invalid YAML"));
    }

    #[test]
    fn probe_port_name_must_exist() {
        let out = parse(&GOOD.replace("httpGet: {path: /, port: http}", "httpGet: {path: /, port: web}"));
        assert_eq!(out.errors[0].field, "spec.template.spec.containers[0].readinessProbe.httpGet.port");
    }

    #[test]
    fn stored_roundtrip() {
        let out = parse(GOOD);
        for p in out.objects {
            let again = parse_stored(p.object.to_json()).unwrap();
            assert_eq!(again, p.object);
        }
    }
}
