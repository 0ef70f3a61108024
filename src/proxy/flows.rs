//! UDP flows: which backend each client's datagrams go to. Pure: time comes
//! in as an argument, and the per-flow resource (the I/O side's upstream
//! socket) is an opaque `S` the table only stores and hands back.
//!
//! UDP has no connection, so the proxy keys a *flow* by the client's address
//! and port, as conntrack does. The first datagram of a flow picks a backend
//! (the caller's balancing rule); later ones go to the same backend while
//! the flow is used, so a client's request and its retransmissions, or a
//! game session, land on one replica.
//!
//! - A flow unused for `idle` is forgotten (its resource dropped).
//! - A flow whose backend is no longer a live endpoint (its pod stopped, or
//!   its node was declared dead) is moved: its next datagram picks again.
//!   The caller may also `fail` a flow at once (the backend refused a
//!   datagram: ICMP port unreachable).
//! - At most `cap` flows are kept per port: a new flow past it evicts the
//!   least recently used one, so a flood of source ports costs bounded
//!   memory and file descriptors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One client's flow.
#[derive(Debug)]
pub struct Flow<B, S> {
    pub backend: B,
    /// Last datagram either way.
    pub last: Instant,
    pub conn: S,
}

/// What to do with a client's datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<B> {
    /// Send it on the flow's upstream, to this backend.
    Existing(B),
    /// No usable flow: pick a backend and `insert` one. `moved_from` is the
    /// backend of a flow just dropped because it was no longer live.
    New { moved_from: Option<B> },
}

/// A flow removed from the table, with its client.
pub type Removed<B, S> = (SocketAddr, Flow<B, S>);

/// The flows of one UDP service port.
#[derive(Debug)]
pub struct Flows<B, S> {
    map: HashMap<SocketAddr, Flow<B, S>>,
    cap: usize,
    idle: Duration,
}

impl<B: Clone + PartialEq, S> Flows<B, S> {
    pub fn new(cap: usize, idle: Duration) -> Flows<B, S> {
        Flows { map: HashMap::new(), cap: cap.max(1), idle }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, client: &SocketAddr) -> Option<&Flow<B, S>> {
        self.map.get(client)
    }

    /// Routes a datagram from `client` at `now`; `live` says whether a
    /// backend is still a Ready endpoint. A flow found idle or not live is
    /// removed here and returned (for the caller to close); the datagram
    /// then needs a new one.
    pub fn route(
        &mut self,
        client: SocketAddr,
        now: Instant,
        live: impl Fn(&B) -> bool,
    ) -> (Route<B>, Option<Removed<B, S>>) {
        let Some(f) = self.map.get_mut(&client) else { return (Route::New { moved_from: None }, None) };
        if now.saturating_duration_since(f.last) >= self.idle {
            let old = self.map.remove(&client).map(|f| (client, f));
            return (Route::New { moved_from: None }, old);
        }
        if !live(&f.backend) {
            let old = self.map.remove(&client);
            let from = old.as_ref().map(|f| f.backend.clone());
            return (Route::New { moved_from: from }, old.map(|f| (client, f)));
        }
        f.last = now;
        (Route::Existing(f.backend.clone()), None)
    }

    /// Starts a flow for `client` to `backend`; returns the flows it
    /// replaced or evicted (the least recently used, past `cap`), for the
    /// caller to close.
    pub fn insert(&mut self, client: SocketAddr, backend: B, conn: S, now: Instant) -> Vec<Removed<B, S>> {
        let mut out = Vec::new();
        if let Some(old) = self.map.remove(&client) {
            out.push((client, old));
        }
        while self.map.len() >= self.cap {
            let Some(oldest) = self.map.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) else { break };
            out.extend(self.map.remove(&oldest).map(|f| (oldest, f)));
        }
        self.map.insert(client, Flow { backend, last: now, conn });
        out
    }

    /// A datagram came back on `client`'s flow: it stays in use.
    pub fn touch(&mut self, client: &SocketAddr, now: Instant) {
        if let Some(f) = self.map.get_mut(client) {
            f.last = f.last.max(now);
        }
    }

    /// The flow's backend refused it: the flow is removed, and its next
    /// datagram picks again. Returns it (for the caller to close and to
    /// penalise the backend).
    pub fn fail(&mut self, client: &SocketAddr) -> Option<Flow<B, S>> {
        self.map.remove(client)
    }

    /// Removes the flows unused for `idle` at `now`, and returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<Removed<B, S>> {
        let idle = self.idle;
        let gone: Vec<SocketAddr> =
            self.map.iter().filter(|(_, f)| now.saturating_duration_since(f.last) >= idle).map(|(k, _)| *k).collect();
        gone.into_iter().filter_map(|k| self.map.remove(&k).map(|f| (k, f))).collect()
    }

    /// Removes every flow (the port is closing), and returns them.
    pub fn clear(&mut self) -> Vec<Removed<B, S>> {
        self.map.drain().collect()
    }
}

#[cfg(test)]
mod tests;
