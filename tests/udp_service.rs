//! UDP Services on real nodes with a real DNS server: dnsmasq (Debian's
//! `dnsmasq-base`) as process pods behind a `protocol: UDP` service port.
//! `dig` gets answers through every node's node port; a client's flow keeps
//! its replica; and a stream of queries, each from a fresh source port as a
//! stub resolver sends them, rides through a node killed with its pods.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// dnsmasq answering `who.lab TXT` with its pod's name and `web.lab A`
/// with 10.1.2.3, on its pod's port for both UDP and TCP (the readiness
/// probe connects over TCP).
fn dns_deployment(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: dns}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: dns}}}}
  template:
    metadata: {{labels: {{app: dns}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: dnsmasq
          command: [{DNSMASQ}, --keep-in-foreground, --conf-file=/dev/null, --no-resolv, --no-hosts,
                    --pid-file=, --user=nobody, --group=nogroup, --bind-interfaces,
                    "--listen-address=$(SHOAL_NODE_IP)", "--port=$(PORT)",
                    "--txt-record=who.lab,$(SHOAL_POD_NAME)", --address=/web.lab/10.1.2.3]
          ports:
            - {{name: dns, containerPort: 53, protocol: UDP}}
            - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
          readinessProbe:
            tcpSocket: {{port: dns-tcp}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: dns}}
spec:
  selector: {{app: dns}}
  ports: [{{name: dns, port: 53, targetPort: dns, protocol: UDP}}]
"#
    )
}

/// Whether dnsmasq and dig are installed; outside CI a missing one skips
/// the test loudly, under CI it fails.
fn tools_ready() -> bool {
    let dig = Command::new("dig").arg("-v").output().is_ok_and(|o| o.status.success());
    let dnsmasq = std::path::Path::new(DNSMASQ).exists();
    if dig && dnsmasq {
        return true;
    }
    let why = format!("dig installed: {dig}, {DNSMASQ} installed: {dnsmasq} (apt install bind9-dnsutils dnsmasq-base)");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "UDP service tests need dnsmasq and dig: {why}");
    eprintln!("SKIPPED: UDP service tests need dnsmasq and dig: {why}");
    false
}

fn node_port(n: &TestNode) -> u16 {
    n.json(&["get", "services", "dns"]).unwrap()["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16
}

fn wait_endpoints(n: &TestNode, count: usize) {
    poll(60, &format!("dns has {count} endpoints on {}", n.name), || {
        let v = n.json(&["get", "services", "dns"])?;
        let e = v["status"]["ports"][0]["endpoints"].as_array().map_or(0, Vec::len);
        if e == count { Ok(()) } else { Err(format!("{e} endpoints")) }
    });
}

/// `dig +short` through `ip:port` (one try, 2 s).
fn dig(ip: Ipv4Addr, port: u16, name: &str, kind: &str) -> Result<String, String> {
    let o = Command::new("dig")
        .args([&format!("@{ip}"), "-p", &port.to_string(), name, kind, "+short", "+tries=1", "+time=2"])
        .output()
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&o.stdout).trim().trim_matches('"').to_string();
    if o.status.success() && !out.is_empty() && !out.starts_with(';') {
        Ok(out)
    } else {
        Err(format!("dig {name} {kind} via {ip}:{port}: {out} {}", String::from_utf8_lossy(&o.stderr)))
    }
}

/// A `who.lab TXT` query with id `id`.
fn query(id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii("who.lab.").unwrap(), RecordType::TXT));
    m.to_vec().unwrap()
}

/// Sends one query on `sock` and waits `timeout` for its answer: the pod
/// name in the TXT record.
fn ask(sock: &UdpSocket, to: SocketAddr, id: u16, timeout: Duration) -> Result<String, String> {
    sock.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    sock.send_to(&query(id), to).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
        if from != to {
            return Err(format!("answer from {from}, not {to}"));
        }
        let m = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        if m.metadata.id != id {
            continue; // a late answer to an earlier try
        }
        for a in &m.answers {
            if let RData::TXT(t) = &a.data {
                return Ok(t.txt_data.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect());
            }
        }
        return Err(format!("no TXT answer: {m:?}"));
    }
}

#[test]
fn dig_gets_answers_through_every_nodes_port_and_a_flow_keeps_its_replica() {
    if !tools_ready() {
        return;
    }
    let c = Cluster::start(3, FAST);
    c.nodes[0].apply(&dns_deployment(3));
    c.nodes[0].wait_ready("dns", 3, 60);
    let np = node_port(&c.nodes[1]);
    for n in &c.nodes {
        wait_endpoints(n, 3);
    }
    let pods: std::collections::BTreeSet<String> =
        c.nodes[0].pods().iter().filter_map(|p| p["metadata"]["name"].as_str().map(String::from)).collect();
    let mut all = std::collections::BTreeSet::new();
    for n in &c.nodes {
        assert_eq!(dig(n.ip, np, "web.lab", "A").unwrap(), "10.1.2.3", "A record through {}", n.name);
        // Each dig sends from a new port: a new flow, balanced.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..15 {
            seen.insert(dig(n.ip, np, "who.lab", "TXT").unwrap());
        }
        assert!(seen.len() >= 2, "{} spreads new flows over replicas: {seen:?}", n.name);
        all.extend(seen);
    }
    // Only replicas answer. (Not necessarily all of them: under light
    // sequential load P2C keeps choosing the faster replicas.)
    assert!(all.is_subset(&pods) && all.len() >= 2, "answers from {all:?}, replicas {pods:?}");
    // One socket is one flow: every answer from the same replica.
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let to = SocketAddr::from((c.nodes[2].ip, np));
    let first = ask(&sock, to, 1, Duration::from_secs(2)).unwrap();
    for id in 2..30 {
        assert_eq!(ask(&sock, to, id, Duration::from_secs(2)).unwrap(), first, "the flow keeps its replica");
    }
    let table = c.nodes[2].ok(&["get", "services"]);
    assert!(table.contains(&format!("53:{np}/UDP")), "{table}");
    let m = metric(&c.nodes[2], "shoal_proxy_udp_flows_total{service=\"default/dns\",outcome=\"new\"}");
    assert!(m >= 16.0, "new flows counted: {m}");
    // Deleted, the port is closed (its flows with it): the service applied
    // again gets the same node port, and every node binds it again.
    c.nodes[0].ok(&["delete", "service", "dns"]);
    poll(10, "the node port closed", || match dig(c.nodes[1].ip, np, "web.lab", "A") {
        Err(_) => Ok(()),
        Ok(a) => Err(format!("still answered: {a}")),
    });
    c.nodes[0].apply(&dns_deployment(3));
    assert_eq!(node_port(&c.nodes[0]), np);
    for n in &c.nodes {
        poll(10, &format!("{} serves the port again", n.name), || dig(n.ip, np, "web.lab", "A"));
    }
}

/// One query of a stream: when it was sent, how many tries it took, and
/// the replica that answered, if one did.
struct Asked {
    at: Instant,
    tries: u32,
    by: Option<String>,
}

type Log = Arc<Mutex<Vec<Asked>>>;

/// Tries per query, 1 s apart, as dig's default (`+tries=3`). The first
/// is answered when the proxy sees the dead replica refuse (ICMP port
/// unreachable); a later one when the kernel held that error back and the
/// flow moved only with the endpoints.
const TRIES: u32 = 3;

/// Queries `to` about 100 times a second until `stop`, each from a fresh
/// socket like a stub resolver, with a 1 s timeout and up to `TRIES` tries
/// (each on yet another socket). With `sticky`, every query and retry goes
/// on that one socket instead: a long-lived flow.
fn stream(to: SocketAddr, stop: Arc<AtomicBool>, log: Log, sticky: Option<UdpSocket>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut id: u16 = 0;
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::now();
            let mut tries = 0;
            let by = loop {
                id = id.wrapping_add(1);
                tries += 1;
                let fresh;
                let sock = match &sticky {
                    Some(s) => s,
                    None => {
                        fresh = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                        &fresh
                    }
                };
                match ask(sock, to, id, Duration::from_secs(1)) {
                    Ok(pod) => break Some(pod),
                    Err(_) if tries < TRIES => continue,
                    Err(_) => break None,
                }
            };
            log.lock().unwrap().push(Asked { at, tries, by });
            std::thread::sleep(Duration::from_millis(10).saturating_sub(at.elapsed()));
        }
    })
}

/// ICMP errors the kernel did not send because of its global rate limit
/// (`net.ipv4.icmp_msgs_per_sec`), from /proc/net/snmp (0 where the kernel
/// does not count them).
fn icmp_rate_limited() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut rows = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutRateLimitGlobal")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0))
}

/// What a datagram to a killed replica's port gets, on a connected socket
/// (an unconnected one is not told of ICMP errors): "refused" (port
/// unreachable), "silence" (nothing within 1 s) or "answered".
fn probe(to: SocketAddr) -> &'static str {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.connect(to).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    if let Err(e) = sock.send(&query(7)) {
        return if e.kind() == std::io::ErrorKind::ConnectionRefused { "refused" } else { "silence" };
    }
    match sock.recv(&mut [0u8; 1500]) {
        Ok(_) => "answered",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(_) => "silence",
    }
}

/// The index of the node that runs pod `pod`, as node 0 sees it.
fn node_of(c: &Cluster, pod: &str) -> Option<usize> {
    let p = c.nodes[0].pods().into_iter().find(|p| p["metadata"]["name"] == pod)?;
    c.nodes.iter().position(|n| p["spec"]["nodeName"] == n.name.as_str())
}

#[test]
fn dns_queries_ride_through_a_node_killed_with_its_replicas() {
    if !tools_ready() {
        return;
    }
    let mut c = Cluster::start(3, FAST);
    c.nodes[0].apply(&dns_deployment(3));
    c.nodes[0].wait_ready("dns", 3, 60);
    let np = node_port(&c.nodes[0]);
    wait_endpoints(&c.nodes[0], 3);
    let to = SocketAddr::from((c.nodes[0].ip, np));
    // A long-lived flow whose replica is not on the node queried: that
    // node is killed below, and the flow must move.
    let (long, victim) = poll(30, "a flow to a replica on another node", || {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let pod = ask(&sock, to, 1, Duration::from_secs(2))?;
        match node_of(&c, &pod) {
            Some(i) if i != 0 => Ok((sock, i)),
            other => Err(format!("{pod} runs on node {other:?}")),
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (fresh, sticky): (Log, Log) = (Arc::default(), Arc::default());
    let clients = [stream(to, stop.clone(), fresh.clone(), None), stream(to, stop.clone(), sticky.clone(), Some(long))];
    poll(10, "clients running", || if fresh.lock().unwrap().len() > 50 { Ok(()) } else { Err("few".into()) });
    let dead = c.nodes[victim].name.clone();
    let dead_replicas: Vec<SocketAddr> =
        c.nodes[0].json(&["get", "services", "dns"]).unwrap()["status"]["ports"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["node"] == dead.as_str())
            .map(|e| format!("{}:{}", e["ip"].as_str().unwrap(), e["port"]).parse().unwrap())
            .collect();
    assert!(!dead_replicas.is_empty(), "a replica on {dead}");
    let limited = icmp_rate_limited();
    let killed = Instant::now();
    c.nodes[victim].kill9_with_pods();
    // What the node proxy can see of the dead replicas: a refusal moves a
    // flow at once; without one it moves when the endpoints change.
    let seen: Vec<&str> = dead_replicas.iter().map(|a| probe(*a)).collect();
    poll(30, "3 endpoints again, none on the dead node", || {
        let v = c.nodes[0].json(&["get", "services", "dns"])?;
        let eps = v["status"]["ports"][0]["endpoints"].as_array().cloned().unwrap_or_default();
        if eps.len() == 3 && eps.iter().all(|e| e["node"] != dead.as_str()) { Ok(()) } else { Err(format!("{eps:?}")) }
    });
    let recovered = killed.elapsed();
    let mark = fresh.lock().unwrap().len();
    poll(20, "more queries after recovery", || {
        if fresh.lock().unwrap().len() > mark + 300 { Ok(()) } else { Err("slow".into()) }
    });
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().unwrap();
    }
    let counted = |outcome: &str| {
        metric(&c.nodes[0], &format!("shoal_proxy_udp_flows_total{{service=\"default/dns\",outcome=\"{outcome}\"}}"))
    };
    let (refused, resent, moved) = (counted("backend_refused"), counted("retried"), counted("moved"));
    let limited = icmp_rate_limited().saturating_sub(limited);
    eprintln!(
        "node proxy: {refused} flows refused by a dead replica, {resent} datagrams sent again, {moved} flows moved; \
         the dead replicas {dead_replicas:?}, probed right after the kill: {seen:?}; \
         ICMP errors held back by the kernel's global rate limit meanwhile: {limited}"
    );
    let mut failures = Vec::new();
    for (what, log) in [("fresh source ports", &fresh), ("one long flow", &sticky)] {
        let log = log.lock().unwrap();
        let after: Vec<_> = log.iter().filter(|q| q.at >= killed).collect();
        let retried = after.iter().filter(|q| q.by.is_some() && q.tries > 1).count();
        let failed = after.iter().filter(|q| q.by.is_none()).count();
        eprintln!(
            "{what}: {} queries after the kill of {dead}, {retried} needed a retry, {failed} failed; \
             3 Ready endpoints again, none on the dead node, {:.1} s after the kill",
            after.len(),
            recovered.as_secs_f64()
        );
        if log.iter().any(|q| q.at < killed && q.by.is_none()) {
            failures.push(format!("{what}: a query failed before the kill"));
        }
        if failed > 0 {
            failures.push(format!("{what}: {failed} queries failed even with {TRIES} tries"));
        }
    }
    // The long flow's replica died with its node: the flow moved to a live
    // replica (on a refusal, or when the endpoints changed: see above).
    let sticky = sticky.lock().unwrap();
    let last = sticky.last().and_then(|q| q.by.clone()).unwrap_or_default();
    if node_of(&c, &last).is_none_or(|i| i == victim) {
        failures.push(format!("the long flow's last answer came from {last:?}, not a live replica"));
    }
    // Where the kernel reported the dead replicas refusing and held no
    // ICMP error back, the proxy saw a refusal too (the long flow sends
    // every 10 ms, and the endpoints change only after a second).
    if seen.iter().all(|s| *s == "refused") && limited == 0 && refused < 1.0 {
        failures.push("no flow moved on a refusal, though the dead replicas refused".into());
    }
    assert!(seen.iter().all(|s| *s != "answered"), "a replica of the killed node {dead} still answers: {seen:?}");
    assert!(failures.is_empty(), "{failures:?}");
}
