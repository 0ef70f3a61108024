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

/// What a stream of queries saw: (sent at, answered by the first try,
/// answered at all).
type Log = Arc<Mutex<Vec<(Instant, bool, bool)>>>;

/// Queries `to` about 100 times a second until `stop`, each from a fresh
/// socket like a stub resolver, with a 1 s timeout and one retry (on yet
/// another socket). With `sticky`, every query and retry goes on that one
/// socket instead: a long-lived flow.
fn stream(to: SocketAddr, stop: Arc<AtomicBool>, log: Log, sticky: Option<UdpSocket>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut id: u16 = 0;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let mut tries = 0;
            let ok = loop {
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
                    Ok(_) => break true,
                    Err(_) if tries < 2 => continue,
                    Err(_) => break false,
                }
            };
            log.lock().unwrap().push((t, ok && tries == 1, ok));
            std::thread::sleep(Duration::from_millis(10).saturating_sub(t.elapsed()));
        }
    })
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
    let node_of = |pod: &str| -> Option<usize> {
        let p = c.nodes[0].pods().into_iter().find(|p| p["metadata"]["name"] == pod)?;
        c.nodes.iter().position(|n| p["spec"]["nodeName"] == n.name.as_str())
    };
    let (long, victim) = poll(30, "a flow to a replica on another node", || {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let pod = ask(&sock, to, 1, Duration::from_secs(2))?;
        match node_of(&pod) {
            Some(i) if i != 0 => Ok((sock, i)),
            other => Err(format!("{pod} runs on node {other:?}")),
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (fresh, sticky): (Log, Log) = (Arc::default(), Arc::default());
    let clients = [stream(to, stop.clone(), fresh.clone(), None), stream(to, stop.clone(), sticky.clone(), Some(long))];
    poll(10, "clients running", || if fresh.lock().unwrap().len() > 50 { Ok(()) } else { Err("few".into()) });
    let killed = Instant::now();
    let dead = c.nodes[victim].name.clone();
    c.nodes[victim].kill9_with_pods();
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
    eprintln!(
        "node proxy: {refused} flows refused by a dead replica, {resent} datagrams sent again, {moved} flows moved"
    );
    // The long flow's replica died with its node: its next query was
    // refused (ICMP port unreachable) and sent again to a live replica.
    assert!(refused >= 1.0 && resent >= 1.0, "the long flow moved on refusal: {refused} refused, {resent} resent");
    for (what, log) in [("fresh source ports", &fresh), ("one long flow", &sticky)] {
        let log = log.lock().unwrap();
        let after: Vec<_> = log.iter().filter(|(t, _, _)| *t >= killed).collect();
        let retried = after.iter().filter(|(_, first, _)| !first).count();
        let failed = after.iter().filter(|(_, _, ok)| !ok).count();
        eprintln!(
            "{what}: {} queries after the kill of {}, {retried} needed the retry, {failed} failed; \
             3 Ready endpoints again, none on the dead node, {:.1} s after the kill",
            after.len(),
            c.nodes[victim].name,
            recovered.as_secs_f64()
        );
        assert!(log.iter().filter(|(t, _, _)| *t < killed).all(|(_, _, ok)| *ok), "{what}: no failure before the kill");
        assert_eq!(failed, 0, "{what}: a query failed even with its retry");
    }
}
