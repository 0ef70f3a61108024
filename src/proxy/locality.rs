//! Where a connection comes from, for `internalTrafficPolicy` and
//! `externalTrafficPolicy`: Shoal has no cluster IP, so every service is
//! reached on node ports, and a client is *internal* when it runs on this
//! host. That is: a loopback address, an address of this host (process
//! pods connect from the node IP), or an address inside a Docker bridge
//! network of this host (`docker0`, `br-*`: containers on this node).
//! Everything else is external.
//!
//! `HostNets::read` asks the kernel (getifaddrs); `is_internal` is pure.

use std::net::IpAddr;

/// This host's addresses, and the subnets of its Docker bridges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostNets {
    pub addrs: Vec<IpAddr>,
    /// (network address, prefix length).
    pub bridges: Vec<(IpAddr, u8)>,
}

impl HostNets {
    /// Reads the host's interfaces; an error leaves only loopback internal.
    pub fn read() -> HostNets {
        let mut out = HostNets::default();
        let Ok(ifs) = nix::ifaddrs::getifaddrs() else { return out };
        for i in ifs {
            let ip = i.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            });
            let Some(ip) = ip else { continue };
            out.addrs.push(ip);
            let bridge = i.interface_name == "docker0" || i.interface_name.starts_with("br-");
            let prefix = i.netmask.as_ref().and_then(|m| {
                m.as_sockaddr_in()
                    .map(|s| u32::from(s.ip()).count_ones() as u8)
                    .or_else(|| m.as_sockaddr_in6().map(|s| u128::from(s.ip()).count_ones() as u8))
            });
            if let (true, Some(p)) = (bridge, prefix) {
                out.bridges.push((ip, p));
            }
        }
        out
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether a client at `ip` runs on this host.
pub fn is_internal(ip: IpAddr, host: &HostNets) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || host.addrs.contains(&ip) || host.bridges.iter().any(|(n, p)| in_net(ip, *n, *p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_own_addresses_and_bridges_are_internal() {
        let host = HostNets {
            addrs: vec!["192.168.1.10".parse().unwrap(), "172.17.0.1".parse().unwrap()],
            bridges: vec![("172.17.0.1".parse().unwrap(), 16)],
        };
        for ip in ["127.0.0.1", "127.0.91.3", "192.168.1.10", "172.17.0.5", "::1", "::ffff:192.168.1.10"] {
            assert!(is_internal(ip.parse().unwrap(), &host), "{ip}");
        }
        for ip in ["192.168.1.11", "172.18.0.5", "10.0.0.1", "fe80::1"] {
            assert!(!is_internal(ip.parse().unwrap(), &host), "{ip}");
        }
    }

    #[test]
    fn reads_this_hosts_loopback() {
        let h = HostNets::read();
        assert!(h.addrs.iter().any(|a| a.is_loopback()), "{h:?}");
    }
}
