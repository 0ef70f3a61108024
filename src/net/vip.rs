//! LoadBalancer addresses on this host's interface: adding and removing
//! one (iproute2's `ip`, which every Linux host has), telling the LAN it
//! moved (a gratuitous ARP on an `AF_PACKET` socket for IPv4, an
//! unsolicited neighbour advertisement with the override flag on a raw
//! ICMPv6 socket for IPv6, so that neighbours update their caches at once
//! instead of after their entries go stale), and whether this process may
//! do either (`CAP_NET_ADMIN`, `CAP_NET_RAW`).
//!
//! I/O only, but for the two frames (`garp_payload`, `una_payload`); which
//! address to hold is `placement::addresses`, when is `proxy::lb`.

use std::net::IpAddr;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("cannot run `ip` (iproute2): {0}")]
    NoIp(std::io::Error),
    #[error("`ip addr {verb} {addr} dev {dev}` failed: {msg}")]
    Failed { verb: &'static str, addr: IpAddr, dev: String, msg: String },
}

fn cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

fn ip_addr(verb: &'static str, dev: &str, ip: IpAddr) -> Result<(), VipError> {
    let mut cmd = Command::new("ip");
    cmd.args(["addr", verb, &cidr(ip), "dev", dev]);
    if verb == "add" && ip.is_ipv6() {
        // No duplicate address detection delay: the address is ours by placement.
        cmd.arg("nodad");
    }
    let out = cmd.output().map_err(VipError::NoIp)?;
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // Adding one already there, or removing one already gone, is done.
    let done = out.status.success()
        || (verb == "add" && msg.contains("File exists"))
        || (verb == "del" && msg.contains("Cannot assign requested address"));
    if done { Ok(()) } else { Err(VipError::Failed { verb, addr: ip, dev: dev.to_string(), msg }) }
}

/// Puts `ip` on interface `dev`; the kernel then answers ARP for it.
pub fn add(dev: &str, ip: IpAddr) -> Result<(), VipError> {
    ip_addr("add", dev, ip)
}

/// Takes `ip` off `dev` (done if it was not there).
pub fn del(dev: &str, ip: IpAddr) -> Result<(), VipError> {
    ip_addr("del", dev, ip)
}

/// The addresses on interface `dev` now.
pub fn present(dev: &str) -> Vec<IpAddr> {
    let Ok(ifs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    ifs.filter(|i| i.interface_name == dev)
        .filter_map(|i| {
            let a = i.address?;
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())).or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect()
}

/// Whether a `shoal lease-watchdog --address IP` process guards `ip` in
/// this network namespace (any node's: several nodes may share a host).
pub fn guarded(ip: IpAddr) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    let Ok(my_net) = std::fs::read_link("/proc/self/ns/net") else { return false };
    let want = ip.to_string();
    dir.flatten().any(|e| {
        if std::fs::read_link(e.path().join("ns/net")).ok().as_ref() != Some(&my_net) {
            return false;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { return false };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        args.iter().any(|a| *a == b"lease-watchdog")
            && args.windows(2).any(|w| w[0] == b"--address" && w[1] == want.as_bytes())
    })
}

/// The interface that carries `ip` (the default `load_balancer.interface`:
/// the one with the node IP).
pub fn interface_of(ip: IpAddr) -> Option<String> {
    let ifs = nix::ifaddrs::getifaddrs().ok()?;
    ifs.into_iter()
        .find(|i| {
            i.address.as_ref().is_some_and(|a| {
                a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())) == Some(ip)
                    || a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())) == Some(ip)
            })
        })
        .map(|i| i.interface_name)
}

/// This process's effective capabilities (`CapEff` in /proc/self/status).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_NET_ADMIN: u32 = 12;

/// Why this node cannot hold addresses on `dev`, if it cannot.
pub fn unable(dev: &str) -> Option<String> {
    if effective_caps() & (1 << CAP_NET_ADMIN) == 0 {
        return Some(format!(
            "shoal lacks CAP_NET_ADMIN, which adding an address to {dev} needs (run it as root, or grant it: setcap cap_net_admin,cap_net_raw,cap_net_bind_service+ep $(which shoal))"
        ));
    }
    if nix::net::if_::if_nametoindex(dev).is_err() {
        return Some(format!("no interface {dev:?} on this host (set load_balancer.interface)"));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command (iproute2) is not installed".into());
    }
    None
}

/// The 28-byte ARP request a host sends to announce that `ip` is at `mac`
/// (gratuitous: sender and target address are both `ip`). Pure.
pub fn garp_payload(mac: [u8; 6], ip: std::net::Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // Target hardware address stays zero.
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// The ICMPv6 neighbour advertisement a host sends unasked to say that
/// `ip` is now at `mac` (RFC 4861 4.4 and 7.2.6): override set, solicited
/// not, with a target link-layer address option. The checksum is left
/// zero: the kernel fills it in for a raw ICMPv6 socket. Pure.
pub fn una_payload(mac: [u8; 6], ip: std::net::Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136; // neighbour advertisement
    p[4] = 0x20; // flags: override (not router, not solicited)
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = 2; // option: target link-layer address
    p[25] = 1; // its length, in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// The Ethernet address of `dev`, from the kernel's interface list
/// (netlink, so it is the one of this thread's network namespace; sysfs
/// would show the namespace that mounted it).
fn mac_of(dev: &str) -> std::io::Result<[u8; 6]> {
    let ifs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    ifs.filter(|i| i.interface_name == dev)
        .find_map(|i| i.address.as_ref().and_then(|a| a.as_link_addr()).and_then(|l| l.addr()))
        .filter(|mac| *mac != [0; 6])
        .ok_or_else(|| std::io::Error::other(format!("{dev} has no Ethernet address")))
}

/// Tells the LAN that `ip` is at this host's interface `dev` now, so that
/// neighbours point their caches here: a gratuitous ARP (IPv4) or an
/// unsolicited neighbour advertisement to all nodes (IPv6).
pub fn announce(dev: &str, ip: IpAddr) -> std::io::Result<()> {
    use nix::libc;
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => return advertise(dev, v6),
    };
    let mac = mac_of(dev)?;
    let index = nix::net::if_::if_nametoindex(dev).map_err(std::io::Error::from)?;
    let payload = garp_payload(mac, v4);
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // address is a fully initialised sockaddr_ll of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto));
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let sent = libc::sendto(
            fd,
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if sent < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Sends `una_payload` for `ip` from `ip` itself to ff02::1 on `dev`, with
/// the hop limit 255 that receivers require of neighbour discovery.
fn advertise(dev: &str, ip: std::net::Ipv6Addr) -> std::io::Result<()> {
    use nix::libc;
    let mac = mac_of(dev)?;
    let index = nix::net::if_::if_nametoindex(dev).map_err(std::io::Error::from)?;
    let payload = una_payload(mac, ip);
    let addr = |ip: std::net::Ipv6Addr, scope: u32| {
        // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
        let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        a.sin6_family = libc::AF_INET6 as u16;
        a.sin6_addr.s6_addr = ip.octets();
        a.sin6_scope_id = scope;
        a
    };
    let (from, to) = (addr(ip, 0), addr(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), index));
    let len = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // options and addresses are initialised values of the sizes passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMPV6);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let hops: libc::c_int = 255;
        let ifindex = index as libc::c_int;
        let int = std::mem::size_of::<libc::c_int>() as u32;
        let ok = libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            (&hops as *const libc::c_int).cast(),
            int,
        ) == 0
            && libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_IF,
                (&ifindex as *const libc::c_int).cast(),
                int,
            ) == 0
            && libc::bind(fd, (&from as *const libc::sockaddr_in6).cast(), len) == 0
            && libc::sendto(
                fd,
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&to as *const libc::sockaddr_in6).cast(),
                len,
            ) >= 0;
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if !ok {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsolicited_advertisement_overrides_and_names_the_mac() {
        let p = una_payload([2, 0, 0, 0, 0, 1], "fd00::7".parse().unwrap());
        assert_eq!(&p[..8], &[136, 0, 0, 0, 0x20, 0, 0, 0], "type, code, no checksum yet, flags O only");
        assert_eq!(&p[8..24], &"fd00::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(&p[24..32], &[2, 1, 2, 0, 0, 0, 0, 1], "target link-layer address option");
    }

    #[test]
    fn a_gratuitous_arp_names_the_address_twice() {
        let p = garp_payload([2, 0, 0, 0, 0, 1], "10.0.0.7".parse().unwrap());
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&p[14..18], &[10, 0, 0, 7]);
        assert_eq!(&p[18..24], &[0; 6]);
        assert_eq!(&p[24..28], &[10, 0, 0, 7]);
    }
}
