//! The DNS responder on every node: `NAME.NAMESPACE.svc.shoal` resolves to
//! addresses that reach the service.
//!
//! A service is served on its node port by every node, so its name resolves
//! (A records) to the node IPs of the alive nodes, the answering node first;
//! `_PORT._tcp.NAME.NAMESPACE.svc.shoal` (SRV; `_udp` for a UDP port) gives
//! the node port of a named port. Messages are parsed and built with hickory-proto; `answer` is pure.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::sync::watch;

use crate::membership::view::ClusterView;
use crate::model::types::Protocol;
use crate::model::{Kind, Object};
use crate::state::Snapshot;

/// The DNS domain of services.
pub const DOMAIN: &str = "svc.shoal";
/// Seconds clients may cache an answer.
pub const TTL: u32 = 5;

/// Looks up a service's (port name, protocol, node port) by (namespace, name).
pub type PortLookup<'a> = &'a dyn Fn(&str, &str) -> Option<Vec<(String, Protocol, u16)>>;

/// What the responder needs to know: service ports by (namespace, name), and
/// the addresses to answer with.
pub struct Zone<'a> {
    pub ports: PortLookup<'a>,
    pub ips: &'a [IpAddr],
}

fn labels(name: &Name) -> Vec<String> {
    name.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect()
}

/// Answers one DNS message; `None` when it is not even a parseable query.
pub fn answer(query: &[u8], zone: &Zone<'_>) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut resp = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = q.metadata.recursion_desired;
    let Some(question) = q.queries.first().cloned() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp.to_vec().ok();
    };
    resp.add_query(question.clone());
    let l = labels(question.name());
    let n = l.len();
    if n < 4 || l[n - 2] != "svc" || l[n - 1] != "shoal" {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp.to_vec().ok();
    }
    let (svc, ns, port_label) = match n {
        4 => (l[0].clone(), l[1].clone(), None),
        6 if l[1] == "_tcp" || l[1] == "_udp" => {
            let proto = if l[1] == "_udp" { Protocol::Udp } else { Protocol::Tcp };
            (l[2].clone(), l[3].clone(), Some((l[0].trim_start_matches('_').to_string(), proto)))
        }
        _ => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            return resp.to_vec().ok();
        }
    };
    let Some(ports) = (zone.ports)(&ns, &svc) else {
        resp.metadata.response_code = ResponseCode::NXDomain;
        return resp.to_vec().ok();
    };
    let name = question.name().clone();
    match (question.query_type(), port_label) {
        (RecordType::A, None) => {
            for ip in zone.ips.iter().filter_map(|i| if let IpAddr::V4(v) = i { Some(*v) } else { None }) {
                resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(ip))));
            }
        }
        (RecordType::AAAA, None) => {
            for ip in zone.ips.iter().filter_map(|i| if let IpAddr::V6(v) = i { Some(*v) } else { None }) {
                resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(ip))));
            }
        }
        (RecordType::SRV, Some((p, proto))) => {
            let target = Name::from_ascii(format!("{svc}.{ns}.{DOMAIN}.")).ok()?;
            match ports.iter().find(|(pn, pp, _)| *pn == p && *pp == proto) {
                Some((_, _, np)) => {
                    resp.add_answer(Record::from_rdata(name, TTL, RData::SRV(SRV::new(0, 0, *np, target))));
                }
                None => resp.metadata.response_code = ResponseCode::NXDomain,
            }
        }
        // Known name, no record of that type: empty answer (NODATA).
        _ => {}
    }
    resp.to_vec().ok()
}

/// Service ports of a snapshot: (port name, protocol, node port).
pub fn service_ports(snap: &Snapshot, ns: &str, name: &str) -> Option<Vec<(String, Protocol, u16)>> {
    let key = crate::model::ObjectKey { kind: Kind::Service, namespace: ns.to_string(), name: name.to_string() };
    let Object::Service(s) = &snap.get(&key)?.object else { return None };
    Some(
        s.spec
            .ports
            .iter()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.proto(), u16::try_from(p.node_port?).ok()?)))
            .collect(),
    )
}

/// Serves DNS on `addr` until `shutdown`.
pub async fn serve(
    sock: tokio::net::UdpSocket,
    state: watch::Receiver<Arc<Snapshot>>,
    view: watch::Receiver<Arc<ClusterView>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from): (usize, SocketAddr) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let reply = {
            let snap = state.borrow().clone();
            let v = view.borrow().clone();
            let mut ips: Vec<IpAddr> = Vec::new();
            if let Some(me) = v.nodes.get(v.self_name.as_str()).and_then(|m| m.info.node_ip.parse().ok()) {
                ips.push(me);
            }
            for node in v.nodes.values().filter(|x| x.state.alive() && x.info.name != v.self_name) {
                if let Ok(ip) = node.info.node_ip.parse() {
                    ips.push(ip);
                }
            }
            let ports = |ns: &str, name: &str| service_ports(&snap, ns, name);
            answer(&buf[..n], &Zone { ports: &ports, ips: &ips })
        };
        if let Some(reply) = reply {
            let _ = sock.send_to(&reply, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(name: &str, t: RecordType) -> Message {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        let ports = |ns: &str, n: &str| {
            (ns == "default" && n == "web")
                .then(|| vec![("http".to_string(), Protocol::Tcp, 30080), ("dns".to_string(), Protocol::Udp, 30053)])
        };
        let ips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        Message::from_vec(&answer(&m.to_vec().unwrap(), &Zone { ports: &ports, ips: &ips }).unwrap()).unwrap()
    }

    #[test]
    fn answers_services_and_refuses_the_rest() {
        let r = ask("web.default.svc.shoal.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 2);
        let r = ask("_http._tcp.web.default.svc.shoal.", RecordType::SRV);
        assert!(matches!(r.answers[0].data, RData::SRV(ref s) if s.port == 30080));
        let r = ask("_dns._udp.web.default.svc.shoal.", RecordType::SRV);
        assert!(matches!(r.answers[0].data, RData::SRV(ref s) if s.port == 30053));
        let r = ask("_dns._tcp.web.default.svc.shoal.", RecordType::SRV);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "dns is a UDP port");
        assert_eq!(ask("nope.default.svc.shoal.", RecordType::A).metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ask("example.com.", RecordType::A).metadata.response_code, ResponseCode::Refused);
        assert!(answer(b"garbage", &Zone { ports: &|_: &str, _: &str| None, ips: &[] }).is_none());
    }
}
