//! Services on real nodes: every node's port reaches every replica, a
//! client rides through a dead node, a slow backend gets little traffic,
//! empty services refuse at once, conflicts are reported, pods find services
//! by environment and DNS, the CLI fails over to another node.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn service(name: &str, selector: &str, node_port: Option<u16>) -> String {
    let np = node_port.map(|p| format!(", nodePort: {p}")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {selector}}}\n  ports: [{{port: 80, targetPort: http{np}}}]\n"
    )
}

fn node_port(n: &TestNode, svc: &str) -> u16 {
    n.json(&["get", "services", svc]).unwrap()["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16
}

fn pod_of(body: &str) -> Option<String> {
    body.split("pod=").nth(1).map(|s| s.split_whitespace().next().unwrap_or("").to_string())
}

fn wait_endpoints(n: &TestNode, svc: &str, count: usize) {
    poll(60, &format!("{svc} has {count} endpoints"), || {
        let v = n.json(&["get", "services", svc])?;
        let e = v["status"]["ports"][0]["endpoints"].as_array().map_or(0, Vec::len);
        if e == count { Ok(()) } else { Err(format!("{e} endpoints")) }
    });
}

#[test]
fn every_nodes_port_reaches_every_replica() {
    let c = Cluster::start(3, FAST);
    c.nodes[0].apply(&web_deployment("web", 3));
    c.nodes[0].apply(&service("web", "web", None));
    c.nodes[0].wait_ready("web", 3, 60);
    let np = node_port(&c.nodes[1], "web");
    for n in &c.nodes {
        wait_endpoints(n, "web", 3);
    }
    let mut all = BTreeSet::new();
    for n in &c.nodes {
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            let body = http_get(SocketAddr::from((n.ip, np)), "/").unwrap();
            seen.insert(pod_of(&body).expect("answer names its pod"));
        }
        assert!(seen.len() >= 2, "{} spreads its requests: {seen:?}", n.name);
        all.extend(seen);
    }
    assert_eq!(all.len(), 3, "{all:?}");
    let table = c.nodes[2].ok(&["get", "services"]);
    assert!(table.contains(&format!("80:{np}/TCP")) && table.lines().nth(1).unwrap().contains(" 3 "), "{table}");
}

#[test]
fn a_continuous_client_rides_through_a_dead_node() {
    let mut c = Cluster::start(3, FAST);
    c.nodes[0].apply(&web_deployment("web", 3));
    c.nodes[0].apply(&service("web", "web", None));
    c.nodes[0].wait_ready("web", 3, 60);
    let np = node_port(&c.nodes[0], "web");
    wait_endpoints(&c.nodes[0], "web", 3);
    let target = SocketAddr::from((c.nodes[0].ip, np));
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let client = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ok = http_get(target, "/").map(|b| b.contains("pod=")).unwrap_or(false);
                log.lock().unwrap().push((Instant::now(), ok));
            }
        })
    };
    poll(10, "client running", || if log.lock().unwrap().len() > 20 { Ok(()) } else { Err("few".into()) });
    let killed = Instant::now();
    c.nodes[2].kill9_with_pods();
    poll(30, "replicas back", || {
        let v = c.nodes[0].json(&["get", "deployments", "web"])?;
        if v["status"]["readyReplicas"] == 3 { Ok(()) } else { Err(v["status"].to_string()) }
    });
    // Keep going a little while healthy, then stop.
    let mark = log.lock().unwrap().len();
    poll(10, "more requests after recovery", || {
        if log.lock().unwrap().len() > mark + 50 { Ok(()) } else { Err("slow".into()) }
    });
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let log = log.lock().unwrap();
    let failed: Vec<Duration> = log.iter().filter(|(t, ok)| !ok && *t >= killed).map(|(t, _)| *t - killed).collect();
    let total = log.iter().filter(|(t, _)| *t >= killed).count();
    eprintln!("after the kill: {} requests, {} failed at {:?}", total, failed.len(), failed);
    assert!(log.iter().filter(|(t, _)| *t < killed).all(|(_, ok)| *ok), "no failure before the kill");
    assert!(failed.len() <= 3, "only in-flight requests may fail: {failed:?}");
    assert!(log[mark..].iter().all(|(_, ok)| *ok), "recovered");
}

#[test]
fn a_slow_backend_gets_a_small_share() {
    let c = Cluster::start(1, FAST);
    let slow = web_deployment("web", 3).replace(
        "        - name: web\n",
        "        - name: web\n          env: [{name: SLOW_POD, value: \"-0\"}, {name: SLOW, value: \"0.2\"}]\n",
    );
    c.nodes[0].apply(&slow);
    c.nodes[0].apply(&service("web", "web", None));
    c.nodes[0].wait_ready("web", 3, 60);
    wait_endpoints(&c.nodes[0], "web", 3);
    let np = node_port(&c.nodes[0], "web");
    let mut per: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..200 {
        let b = http_get(SocketAddr::from((c.nodes[0].ip, np)), "/").unwrap();
        *per.entry(pod_of(&b).unwrap()).or_default() += 1;
    }
    let slow: u32 = per.iter().filter(|(name, _)| names_replica(name, "web-0")).map(|(_, n)| *n).sum();
    let share = f64::from(slow) / 200.0;
    eprintln!("requests per pod with web-0 10x+ slower: {per:?}");
    assert!(share < 0.15, "the slow backend got {share:.2} of the requests: {per:?}");
}

#[test]
fn empty_services_refuse_at_once_and_port_conflicts_are_reported() {
    let c = Cluster::start(1, FAST);
    // Something else holds a node port on this node.
    let squatter = std::net::TcpListener::bind(SocketAddr::from((c.nodes[0].ip, 31999))).unwrap();
    c.nodes[0].apply(&service("taken", "nothing", Some(31999)));
    c.nodes[0].apply(&service("empty", "nothing", Some(31998)));
    poll(20, "conflict reported", || {
        let d = c.nodes[0].ok(&["describe", "service", "taken"]);
        if d.contains("cannot listen on node port") { Ok(()) } else { Err(d) }
    });
    drop(squatter);
    // No endpoint: the connection is reset at once, not left hanging.
    let t0 = Instant::now();
    poll(20, "listener up", || {
        std::net::TcpStream::connect(SocketAddr::from((c.nodes[0].ip, 31998))).map(|_| ()).map_err(|e| e.to_string())
    });
    let r = http_get(SocketAddr::from((c.nodes[0].ip, 31998)), "/");
    assert!(r.is_err() || r.as_deref() == Ok(""), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    let d = c.nodes[0].ok(&["describe", "service", "empty"]);
    assert!(d.contains("<none> (no Ready pod matches the selector)"), "{d}");
    // Two services cannot ask for the same node port.
    let o = c.nodes[0].cli_stdin(&["apply", "-f", "-"], &service("again", "x", Some(31998)));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("node port 31998/TCP is already used by service default/empty")
    );
}

/// `web` with `extra` appended to its spec (at the spec's indentation).
fn service_with(name: &str, extra: &str) -> String {
    format!("{}{extra}", service(name, name, None))
}

#[test]
fn session_affinity_pins_a_client_and_a_local_policy_keeps_traffic_on_the_node() {
    let c = Cluster::start(3, FAST);
    c.nodes[0].apply(&web_deployment("web", 6));
    c.nodes[0].apply(&service_with(
        "web",
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
    ));
    c.nodes[0].wait_ready("web", 6, 60);
    let np = node_port(&c.nodes[0], "web");
    for n in &c.nodes {
        wait_endpoints(n, "web", 6);
    }
    // Every connection from this host's address goes to one replica per
    // node (each node keeps its own pins), new connections each time.
    for n in &c.nodes {
        let pods: BTreeSet<String> = (0..20)
            .map(|_| pod_of(&http_get(SocketAddr::from((n.ip, np)), "/").unwrap()).expect("answer names its pod"))
            .collect();
        assert_eq!(pods.len(), 1, "{} pins the client: {pods:?}", n.name);
    }
    let d = c.nodes[1].ok(&["get", "service", "web", "-o", "yaml"]);
    assert!(d.contains("sessionAffinity: ClientIP") && d.contains("timeoutSeconds: 60"), "{d}");

    // internalTrafficPolicy: Local: this host's clients are internal; each
    // node sends them only to its own replicas, and a node with none
    // refuses at once.
    c.nodes[0].apply(&service_with("web", "  internalTrafficPolicy: Local\n"));
    let where_: BTreeMap<String, String> = c.nodes[0]
        .pods()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for n in &c.nodes {
        let local: BTreeSet<&String> = where_.iter().filter(|(_, node)| **node == n.name).map(|(p, _)| p).collect();
        let addr = SocketAddr::from((n.ip, np));
        if local.is_empty() {
            poll(10, &format!("{} refuses: no local replica", n.name), || match http_get(addr, "/") {
                Err(_) => Ok(()),
                Ok(b) => Err(format!("answered {b}")),
            });
            continue;
        }
        // The policy reaches every node's proxy within a gossip round.
        poll(10, &format!("{} keeps traffic local", n.name), || {
            let nodes: BTreeSet<String> = (0..20)
                .filter_map(|_| http_get(addr, "/").ok())
                .filter_map(|b| b.split("node=").nth(1).map(|s| s.trim().to_string()))
                .collect();
            if nodes.len() == 1 && nodes.contains(&n.name) { Ok(()) } else { Err(format!("answered from {nodes:?}")) }
        });
    }
    let bad = c.nodes[0].cli_stdin(&["apply", "-f", "-"], &service_with("web", "  externalTrafficPolicy: Nearby\n"));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("spec.externalTrafficPolicy: must be Cluster or Local"), "{err}");
}

#[test]
fn pods_find_services_by_environment_and_dns() {
    let ip = unique_ip();
    let cfg = format!("[proxy]\ndns_addr = \"{ip}:10053\"\n{FAST}");
    let tmp = tempfile::tempdir().unwrap();
    let n = TestNode::start_at("solo", ip, tmp.path().join("n"), &cfg, &[]);
    n.wait_healthy();
    n.apply(&web_deployment("web", 1));
    n.apply(&service("web", "web", Some(30123)));
    n.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: env}\nspec:\n  selector: {matchLabels: {app: env}}\n  template:\n    metadata: {labels: {app: env}}\n    spec:\n      containers: [{name: c, command: [sh, -c, \"env; sleep 1000\"]}]\n");
    let env = pod_name(&n, "env-0");
    let out = poll(30, "env printed", || {
        let o = n.cli(&["logs", &env]);
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        if s.contains("WEB_SERVICE_PORT=") { Ok(s) } else { Err(s) }
    });
    assert!(out.contains(&format!("WEB_SERVICE_HOST={ip}")) && out.contains("WEB_SERVICE_PORT=30123"), "{out}");
    // DNS: web.default.svc.shoal -> this node's IP.
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut q = Message::new(42, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii("web.default.svc.shoal.").unwrap(), RecordType::A));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&q.to_vec().unwrap(), SocketAddr::from((ip, 10053))).unwrap();
    let mut buf = [0u8; 1500];
    let (len, _) = sock.recv_from(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..len]).unwrap();
    assert!(matches!(r.answers[0].data, RData::A(a) if a.0 == ip), "{r:?}");
}

#[test]
fn the_cli_fails_over_when_its_node_is_down() {
    let mut c = Cluster::start(2, FAST);
    c.nodes[0].apply(&web_deployment("web", 0));
    // A first call learns the cluster's API addresses.
    c.nodes[0].ok(&["get", "pods"]);
    c.nodes[0].kill9();
    let o = c.nodes[0].cli(&["get", "deployments"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("web"));
}

#[test]
fn the_client_library_spreads_requests_and_fails_over() {
    let mut c = Cluster::start(3, FAST);
    let urls: Vec<String> = c.nodes.iter().map(|n| n.server()).collect();
    let client =
        shoal::api::client::Client::balanced(urls, Some(c.nodes[0].token())).with_ca(&c.nodes[0].cluster_ca()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = |n: &TestNode| metric(n, "shoal_api_requests_total{method=\"GET\",code=\"200\"}");
    let before: Vec<f64> = c.nodes.iter().map(count).collect();
    for _ in 0..60 {
        rt.block_on(client.get_json("/api/v1/namespaces/default/pods")).unwrap();
    }
    let got: Vec<f64> = c.nodes.iter().zip(&before).map(|(n, b)| count(n) - b).collect();
    // Latency-aware: not uniform, but spread over more than one node.
    assert!(got.iter().filter(|g| **g >= 5.0).count() >= 2, "requests per node: {got:?}");
    c.nodes[1].kill9();
    for _ in 0..20 {
        rt.block_on(client.get_json("/api/v1/namespaces/default/pods")).expect("fails over");
    }
}

/// A backend that reports the PROXY protocol header it was sent first:
/// `PROXY TCP4 ...` for v1, `V2 src dst sport dport` for v2, `NONE`.
const PP_BACKEND: &str = r#"import os,socket,threading
SIG=b'\r\n\r\n\x00\r\nQUIT\n'
def h(c):
  d=b''
  while b'\r\n\r\n' not in d[28:] and b'\r\n\r\n' not in d[d.find(b'\r\n')+2:]:
    x=c.recv(4096)
    if not x: return c.close()
    d+=x
  if d.startswith(b'PROXY '): r=d.split(b'\r\n',1)[0].decode()
  elif d[:12]==SIG: r='V2 %s %s %d %d'%('.'.join(map(str,d[16:20])),'.'.join(map(str,d[20:24])),int.from_bytes(d[24:26],'big'),int.from_bytes(d[26:28],'big'))
  else: r='NONE'
  b=r.encode(); c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n'%len(b)+b); c.close()
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind((os.environ['SHOAL_NODE_IP'],int(os.environ['PORT']))); s.listen(64)
while True:
  c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()
"#;

#[test]
fn proxy_protocol_gives_backends_the_client_address() {
    use std::io::{Read, Write};
    let n = TestNode::start("pp", FAST, &[]);
    let deploy = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: pp}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: pp}}}}\n  template:\n    metadata: {{labels: {{app: pp}}}}\n    spec:\n      containers:\n        - name: c\n          command: [python3, -c, {:?}]\n          ports: [{{name: http, containerPort: 8080}}]\n          readinessProbe: {{tcpSocket: {{port: http}}, periodSeconds: 1}}\n",
        PP_BACKEND
    );
    n.apply(&deploy);
    let svc = |v: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: pp\n  annotations: {{shoal.dev/proxy-protocol: {v}}}\nspec:\n  selector: {{app: pp}}\n  ports: [{{port: 80, targetPort: http}}]\n"
        )
    };
    let ask = |np: u16| -> Result<(SocketAddr, String), String> {
        let mut s = std::net::TcpStream::connect_timeout(&SocketAddr::from((n.ip, np)), Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let me = s.local_addr().map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok((me, out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
    };
    for (v, want) in [("v1", "PROXY TCP4"), ("v2", "V2")] {
        n.apply(&svc(v));
        wait_endpoints(&n, "pp", 1);
        let np = node_port(&n, "pp");
        let (me, body) = poll(30, &format!("a {v} header"), || match ask(np) {
            Ok((me, b)) if b.starts_with(want) => Ok((me, b)),
            other => Err(format!("{other:?}")),
        });
        let expect = format!("{want} {} {} {} {np}", me.ip(), n.ip, me.port());
        assert_eq!(body, expect, "the backend learns the client's address and port");
    }
    let bad = n.cli_stdin(&["apply", "-f", "-"], &svc("v3"));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("metadata.annotations[shoal.dev/proxy-protocol]: must be v1 or v2"),
        "{err}"
    );
}
