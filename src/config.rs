//! Node configuration: embedded defaults, overridden by a TOML file, then by
//! flags and environment variables.
//!
//! Owns the settings' names, units and defaults (documented field by field in
//! `configs/node.example.toml`) and their resolution into concrete values
//! (addresses, data dir). No I/O beyond reading the file and probing which
//! local address routes outward.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default API port (HTTP).
pub const DEFAULT_API_PORT: u16 = 7420;
/// Default gossip port (QUIC/UDP).
pub const DEFAULT_GOSSIP_PORT: u16 = 7421;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(String, String),
    #[error("invalid setting {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// `runtimes.docker`: whether the node runs Docker pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DockerMode {
    /// Use Docker while its engine answers.
    #[default]
    Auto,
    /// Refuse to start without an engine.
    On,
    Off,
}

/// `proxy.balancer`: how a service proxy picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    /// Power of two choices over peak-EWMA latency.
    #[default]
    P2c,
    RoundRobin,
}

pub use crate::net::PlainHttp;

/// `membership.discover`: how a node finds peers without `--join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Discover {
    /// Only the configured peers (also written `""`).
    #[default]
    #[serde(alias = "")]
    Off,
    /// mDNS on the LAN.
    Mdns,
}

/// `membership.engine` (defined with membership, which may not import config).
pub use crate::membership::engine::Engine;

/// `log_format`: how the node logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CapacitySection {
    /// CPU offered to pods, as a quantity (`4`, `3500m`); default: detected cores.
    pub cpu: Option<String>,
    /// Memory offered to pods (`8Gi`); default: detected memory.
    pub memory: Option<String>,
    /// Reserved for the system and excluded from allocatable.
    pub reserved_cpu: String,
    pub reserved_memory: String,
    /// Relative share of replicas this node takes; default: its CPU in millicores.
    pub weight: Option<u64>,
    /// Most pods this node runs.
    pub max_pods: u32,
}

impl Default for CapacitySection {
    fn default() -> Self {
        CapacitySection {
            cpu: None,
            memory: None,
            reserved_cpu: "0".into(),
            reserved_memory: "0".into(),
            weight: None,
            max_pods: 110,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    #[serde(with = "humantime_serde")]
    pub restart_backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// A container that ran this long starts its crash count over.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_reset: Duration,
    /// Per-container log size before rotation (quantity, e.g. `10Mi`).
    pub log_max_size: String,
    /// Log files kept per container, the current one included.
    pub log_max_files: u32,
    /// How long a pod this node no longer owns keeps running while its new
    /// owner has not reported it Ready.
    #[serde(with = "humantime_serde")]
    pub handoff_timeout: Duration,
    /// The old copy keeps serving this long after the new one is Ready, so
    /// every node hears of the new copy before the old one goes.
    #[serde(with = "humantime_serde")]
    pub handoff_linger: Duration,
    /// A fenced pod runs under a watchdog that kills it this long after its
    /// node last renewed its lease (`agent::lease`).
    #[serde(with = "humantime_serde")]
    pub fence_lease: Duration,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            restart_backoff_initial: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            restart_backoff_reset: Duration::from_secs(600),
            log_max_size: "10Mi".into(),
            log_max_files: 2,
            handoff_timeout: Duration::from_secs(120),
            handoff_linger: Duration::from_secs(1),
            fence_lease: crate::agent::lease::DEFAULT_TTL,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipSection {
    #[serde(with = "humantime_serde")]
    pub gossip_interval: Duration,
    /// chitchat's phi-accrual threshold. It only decides which peers
    /// chitchat gossips with; node states come from Shoal's detector
    /// (`suspect_after`, `dead_after` and the liveness watches).
    pub phi_threshold: f64,
    /// A node not heard from for this long is shown Suspect.
    #[serde(with = "humantime_serde")]
    pub suspect_after: Duration,
    /// A node not heard from for this long (this node's own pauses not
    /// counted) is Dead. A crashed `shoal` on a live host is Dead sooner:
    /// its watchers find its port closed.
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
    /// How long a dead node stays listed (as Dead) before it is forgotten.
    #[serde(with = "humantime_serde")]
    pub dead_node_grace: Duration,
    /// A node that (re)joins takes pods only after this long.
    #[serde(with = "humantime_serde")]
    pub settle_time: Duration,
    /// `mdns` to find peers on the LAN; `off` (or empty) to disable.
    pub discover: Discover,
    /// `chitchat` (default) or `swim`: the same on every node.
    pub engine: Engine,
}

impl Default for MembershipSection {
    fn default() -> Self {
        MembershipSection {
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 16.0,
            suspect_after: Duration::from_millis(800),
            dead_after: Duration::from_millis(2500),
            dead_node_grace: Duration::from_secs(600),
            settle_time: Duration::from_secs(3),
            discover: Discover::Off,
            engine: Engine::Chitchat,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// Nodes that must hold a write durably before an apply is acknowledged
    /// (this node included); a lone node acknowledges alone.
    pub write_replicas: u32,
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    /// Deleted objects' tombstones are forgotten after this long.
    #[serde(with = "humantime_serde")]
    pub tombstone_horizon: Duration,
    /// Peer timestamps further ahead of this node's clock are refused.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Start with an empty desired state, the old store kept aside, for
    /// peers to fill in (a corrupt store). `--rebuild-state` only.
    #[serde(skip)]
    pub rebuild: bool,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            write_replicas: 2,
            write_timeout: Duration::from_secs(5),
            anti_entropy_interval: Duration::from_secs(1),
            tombstone_horizon: Duration::from_secs(7 * 24 * 3600),
            max_clock_skew: Duration::from_secs(60),
            rebuild: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementSection {
    /// No longer used (each workload is spread evenly on its own); accepted
    /// so that older config files still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// A fenced pod whose node was declared Dead starts elsewhere only this
    /// long after: the time that node needs to notice it lost its majority.
    #[serde(with = "humantime_serde")]
    pub fence_delay: Duration,
    /// A CronJob's fallback trigger node fires a scheduled time this long
    /// after it if no Job for it has appeared (its owner is stuck or died).
    #[serde(with = "humantime_serde")]
    pub cron_fallback_delay: Duration,
}

impl Default for PlacementSection {
    fn default() -> Self {
        PlacementSection {
            epsilon: None,
            fence_delay: Duration::from_secs(10),
            cron_fallback_delay: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// Inclusive range of service node ports, `LOW-HIGH`.
    pub node_port_range: String,
    /// DNS responder for `NAME.NAMESPACE.svc.shoal`: `auto` (node IP, port
    /// 53, skipped with a warning when that port cannot be bound), an
    /// address, or empty to disable.
    pub dns_addr: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A backend that accepted a connection but has not answered this long
    /// after the client spoke is dropped and penalised.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// `p2c` (power of two choices over peak-EWMA latency) or `round-robin`.
    pub balancer: Balancer,
    /// A UDP service flow (one client address and port) unused this long
    /// is forgotten; its next datagram picks a backend again.
    #[serde(with = "humantime_serde")]
    pub udp_idle_timeout: Duration,
    /// Most UDP flows kept per service port; past it the least recently
    /// used is evicted (each flow holds a socket).
    pub udp_max_flows: usize,
    /// Hand external clients of `externalTrafficPolicy: Local` Services to
    /// the kernel (nftables destination NAT to this node's replicas): no
    /// proxy in their path, and the replica sees the client's address.
    /// Needs `nft` and `CAP_NET_ADMIN`; without them the proxy serves them.
    pub kernel_local: bool,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            node_port_range: "30000-32767".into(),
            dns_addr: "auto".into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            balancer: Balancer::P2c,
            udp_idle_timeout: Duration::from_secs(30),
            udp_max_flows: 4096,
            kernel_local: true,
        }
    }
}

/// `[load_balancer]`: the LAN addresses this node may hold for
/// `type: LoadBalancer` Services (`proxy::lb`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancerSection {
    /// Address ranges: `192.168.1.240-192.168.1.250`, `192.168.1.240-250`,
    /// `10.0.0.0/28` or one address. Empty: this node holds none.
    pub pool: Vec<String>,
    /// The interface the addresses go on; default: the one with the node IP.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimesSection {
    /// `auto` (use Docker when its engine answers), `on` or `off`.
    pub docker: DockerMode,
    /// Docker (or Podman) API socket; default: $DOCKER_HOST, else /var/run/docker.sock.
    pub docker_socket: Option<String>,
}

impl Default for RuntimesSection {
    fn default() -> Self {
        RuntimesSection { docker: DockerMode::Auto, docker_socket: None }
    }
}

/// Everything `shoal up` can be told, in the TOML file's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name, unique in the cluster; default: the host name.
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The cluster data keys that seal Secrets: a private file outside the
    /// data dir (default: `default_key_file`).
    pub data_key_file: Option<PathBuf>,
    pub api_addr: Option<SocketAddr>,
    /// Who may use plain HTTP on the API port (`loopback`, `off`, `any`).
    pub api_plain_http: PlainHttp,
    pub gossip_addr: Option<SocketAddr>,
    pub node_ip: Option<IpAddr>,
    /// Peers to join (`HOST:PORT` of their gossip address).
    pub join: Vec<String>,
    /// Join token (from `shoal token` on a cluster node).
    pub token: Option<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    pub labels: BTreeMap<String, String>,
    pub capacity: CapacitySection,
    pub agent: AgentSection,
    pub membership: MembershipSection,
    pub state: StateSection,
    pub placement: PlacementSection,
    pub proxy: ProxySection,
    pub runtimes: RuntimesSection,
    pub load_balancer: LoadBalancerSection,
}

impl NodeConfig {
    pub fn from_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.display().to_string(), e.to_string()))
    }
}

/// The per-user default data directory: `/var/lib/shoal` for root, else
/// `$XDG_DATA_HOME/shoal` or `~/.local/share/shoal`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/shoal");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("shoal");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/shoal");
    }
    PathBuf::from(".shoal")
}

/// Where a node keeps the cluster data keys by default: outside its data
/// dir, in the configuration directory (`/etc/shoal/keys` for root, else
/// `$XDG_CONFIG_HOME/shoal/keys` or `~/.config/shoal/keys`), one file per
/// cluster and node.
pub fn default_key_file(cluster_id: &str, node: &str) -> PathBuf {
    let base = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/etc/shoal")
    } else if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(x).join("shoal")
    } else if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(h).join(".config/shoal")
    } else {
        PathBuf::from(".shoal-keys")
    };
    base.join("keys").join(format!("{cluster_id}-{node}.json"))
}

/// The address this host uses to reach the outside, without sending
/// anything (a UDP "connect" only picks a route); loopback when offline.
pub fn detect_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?; // TEST-NET-1: never routed to a real host
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// Settings resolved to concrete values.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub gossip_addr: SocketAddr,
    pub node_ip: IpAddr,
    pub node_port_range: (u16, u16),
    pub log_max_bytes: u64,
    /// `load_balancer.pool`, parsed.
    pub lb_pool: crate::model::pool::Pool,
}

pub fn parse_port_range(s: &str) -> Result<(u16, u16), crate::model::Invalid> {
    use crate::model::Invalid;
    let (a, b) = s.split_once('-').ok_or_else(|| Invalid(format!("{s:?} is not a range like 30000-32767")))?;
    let lo: u16 = a.trim().parse().map_err(|_| Invalid(format!("{a:?} is not a port")))?;
    let hi: u16 = b.trim().parse().map_err(|_| Invalid(format!("{b:?} is not a port")))?;
    if lo == 0 || lo > hi {
        return Err(Invalid(format!("{s:?}: the low port must be at least 1 and not above the high port")));
    }
    Ok((lo, hi))
}

impl NodeConfig {
    /// Fills in defaults that depend on the host and on other settings.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .map(|h| h.split('.').next().unwrap_or("node").to_ascii_lowercase())
                .unwrap_or_else(|| "node".into()),
        };
        crate::model::names::dns_label(&name, 63).map_err(|m| invalid("name", m.0))?;
        let node_ip = match (self.node_ip, self.gossip_addr) {
            (Some(ip), _) => ip,
            (None, Some(g)) if !g.ip().is_unspecified() => g.ip(),
            _ => detect_node_ip(),
        };
        let explicit_ip = self.node_ip.is_some();
        let api_addr = self.api_addr.unwrap_or_else(|| {
            let ip = if node_ip.is_loopback() { node_ip } else { IpAddr::V4(Ipv4Addr::LOCALHOST) };
            SocketAddr::new(ip, DEFAULT_API_PORT)
        });
        let gossip_addr = self.gossip_addr.unwrap_or_else(|| {
            let ip = if explicit_ip { node_ip } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
            SocketAddr::new(ip, DEFAULT_GOSSIP_PORT)
        });
        let node_port_range =
            parse_port_range(&self.proxy.node_port_range).map_err(|m| invalid("proxy.node_port_range", m.0))?;
        let log_max_bytes = crate::model::quantity::parse_memory_bytes(&self.agent.log_max_size)
            .map_err(|e| invalid("agent.log_max_size", e.to_string()))?;
        if log_max_bytes < 1024 {
            return Err(invalid("agent.log_max_size", "must be at least 1Ki"));
        }
        if self.agent.fence_lease < Duration::from_millis(200) {
            return Err(invalid("agent.fence_lease", "must be at least 200ms"));
        }
        let safe = crate::agent::lease::min_fence_delay(self.agent.fence_lease);
        if self.placement.fence_delay < safe {
            return Err(invalid(
                "placement.fence_delay",
                format!(
                    "must be at least {safe:?} with agent.fence_lease = {:?} (the lease, with 1% clock drift, plus 2 s for a cut-off node to notice); raise it or shorten the lease",
                    self.agent.fence_lease
                ),
            ));
        }
        if self.state.write_replicas == 0 {
            return Err(invalid("state.write_replicas", "must be at least 1"));
        }
        let m = &self.membership;
        if m.dead_after <= m.suspect_after || m.dead_after < m.gossip_interval * 4 {
            return Err(invalid(
                "membership.dead_after",
                format!(
                    "must be longer than membership.suspect_after ({:?}) and at least 4 gossip intervals ({:?})",
                    m.suspect_after,
                    m.gossip_interval * 4
                ),
            ));
        }
        if self.membership.phi_threshold < 1.0 {
            return Err(invalid("membership.phi_threshold", "must be at least 1"));
        }
        if self.membership.gossip_interval < Duration::from_millis(10) {
            return Err(invalid("membership.gossip_interval", "must be at least 10ms"));
        }
        if !matches!(self.proxy.dns_addr.as_str(), "" | "auto") && self.proxy.dns_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "proxy.dns_addr",
                format!("must be auto, empty or IP:PORT (got {:?})", self.proxy.dns_addr),
            ));
        }
        if self.proxy.udp_idle_timeout < Duration::from_secs(1) {
            return Err(invalid("proxy.udp_idle_timeout", "must be at least 1s"));
        }
        if self.proxy.udp_max_flows == 0 {
            return Err(invalid("proxy.udp_max_flows", "must be at least 1"));
        }
        let lb_pool = crate::model::pool::Pool::parse(&self.load_balancer.pool)
            .map_err(|m| invalid("load_balancer.pool", format!("{m} (write A-B, A-LAST_OCTET, A/LEN or A)")))?;
        if let Some(i) = &self.load_balancer.interface
            && (i.is_empty() || i.len() > 15 || i.contains(['/', ' ']))
        {
            return Err(invalid("load_balancer.interface", format!("{i:?} is not an interface name")));
        }
        for (k, v) in &self.labels {
            crate::model::names::label_key(k).map_err(|m| invalid(&format!("labels.{k}"), m.0))?;
            crate::model::names::label_value(v).map_err(|m| invalid(&format!("labels.{k}"), m.0))?;
        }
        Ok(Resolved {
            name,
            data_dir: self.data_dir.clone().unwrap_or_else(default_data_dir),
            api_addr,
            gossip_addr,
            node_ip,
            node_port_range,
            log_max_bytes,
            lb_pool,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../configs/node.example.toml");
        let c: NodeConfig = toml::from_str(text).unwrap();
        let d = NodeConfig::default();
        assert_eq!(c.agent, d.agent);
        assert_eq!(c.membership, d.membership);
        assert_eq!(c.state, d.state);
        assert_eq!(c.proxy, d.proxy);
        assert_eq!(c.load_balancer, d.load_balancer);
        assert_eq!(c.capacity.max_pods, d.capacity.max_pods);
    }

    #[test]
    fn choices_are_checked_when_the_file_is_read() {
        let c: NodeConfig = toml::from_str(
            "log_format = \"json\"\n[membership]\ndiscover = \"\"\n[proxy]\nbalancer = \"round-robin\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.log_format, c.membership.discover, c.proxy.balancer),
            (LogFormat::Json, Discover::Off, Balancer::RoundRobin)
        );
        let err = toml::from_str::<NodeConfig>("[runtimes]\ndocker = \"maybe\"\n").unwrap_err().to_string();
        assert!(err.contains("docker") && err.contains("auto") && err.contains("off"), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = toml::from_str::<NodeConfig>("[agent]\nrestart_backof_initial = \"1s\"\n").unwrap_err();
        assert!(err.to_string().contains("restart_backof_initial"), "{err}");
    }

    #[test]
    fn loopback_node_ip_drives_the_default_addresses() {
        let c =
            NodeConfig { name: Some("a".into()), node_ip: Some("127.0.0.11".parse().unwrap()), ..Default::default() };
        let r = c.resolve().unwrap();
        assert_eq!(r.api_addr, "127.0.0.11:7420".parse().unwrap());
        assert_eq!(r.gossip_addr, "127.0.0.11:7421".parse().unwrap());
        let c = NodeConfig {
            name: Some("a".into()),
            gossip_addr: Some("127.0.0.12:9000".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(c.resolve().unwrap().node_ip, "127.0.0.12".parse::<IpAddr>().unwrap());
        assert!(NodeConfig { name: Some("Bad_Name".into()), ..Default::default() }.resolve().is_err());
        assert!(parse_port_range("5-1").is_err());
    }

    #[test]
    fn a_bad_load_balancer_pool_names_the_setting_and_the_range() {
        let c: NodeConfig =
            toml::from_str("name = \"a\"\n[load_balancer]\npool = [\"10.0.0.1-5\", \"10.0.0.9-1\"]\n").unwrap();
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("load_balancer.pool") && err.contains("\"10.0.0.9-1\" ends before it starts"), "{err}");
        let c: NodeConfig = toml::from_str("name = \"a\"\n[load_balancer]\npool = [\"10.0.0.1-5\"]\n").unwrap();
        assert_eq!(c.resolve().unwrap().lb_pool.to_string(), "10.0.0.1-10.0.0.5");
    }
}
