//! Kubernetes' protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! which kubectl 1.32 and newer send from its typed commands (`kubectl
//! create configmap|secret|namespace|service|deployment|job|cronjob`): the
//! envelope (`k8s\0` then a `runtime.Unknown`: type, raw object) is read and
//! the object becomes the JSON the rest of the API reads.
//!
//! The schemas below hold, with their protobuf field numbers (Kubernetes'
//! `generated.proto`), every scalar field of those kinds down to a pod's
//! containers (they go on to the JSON checks, which warn about those Shoal
//! does not use, as for a JSON body) and the nested objects such commands
//! write. Another nested object (volumes, probes, affinity...) is refused
//! with its path and number (415, with directions), never dropped. Values follow Kubernetes' JSON: zero scalars
//! of non-pointer Go fields are left out, as `omitempty` would (Kubernetes
//! writes them in protobuf), while pointer fields (`replicas: 0`) keep
//! theirs; `status`, timestamps and managedFields are the cluster's and are
//! skipped.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The envelope's first bytes.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("the body does not start with Kubernetes' protobuf envelope (k8s\\0)")]
    Envelope,
    #[error("{path}: the protobuf encoding is cut short or malformed")]
    Malformed { path: String },
    #[error("kind {kind:?} ({api_version}) is not read from protobuf here")]
    Kind { kind: String, api_version: String },
    #[error("{path}: protobuf field {tag} of {message} is not read by Shoal")]
    Field { path: String, message: &'static str, tag: u32 },
    #[error("{path}: a content encoding ({encoding:?}) is not read")]
    Encoding { path: String, encoding: String },
}

#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Bool,
    I32,
    I64,
    Msg(&'static Schema),
    /// `map<string, string>`.
    StrMap,
    /// `map<string, bytes>` (base64 in JSON).
    BytesMap,
    /// `map<string, Quantity>` (strings in JSON).
    QuantityMap,
    IntOrString,
    /// The cluster's (status, timestamps): read past, not kept.
    Skip,
}

#[derive(Debug)]
struct Field {
    tag: u32,
    name: &'static str,
    ty: Ty,
    repeated: bool,
    /// A Go pointer field: its zero value is a value (`replicas: 0`).
    keep_zero: bool,
}

#[derive(Debug)]
pub struct Schema {
    name: &'static str,
    fields: &'static [Field],
}

const fn f(tag: u32, name: &'static str, ty: Ty) -> Field {
    Field { tag, name, ty, repeated: false, keep_zero: false }
}
const fn rep(tag: u32, name: &'static str, ty: Ty) -> Field {
    Field { tag, name, ty, repeated: true, keep_zero: false }
}
const fn ptr(tag: u32, name: &'static str, ty: Ty) -> Field {
    Field { tag, name, ty, repeated: false, keep_zero: true }
}

use Ty::*;

static OBJECT_META: Schema = Schema {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Str),
        f(2, "generateName", Str),
        f(3, "namespace", Str),
        f(4, "selfLink", Skip),
        f(5, "uid", Str),
        f(6, "resourceVersion", Str),
        f(7, "generation", Skip),
        f(8, "creationTimestamp", Skip),
        f(9, "deletionTimestamp", Skip),
        f(10, "deletionGracePeriodSeconds", Skip),
        f(11, "labels", StrMap),
        f(12, "annotations", StrMap),
        rep(14, "finalizers", Str),
        f(17, "managedFields", Skip),
    ],
};
static REQUIREMENT: Schema = Schema {
    name: "LabelSelectorRequirement",
    fields: &[f(1, "key", Str), f(2, "operator", Str), rep(3, "values", Str)],
};
static LABEL_SELECTOR: Schema = Schema {
    name: "LabelSelector",
    fields: &[f(1, "matchLabels", StrMap), rep(2, "matchExpressions", Msg(&REQUIREMENT))],
};
static CONFIG_MAP: Schema = Schema {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "data", StrMap),
        f(3, "binaryData", BytesMap),
        ptr(4, "immutable", Bool),
    ],
};
static SECRET: Schema = Schema {
    name: "Secret",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "data", BytesMap),
        f(3, "type", Str),
        f(4, "stringData", StrMap),
        ptr(5, "immutable", Bool),
    ],
};
static NAMESPACE_SPEC: Schema = Schema { name: "NamespaceSpec", fields: &[rep(1, "finalizers", Str)] };
static NAMESPACE: Schema = Schema {
    name: "Namespace",
    fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&NAMESPACE_SPEC)), f(3, "status", Skip)],
};
static SERVICE_PORT: Schema = Schema {
    name: "ServicePort",
    fields: &[
        f(1, "name", Str),
        f(2, "protocol", Str),
        f(3, "port", I32),
        f(4, "targetPort", IntOrString),
        f(5, "nodePort", I32),
        f(6, "appProtocol", Str),
    ],
};
static CLIENT_IP_CONFIG: Schema = Schema { name: "ClientIPConfig", fields: &[f(1, "timeoutSeconds", I32)] };
static SESSION_AFFINITY_CONFIG: Schema =
    Schema { name: "SessionAffinityConfig", fields: &[f(1, "clientIP", Msg(&CLIENT_IP_CONFIG))] };
static SERVICE_SPEC: Schema = Schema {
    name: "ServiceSpec",
    fields: &[
        rep(1, "ports", Msg(&SERVICE_PORT)),
        f(2, "selector", StrMap),
        f(3, "clusterIP", Str),
        f(4, "type", Str),
        rep(5, "externalIPs", Str),
        f(7, "sessionAffinity", Str),
        f(8, "loadBalancerIP", Str),
        f(10, "externalName", Str),
        f(11, "externalTrafficPolicy", Str),
        f(12, "healthCheckNodePort", I32),
        f(13, "publishNotReadyAddresses", Bool),
        f(14, "sessionAffinityConfig", Msg(&SESSION_AFFINITY_CONFIG)),
        ptr(17, "ipFamilyPolicy", Str),
        rep(18, "clusterIPs", Str),
        rep(19, "ipFamilies", Str),
        ptr(20, "allocateLoadBalancerNodePorts", Bool),
        ptr(21, "loadBalancerClass", Str),
        ptr(22, "internalTrafficPolicy", Str),
        ptr(23, "trafficDistribution", Str),
    ],
};
static SERVICE: Schema = Schema {
    name: "Service",
    fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&SERVICE_SPEC)), f(3, "status", Skip)],
};
static CONTAINER_PORT: Schema = Schema {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Str),
        f(2, "hostPort", I32),
        f(3, "containerPort", I32),
        f(4, "protocol", Str),
        f(5, "hostIP", Str),
    ],
};
static ENV_VAR: Schema = Schema { name: "EnvVar", fields: &[f(1, "name", Str), f(2, "value", Str)] };
static RESOURCES: Schema =
    Schema { name: "ResourceRequirements", fields: &[f(1, "limits", QuantityMap), f(2, "requests", QuantityMap)] };
static CONTAINER: Schema = Schema {
    name: "Container",
    fields: &[
        f(1, "name", Str),
        f(2, "image", Str),
        rep(3, "command", Str),
        rep(4, "args", Str),
        f(5, "workingDir", Str),
        rep(6, "ports", Msg(&CONTAINER_PORT)),
        rep(7, "env", Msg(&ENV_VAR)),
        f(8, "resources", Msg(&RESOURCES)),
        f(13, "terminationMessagePath", Str),
        f(14, "imagePullPolicy", Str),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        f(20, "terminationMessagePolicy", Str),
        ptr(24, "restartPolicy", Str),
    ],
};
static POD_SPEC: Schema = Schema {
    name: "PodSpec",
    fields: &[
        rep(2, "containers", Msg(&CONTAINER)),
        f(3, "restartPolicy", Str),
        ptr(4, "terminationGracePeriodSeconds", I64),
        ptr(5, "activeDeadlineSeconds", I64),
        f(6, "dnsPolicy", Str),
        f(7, "nodeSelector", StrMap),
        f(8, "serviceAccountName", Str),
        f(9, "serviceAccount", Str),
        f(10, "nodeName", Str),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        f(16, "hostname", Str),
        f(17, "subdomain", Str),
        f(19, "schedulerName", Str),
        rep(20, "initContainers", Msg(&CONTAINER)),
        ptr(21, "automountServiceAccountToken", Bool),
        f(24, "priorityClassName", Str),
        ptr(25, "priority", I32),
        ptr(27, "shareProcessNamespace", Bool),
        ptr(29, "runtimeClassName", Str),
        ptr(30, "enableServiceLinks", Bool),
        ptr(31, "preemptionPolicy", Str),
        ptr(35, "setHostnameAsFQDN", Bool),
        ptr(37, "hostUsers", Bool),
    ],
};
static POD_TEMPLATE: Schema =
    Schema { name: "PodTemplateSpec", fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&POD_SPEC))] };
static ROLLING_UPDATE: Schema = Schema {
    name: "RollingUpdateDeployment",
    fields: &[f(1, "maxUnavailable", IntOrString), f(2, "maxSurge", IntOrString)],
};
static STRATEGY: Schema =
    Schema { name: "DeploymentStrategy", fields: &[f(1, "type", Str), f(2, "rollingUpdate", Msg(&ROLLING_UPDATE))] };
static DEPLOYMENT_SPEC: Schema = Schema {
    name: "DeploymentSpec",
    fields: &[
        ptr(1, "replicas", I32),
        f(2, "selector", Msg(&LABEL_SELECTOR)),
        f(3, "template", Msg(&POD_TEMPLATE)),
        f(4, "strategy", Msg(&STRATEGY)),
        f(5, "minReadySeconds", I32),
        ptr(6, "revisionHistoryLimit", I32),
        f(7, "paused", Bool),
        ptr(9, "progressDeadlineSeconds", I32),
    ],
};
static DEPLOYMENT: Schema = Schema {
    name: "Deployment",
    fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&DEPLOYMENT_SPEC)), f(3, "status", Skip)],
};
static JOB_SPEC: Schema = Schema {
    name: "JobSpec",
    fields: &[
        ptr(1, "parallelism", I32),
        ptr(2, "completions", I32),
        ptr(3, "activeDeadlineSeconds", I64),
        f(4, "selector", Msg(&LABEL_SELECTOR)),
        ptr(5, "manualSelector", Bool),
        f(6, "template", Msg(&POD_TEMPLATE)),
        ptr(7, "backoffLimit", I32),
        ptr(8, "ttlSecondsAfterFinished", I32),
        f(9, "completionMode", Str),
        ptr(10, "suspend", Bool),
        ptr(12, "backoffLimitPerIndex", I32),
        ptr(13, "maxFailedIndexes", I32),
        ptr(14, "podReplacementPolicy", Str),
        ptr(15, "managedBy", Str),
    ],
};
static JOB: Schema = Schema {
    name: "Job",
    fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&JOB_SPEC)), f(3, "status", Skip)],
};
static JOB_TEMPLATE: Schema =
    Schema { name: "JobTemplateSpec", fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&JOB_SPEC))] };
static CRON_JOB_SPEC: Schema = Schema {
    name: "CronJobSpec",
    fields: &[
        f(1, "schedule", Str),
        ptr(2, "startingDeadlineSeconds", I64),
        f(3, "concurrencyPolicy", Str),
        ptr(4, "suspend", Bool),
        f(5, "jobTemplate", Msg(&JOB_TEMPLATE)),
        ptr(6, "successfulJobsHistoryLimit", I32),
        ptr(7, "failedJobsHistoryLimit", I32),
        ptr(8, "timeZone", Str),
    ],
};
static CRON_JOB: Schema = Schema {
    name: "CronJob",
    fields: &[f(1, "metadata", Msg(&OBJECT_META)), f(2, "spec", Msg(&CRON_JOB_SPEC)), f(3, "status", Skip)],
};

/// The kinds read from protobuf: (apiVersion, kind, schema).
static KINDS: &[(&str, &str, &Schema)] = &[
    ("v1", "ConfigMap", &CONFIG_MAP),
    ("v1", "Secret", &SECRET),
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "Service", &SERVICE),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
];

/// A protobuf body as the JSON object it encodes (with apiVersion and kind).
pub fn to_json(body: &[u8]) -> Result<Value, ProtoError> {
    let unknown = body.strip_prefix(MAGIC).ok_or(ProtoError::Envelope)?;
    let (mut api_version, mut kind, mut raw, mut encoding) = (String::new(), String::new(), &[][..], String::new());
    let mut r = Reader { buf: unknown, path: "envelope" };
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 2) => {
                let mut t = Reader { buf: r.bytes()?, path: "envelope.typeMeta" };
                while let Some((tag, wire)) = t.key()? {
                    match (tag, wire) {
                        (1, 2) => api_version = t.string()?,
                        (2, 2) => kind = t.string()?,
                        _ => t.skip(wire)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            (3, 2) => encoding = r.string()?,
            _ => r.skip(wire)?,
        }
    }
    if !encoding.is_empty() {
        return Err(ProtoError::Encoding { path: "envelope".into(), encoding });
    }
    let Some((_, _, schema)) = KINDS.iter().find(|(v, k, _)| *v == api_version && *k == kind) else {
        return Err(ProtoError::Kind { kind, api_version });
    };
    let mut v = message(raw, schema, "")?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn message(buf: &[u8], schema: &'static Schema, path: &str) -> Result<Value, ProtoError> {
    let mut out = Map::new();
    let mut r = Reader { buf, path };
    while let Some((tag, wire)) = r.key()? {
        let Some(field) = schema.fields.iter().find(|x| x.tag == tag) else {
            return Err(ProtoError::Field { path: path.to_string(), message: schema.name, tag });
        };
        let here = join(path, field.name);
        let here = if field.repeated {
            format!("{here}[{}]", out.get(field.name).and_then(Value::as_array).map_or(0, Vec::len))
        } else {
            here
        };
        let value = match (field.ty, wire) {
            (Skip, _) => {
                r.skip(wire)?;
                continue;
            }
            (Str, 2) => Value::String(r.string()?),
            (Bool, 0) => Value::Bool(r.varint()? != 0),
            (I32, 0) => json!(r.varint()? as i64 as i32),
            (I64, 0) => json!(r.varint()? as i64),
            (Msg(s), 2) => message(r.bytes()?, s, &here)?,
            (IntOrString, 2) => int_or_string(r.bytes()?, &here)?,
            (StrMap | BytesMap | QuantityMap, 2) => {
                let (k, v) = entry(r.bytes()?, field.ty, &here)?;
                let m = out.entry(field.name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = m {
                    m.insert(k, v);
                }
                continue;
            }
            _ => return Err(ProtoError::Malformed { path: here }),
        };
        if field.repeated {
            let a = out.entry(field.name).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = a {
                a.push(value);
            }
        } else if field.keep_zero || !is_zero(&value) {
            out.insert(field.name.to_string(), value);
        } else {
            out.remove(field.name);
        }
    }
    Ok(Value::Object(out))
}

/// Go's `omitempty` zero: "", 0, false, or an empty object.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
    }
}

fn entry(buf: &[u8], ty: Ty, path: &str) -> Result<(String, Value), ProtoError> {
    let mut r = Reader { buf, path };
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire, ty) {
            (1, 2, _) => key = r.string()?,
            (2, 2, StrMap) => value = Value::String(r.string()?),
            (2, 2, BytesMap) => value = json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
            (2, 2, QuantityMap) => {
                // resource.Quantity: its string form, field 1.
                let mut q = Reader { buf: r.bytes()?, path };
                while let Some((tag, wire)) = q.key()? {
                    match (tag, wire) {
                        (1, 2) => value = Value::String(q.string()?),
                        _ => q.skip(wire)?,
                    }
                }
            }
            _ => return Err(ProtoError::Malformed { path: path.to_string() }),
        }
    }
    Ok((key, value))
}

/// intstr.IntOrString: type (0 int, 1 string), intVal, strVal.
fn int_or_string(buf: &[u8], path: &str) -> Result<Value, ProtoError> {
    let mut r = Reader { buf, path };
    let (mut is_str, mut i, mut s) = (false, 0i32, String::new());
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 0) => is_str = r.varint()? == 1,
            (2, 0) => i = r.varint()? as i64 as i32,
            (3, 2) => s = r.string()?,
            _ => return Err(ProtoError::Malformed { path: path.to_string() }),
        }
    }
    Ok(if is_str { Value::String(s) } else { json!(i) })
}

/// Protobuf's wire format, read from a slice.
struct Reader<'a> {
    buf: &'a [u8],
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn bad(&self) -> ProtoError {
        ProtoError::Malformed { path: self.path.to_string() }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or_else(|| self.bad())?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.bad())
    }

    /// The next field's number and wire type; `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8)>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let tag = u32::try_from(k >> 3).map_err(|_| self.bad())?;
        if tag == 0 {
            return Err(self.bad());
        }
        Ok(Some((tag, (k & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = usize::try_from(self.varint()?).map_err(|_| self.bad())?;
        if n > self.buf.len() {
            return Err(self.bad());
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, ProtoError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad())
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtoError> {
        let n = match wire {
            0 => return self.varint().map(|_| ()),
            1 => 8,
            2 => return self.bytes().map(|_| ()),
            5 => 4,
            _ => return Err(self.bad()),
        };
        if n > self.buf.len() {
            return Err(self.bad());
        }
        self.buf = &self.buf[n..];
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A protobuf encoder for the tests: fields appended in order.
    #[derive(Default, Clone)]
    pub struct Enc(pub Vec<u8>);

    impl Enc {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        pub fn int(mut self, tag: u32, v: i64) -> Enc {
            self.varint(u64::from(tag) << 3);
            self.varint(v as u64);
            self
        }
        pub fn bytes(mut self, tag: u32, b: &[u8]) -> Enc {
            self.varint((u64::from(tag) << 3) | 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        pub fn str(self, tag: u32, s: &str) -> Enc {
            self.bytes(tag, s.as_bytes())
        }
        pub fn msg(self, tag: u32, m: Enc) -> Enc {
            self.bytes(tag, &m.0)
        }
        pub fn entry(self, tag: u32, k: &str, v: &str) -> Enc {
            self.msg(tag, Enc::default().str(1, k).str(2, v))
        }
    }

    pub fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
        let unknown = Enc::default().msg(1, Enc::default().str(1, api_version).str(2, kind)).msg(2, raw);
        [MAGIC, &unknown.0].concat()
    }

    /// ObjectMeta as Go writes it: every non-pointer field, even empty.
    fn meta(name: &str) -> Enc {
        Enc::default()
            .str(1, name)
            .str(2, "")
            .str(3, "")
            .str(4, "")
            .str(5, "")
            .str(6, "")
            .int(7, 0)
            .msg(8, Enc::default().int(1, 0).int(2, 0))
    }

    #[test]
    fn a_configmap_as_kubectl_creates_it() {
        let raw = Enc::default()
            .msg(1, meta("conf").entry(11, "app", "web"))
            .entry(2, "mode", "fast")
            .entry(2, "level", "3")
            .msg(3, Enc::default().str(1, "blob").bytes(2, &[0, 159, 146, 150]));
        let v = to_json(&envelope("v1", "ConfigMap", raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf", "labels": {"app": "web"}},
                   "data": {"mode": "fast", "level": "3"}, "binaryData": {"blob": "AJ+Slg=="}})
        );
    }

    #[test]
    fn a_deployment_keeps_pointer_zeros_and_drops_go_zero_values() {
        let container = Enc::default()
            .str(1, "web")
            .str(2, "nginx")
            .msg(6, Enc::default().str(1, "").int(2, 0).int(3, 8080).str(4, "TCP"))
            .msg(8, Enc::default().msg(1, Enc::default().str(1, "cpu").msg(2, Enc::default().str(1, "500m"))))
            .str(14, "");
        let template = Enc::default().msg(1, meta("").entry(11, "app", "web")).msg(2, Enc::default().msg(2, container));
        let spec = Enc::default()
            .int(1, 0)
            .msg(2, Enc::default().entry(1, "app", "web"))
            .msg(3, template)
            .msg(4, Enc::default().str(1, "").msg(2, Enc::default().msg(2, Enc::default().int(1, 1).str(3, "25%"))))
            .int(5, 0);
        let raw = Enc::default().msg(1, meta("web")).msg(2, spec).msg(3, Enc::default().int(1, 3));
        let v = to_json(&envelope("apps/v1", "Deployment", raw)).unwrap();
        assert_eq!(v["spec"]["replicas"], 0, "replicas: 0 is a value");
        assert_eq!(v["spec"]["strategy"], json!({"rollingUpdate": {"maxSurge": "25%"}}));
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c,
            &json!({"name": "web", "image": "nginx", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                              "resources": {"limits": {"cpu": "500m"}}})
        );
        assert!(v.get("status").is_none() && v["metadata"].get("creationTimestamp").is_none());
    }

    #[test]
    fn an_unknown_field_is_refused_by_path_and_number_never_dropped() {
        let container = Enc::default().str(1, "web").msg(10, Enc::default());
        let spec = Enc::default().msg(3, Enc::default().msg(2, Enc::default().msg(2, container)));
        let raw = Enc::default().msg(1, meta("web")).msg(2, spec);
        let e = to_json(&envelope("apps/v1", "Deployment", raw)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.template.spec.containers[0]: protobuf field 10 of Container is not read by Shoal"
        );
        let e = to_json(&envelope("v1", "Pod", Enc::default())).unwrap_err();
        assert!(matches!(e, ProtoError::Kind { .. }), "{e}");
        assert_eq!(to_json(b"{\"kind\":\"ConfigMap\"}").unwrap_err(), ProtoError::Envelope);
    }

    #[test]
    fn truncated_or_garbled_input_is_an_error_not_a_panic() {
        let good = envelope("v1", "ConfigMap", Enc::default().msg(1, meta("x")).entry(2, "a", "b"));
        for cut in 0..good.len() {
            let _ = to_json(&good[..cut]);
        }
        let mut bad = good.clone();
        for i in 4..bad.len() {
            bad[i] ^= 0xff;
            let _ = to_json(&bad);
            bad[i] ^= 0xff;
        }
        assert!(
            to_json(&[MAGIC, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]].concat()).is_err()
        );
    }
}
