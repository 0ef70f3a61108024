//! `sessionAffinity: ClientIP`: a client address keeps the endpoint it was
//! last sent to, while it comes back within the timeout and that endpoint
//! can still take it. Pure: time comes in as an argument.
//!
//! Each node keeps its own table (as kube-proxy does): a client that
//! reaches the service through two nodes may be pinned to a different
//! replica by each. At most `cap` clients are remembered; past it the least
//! recently seen is forgotten.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10_800);

#[derive(Debug)]
pub struct Affinity<B> {
    map: HashMap<IpAddr, (B, Instant)>,
    timeout: Duration,
    cap: usize,
}

impl<B: Clone + Eq + Hash> Affinity<B> {
    pub fn new(timeout: Duration, cap: usize) -> Affinity<B> {
        Affinity { map: HashMap::new(), timeout, cap: cap.max(1) }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The endpoint `client` is pinned to, if seen within the timeout and
    /// `usable` (still an endpoint, not yet tried for this connection, and
    /// allowed by the traffic policy). A stale pin is forgotten.
    pub fn get(&mut self, client: IpAddr, now: Instant, usable: impl Fn(&B) -> bool) -> Option<B> {
        let (b, seen) = self.map.get(&client)?;
        if now.saturating_duration_since(*seen) >= self.timeout {
            self.map.remove(&client);
            return None;
        }
        usable(b).then(|| b.clone())
    }

    /// Pins `client` to `b` as of `now` (each new connection renews it).
    pub fn set(&mut self, client: IpAddr, b: B, now: Instant) {
        if !self.map.contains_key(&client) && self.map.len() >= self.cap {
            self.expire(now);
            if self.map.len() >= self.cap
                && let Some(oldest) = self.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(client, (b, now));
    }

    /// Forgets the clients not seen within the timeout.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        self.map.retain(|_, (_, t)| now.saturating_duration_since(*t) < timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(i: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, i])
    }

    #[test]
    fn a_client_keeps_its_endpoint_within_the_timeout() {
        let t0 = Instant::now();
        let mut a: Affinity<u8> = Affinity::new(Duration::from_secs(60), 16);
        assert_eq!(a.get(ip(1), t0, |_| true), None);
        a.set(ip(1), 3, t0);
        assert_eq!(a.get(ip(1), t0 + Duration::from_secs(59), |_| true), Some(3));
        assert_eq!(a.get(ip(2), t0, |_| true), None, "per client address");
        // Renewed by a new connection, it lasts from there.
        a.set(ip(1), 3, t0 + Duration::from_secs(50));
        assert_eq!(a.get(ip(1), t0 + Duration::from_secs(100), |_| true), Some(3));
        assert_eq!(a.get(ip(1), t0 + Duration::from_secs(110), |_| true), None, "expired");
        assert!(a.is_empty());
    }

    #[test]
    fn an_unusable_endpoint_is_not_returned_and_a_new_pin_replaces_it() {
        let t0 = Instant::now();
        let mut a: Affinity<u8> = Affinity::new(DEFAULT_TIMEOUT, 16);
        a.set(ip(1), 3, t0);
        assert_eq!(a.get(ip(1), t0, |b| *b != 3), None);
        a.set(ip(1), 4, t0);
        assert_eq!(a.get(ip(1), t0, |b| *b != 3), Some(4));
    }

    proptest! {
        /// Never more than `cap` clients, whatever comes.
        #[test]
        fn bounded(clients in proptest::collection::vec((any::<u8>(), 0u64..100), 1..300), cap in 1usize..20) {
            let mut now = Instant::now();
            let mut a: Affinity<u8> = Affinity::new(Duration::from_secs(30), cap);
            for (c, dt) in clients {
                now += Duration::from_secs(dt);
                a.set(ip(c), c, now);
                prop_assert!(a.len() <= cap);
                prop_assert_eq!(a.get(ip(c), now, |_| true), Some(c));
            }
        }
    }
}
