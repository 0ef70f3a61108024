//! Command-line flags of every verb (clap derive). Flag names and
//! environment variables follow DESIGN.md's conventions.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about = "A container orchestrator with no master node", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How client verbs find and authenticate to a node.
#[derive(Debug, Args, Clone)]
pub struct ClientOpts {
    /// API URL of any node (HTTPS; http:// is served to clients on the
    /// node's own host only).
    #[arg(long, env = "SHOAL_SERVER", default_value = "https://127.0.0.1:7420")]
    pub server: String,
    /// The cluster CA (PEM) to verify HTTPS servers with (default: the one
    /// in the data dir; `shoal kubeconfig` prints it).
    #[arg(long, env = "SHOAL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust a node whose certificate chain holds the CA with this hash (64
    /// hex), or the one a join token names (pass the whole token): for a
    /// machine with no copy of the CA. --ca-file wins over it.
    #[arg(long, env = "SHOAL_CA_PIN", hide_env_values = true)]
    pub ca_pin: Option<String>,
    /// API bearer token (default: the token file in the data dir).
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data dir of the local node, where the token file is.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Wide,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (no config file needed).
    Up(UpArgs),
    /// Create or update objects from manifests (files, directories, or - for stdin).
    Apply(ApplyArgs),
    /// List objects: pods, deployments, replicasets, daemonsets, jobs, cronjobs, services, configmaps,
    /// secrets, namespaces, nodes, events.
    Get(GetArgs),
    /// Show one object in detail, with its recent events.
    Describe(DescribeArgs),
    /// Delete objects named on the command line or in manifests.
    Delete(DeleteArgs),
    /// Create an object from the command line: `create job NAME --from=cronjob/NAME`,
    /// `create configmap NAME --from-literal=K=V --from-file=PATH`,
    /// `create secret generic NAME --from-literal=K=V --from-file=PATH`.
    Create(CreateArgs),
    /// Set the number of replicas of a Deployment.
    Scale(ScaleArgs),
    /// A Deployment's rollout: status, history, undo, restart, pause, resume.
    Rollout(RolloutArgs),
    /// Mark a node unschedulable: it keeps its pods and takes no new ones.
    Cordon(NodeArgs),
    /// Let a cordoned or drained node take pods again.
    Uncordon(NodeArgs),
    /// Cordon a node, then move its pods away (make-before-break, each
    /// workload's maxUnavailable at a time); returns once it runs nothing.
    Drain(NodeArgs),
    /// Print (or follow) a pod's logs.
    Logs(LogsArgs),
    /// Run a command in a pod's container (`-it` for an interactive shell).
    Exec(ExecArgs),
    /// Print the join token, or rotate it, or create one that expires.
    Token(TokenArgs),
    /// The cluster data keys that seal Secrets: status, or rotate.
    #[command(name = "data-key")]
    DataKey(DataKeyArgs),
    /// (Internal) runs a fenced pod's command under its lease.
    #[command(name = "lease-watchdog", hide = true)]
    LeaseWatchdog(LeaseWatchdogArgs),
    /// Print the client's and the server's versions.
    Version(VersionArgs),
    /// A kubeconfig for kubectl: the cluster CA, the token, a context per node.
    Kubeconfig(KubeconfigArgs),
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Merge into the kubeconfig file (--kubeconfig, else $KUBECONFIG,
    /// else ~/.kube/config) instead of printing.
    #[arg(long)]
    pub write: bool,
    /// The file --write merges into.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Prefix of the context names (PREFIX-NODE; default: shoal).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// TOML config file (see configs/node.example.toml).
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the node keeps its state.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cluster data keys (Secrets), outside the data dir (default:
    /// /etc/shoal/keys/CLUSTER-NODE.json as root, else under ~/.config/shoal/keys).
    #[arg(long, env = "SHOAL_DATA_KEY_FILE")]
    pub data_key_file: Option<PathBuf>,
    /// API address (HTTPS, certificate from the cluster CA).
    #[arg(long, env = "SHOAL_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Who may also use plain HTTP on the API port: loopback (default),
    /// off, or any (tokens then cross the network in clear).
    #[arg(long, env = "SHOAL_API_PLAIN_HTTP", value_enum)]
    pub api_plain_http: Option<crate::config::PlainHttp>,
    /// QUIC gossip address.
    #[arg(long, env = "SHOAL_GOSSIP_ADDR")]
    pub gossip_addr: Option<SocketAddr>,
    /// This node's own address (peers dial it; pods see it as SHOAL_NODE_IP).
    #[arg(long, env = "SHOAL_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Node name (default: the host name).
    #[arg(long, env = "SHOAL_NAME")]
    pub name: Option<String>,
    /// Gossip address of a node to join (repeatable).
    #[arg(long)]
    pub join: Vec<String>,
    /// Join token (from `shoal token` on a cluster node).
    #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Find peers on the LAN: `mdns`.
    #[arg(long, value_enum)]
    pub discover: Option<crate::config::Discover>,
    /// Membership engine, the same on every node: chitchat (default) or
    /// swim (for large clusters).
    #[arg(long, env = "SHOAL_MEMBERSHIP", value_enum)]
    pub membership: Option<crate::config::Engine>,
    /// Node log format: text or json.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
    /// Node label KEY=VALUE (repeatable), matched by nodeSelector.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Start with an empty desired state that the peers fill in, keeping
    /// the old store aside (when it is corrupt: the error says so).
    #[arg(long)]
    pub rebuild_state: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file, directory, or - for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Namespace for objects that do not name one.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Validate and report without storing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until every applied Deployment has rolled out and every Job has
    /// finished, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (e.g. 5m).
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's name (`shoal get nodes`).
    pub node: String,
    /// drain: give up after this long (e.g. 5m).
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
}

#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Follow the rollout until it finishes; exits 1 once it exceeds its progress deadline.
    Status(RolloutTarget),
    /// List the revisions (`--revision N`: show one's pod template).
    History(RolloutTarget),
    /// Go back to the previous revision (or `--to-revision N`).
    Undo(RolloutTarget),
    /// Replace every pod, one batch at a time, with no change to the spec.
    Restart(RolloutTarget),
    /// Stop the rollout where it is.
    Pause(RolloutTarget),
    /// Let a paused rollout go on.
    Resume(RolloutTarget),
}

#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// `deployment NAME` or `deployment/NAME` (`status` also takes `daemonset/NAME`).
    pub target: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// undo: the revision to go back to.
    #[arg(long)]
    pub to_revision: Option<u64>,
    /// history: the revision to show.
    #[arg(long)]
    pub revision: Option<u64>,
    /// status: give up after this long (e.g. 5m).
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// pods, deployments, replicasets, daemonsets, jobs, services, namespaces, nodes or events.
    pub kind: String,
    /// Only this object.
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub kind: String,
    pub name: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// KIND NAME (or KIND/NAME).
    pub target: Vec<String>,
    /// Delete the objects of these manifests (repeatable).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Missing objects are not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: CreateWhat,
}

#[derive(Debug, Subcommand)]
pub enum CreateWhat {
    /// A Job made now from a CronJob's template (`--from=cronjob/NAME`).
    Job {
        /// Name of the Job (default: `<cronjob>-manual-<random>`).
        name: Option<String>,
        /// `cronjob/NAME`: the CronJob whose jobTemplate to run.
        #[arg(long)]
        from: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// A ConfigMap from literals and files: `create configmap NAME
    /// --from-literal=KEY=VALUE --from-file=[KEY=]PATH`.
    #[command(name = "configmap", visible_alias = "cm")]
    ConfigMap {
        name: String,
        /// `KEY=VALUE` (repeatable).
        #[arg(long = "from-literal")]
        from_literal: Vec<String>,
        /// `PATH` (the key is the file's name) or `KEY=PATH`, or a directory
        /// (every regular file in it) (repeatable).
        #[arg(long = "from-file")]
        from_file: Vec<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// A Secret: `create secret generic NAME --from-literal=KEY=VALUE
    /// --from-file=[KEY=]PATH [--type=TYPE]`.
    Secret {
        #[command(subcommand)]
        what: SecretWhat,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretWhat {
    /// A Secret from literals and files (sealed with the cluster data key
    /// by the node that receives it; never stored in the clear).
    Generic {
        name: String,
        /// `KEY=VALUE` (repeatable). The value is visible to other users of
        /// this machine while the command runs: prefer --from-file.
        #[arg(long = "from-literal")]
        from_literal: Vec<String>,
        /// `PATH` (the key is the file's name) or `KEY=PATH`, or a directory
        /// (every regular file in it) (repeatable).
        #[arg(long = "from-file")]
        from_file: Vec<String>,
        /// The Secret's type (default Opaque).
        #[arg(long = "type")]
        type_: Option<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `shoal lease-watchdog --ttl-ms N -- COMMAND...`, or `--pid P
/// --container ID` for a container (started by the node).
#[derive(Debug, Args)]
pub struct LeaseWatchdogArgs {
    /// The lease: the pod is killed this long after the last renewal.
    #[arg(long)]
    pub ttl_ms: u64,
    /// A container's first process (with --container) instead of a command.
    #[arg(long, requires = "container")]
    pub pid: Option<i32>,
    #[arg(long)]
    pub container: Option<String>,
    /// A LoadBalancer address on --dev instead of a command: it is taken
    /// off when the lease ends.
    #[arg(long, requires = "dev")]
    pub address: Option<std::net::IpAddr>,
    #[arg(long)]
    pub dev: Option<String>,
    /// The pod's command.
    #[arg(last = true, required_unless_present_any = ["pid", "address"])]
    pub command: Vec<String>,
}

/// `shoal data-key`: the cluster data keys that seal Secrets.
#[derive(Debug, Args)]
pub struct DataKeyArgs {
    #[command(subcommand)]
    pub action: Option<DataKeyAction>,
    #[command(flatten)]
    pub client: ClientOpts,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Subcommand)]
pub enum DataKeyAction {
    /// The keys the node holds (ids and state, never the keys) (default).
    Status,
    /// Make a new key, send it to every live node and seal every Secret
    /// with it (the old keys still open, until `retire`).
    Rotate,
    /// Erase the old keys on every node, once every node holds the new one
    /// and no Secret is sealed with an old one (else nothing changes).
    Retire,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `deployment NAME` or `deployment/NAME`.
    pub target: Vec<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: i64,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A pod's name, or `deployment/NAME` / `job/NAME` (one of its pods, a Ready one first).
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A pod's name, or `deployment/NAME` / `job/NAME` (one of its pods, a Ready one first).
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass this terminal's stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (stdout and stderr become one stream).
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Replace the join token (the old one stops working).
    #[arg(long)]
    pub rotate: bool,
    /// Create an extra join token that expires after --ttl.
    #[arg(long)]
    pub create: bool,
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the client's version (no server needed).
    #[arg(long)]
    pub client_only: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}
