//! The kernel path of `externalTrafficPolicy: Local`: an external client's
//! connection to a node port (or to a LoadBalancer address this node holds)
//! of such a Service is handed to the kernel, by destination NAT to one of
//! this node's own Ready replicas. Its bytes then never cross user space
//! (the throughput of a direct connection), and the replica sees the
//! client's own address at the IP level, as kube-proxy's `Local` gives.
//!
//! Only where nothing needs the proxy in the path: no `sessionAffinity`
//! and no PROXY protocol header. The kernel picks among this node's
//! replicas uniformly, per connection (`numgen random`); P2C over peak-EWMA
//! needs each connection's first answer, so Cluster traffic (any node's
//! replicas, with retries on connect failure) stays in the proxy. Internal
//! clients (this host, its containers: `locality`) never match the rules.
//!
//! Pure: `ruleset` writes a node's nftables table from its forwards;
//! `net::nat` loads it.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use super::locality::HostNets;

/// One address and port handed to the kernel, and where its connections go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Forward {
    /// The node IP (node port) or a held LoadBalancer address.
    pub addr: IpAddr,
    pub port: u16,
    /// This node's Ready replicas (`host-ip:host-port`), sorted.
    pub to: Vec<SocketAddr>,
}

/// The nftables table of the node whose IP is `node_ip`: one per node, so
/// that several nodes on one host (as in tests) keep apart, named by the
/// address its node ports are bound to, so that a node started again
/// replaces the table its killed predecessor left.
pub fn table_name(node_ip: IpAddr) -> String {
    let safe: String = node_ip.to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("shoal_{safe}")
}

/// Sources that are internal (`locality::is_internal`) for one family, as
/// nftables set elements: loopback, the host's addresses, its Docker bridges.
fn internal(host: &HostNets, v6: bool) -> Vec<String> {
    let mut out = vec![if v6 { "::1".to_string() } else { "127.0.0.0/8".to_string() }];
    out.extend(host.addrs.iter().filter(|a| a.is_ipv6() == v6).map(|a| a.to_string()));
    out.extend(host.bridges.iter().filter(|(a, _)| a.is_ipv6() == v6).map(|(a, p)| format!("{}/{p}", network(*a, *p))));
    out.sort();
    out.dedup();
    out
}

/// The network address of `ip/prefix` (nftables refuses host bits in a prefix).
fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

fn target(to: SocketAddr) -> String {
    match to {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The script that makes the table `table` hold exactly `forwards` (an
/// empty list removes it). Loaded at once (`nft -f`): the table is
/// created if missing, deleted and defined again, in one transaction, so a
/// connection never meets half a table.
pub fn ruleset(table: &str, host: &HostNets, forwards: &[Forward]) -> String {
    let mut s = format!("table inet {table}\ndelete table inet {table}\n");
    let rules: Vec<String> = forwards.iter().filter_map(|f| rule(host, f)).collect();
    if rules.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table inet {table} {{");
    let _ = writeln!(s, "  chain prerouting {{");
    let _ = writeln!(s, "    type nat hook prerouting priority dstnat; policy accept;");
    for r in rules {
        let _ = writeln!(s, "    {r}");
    }
    let _ = writeln!(s, "  }}\n}}");
    s
}

/// One forward's rule, or none when it has no replica of its family.
fn rule(host: &HostNets, f: &Forward) -> Option<String> {
    let v6 = f.addr.is_ipv6();
    let fam = if v6 { "ip6" } else { "ip" };
    let to: Vec<SocketAddr> = f.to.iter().copied().filter(|t| t.is_ipv6() == v6).collect();
    let dnat = match to.as_slice() {
        [] => return None,
        [one] => format!("dnat {fam} to {}", target(*one)),
        many => {
            let elems: Vec<String> =
                many.iter().enumerate().map(|(i, t)| format!("{i} : {} . {}", t.ip(), t.port())).collect();
            format!("dnat {fam} to numgen random mod {} map {{ {} }}", many.len(), elems.join(", "))
        }
    };
    Some(format!(
        "{fam} daddr {} tcp dport {} {fam} saddr != {{ {} }} {dnat}",
        f.addr,
        f.port,
        internal(host, v6).join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostNets {
        HostNets {
            addrs: vec!["127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            bridges: vec![("172.17.0.1".parse().unwrap(), 16)],
        }
    }

    #[test]
    fn one_replica_is_a_plain_dnat_and_internal_sources_never_match() {
        let f = Forward { addr: "10.0.0.1".parse().unwrap(), port: 30180, to: vec!["10.0.0.1:40001".parse().unwrap()] };
        let s = ruleset("shoal_n1", &host(), &[f]);
        assert!(s.starts_with("table inet shoal_n1\ndelete table inet shoal_n1\ntable inet shoal_n1 {\n"), "{s}");
        assert!(s.contains("type nat hook prerouting priority dstnat;"), "{s}");
        assert!(
            s.contains(
                "ip daddr 10.0.0.1 tcp dport 30180 ip saddr != { 10.0.0.1, 127.0.0.0/8, 127.0.0.1, 172.17.0.0/16 } dnat ip to 10.0.0.1:40001"
            ),
            "{s}"
        );
        assert!(!s.contains("fd00"), "no IPv6 source in an IPv4 rule: {s}");
    }

    #[test]
    fn several_replicas_are_picked_by_the_kernel_and_families_stay_apart() {
        let f = Forward {
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
            to: vec![
                "10.0.0.1:40001".parse().unwrap(),
                "10.0.0.1:40002".parse().unwrap(),
                "[fd00::1]:9".parse().unwrap(),
            ],
        };
        let s = ruleset("shoal_n1", &host(), &[f]);
        assert!(s.contains("dnat ip to numgen random mod 2 map { 0 : 10.0.0.1 . 40001, 1 : 10.0.0.1 . 40002 }"), "{s}");
        let f6 = Forward { addr: "fd00::1".parse().unwrap(), port: 80, to: vec!["[fd00::1]:9".parse().unwrap()] };
        let s = ruleset("shoal_n1", &host(), &[f6]);
        assert!(
            s.contains("ip6 daddr fd00::1 tcp dport 80 ip6 saddr != { ::1, fd00::1 } dnat ip6 to [fd00::1]:9"),
            "{s}"
        );
    }

    #[test]
    fn nothing_to_forward_removes_the_table() {
        let empty = Forward { addr: "10.0.0.1".parse().unwrap(), port: 80, to: vec!["[fd00::1]:9".parse().unwrap()] };
        for fw in [vec![], vec![empty]] {
            assert_eq!(ruleset("shoal_n1", &host(), &fw), "table inet shoal_n1\ndelete table inet shoal_n1\n");
        }
        assert_eq!(table_name("10.0.0.1".parse().unwrap()), "shoal_10_0_0_1");
        assert_eq!(table_name("fd00::1".parse().unwrap()), "shoal_fd00__1");
    }
}
