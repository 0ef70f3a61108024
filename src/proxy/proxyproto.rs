//! The client's address for backends that want it: HAProxy's PROXY
//! protocol header (v1 text or v2 binary), sent first on each connection to
//! a backend of a Service annotated `shoal.dev/proxy-protocol: v1|v2`. The
//! proxy relays bytes, so a backend otherwise sees the node's address;
//! nginx (`listen ... proxy_protocol`), HAProxy, Traefik, Caddy, Postfix and
//! most ingress controllers read the header and log or filter by the real
//! client. The same opt-in that cloud load balancers use (their own
//! annotations), for the same reason. TCP ports only.
//!
//! Pure: the header's bytes.

use std::net::{IpAddr, SocketAddr};

pub use crate::model::types::{PROXY_PROTOCOL as ANNOTATION, ProxyProtocol as Version};

/// The v2 header's first 12 bytes.
pub const V2_SIGNATURE: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn plain(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// The header for a connection from `src` (the client) to `dst` (the
/// address and port it reached on this node).
pub fn header(v: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = (plain(src), plain(dst));
    match v {
        Version::V1 => {
            let fam = match (src.ip(), dst.ip()) {
                (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
                (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
                // Mixed families cannot be written in v1: says "unknown".
                _ => return b"PROXY UNKNOWN\r\n".to_vec(),
            };
            format!("PROXY {fam} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
        }
        Version::V2 => {
            let mut h = V2_SIGNATURE.to_vec();
            h.push(0x21); // version 2, PROXY command
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.push(0x11); // TCP over IPv4
                    h.extend_from_slice(&12u16.to_be_bytes());
                    h.extend_from_slice(&s.octets());
                    h.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    h.push(0x21); // TCP over IPv6
                    h.extend_from_slice(&36u16.to_be_bytes());
                    h.extend_from_slice(&s.octets());
                    h.extend_from_slice(&d.octets());
                }
                _ => {
                    h.push(0x00); // unspecified: the receiver uses the real addresses
                    h.extend_from_slice(&0u16.to_be_bytes());
                    return h;
                }
            }
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_is_one_line() {
        let h = header(Version::V1, a("192.168.1.7:51234"), a("10.0.0.5:30000"));
        assert_eq!(h, b"PROXY TCP4 192.168.1.7 10.0.0.5 51234 30000\r\n");
        let h = header(Version::V1, a("[fd00::7]:1"), a("[fd00::5]:2"));
        assert_eq!(h, b"PROXY TCP6 fd00::7 fd00::5 1 2\r\n");
        let h = header(Version::V1, a("[::ffff:192.168.1.7]:1"), a("10.0.0.5:2"));
        assert_eq!(h, b"PROXY TCP4 192.168.1.7 10.0.0.5 1 2\r\n", "an IPv4-mapped client is IPv4");
    }

    #[test]
    fn v2_is_the_binary_form() {
        let h = header(Version::V2, a("192.168.1.7:51234"), a("10.0.0.5:30000"));
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[192, 168, 1, 7]);
        assert_eq!(&h[20..24], &[10, 0, 0, 5]);
        assert_eq!(&h[24..28], &[0xc8, 0x22, 0x75, 0x30]);
        assert_eq!(h.len(), 28);
        let h6 = header(Version::V2, a("[fd00::7]:1"), a("[fd00::5]:2"));
        assert_eq!((h6[13], h6.len()), (0x21, 16 + 36));
    }

    #[test]
    fn only_v1_and_v2() {
        assert_eq!(Version::parse("v2"), Ok(Version::V2));
        assert!(Version::parse("2").unwrap_err().contains("must be v1 or v2"));
    }
}
