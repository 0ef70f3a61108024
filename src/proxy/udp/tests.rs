//! The UDP relay on real loopback sockets: backends are plain UDP echo
//! servers in this process, the client a plain socket. What is checked is
//! the part a node kill exercises only by chance of timing: a backend whose
//! socket is closed refuses the flow's next datagram (ICMP port
//! unreachable), and that datagram is answered by another backend without
//! the client sending it again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::serve_port;
use crate::metrics::Metrics;
use crate::proxy::endpoints::Endpoint;
use crate::proxy::server::{ProxyConfig, Table};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An echo backend that prefixes each answer with its name.
async fn backend(name: &'static str) -> (u16, JoinHandle<()>) {
    let sock = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let answer = [name.as_bytes(), b":", &buf[..n]].concat();
            let _ = sock.send_to(&answer, from).await;
        }
    });
    (port, task)
}

fn endpoint(pod: &str, port: u16) -> Endpoint {
    Endpoint { pod: format!("default/{pod}"), node: "n1".into(), ip: LOOPBACK.to_string(), port }
}

fn config() -> ProxyConfig {
    ProxyConfig {
        node_ip: LOOPBACK,
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        round_robin: false,
        udp_idle_timeout: Duration::from_secs(30),
        udp_max_flows: 64,
        kernel_local: false,
    }
}

/// Sends `q` and waits (2 s at most) for its answer.
async fn ask(client: &UdpSocket, to: SocketAddr, q: &str) -> String {
    client.send_to(q.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no answer to {q} within 2 s"))
        .unwrap();
    assert_eq!(from, to, "answers come from the node port");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn counted(m: &Metrics, outcome: &str) -> u64 {
    m.proxy_udp_flows
        .get_or_create(&vec![("service".into(), "default/dns".into()), ("outcome".into(), outcome.into())])
        .get()
}

#[tokio::test]
async fn a_datagram_refused_by_a_closed_backend_is_answered_by_another() {
    let (pa, a) = backend("a").await;
    let (pb, b) = backend("b").await;
    let table = Arc::new(Mutex::new(Table::of("n1", vec![endpoint("a", pa), endpoint("b", pb)])));
    let metrics = Arc::new(Metrics::new());
    let sock = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let to = sock.local_addr().unwrap();
    let proxy = tokio::spawn(serve_port(sock, table, config(), "default/dns".into(), metrics.clone()));
    let client = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();

    // One socket is one flow: every answer from the same backend.
    let first = ask(&client, to, "q1").await;
    let (name, rest) = first.split_once(':').unwrap();
    assert_eq!(rest, "q1");
    for i in 2..6 {
        assert_eq!(ask(&client, to, &format!("q{i}")).await, format!("{name}:q{i}"), "the flow keeps its backend");
    }
    // Its backend's socket closes (its process died); the endpoint is
    // still listed, as it is until the node learns of the death.
    let (dead, other) = if name == "a" { (a, "b") } else { (b, "a") };
    dead.abort();
    assert!(dead.await.unwrap_err().is_cancelled());

    // The next datagram is refused by the closed port and sent again to the
    // live backend: answered on the first try.
    assert_eq!(ask(&client, to, "q6").await, format!("{other}:q6"));
    assert_eq!(ask(&client, to, "q7").await, format!("{other}:q7"), "the flow now stays on {other}");
    assert_eq!(counted(&metrics, "backend_refused"), 1);
    assert_eq!(counted(&metrics, "retried"), 1);
    assert_eq!(counted(&metrics, "new"), 1);
    proxy.abort();
}
