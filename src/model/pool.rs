//! Address pools for `type: LoadBalancer` Services: ranges of LAN addresses
//! a node may hold (`load_balancer.pool` in its config), written as
//! `192.168.1.240-192.168.1.250`, `192.168.1.240-250`, `10.0.0.0/28` or one
//! address. IPv4 and IPv6.
//!
//! Pure: parsing, membership and the lowest free address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::Invalid;

/// Most addresses one pool may name: an assignment scans a pool in order, so
/// a `/64` would make a full pool's scan endless.
pub const MAX_POOL_SIZE: u128 = 1 << 16;

/// One contiguous range of addresses (both ends included, one family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
}

fn num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn same_family(a: IpAddr, n: u128) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(n)),
    }
}

fn addr(s: &str) -> Result<IpAddr, Invalid> {
    s.trim().parse().map_err(|_| Invalid(format!("{s:?} is not an IP address")))
}

impl AddressRange {
    /// Parses `A-B`, `A-LAST_OCTET` (IPv4), `A/LEN` or `A`.
    pub fn parse(s: &str) -> Result<AddressRange, Invalid> {
        let s = s.trim();
        let r = if let Some((a, b)) = s.split_once('-') {
            let first = addr(a)?;
            let last = match (first, b.trim().parse::<u8>()) {
                (IpAddr::V4(v), Ok(octet)) => {
                    let o = v.octets();
                    IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], octet))
                }
                _ => addr(b)?,
            };
            if first.is_ipv4() != last.is_ipv4() {
                return Err(Invalid(format!("{s:?} mixes IPv4 and IPv6")));
            }
            if num(last) < num(first) {
                return Err(Invalid(format!("{s:?} ends before it starts")));
            }
            AddressRange { first, last }
        } else if let Some((a, len)) = s.split_once('/') {
            let base = addr(a)?;
            let bits = if base.is_ipv4() { 32 } else { 128 };
            let len: u32 = len
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= bits)
                .ok_or_else(|| Invalid(format!("{s:?}: the prefix length must be 0 to {bits}")))?;
            let host_bits = bits - len;
            let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            let first = num(base) & !mask;
            AddressRange { first: same_family(base, first), last: same_family(base, first | mask) }
        } else {
            let a = addr(s)?;
            AddressRange { first: a, last: a }
        };
        if num(r.last) - num(r.first) >= MAX_POOL_SIZE {
            return Err(Invalid(format!("{s:?} names more than {MAX_POOL_SIZE} addresses: name a smaller range")));
        }
        Ok(r)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4() && (num(self.first)..=num(self.last)).contains(&num(ip))
    }

    /// Its addresses, in order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (num(self.first)..=num(self.last)).map(|n| same_family(self.first, n))
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

/// A node's pool: several ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool(pub Vec<AddressRange>);

impl Pool {
    /// Parses every range, naming the one that is wrong.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Pool, Invalid> {
        ranges.iter().map(|r| AddressRange::parse(r.as_ref())).collect::<Result<Vec<_>, _>>().map(Pool)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The first address, range by range in order, not in `used`.
    pub fn first_free(&self, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        self.0.iter().flat_map(|r| r.iter()).find(|ip| !used.contains(ip))
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_in_every_spelling() {
        let r = AddressRange::parse("192.168.1.240-192.168.1.250").unwrap();
        assert_eq!(r, AddressRange::parse("192.168.1.240-250").unwrap());
        assert_eq!(r.iter().count(), 11);
        assert!(r.contains(ip("192.168.1.245")) && !r.contains(ip("192.168.1.251")) && !r.contains(ip("::1")));
        let c = AddressRange::parse("10.0.0.5/30").unwrap();
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![ip("10.0.0.4"), ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")]);
        assert_eq!(AddressRange::parse("fd00::10-fd00::12").unwrap().iter().count(), 3);
        assert_eq!(AddressRange::parse(" 10.1.1.1 ").unwrap().to_string(), "10.1.1.1");
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (s, says) in [
            ("10.0.0.9-10.0.0.1", "ends before it starts"),
            ("10.0.0.1-fd00::1", "mixes IPv4 and IPv6"),
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("lan", "is not an IP address"),
            ("10.0.0.0/8", "more than 65536 addresses"),
            ("fd00::/64", "more than 65536 addresses"),
        ] {
            let e = AddressRange::parse(s).unwrap_err().0;
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn the_first_free_address_goes_range_by_range() {
        let p = Pool::parse(&["10.0.0.1-2", "10.0.1.7"]).unwrap();
        let mut used = BTreeSet::new();
        assert_eq!(p.first_free(&used), Some(ip("10.0.0.1")));
        used.insert(ip("10.0.0.1"));
        used.insert(ip("10.0.0.2"));
        assert_eq!(p.first_free(&used), Some(ip("10.0.1.7")));
        used.insert(ip("10.0.1.7"));
        assert_eq!(p.first_free(&used), None);
        assert_eq!(p.to_string(), "10.0.0.1-10.0.0.2,10.0.1.7");
    }
}
