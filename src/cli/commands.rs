//! What each verb does.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Value, json};

use super::CliError;
use super::args::*;
use super::describe::describe;
use super::output::{rows, table, to_yaml};
use crate::api::client::Client;
use crate::api::handlers::{ApplyRequest, ApplyResponse};
use crate::config::{NodeConfig, default_data_dir};
use crate::model::Kind;
use crate::model::parse::SourceFile;

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Up(a) => up(a).await,
        Command::Apply(a) => apply(a).await,
        Command::Get(a) => get(a).await,
        Command::Describe(a) => describe_cmd(a).await,
        Command::Delete(a) => delete(a).await,
        Command::Create(a) => super::create::run(a).await,
        Command::Scale(a) => scale(a).await,
        Command::Rollout(a) => super::rollout::run(a).await,
        Command::Cordon(a) => super::nodes::run(a, "cordon").await,
        Command::Uncordon(a) => super::nodes::run(a, "uncordon").await,
        Command::Drain(a) => super::nodes::run(a, "drain").await,
        Command::Logs(a) => logs(a).await,
        Command::Exec(a) => {
            let pod = pod_for_logs(&client(&a.client), &a.namespace, &a.pod).await?;
            super::exec::run(a, pod).await
        }
        Command::Token(a) => token(a).await,
        Command::DataKey(a) => data_key(a).await,
        Command::LeaseWatchdog(a) => {
            let ttl = std::time::Duration::from_millis(a.ttl_ms);
            std::process::exit(match (a.pid, &a.container, a.address, &a.dev) {
                (_, _, Some(ip), Some(dev)) => crate::agent::lease::watch_address(ttl, dev, ip),
                (Some(pid), Some(id), _, _) => crate::agent::lease::watch_container(ttl, pid, id),
                _ => crate::agent::lease::watchdog(ttl, &a.command),
            })
        }
        Command::Version(a) => version(a).await,
        Command::Kubeconfig(a) => super::kubeconfig::run(a).await,
    }
}

/// The API token: --token / SHOAL_TOKEN, else the local node's token file.
fn api_token(o: &ClientOpts) -> Option<String> {
    if let Some(t) = &o.token {
        return Some(t.clone());
    }
    let dir = o.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::read_to_string(crate::node::token_path(&dir)).ok().map(|s| s.trim().to_string())
}

/// The cluster CA (PEM) the CLI verifies HTTPS servers with: --ca-file /
/// SHOAL_CA_FILE, else the local node's, from its data dir.
pub fn cluster_ca(o: &ClientOpts) -> Option<String> {
    if let Some(f) = &o.ca_file {
        return match std::fs::read_to_string(f) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("warning: --ca-file {}: {e}", f.display());
                None
            }
        };
    }
    let dir = o.data_dir.clone().unwrap_or_else(default_data_dir);
    crate::net::tls::Identity::load(&dir).ok().flatten().map(|id| id.ca_cert_pem)
}

/// The API token the CLI sends (see `api_token`).
pub fn api_token_of(o: &ClientOpts) -> Option<String> {
    api_token(o)
}

pub fn client(o: &ClientOpts) -> Client {
    let mut urls = vec![o.server.trim_end_matches('/').to_string()];
    for u in crate::cli::commands::known_servers(o) {
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    let pinned = if o.ca_file.is_none() { o.ca_pin.as_deref().and_then(pinned_tls) } else { None };
    let tls = pinned.or_else(|| {
        cluster_ca(o).and_then(|ca| {
            crate::net::tls::api_client_config(&ca)
                .map_err(|e| eprintln!("warning: the cluster CA is not a usable PEM certificate: {e}"))
                .ok()
        })
    });
    Client::new(urls, api_token(o)).with_tls(tls.map(std::sync::Arc::new)).printing_warnings()
}

/// TLS trusting the CA a pin names: a CA hash (64 hex) or a join token.
fn pinned_tls(pin: &str) -> Option<rustls::ClientConfig> {
    let pin = pin.trim();
    let hash = if pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        pin.to_ascii_lowercase()
    } else {
        match crate::net::token::JoinToken::parse(pin) {
            Ok(t) => t.ca_hash,
            Err(e) => {
                eprintln!("warning: --ca-pin is neither a CA hash (64 hex) nor a join token: {e}");
                return None;
            }
        }
    };
    crate::net::tls::api_pinned_client_config(&hash).map_err(|e| eprintln!("warning: --ca-pin: {e}")).ok()
}

/// API URLs of other nodes learnt from earlier calls (client failover).
pub fn known_servers(o: &ClientOpts) -> Vec<String> {
    let Some(path) = servers_cache(o) else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines().map(str::to_string).filter(|l| l.starts_with("https://") || l.starts_with("http://")).collect()
        })
        .unwrap_or_default()
}

fn servers_cache(o: &ClientOpts) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let key = blake3::hash(o.server.as_bytes()).to_hex()[..12].to_string();
    Some(base.join("shoal").join(format!("servers-{key}")))
}

/// Remembers the cluster's API URLs after a successful call, so the next
/// command can fail over when the configured node is down.
async fn learn_servers(c: &Client, o: &ClientOpts) {
    let Some(path) = servers_cache(o) else { return };
    if let Ok(v) = c.get_json("/shoal/v1/cluster").await {
        let urls: Vec<String> = v
            .get("apiUrls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        if !urls.is_empty() {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(path, urls.join("\n") + "\n");
        }
    }
}

// ---------- up ----------

fn init_tracing(format: crate::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,chitchat=warn,quinn=warn,mdns_sd=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == crate::config::LogFormat::Json {
        b.json().init();
    } else {
        b.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn node_config(a: &UpArgs) -> Result<NodeConfig, CliError> {
    let mut cfg = match &a.config {
        Some(p) => NodeConfig::from_file(p).map_err(|e| CliError::Start(e.to_string()))?,
        None => NodeConfig::default(),
    };
    if a.data_dir.is_some() {
        cfg.data_dir = a.data_dir.clone();
    }
    cfg.state.rebuild = a.rebuild_state;
    if a.data_key_file.is_some() {
        cfg.data_key_file = a.data_key_file.clone();
    }
    if let Some(p) = a.api_plain_http {
        cfg.api_plain_http = p;
    }
    if a.api_addr.is_some() {
        cfg.api_addr = a.api_addr;
    }
    if a.gossip_addr.is_some() {
        cfg.gossip_addr = a.gossip_addr;
    }
    if a.node_ip.is_some() {
        cfg.node_ip = a.node_ip;
    }
    if a.name.is_some() {
        cfg.name = a.name.clone();
    }
    if !a.join.is_empty() {
        cfg.join = a.join.clone();
    }
    if a.token.is_some() {
        cfg.token = a.token.clone();
    }
    if let Some(d) = a.discover {
        cfg.membership.discover = d;
    }
    if let Some(e) = a.membership {
        cfg.membership.engine = e;
    }
    if let Some(f) = a.log_format {
        cfg.log_format = f;
    }
    for l in &a.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| CliError::Usage(format!("--label {l:?}: expected KEY=VALUE")))?;
        cfg.labels.insert(k.to_string(), v.to_string());
    }
    Ok(cfg)
}

async fn up(a: UpArgs) -> Result<(), CliError> {
    let cfg = node_config(&a)?;
    init_tracing(cfg.log_format);
    let node = crate::node::Node::start(cfg).await.map_err(|e| CliError::Start(e.to_string()))?;
    eprintln!(
        "shoal node {} is up: API https://{} (data dir {}; `shoal kubeconfig` for kubectl)",
        node.name,
        node.api_addr,
        node.data_dir.display()
    );
    if let Some(t) = &node.new_cluster_token {
        eprintln!(
            "Created a new cluster. Join other nodes with:\n  shoal up --join <this node's IP>:7421 --token {t}\n(`shoal token` prints the token again.)"
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CliError::Start(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: pods get SIGTERM, then SIGKILL after their grace period");
    node.shutdown().await;
    Ok(())
}

// ---------- apply / delete ----------

fn read_sources(args: &[String]) -> Result<Vec<SourceFile>, CliError> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| CliError::Failed(format!("reading stdin: {e}")))?;
            out.push(SourceFile { name: "-".into(), content: s });
            continue;
        }
        let p = Path::new(a);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| CliError::Failed(format!("{a}: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(CliError::Failed(format!("{a}: no .yaml, .yml or .json files in this directory")));
            }
            for f in files {
                let content =
                    std::fs::read_to_string(&f).map_err(|e| CliError::Failed(format!("{}: {e}", f.display())))?;
                out.push(SourceFile { name: f.display().to_string(), content });
            }
        } else {
            let content = std::fs::read_to_string(p).map_err(|e| CliError::Failed(format!("{a}: {e}")))?;
            out.push(SourceFile { name: a.clone(), content });
        }
    }
    Ok(out)
}

fn resource_name(kind: &str) -> String {
    match Kind::from_manifest(kind) {
        Some(Kind::Deployment) => "deployment.apps".into(),
        Some(Kind::Job) => "job.batch".into(),
        Some(Kind::DaemonSet) => "daemonset.apps".into(),
        Some(k) => k.as_str().to_lowercase(),
        None => kind.to_lowercase(),
    }
}

fn print_results(r: &ApplyResponse, dry_run: bool) {
    for w in &r.warnings {
        eprintln!("Warning: {w}");
    }
    for o in &r.results {
        let dry = if dry_run { " (dry run)" } else { "" };
        println!("{}/{} {}{dry}", resource_name(&o.kind), o.name, o.outcome.as_str());
    }
}

async fn apply(a: ApplyArgs) -> Result<(), CliError> {
    let files = read_sources(&a.files)?;
    let c = client(&a.client);
    let req = ApplyRequest { files, namespace: a.namespace.clone(), dry_run: a.dry_run, ignore_not_found: false };
    let v = c.send_json(Method::POST, "/shoal/v1/apply", &serde_json::to_value(&req).unwrap_or_default()).await?;
    let r: ApplyResponse =
        serde_json::from_value(v).map_err(|e| CliError::Failed(format!("unexpected answer: {e}")))?;
    print_results(&r, a.dry_run);
    learn_servers(&c, &a.client).await;
    if a.wait && !a.dry_run {
        let timeout = humantime::parse_duration(&a.timeout)
            .map_err(|e| CliError::Usage(format!("--timeout {:?}: {e}", a.timeout)))?;
        let deadline = std::time::Instant::now() + timeout;
        for o in &r.results {
            let ns = if o.namespace.is_empty() { "default" } else { o.namespace.as_str() };
            match Kind::from_manifest(&o.kind) {
                Some(Kind::Deployment) => super::rollout::wait_deployment(&c, ns, &o.name, deadline).await?,
                Some(Kind::Job) => super::rollout::wait_job(&c, ns, &o.name, deadline).await?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn parse_kind(s: &str) -> Result<Kind, CliError> {
    Kind::from_cli(s).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown kind {s:?}: use pods, deployments, daemonsets, jobs, cronjobs, services, namespaces, nodes or events"
        ))
    })
}

/// `KIND NAME` or `KIND/NAME`.
fn target(t: &[String]) -> Result<(String, String), CliError> {
    match t {
        [one] => one
            .split_once('/')
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .ok_or_else(|| CliError::Usage(format!("{one:?}: expected KIND NAME or KIND/NAME"))),
        [k, n] => Ok((k.clone(), n.clone())),
        _ => Err(CliError::Usage("expected KIND NAME or KIND/NAME".into())),
    }
}

fn object_path(kind: Kind, ns: &str, name: Option<&str>) -> String {
    let base = kind.rest_path(Some(ns));
    match name {
        Some(n) => format!("{base}/{n}"),
        None => base,
    }
}

async fn delete(a: DeleteArgs) -> Result<(), CliError> {
    let c = client(&a.client);
    if !a.files.is_empty() {
        if !a.target.is_empty() {
            return Err(CliError::Usage("give either -f FILE or KIND NAME, not both".into()));
        }
        let files = read_sources(&a.files)?;
        let req = ApplyRequest {
            files,
            namespace: a.namespace.clone(),
            dry_run: false,
            ignore_not_found: a.ignore_not_found,
        };
        let v = c.send_json(Method::POST, "/shoal/v1/delete", &serde_json::to_value(&req).unwrap_or_default()).await?;
        let r: ApplyResponse =
            serde_json::from_value(v).map_err(|e| CliError::Failed(format!("unexpected answer: {e}")))?;
        print_results(&r, false);
        return Ok(());
    }
    let (k, name) = target(&a.target)?;
    let kind = parse_kind(&k)?;
    let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
    match c.call(Method::DELETE, &object_path(kind, &ns, Some(&name)), None).await {
        Ok(_) => {
            println!("{}/{name} deleted", resource_name(kind.as_str()));
            Ok(())
        }
        Err(crate::api::client::ClientError::Api { code, .. }) if code.as_u16() == 404 && a.ignore_not_found => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn scale(a: ScaleArgs) -> Result<(), CliError> {
    let (k, name) = target(&a.target)?;
    if parse_kind(&k)? != Kind::Deployment {
        return Err(CliError::Usage("only deployments can be scaled".into()));
    }
    let c = client(&a.client);
    let path = format!("{}/scale", object_path(Kind::Deployment, &a.namespace, Some(&name)));
    c.send_json(Method::PUT, &path, &json!({"spec": {"replicas": a.replicas}})).await?;
    println!("deployment.apps/{name} scaled");
    Ok(())
}

// ---------- get / describe ----------

fn list_path(kind: &str, ns: Option<&str>) -> Result<(String, &'static str), CliError> {
    let k = kind.to_ascii_lowercase();
    Ok(match k.as_str() {
        "po" | "pod" | "pods" => (ns.map_or("/api/v1/pods".into(), |n| format!("/api/v1/namespaces/{n}/pods")), "Pod"),
        "no" | "node" | "nodes" => ("/api/v1/nodes".into(), "Node"),
        "rs" | "replicaset" | "replicasets" => (
            ns.map_or("/apis/apps/v1/replicasets".into(), |n| format!("/apis/apps/v1/namespaces/{n}/replicasets")),
            "ReplicaSet",
        ),
        "ev" | "event" | "events" => {
            (ns.map_or("/api/v1/events".into(), |n| format!("/api/v1/namespaces/{n}/events")), "Event")
        }
        _ => {
            let kind = parse_kind(kind)?;
            let path = kind.rest_path(ns);
            (path, kind.as_str())
        }
    })
}

fn print_items(kind: &str, items: Vec<Value>, output: Option<OutputFormat>, all_ns: bool, single: bool) {
    match output {
        Some(OutputFormat::Json) => {
            let v = if single {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                crate::api::render::list(kind, "v1", items)
            };
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Some(OutputFormat::Yaml) => {
            let v = if single {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                crate::api::render::list(kind, "v1", items)
            };
            print!("{}", to_yaml(&v));
        }
        _ => {
            if items.is_empty() {
                eprintln!("No resources found.");
                return;
            }
            let (header, r) =
                rows(kind, &items, output == Some(OutputFormat::Wide), all_ns && kind != "Node" && kind != "Namespace");
            print!("{}", table(&header, &r));
        }
    }
}

async fn get(a: GetArgs) -> Result<(), CliError> {
    let c = client(&a.client);
    let ns = if a.all_namespaces { None } else { Some(a.namespace.as_str()) };
    let (path, kind) = list_path(&a.kind, ns)?;
    let v = c.get_json(&path).await?;
    let mut items: Vec<Value> = v.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(name) = &a.name {
        items.retain(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str()));
        if items.is_empty() {
            return Err(CliError::Failed(format!(
                "(NotFound) {} {name:?} not found{}",
                kind.to_lowercase(),
                ns.map(|n| format!(" in namespace {n:?}")).unwrap_or_default()
            )));
        }
    }
    print_items(kind, items, a.output, a.all_namespaces, a.name.is_some());
    learn_servers(&c, &a.client).await;
    Ok(())
}

async fn describe_cmd(a: DescribeArgs) -> Result<(), CliError> {
    let c = client(&a.client);
    let (path, kind) = list_path(&a.kind, Some(&a.namespace))?;
    let obj = match kind {
        "Event" => {
            return Err(CliError::Usage(
                "describe takes pods, deployments, daemonsets, jobs, cronjobs, services, namespaces or nodes".into(),
            ));
        }
        "Pod" | "Node" => c.get_json(&format!("{path}/{}", a.name)).await?,
        _ => c.get_json(&format!("{path}/{}", a.name)).await?,
    };
    let ev_path = if kind == "Node" {
        "/api/v1/events".to_string()
    } else {
        format!("/api/v1/namespaces/{}/events", a.namespace)
    };
    let events: Vec<Value> = c
        .get_json(&ev_path)
        .await
        .ok()
        .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let ik = e.pointer("/involvedObject/kind").and_then(Value::as_str).unwrap_or("");
            let iname = e.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or("");
            (ik == kind && iname == a.name)
                || (kind != "Pod"
                    && kind != "Node"
                    && ik == "Pod"
                    && (iname.rsplit_once('-').is_some_and(|(o, _)| o == a.name)
                        || crate::model::revision::parse_pod_name(&a.name, iname).is_some()
                        || (kind == "DaemonSet" && crate::model::names::pod_suffix(&a.name, iname).is_some())))
        })
        .collect();
    let tail = events.len().saturating_sub(20);
    print!("{}", describe(kind, &obj, &events[tail..]));
    Ok(())
}

// ---------- logs, token, version ----------

/// `deployment/NAME` (or `deploy/NAME`, `job/NAME`): one of its pods, a
/// Ready one first, as kubectl picks; a plain name is a pod's.
async fn pod_for_logs(c: &Client, ns: &str, target: &str) -> Result<String, CliError> {
    let Some((kind, name)) = target.split_once('/') else { return Ok(target.to_string()) };
    let owner = match kind.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => return Ok(name.to_string()),
        "deployment" | "deployments" | "deploy" => "ReplicaSet",
        "job" | "jobs" => "Job",
        "daemonset" | "daemonsets" | "ds" => "DaemonSet",
        other => {
            return Err(CliError::Usage(format!(
                "logs of {other:?}: use a pod, deployment/NAME, daemonset/NAME or job/NAME"
            )));
        }
    };
    let v = c.get_json(&format!("/api/v1/namespaces/{ns}/pods")).await?;
    let items = v.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let mine = |p: &&Value| {
        let o = p.pointer("/metadata/ownerReferences/0");
        let (okind, oname) = (
            o.and_then(|o| o.get("kind")).and_then(Value::as_str),
            o.and_then(|o| o.get("name")).and_then(Value::as_str),
        );
        okind == Some(owner)
            && oname.is_some_and(|n| {
                if owner == "ReplicaSet" { n.rsplit_once('-').is_some_and(|(d, _)| d == name) } else { n == name }
            })
    };
    let ready = |p: &Value| {
        p.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    };
    let pods: Vec<&Value> = items.iter().filter(mine).collect();
    let pick = pods
        .iter()
        .copied()
        .find(|p| ready(p))
        .or(pods.first().copied())
        .ok_or_else(|| CliError::Failed(format!("{target} has no pod")))?;
    Ok(pick.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string())
}

async fn logs(a: LogsArgs) -> Result<(), CliError> {
    let mut c = client(&a.client);
    let pod = pod_for_logs(&c, &a.namespace, &a.pod).await?;
    if a.follow {
        c = c.with_timeout(std::time::Duration::from_secs(365 * 24 * 3600));
    }
    let mut q = format!("follow={}", a.follow);
    if let Some(ct) = &a.container {
        q.push_str(&format!("&container={ct}"));
    }
    if let Some(t) = a.tail {
        q.push_str(&format!("&tailLines={t}"));
    }
    let path = format!("/api/v1/namespaces/{}/pods/{pod}/log?{q}", a.namespace);
    if !a.follow {
        let b = c.call(Method::GET, &path, None).await?;
        std::io::stdout().write_all(&b).map_err(|e| CliError::Failed(e.to_string()))?;
        return Ok(());
    }
    let (_, resp) = c.send(Method::GET, &path, None).await?;
    if !resp.status().is_success() {
        let b = c.call(Method::GET, &path.replace("follow=true", "follow=false"), None).await?;
        std::io::stdout().write_all(&b).map_err(|e| CliError::Failed(e.to_string()))?;
        return Ok(());
    }
    let mut body = resp.into_body();
    let mut out = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::Unreachable(format!("log stream ended: {e}")))?;
        if let Some(d) = frame.data_ref() {
            out.write_all(d).map_err(|e| CliError::Failed(e.to_string()))?;
            out.flush().map_err(|e| CliError::Failed(e.to_string()))?;
        }
    }
    Ok(())
}

async fn token(a: TokenArgs) -> Result<(), CliError> {
    let c = client(&a.client);
    let v = if a.rotate {
        c.send_json(Method::POST, "/shoal/v1/token?action=rotate", &json!({})).await?
    } else if a.create {
        c.send_json(Method::POST, &format!("/shoal/v1/token?action=create&ttl={}", a.ttl), &json!({})).await?
    } else {
        c.get_json("/shoal/v1/token").await?
    };
    println!("{}", v.get("token").and_then(Value::as_str).unwrap_or(""));
    Ok(())
}

async fn data_key(a: super::args::DataKeyArgs) -> Result<(), CliError> {
    use super::args::{DataKeyAction, OutputFormat};
    let c = client(&a.client);
    let v = match a.action.unwrap_or(DataKeyAction::Status) {
        DataKeyAction::Status => c.get_json("/shoal/v1/data-keys").await?,
        DataKeyAction::Rotate => c.send_json(Method::POST, "/shoal/v1/data-keys/rotate", &json!({})).await?,
        DataKeyAction::Retire => c.send_json(Method::POST, "/shoal/v1/data-keys/retire", &json!({})).await?,
    };
    if a.output == Some(OutputFormat::Json) {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    if let Some(keys) = v.get("keys").and_then(Value::as_array) {
        println!("node {}, key file {}", v["node"].as_str().unwrap_or("?"), v["file"].as_str().unwrap_or("?"));
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                ["id", "state", "created", "secrets"]
                    .iter()
                    .map(|f| k[*f].as_str().map_or_else(|| k[*f].to_string(), str::to_string))
                    .collect()
            })
            .collect();
        print!("{}", super::output::table(&["KEY", "STATE", "CREATED", "SECRETS"], &rows));
        return Ok(());
    }
    let key = v["key"].as_str().unwrap_or("?");
    if let Some(retired) = v["retired"].as_array() {
        println!("{} old keys retired on every node; {key} seals", retired.len());
        return Ok(());
    }
    println!("data key {key} now seals; {} Secrets sealed again with it", v["resealed"].as_u64().unwrap_or(0));
    let asked = v.pointer("/peers/asked").and_then(Value::as_u64).unwrap_or(0);
    let holding = v.pointer("/peers/holding").and_then(Value::as_u64).unwrap_or(0);
    println!(
        "{holding} of {asked} live peers hold it; `shoal data-key retire` erases the old keys once every node does"
    );
    Ok(())
}

async fn version(a: VersionArgs) -> Result<(), CliError> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    if a.client_only {
        return Ok(());
    }
    let c = client(&a.client);
    let v = c.get_json("/version").await?;
    println!(
        "Server Version: {} ({})",
        v.get("gitVersion").and_then(Value::as_str).unwrap_or("?"),
        v.get("platform").and_then(Value::as_str).unwrap_or("?")
    );
    Ok(())
}
