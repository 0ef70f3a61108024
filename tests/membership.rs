//! A cluster of real nodes: join with a token, see each other, detect a
//! kill -9, see a graceful leave at once, refuse strangers and garbage.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

#[test]
fn five_nodes_detect_kill9_fast_and_see_the_restart_with_a_new_generation() {
    let mut c = Cluster::start(5, FAST);
    let before = c.generation(0, "n4").expect("generation");
    c.nodes[3].kill9();
    let took = c.wait_node_state(10, "n4", "Dead");
    eprintln!("kill -9 -> Dead on all 4 peers: {took:?}");
    // The failure is visible as an event.
    let ev = c.nodes[0].ok(&["get", "events"]);
    assert!(ev.lines().any(|l| l.contains("node/n4") && l.contains("Dead")), "{ev}");
    // Restart with no flags: it rejoins the peers it remembers, new generation.
    c.nodes[3].extra_args.clear();
    c.nodes[3].restart();
    c.wait_node_state(20, "n4", "Ready");
    let after = c.generation(0, "n4").expect("generation");
    assert!(after.parse::<u64>().unwrap() > before.parse::<u64>().unwrap(), "{before} -> {after}");
}

#[test]
fn sigterm_is_seen_as_left_without_waiting_for_the_failure_detector() {
    // A slow failure detector: Dead would take ~5 s; Left must come sooner.
    let cfg = format!("{FAST}phi_threshold = 25.0\n");
    let mut c = Cluster::start(3, &cfg);
    let t0 = std::time::Instant::now();
    assert_eq!(c.nodes[2].stop(), Some(0));
    c.wait_node_state(4, "n3", "Left");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}

#[test]
fn a_node_with_another_clusters_token_never_appears() {
    let c = Cluster::start(2, FAST);
    let other = TestNode::start("stranger-seed", FAST, &[]);
    let wrong = other.ok(&["token"]).trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let ip = unique_ip();
    let mut x = TestNode::start_at(
        "intruder",
        ip,
        tmp.path().join("x"),
        FAST,
        &["--join".into(), format!("{}:7421", c.nodes[0].ip), "--token".into(), wrong],
    );
    let code = poll(20, "intruder exits", || match x.child.as_mut().unwrap().try_wait() {
        Ok(Some(s)) => Ok(s.code()),
        _ => Err("still running".into()),
    });
    assert_eq!(code, Some(5));
    assert!(x.log().contains("another cluster"), "{}", x.log());
    x.child = None;
    for i in 0..2 {
        let st = c.states(i).unwrap();
        assert!(!st.contains_key("intruder"), "{st:?}");
        assert_eq!(st.len(), 2);
    }
}

#[test]
fn rotated_and_expired_tokens_are_refused_with_a_reason() {
    let c = Cluster::start(1, FAST);
    let old = c.token.clone();
    let new = c.nodes[0].ok(&["token", "--rotate"]).trim().to_string();
    assert_ne!(old, new);
    assert_eq!(c.nodes[0].ok(&["token"]).trim(), new);
    let short = c.nodes[0].ok(&["token", "--create", "--ttl", "1s"]).trim().to_string();
    // The condition is time itself: the 1 s TTL must run out.
    std::thread::sleep(Duration::from_millis(1100));
    for (token, why) in [(old, "rotated"), (short, "expired")] {
        let tmp = tempfile::tempdir().unwrap();
        let mut x = TestNode::start_at(
            "late",
            unique_ip(),
            tmp.path().join("x"),
            FAST,
            &["--join".into(), format!("{}:7421", c.nodes[0].ip), "--token".into(), token],
        );
        let code = poll(20, "refused join exits", || match x.child.as_mut().unwrap().try_wait() {
            Ok(Some(s)) => Ok(s.code()),
            _ => Err("running".into()),
        });
        assert_eq!(code, Some(5));
        assert!(x.log().contains(why), "{why}: {}", x.log());
        x.child = None;
    }
    // The current token still works.
    let tmp = tempfile::tempdir().unwrap();
    let ok = TestNode::start_at(
        "fresh",
        unique_ip(),
        tmp.path().join("f"),
        FAST,
        &["--join".into(), format!("{}:7421", c.nodes[0].ip), "--token".into(), new],
    );
    ok.wait_healthy();
    poll(20, "fresh visible", || {
        if c.states(0)?.get("fresh").map(String::as_str) == Some("Ready") { Ok(()) } else { Err("not yet".into()) }
    });
}

#[test]
fn garbage_on_the_quic_port_leaves_the_cluster_healthy() {
    let c = Cluster::start(3, FAST);
    let target = SocketAddr::from((c.nodes[0].ip, 7421));
    // Raw UDP junk.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2000u32 {
        let junk: Vec<u8> = (0..(i % 1400)).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect();
        let _ = sock.send_to(&junk, target);
    }
    // A TLS-valid QUIC client without a client certificate, on the peer ALPN,
    // sending a junk gossip frame: refused and counted.
    let pin = c.token.split('-').nth(1).unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let closed = rt.block_on(async {
        let mut tls = shoal::net::tls::join_client_config(&pin).unwrap();
        tls.alpn_protocols = vec![shoal::net::tls::ALPN_PEER.to_vec()];
        let q = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn =
            ep.connect_with(quinn::ClientConfig::new(std::sync::Arc::new(q)), target, "shoal").unwrap().await.unwrap();
        if let Ok(mut s) = conn.open_uni().await {
            let _ = s.write_all(&[1, 3, b'x', b'y', b'z', 0xff, 0xfe]).await;
            let _ = s.finish();
        }
        tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.map(|e| e.to_string())
    });
    assert!(closed.as_deref().is_ok_and(|r| r.contains("client certificate required")), "{closed:?}");
    // Still three Ready nodes, and the refusal is counted.
    c.wait_states(10, |_, s| s == "Ready", 3);
    assert!(metric(&c.nodes[0], "shoal_peer_refused_total{reason=\"no-client-certificate\"}") >= 1.0);
    // And it still takes writes.
    c.nodes[0].apply(&web_deployment("after", 1));
}

#[test]
fn mdns_discovery_finds_the_cluster_without_join_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let ips = unique_ips(2);
    let mdns = ["--discover".to_string(), "mdns".to_string()];
    let a = TestNode::start_at("seed", ips[0], tmp.path().join("a"), FAST, &mdns);
    a.wait_healthy();
    let token = a.ok(&["token"]).trim().to_string();
    let b = TestNode::start_at(
        "found",
        ips[1],
        tmp.path().join("b"),
        FAST,
        &[mdns[0].clone(), mdns[1].clone(), "--token".into(), token],
    );
    b.wait_healthy();
    poll(20, "both nodes Ready on the seed", || {
        let v = a.json(&["get", "nodes"])?;
        let ready = v["items"].as_array().map_or(0, |i| i.iter().filter(|n| n["status"]["state"] == "Ready").count());
        if ready == 2 { Ok(()) } else { Err(v.to_string()) }
    });
}
