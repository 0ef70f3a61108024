//! A pod's resources on this node, and the fully resolved launch of each of
//! its containers: the pod directory, volumes and host ports; the
//! environment (with Kubernetes' `$(VAR)` expansion); probe targets; and the
//! clean-up when the pod goes. File-system and port I/O only: no decision.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checks::Check;
use crate::agent::logs::{self, LogLimits, LogSink};
use crate::agent::ports::PortAllocator;
use crate::agent::runtime::{Adopted, Launch, Mount, Runtime};
use crate::model::config::{self, CONFIG_ERROR, ConfigError, EnvEntry, Source, Values};
use crate::model::pods::{DesiredPod, RuntimeKind};
use crate::model::status::PortMapping;
use crate::model::types::{Container, IntOrString, Probe};

/// Extra environment for the pods of a namespace (service discovery).
pub type NamespaceEnv = Box<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;
/// The desired state's ConfigMap or Secret (namespace, name), if there is
/// one; an error when it cannot be read here (a Secret without the key).
pub type ConfigSource = Box<dyn Fn(Source, &str, &str) -> Result<Option<Arc<Values>>, ConfigError> + Send + Sync>;

/// What every pod on this node shares.
pub struct PodCtx {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub generation: u64,
    pub data_dir: PathBuf,
    pub log_limits: LogLimits,
    pub ports: PortAllocator,
    pub runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>>,
    /// Extra environment for every pod of a namespace (service discovery).
    pub namespace_env: NamespaceEnv,
    /// The ConfigMaps and Secrets pods take variables and files from.
    pub config: ConfigSource,
    /// Where `secret` volumes live: a private directory on a tmpfs, so a
    /// Secret's files never reach a disk.
    pub secrets_dir: PathBuf,
    /// The lease fenced pods run under.
    pub fence_lease: crate::agent::runtime::LeaseSpec,
    /// The containers running here, for `exec`.
    pub containers: crate::agent::attach::Containers,
}

impl PodCtx {
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
}

/// Kubernetes' `$(VAR)` expansion: known variables are replaced, `$$` is a
/// literal `$`, anything else is left as written.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                    i += end + 3;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Upper-cased, `-` → `_`: `http-alt` → `HTTP_ALT`.
pub fn env_suffix(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// Why a pod cannot be prepared; `reason` is its status reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct PrepareError {
    pub reason: &'static str,
    pub message: String,
}

fn err(reason: &'static str, message: String) -> PrepareError {
    PrepareError { reason, message }
}

/// A pod's resources on this node.
#[derive(Debug)]
pub struct Prepared {
    pub pod_dir: PathBuf,
    pub ports: Vec<PortMapping>,
    volumes: BTreeMap<String, PathBuf>,
    /// Each container's variables from its spec, ConfigMap values resolved.
    env: Vec<Vec<EnvEntry>>,
}

/// The directory of volume `volume` of pod `namespace/name` on this node.
pub fn volume_dir(pods_dir: &Path, namespace: &str, name: &str, volume: &str) -> PathBuf {
    pods_dir.join(format!("{namespace}_{name}")).join("volumes").join(volume)
}

/// The directory of a `configMap` or `secret` volume of pod
/// `namespace/name`: a Secret's under `secrets_dir` (tmpfs), a ConfigMap's
/// in the pod's directory.
pub fn config_volume_dir(
    pods_dir: &Path,
    secrets_dir: &Path,
    source: Source,
    namespace: &str,
    name: &str,
    volume: &str,
) -> PathBuf {
    match source {
        Source::ConfigMap => volume_dir(pods_dir, namespace, name, volume),
        Source::Secret => secrets_dir.join(format!("{namespace}_{name}")).join(volume),
    }
}

/// The private tmpfs directory for `secret` volumes of the node whose
/// marker is `marker`: under /dev/shm, else `$XDG_RUNTIME_DIR` (both
/// memory file systems on Linux), else the system's temporary directory.
pub fn default_secrets_dir(marker: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        PathBuf::from(x)
    } else {
        std::env::temp_dir()
    };
    base.join(format!("shoal-{marker}"))
}

/// Creates a `secret` volume's directory `dir` in its pod's private
/// directory (0700): the volume 0755 for a container, 0700 for a process.
fn secret_volume_dir(dir: &Path, docker: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(pod) = dir.parent() {
        std::fs::create_dir_all(pod)?;
        std::fs::set_permissions(pod, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(if docker { 0o755 } else { 0o700 }))
}

/// Makes `dir` the private root of a node's `secret` volumes: a directory
/// (never a symlink) this user owns, mode 0700. One that someone else made
/// first, in a world-writable /dev/shm, is refused rather than used.
pub fn secure_secrets_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            if !m.file_type().is_dir() || m.uid() != nix::unistd::geteuid().as_raw() {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory this user owns (someone else made it?): remove it and start again",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates the pod's directory and volumes and allocates its host ports,
/// reusing those of adopted containers.
pub fn prepare(desired: &DesiredPod, ctx: &PodCtx, adopted: &[Adopted]) -> Result<Prepared, PrepareError> {
    let pod_dir = ctx.pods_dir().join(format!("{}_{}", desired.namespace, desired.name));
    // What the pod takes from ConfigMaps and Secrets first: a missing one
    // fails the prepare before anything is allocated (the agent retries it).
    let lookup = |source: Source, ns: &str, name: &str| (ctx.config)(source, ns, name);
    let ns = desired.namespace.as_str();
    let env = desired
        .spec
        .containers
        .iter()
        .map(|c| config::container_env(ns, c, &lookup))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(CONFIG_ERROR, e.0))?;
    let mut config_files = BTreeMap::new();
    for v in &desired.spec.volumes {
        if let Some(r) = config::volume_ref(v) {
            let files = config::volume_files(ns, &r, &lookup).map_err(|e| err(CONFIG_ERROR, e.0))?;
            config_files.insert(v.name.clone(), (r.source, r.mode, files));
        }
    }
    std::fs::create_dir_all(&pod_dir).map_err(|e| err("CreatePodDirError", format!("{}: {e}", pod_dir.display())))?;
    let mut volumes = BTreeMap::new();
    for v in &desired.spec.volumes {
        if let Some((source, mode, files)) = config_files.get(&v.name) {
            let p = config_volume_dir(&ctx.pods_dir(), &ctx.secrets_dir, *source, ns, &desired.name, &v.name);
            let what = if *source == Source::Secret { "secret" } else { "configMap" };
            if *source == Source::Secret {
                // The pod's directory is private; the volume itself is
                // readable by a container's own user (a bind mount does not
                // pass through the private directories above it).
                let docker = desired.runtime == RuntimeKind::Docker;
                secret_volume_dir(&p, docker).map_err(|e| err("VolumeError", format!("{what} {}: {e}", v.name)))?;
            }
            super::config_files::write(&p, files, *mode)
                .map_err(|e| err("VolumeError", format!("{what} {}: {e}", v.name)))?;
            volumes.insert(v.name.clone(), p);
        } else if v.empty_dir.is_some() {
            let p = pod_dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&p).map_err(|e| err("VolumeError", format!("emptyDir {}: {e}", v.name)))?;
            volumes.insert(v.name.clone(), p);
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.kind.as_deref() {
                Some("DirectoryOrCreate") => {
                    std::fs::create_dir_all(&p).map_err(|e| err("VolumeError", format!("hostPath {}: {e}", h.path)))?
                }
                Some("FileOrCreate") => {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(|e| err("VolumeError", format!("hostPath {}: {e}", h.path)))?;
                }
                Some("Directory") if !p.is_dir() => {
                    return Err(err("VolumeError", format!("hostPath {} is not a directory on this node", h.path)));
                }
                Some("File") if !p.is_file() => {
                    return Err(err("VolumeError", format!("hostPath {} is not a file on this node", h.path)));
                }
                _ => {}
            }
            volumes.insert(v.name.clone(), p);
        }
    }
    let previous: BTreeMap<u16, u16> =
        adopted.iter().flat_map(|a| a.ports.iter().map(|p| (p.container_port, p.host_port))).collect();
    let mut ports = Vec::new();
    for c in &desired.spec.containers {
        for p in &c.ports {
            let cp = p.container_port as u16;
            // The same container port for TCP and UDP: one host port.
            let sibling = ports.iter().find(|m: &&PortMapping| m.container_port == cp).map(|m| m.host_port);
            let host = match sibling.or_else(|| previous.get(&cp).copied()) {
                Some(h) => {
                    ctx.ports.claim(h);
                    h
                }
                None => match ctx.ports.allocate(None) {
                    Ok(h) => h,
                    Err(e) => {
                        for m in &ports {
                            let m: &PortMapping = m;
                            ctx.ports.release(m.host_port);
                        }
                        return Err(err("PortAllocationError", e.to_string()));
                    }
                },
            };
            ports.push(PortMapping {
                name: p.name.clone().unwrap_or_default(),
                container_port: cp,
                host_port: host,
                protocol: p.proto(),
            });
        }
    }
    Ok(Prepared { pod_dir, ports, volumes, env })
}

/// A container's environment, and the variables `$(VAR)` may name.
#[derive(Clone, Default)]
pub struct Env {
    pub vars: Vec<(String, String)>,
    pub lookup: BTreeMap<String, String>,
}

/// `Debug` shows variable names only: values may come from Secrets.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("vars", &crate::agent::runtime::env_names(&self.vars)).finish()
    }
}

/// The environment of container `c`.
pub fn container_env(desired: &DesiredPod, c: &Container, ctx: &PodCtx, prep: &Prepared, docker: bool) -> Env {
    let mut env: Vec<(String, String)> = vec![
        ("SHOAL_NODE_NAME".into(), ctx.node_name.clone()),
        ("SHOAL_NODE_IP".into(), ctx.node_ip.to_string()),
        ("SHOAL_POD_NAME".into(), desired.name.clone()),
        ("SHOAL_POD_NAMESPACE".into(), desired.namespace.clone()),
    ];
    if !docker {
        env.push(("SHOAL_POD_DIR".into(), prep.pod_dir.display().to_string()));
        for (name, path) in &prep.volumes {
            env.push((format!("SHOAL_VOLUME_{}", env_suffix(name)), path.display().to_string()));
        }
    }
    let own: Vec<&PortMapping> =
        prep.ports.iter().filter(|m| c.ports.iter().any(|p| p.container_port as u16 == m.container_port)).collect();
    let port_value = |m: &PortMapping| if docker { m.container_port } else { m.host_port }.to_string();
    if let Some(first) = own.first() {
        env.push(("PORT".into(), port_value(first)));
    }
    for m in &prep.ports {
        if !m.name.is_empty() {
            env.push((format!("SHOAL_PORT_{}", env_suffix(&m.name)), port_value(m)));
        }
    }
    env.extend((ctx.namespace_env)(&desired.namespace));
    let mut vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let i = desired.spec.containers.iter().position(|x| x.name == c.name);
    for e in i.and_then(|i| prep.env.get(i)).into_iter().flatten() {
        let v = if e.literal { expand(&e.value, &vars) } else { e.value.clone() };
        vars.insert(e.name.clone(), v.clone());
        env.push((e.name.clone(), v));
    }
    Env { vars: env, lookup: vars }
}

fn resolve_port(port: &IntOrString, prep: &Prepared, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => {
            let p = u16::try_from(*p).ok()?;
            let declared = c.ports.iter().any(|cp| cp.container_port as u16 == p);
            Some(if declared {
                prep.ports.iter().find(|m| m.container_port == p).map(|m| m.host_port).unwrap_or(p)
            } else {
                p
            })
        }
        IntOrString::Str(name) => prep.ports.iter().find(|m| &m.name == name).map(|m| m.host_port),
    }
}

/// What a probe of container `c` checks; `None` when its port is not one
/// the container declares.
pub fn probe_check(
    p: &Probe,
    ip: IpAddr,
    prep: &Prepared,
    c: &Container,
    vars: &BTreeMap<String, String>,
) -> Option<Check> {
    if let Some(h) = &p.http_get {
        let port = resolve_port(&h.port, prep, c)?;
        return Some(Check::Http {
            addr: SocketAddr::new(ip, port),
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(t) = &p.tcp_socket {
        return Some(Check::Tcp { addr: SocketAddr::new(ip, resolve_port(&t.port, prep, c)?) });
    }
    p.exec.as_ref().map(|e| Check::Exec { command: e.command.iter().map(|s| expand(s, vars)).collect() })
}

/// Everything the runtime needs to start container `c` of `desired`.
pub fn launch(
    ctx: &PodCtx,
    desired: &DesiredPod,
    c: &Container,
    prep: &Prepared,
    env: Vec<(String, String)>,
    vars: &BTreeMap<String, String>,
) -> Launch {
    let mounts = c
        .volume_mounts
        .iter()
        .filter_map(|m| {
            prep.volumes.get(&m.name).map(|p| Mount {
                name: m.name.clone(),
                host_path: p.clone(),
                container_path: m.mount_path.clone(),
                read_only: m.read_only,
            })
        })
        .collect();
    let limit = |name: &str, f: fn(&str) -> Result<u64, crate::model::quantity::QuantityError>| {
        c.resources.limits.get(name).and_then(|q| f(&q.to_string()).ok())
    };
    Launch {
        namespace: desired.namespace.clone(),
        pod: desired.name.clone(),
        container: c.name.clone(),
        generation: ctx.generation,
        template_hash: desired.template_hash.clone(),
        image: c.image.clone(),
        pull_policy: c.image_pull_policy.clone(),
        command: c.command.iter().map(|s| expand(s, vars)).collect(),
        args: c.args.iter().map(|s| expand(s, vars)).collect(),
        env,
        workdir: c.working_dir.clone(),
        pod_dir: prep.pod_dir.clone(),
        ports: prep
            .ports
            .iter()
            .filter(|m| c.ports.iter().any(|p| p.container_port as u16 == m.container_port))
            .cloned()
            .collect(),
        mounts,
        cpu_limit_millis: limit("cpu", crate::model::quantity::parse_cpu_millis),
        memory_limit_bytes: limit("memory", crate::model::quantity::parse_memory_bytes),
        node_ip: ctx.node_ip,
        labels: (*desired.labels).clone(),
        log: log_sink(ctx, desired, &c.name),
        lease: desired.fenced.then(|| ctx.fence_lease.clone()),
    }
}

/// The log file of a container of `desired`.
pub fn log_sink(ctx: &PodCtx, desired: &DesiredPod, container: &str) -> LogSink {
    LogSink::open(logs::log_path(&ctx.logs_dir(), &desired.namespace, &desired.name, container), ctx.log_limits)
}

/// Releases a gone pod's ports and removes its logs and directory.
pub fn clean_up(ctx: &PodCtx, desired: &DesiredPod, prep: Option<&Prepared>) {
    let Some(prep) = prep else { return };
    for m in &prep.ports {
        ctx.ports.release(m.host_port);
    }
    // A Job pod's logs outlive it (`logs job/NAME` after it finished) until
    // its Job is deleted (`logs::sweep`).
    if desired.owner.kind != crate::model::Kind::Job {
        for c in &desired.spec.containers {
            logs::remove_logs(
                &logs::log_path(&ctx.logs_dir(), &desired.namespace, &desired.name, &c.name),
                ctx.log_limits,
            );
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&prep.pod_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(pod = %desired.id(), error = %e, "cannot remove pod directory");
    }
    let secrets = ctx.secrets_dir.join(format!("{}_{}", desired.namespace, desired.name));
    if let Err(e) = std::fs::remove_dir_all(&secrets)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(pod = %desired.id(), error = %e, "cannot remove the pod's secret volumes");
    }
}

/// Where a pod's files live (for tests and the API).
pub fn pod_dir(data_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    data_dir.join("pods").join(format!("{namespace}_{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_paren_expansion() {
        let vars: BTreeMap<String, String> = [("PORT".to_string(), "8080".to_string())].into();
        assert_eq!(expand("--port=$(PORT)", &vars), "--port=8080");
        assert_eq!(expand("$(MISSING) $$(PORT) $", &vars), "$(MISSING) $(PORT) $");
        assert_eq!(expand("héllo $(PORT)", &vars), "héllo 8080");
        assert_eq!(env_suffix("http-alt"), "HTTP_ALT");
    }
}
