//! What a node keeps in its data dir and knows of its host: the cluster
//! identity (reloaded, obtained by joining, or new), the API token, its
//! recent starts (for settling), the peers it last knew (to rejoin), and its
//! own record.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::NodeError;
use crate::config::{ConfigError, Discover, NodeConfig, Resolved};
use crate::membership::settle::WINDOW_SECS;
use crate::membership::view::{ClusterView, NodeInfo, NodeState, detect_capacity};
use crate::model::pods::{Resources, RuntimeKind};
use crate::model::quantity::{parse_cpu_millis, parse_memory_bytes};
use crate::net::join::join;
use crate::net::tls::Identity;
use crate::util::{random_hex, secret_file, unix_secs, write_private};

/// Path of the API token in a data dir (the CLI reads it from there).
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}

/// The value of `SHOAL_AGENT_ID` on this node's pod processes: derived from
/// the data dir, so it is the same across restarts of the node.
pub fn agent_marker(data_dir: &Path) -> String {
    let canon = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    blake3::hash(canon.as_os_str().as_encoded_bytes()).to_hex()[..16].to_string()
}

/// This node's own record, from the config and the host.
pub fn self_info(
    cfg: &NodeConfig,
    r: &Resolved,
    generation: u64,
    runtimes: &[RuntimeKind],
) -> Result<NodeInfo, NodeError> {
    let detected = detect_capacity();
    let bad = |field: &str, e: String| NodeError::Config(ConfigError::Invalid { field: field.into(), message: e });
    let cpu = match &cfg.capacity.cpu {
        Some(q) => parse_cpu_millis(q).map_err(|e| bad("capacity.cpu", e.to_string()))?,
        None => detected.cpu_millis,
    };
    let mem = match &cfg.capacity.memory {
        Some(q) => parse_memory_bytes(q).map_err(|e| bad("capacity.memory", e.to_string()))?,
        None => detected.memory_bytes,
    };
    let rcpu = parse_cpu_millis(&cfg.capacity.reserved_cpu).map_err(|e| bad("capacity.reserved_cpu", e.to_string()))?;
    let rmem = parse_memory_bytes(&cfg.capacity.reserved_memory)
        .map_err(|e| bad("capacity.reserved_memory", e.to_string()))?;
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    Ok(NodeInfo {
        name: r.name.clone(),
        generation,
        api_url: format!("http://{}", r.api_addr),
        gossip_addr: SocketAddr::new(r.node_ip, r.gossip_addr.port()).to_string(),
        node_ip: r.node_ip.to_string(),
        capacity: Resources { cpu_millis: cpu, memory_bytes: mem },
        allocatable: Resources { cpu_millis: cpu.saturating_sub(rcpu), memory_bytes: mem.saturating_sub(rmem) },
        weight: cfg.capacity.weight.unwrap_or(cpu).max(1),
        max_pods: cfg.capacity.max_pods,
        labels: node_labels(cfg, &r.name).into(),
        runtimes: std::sync::Arc::new(runtimes.iter().copied().collect()),
        arch: std::env::consts::ARCH.into(),
        os: std::env::consts::OS.into(),
        hostname,
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: generation / 1000,
        schedulable: false,
        settling: false,
    })
}

/// The node's labels: the configured ones, and Kubernetes' well-known
/// `kubernetes.io/hostname`, `kubernetes.io/arch` and `kubernetes.io/os`
/// (so that `nodeSelector: {kubernetes.io/arch: arm64}` works on a mixed
/// homelab); configured values win.
pub fn node_labels(cfg: &NodeConfig, name: &str) -> std::collections::BTreeMap<String, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    let mut l: std::collections::BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.to_string()),
        ("kubernetes.io/arch", arch.to_string()),
        ("kubernetes.io/os", std::env::consts::OS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    l.extend(cfg.labels.clone());
    l
}

/// The data dir's format: raised when what it holds changes so that an
/// older Shoal would misread it.
pub const DATA_FORMAT: u32 = 1;

/// Refuses a data dir written by a newer Shoal; marks a new one (or one
/// from before the mark existed) with this format.
pub(super) fn check_format(dd: &Path) -> Result<(), NodeError> {
    let path = dd.join("format");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: u32 = text.trim().parse().map_err(|_| {
                NodeError::DataDir(
                    dd.display().to_string(),
                    std::io::Error::other(format!("{} holds {:?}, not a format number", path.display(), text.trim())),
                )
            })?;
            if found > DATA_FORMAT {
                return Err(NodeError::DataDirTooNew { dir: dd.display().to_string(), found, supported: DATA_FORMAT });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_private(&path, &format!("{DATA_FORMAT}\n"))
            .map_err(|e| NodeError::DataDir(dd.display().to_string(), e)),
        Err(e) => Err(NodeError::DataDir(dd.display().to_string(), e)),
    }
}

/// Records this start in the data dir; returns the unix seconds of the
/// node's starts within the settle window, this one included.
pub(super) fn record_start(dd: &Path) -> Vec<u64> {
    let path = dd.join("starts");
    let now = unix_secs();
    let mut starts: Vec<u64> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .filter(|t| now.saturating_sub(*t) < WINDOW_SECS)
        .collect();
    starts.push(now);
    let text = starts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join("\n");
    if let Err(e) = std::fs::write(&path, text) {
        tracing::warn!(path = %path.display(), error = %e, "cannot record this start (settling will not grow with restarts)");
    }
    starts
}

/// The cluster identity: reloaded, obtained by joining, or a new cluster.
/// What `identity` found or made.
pub(super) struct Found {
    pub identity: Identity,
    pub api_token: String,
    /// Peers a join answered with.
    pub peers: Vec<String>,
    /// This node created the cluster.
    pub new_cluster: bool,
}

/// The cluster identity: reloaded, obtained by joining, or a new cluster.
pub(super) async fn identity(cfg: &NodeConfig, r: &Resolved) -> Result<Found, NodeError> {
    let dd = &r.data_dir;
    let dir_err = |e| NodeError::DataDir(dd.display().to_string(), e);
    if let Some(id) = Identity::load(dd)? {
        if id.node_name != r.name {
            return Err(NodeError::DataDirOwner { dir: dd.display().to_string(), owner: id.node_name.clone() });
        }
        let api_token = secret_file(&token_path(dd), || random_hex(32)).map_err(dir_err)?;
        return Ok(Found { identity: id, api_token, peers: Vec::new(), new_cluster: false });
    }
    let mut seeds = cfg.join.clone();
    if seeds.is_empty()
        && cfg.membership.discover == Discover::Mdns
        && let Some(t) = cfg.token.as_deref()
    {
        let pin = crate::net::token::JoinToken::parse(t).map_err(crate::net::join::JoinError::from)?.ca_hash;
        let tag = crate::membership::discovery::cluster_tag(&pin);
        let found = crate::membership::discovery::find(&tag, Duration::from_secs(5)).await;
        seeds = found.iter().map(|a| a.to_string()).collect();
        if seeds.is_empty() {
            return Err(NodeError::NothingDiscovered);
        }
    }
    if !seeds.is_empty() {
        let token = cfg.token.as_deref().ok_or(NodeError::NoJoinToken)?;
        let a = join(&seeds, token, &r.name).await?;
        a.identity.save(dd)?;
        write_private(&token_path(dd), &format!("{}\n", a.api_token)).map_err(dir_err)?;
        return Ok(Found { identity: a.identity, api_token: a.api_token, peers: a.peers, new_cluster: false });
    }
    let id = Identity::create_cluster(&r.name)?;
    id.save(dd)?;
    let api_token = secret_file(&token_path(dd), || random_hex(32)).map_err(dir_err)?;
    Ok(Found { identity: id, api_token, peers: Vec::new(), new_cluster: true })
}

/// This run's generation: the (cluster-corrected) clock in ms, and always
/// above the last run's (`generation` in the data dir), so a restart is
/// never taken for an older, superseded generation, whatever the clock or
/// its correction did meanwhile.
pub(super) fn next_generation(dd: &Path, now_ms: u64) -> u64 {
    let file = dd.join("generation");
    let last: u64 = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let generation = now_ms.max(last.saturating_add(1)).max(1);
    if let Err(e) = write_private(&file, &generation.to_string()) {
        tracing::warn!("cannot keep this run's generation in {}: {e}", file.display());
    }
    generation
}

/// The members this node knew when it last ran (`members` in the data dir).
pub(super) fn remembered_members(dd: &Path) -> Vec<String> {
    std::fs::read_to_string(dd.join("members")).unwrap_or_default().lines().map(String::from).collect()
}

/// Remembers alive peers' gossip addresses, to rejoin after a restart, and
/// the members (all but those that left), to know what a majority is
/// before hearing from them again.
pub(super) fn spawn_peer_memory(dd: PathBuf, mut view: watch::Receiver<Arc<ClusterView>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = String::new();
        let mut last_members = String::new();
        while view.changed().await.is_ok() {
            let v = view.borrow_and_update().clone();
            let members: Vec<&str> =
                v.nodes.values().filter(|n| n.state != NodeState::Left).map(|n| n.info.name.as_str()).collect();
            let text = members.join("\n");
            if members.len() > 1 && text != last_members {
                let _ = write_private(&dd.join("members"), &text);
                last_members = text;
            }
            let mut peers: Vec<String> = v
                .nodes
                .values()
                .filter(|n| n.state.alive() && n.info.name != v.self_name)
                .map(|n| n.info.gossip_addr.clone())
                .collect();
            peers.sort();
            let text = peers.join("\n");
            if !peers.is_empty() && text != last {
                let _ = write_private(&dd.join("peers"), &text);
                last = text;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_never_gets_an_older_generation() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_generation(dir.path(), 1_000), 1_000);
        // The clock went back (or its correction did) between the runs.
        assert_eq!(next_generation(dir.path(), 500), 1_001);
        assert_eq!(next_generation(dir.path(), 5_000), 5_000);
    }
}
