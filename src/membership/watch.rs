//! Liveness watches: each node holds an idle connection to the liveness
//! port of a few peers, so that a peer's process dying is known at once.
//!
//! When a process dies, its host closes its connections and then refuses
//! new ones; when a host goes silent (power, cable) or a process is only
//! paused, nothing happens to the connection. That difference is exactly
//! the one the detector needs: a dead process is evidence (`Evidence`), a
//! silent host is left to the silence rule. An idle connection costs no
//! traffic, so a watch is free until something happens.
//!
//! Who watches whom: the live nodes sorted on a ring by the blake3 of their
//! names; each node watches the `WATCHERS` nodes after it (everyone, in a
//! small cluster), so every node has that many watchers and nobody watches
//! more than that many, whatever the cluster's size.
//!
//! This module owns the ring, the hello a node answers with, and the
//! driver of one node's watches; the connections themselves are behind
//! `Liveness` (TCP on the gossip port number for a real node, the simulated
//! network in netsim). A refusal counts as evidence only from a port that
//! answered as that very generation before: a firewall that rejects the
//! port, or a peer still starting, is no evidence.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::detector::{Evidence, Id};

/// Watchers of every node (and nodes each node watches).
pub const WATCHERS: usize = 3;

/// A held watch is made anew this often, for a fresh clock sample.
pub const RESAMPLE: Duration = Duration::from_secs(30);

/// First retry after a failed or ended watch, doubled up to `RETRY_MAX`.
pub const RETRY_MIN: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Longest hello accepted (a name is at most 253 bytes).
pub const MAX_HELLO: usize = 512;

const MAGIC: &str = "SHOAL-LIVE/1";

/// What a liveness port says when a watcher connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `cluster_tag` of the node's cluster id.
    pub cluster: String,
    pub name: String,
    pub generation: u64,
    /// The node's clock (unix ms) when it answered (see `clock`).
    pub time_ms: Option<u64>,
}

/// Why a hello could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a Shoal liveness hello")]
    NotHello,
    #[error("the hello is longer than {MAX_HELLO} bytes")]
    TooLong,
    #[error("the hello's {0} is malformed")]
    Field(&'static str),
}

impl Hello {
    /// One line: `SHOAL-LIVE/1 <cluster> <name> <generation> [<unix ms>]\n`.
    pub fn encode(&self) -> String {
        match self.time_ms {
            Some(t) => format!("{MAGIC} {} {} {} {t}\n", self.cluster, self.name, self.generation),
            None => format!("{MAGIC} {} {} {}\n", self.cluster, self.name, self.generation),
        }
    }

    /// Parses a hello from untrusted bytes (one line, newline included or not).
    pub fn decode(b: &[u8]) -> Result<Hello, HelloError> {
        let line = b.strip_suffix(b"\n").unwrap_or(b);
        // Newline included, as `encode` writes it (found by fuzzing: a
        // MAX_HELLO-byte line without one re-encoded one byte too long).
        if line.len() + 1 > MAX_HELLO {
            return Err(HelloError::TooLong);
        }
        let s = std::str::from_utf8(line).map_err(|_| HelloError::NotHello)?;
        let mut parts = s.split(' ');
        if parts.next() != Some(MAGIC) {
            return Err(HelloError::NotHello);
        }
        fn field<'a>(p: Option<&'a str>, what: &'static str) -> Result<&'a str, HelloError> {
            p.filter(|x| !x.is_empty()).ok_or(HelloError::Field(what))
        }
        let cluster = field(parts.next(), "cluster")?.to_string();
        let name = field(parts.next(), "name")?.to_string();
        let generation = field(parts.next(), "generation")?.parse().map_err(|_| HelloError::Field("generation"))?;
        let time_ms = match parts.next() {
            Some(t) => Some(t.parse().map_err(|_| HelloError::Field("time"))?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(HelloError::Field("end"));
        }
        Ok(Hello { cluster, name, generation, time_ms })
    }
}

/// A short public tag of a cluster id (the first 8 bytes of its blake3, in
/// hex): enough to tell clusters apart, nothing to learn from.
pub fn cluster_tag(cluster_id: &str) -> String {
    blake3::hash(cluster_id.as_bytes()).to_hex()[..16].to_string()
}

/// A connection that ends when the watched process is gone.
pub type Held = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What connecting to a peer's liveness port found.
pub enum Probe {
    /// The host answered that nothing listens on the port.
    Refused,
    /// No answer in time: a silent host, a cut path, a lost packet, a
    /// paused process, or something that is not a Shoal liveness port.
    NoAnswer,
    /// A node answered; `held` resolves when the connection closes.
    Answered { hello: Hello, held: Held },
}

/// The connections of liveness watches.
#[async_trait]
pub trait Liveness: Send + Sync {
    /// Connects to the liveness port at `peer`.
    async fn probe(&self, peer: SocketAddr) -> Probe;
}

/// A peer generation to watch, at its gossip address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub generation: u64,
    pub addr: SocketAddr,
}

/// A node's place on the ring: the first 8 bytes of the blake3 of its name.
pub fn ring_key(name: &str) -> u64 {
    let h = blake3::hash(name.as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// The alive nodes on the ring, sorted by (key, name), kept up to date by
/// their changes (the view's assembly keeps one, `assemble::Memory`): a
/// node's targets then cost a few steps, not a pass over the cluster, which
/// at 1,000 nodes joining or dying at once was a tenth of a simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring(BTreeSet<(u64, String)>);

impl Ring {
    pub fn insert(&mut self, name: &str) {
        self.0.insert((ring_key(name), name.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(&(ring_key(name), name.to_string()));
    }

    /// The nodes `me` watches (`me` on the ring or not): the `WATCHERS`
    /// after it, wrapping around. Pure and the same on every node that
    /// sees the same alive nodes.
    pub fn targets(&self, me: &str) -> Vec<&str> {
        let at = (ring_key(me), me.to_string());
        self.0
            .range((Bound::Excluded(&at), Bound::Unbounded))
            .chain(self.0.range(..&at))
            .map(|(_, n)| n.as_str())
            .take(WATCHERS)
            .collect()
    }
}

/// What the watches tell the membership driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Evidence that a peer generation's process is gone.
    Evidence(Id, Evidence),
    /// A peer's clock (`peer_ms`) read between `sent_ms` and `heard_ms` on
    /// this node's clock.
    Clock { peer: String, peer_ms: u64, sent_ms: u64, heard_ms: u64 },
}

/// Runs this node's watches: one task per target, following `targets`;
/// what they find goes to the membership driver through `reports`.
/// `clock_ms` is this node's (corrected) unix clock in ms.
pub fn spawn(
    liveness: Arc<dyn Liveness>,
    cluster: String,
    mut targets: watch::Receiver<Vec<Target>>,
    evidence: mpsc::Sender<Report>,
    clock_ms: fn() -> u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Aborted when dropped: when this task is aborted (the node stops,
        // or netsim crashes it), its watches end with it.
        let mut running: HashMap<Id, Owned> = HashMap::new();
        loop {
            let want: Vec<Target> = targets.borrow_and_update().clone();
            let ids: std::collections::HashSet<Id> = want.iter().map(|t| (t.name.clone(), t.generation)).collect();
            running.retain(|id, h| ids.contains(id) && !h.0.is_finished());
            for t in want {
                let id = (t.name.clone(), t.generation);
                if let std::collections::hash_map::Entry::Vacant(e) = running.entry(id) {
                    let task = watch_one(liveness.clone(), cluster.clone(), t, evidence.clone(), clock_ms);
                    e.insert(Owned(tokio::spawn(task)));
                }
            }
            if targets.changed().await.is_err() {
                break;
            }
        }
    })
}

/// A watch task, aborted when dropped.
struct Owned(JoinHandle<()>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches one peer generation until it is replaced (or the task is
/// aborted because the peer is no longer a target).
async fn watch_one(
    liveness: Arc<dyn Liveness>,
    cluster: String,
    t: Target,
    tx: mpsc::Sender<Report>,
    clock_ms: fn() -> u64,
) {
    let id: Id = (t.name.clone(), t.generation);
    // Answered as this generation since the last evidence: only then is a
    // refusal evidence (not a firewall, not a peer still starting).
    let mut armed = false;
    let mut delay = RETRY_MIN;
    loop {
        let sent_ms = clock_ms();
        match liveness.probe(t.addr).await {
            Probe::Answered { hello, held } if hello.cluster == cluster && hello.name == t.name => {
                if hello.generation == t.generation {
                    armed = true;
                    delay = RETRY_MIN;
                    if let Some(peer_ms) = hello.time_ms {
                        let heard_ms = clock_ms();
                        let _ = tx.try_send(Report::Clock { peer: t.name.clone(), peer_ms, sent_ms, heard_ms });
                    }
                    // Closed: reconnect at once, to learn why; or made anew
                    // now and then, for a fresh clock sample.
                    tokio::select! {
                        _ = held => {}
                        _ = tokio::time::sleep(RESAMPLE) => {}
                    }
                    continue;
                }
                if hello.generation > t.generation {
                    let _ = tx.send(Report::Evidence(id, Evidence::Replaced)).await;
                    return;
                }
            }
            Probe::Answered { hello, .. } => {
                tracing::debug!(peer = %t.addr, expected = %t.name, answered = %hello.name, "liveness port of another node or cluster");
            }
            Probe::Refused => {
                if armed {
                    armed = false;
                    let _ = tx.send(Report::Evidence(id.clone(), Evidence::Refused)).await;
                }
            }
            Probe::NoAnswer => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_round_trips_and_names_what_is_wrong() {
        let h = Hello { cluster: cluster_tag("c1"), name: "n1".into(), generation: 17, time_ms: Some(1234) };
        assert_eq!(Hello::decode(h.encode().as_bytes()), Ok(h));
        let old = Hello { time_ms: None, ..Hello::decode(b"SHOAL-LIVE/1 abc n1 5").unwrap() };
        assert_eq!(Hello::decode(old.encode().as_bytes()), Ok(old), "a hello without a time is fine");
        assert_eq!(Hello::decode(b"SHOAL-LIVE/1 abc n1 1 x"), Err(HelloError::Field("time")));
        assert_eq!(Hello::decode(b"HTTP/1.1 400 Bad Request\r\n"), Err(HelloError::NotHello));
        assert_eq!(Hello::decode(b"SHOAL-LIVE/1 abc n1"), Err(HelloError::Field("generation")));
        assert_eq!(Hello::decode(b"SHOAL-LIVE/1 abc n1 x"), Err(HelloError::Field("generation")));
        assert_eq!(Hello::decode(b"SHOAL-LIVE/1 abc n1 1 2 3"), Err(HelloError::Field("end")));
        assert_eq!(Hello::decode(b"SHOAL-LIVE/1  n1 1"), Err(HelloError::Field("cluster")));
        assert_eq!(Hello::decode(&[b'a'; MAX_HELLO + 1]), Err(HelloError::TooLong));
        // The limit counts the newline whether or not it came: what decodes
        // re-encodes within it.
        let line = |len: usize| format!("SHOAL-LIVE/1 abc {} 1", "n".repeat(len - 19));
        assert_eq!(line(MAX_HELLO).len(), MAX_HELLO);
        assert_eq!(Hello::decode(line(MAX_HELLO).as_bytes()), Err(HelloError::TooLong));
        let fits = Hello::decode(format!("{}\n", line(MAX_HELLO - 1)).as_bytes()).unwrap();
        assert_eq!(fits.encode().len(), MAX_HELLO);
        assert_eq!(Hello::decode(fits.encode().as_bytes()), Ok(fits));
        assert_ne!(cluster_tag("c1"), cluster_tag("c2"));
    }

    #[test]
    fn every_node_has_its_watchers_and_small_clusters_watch_everyone() {
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut watched_by: HashMap<String, usize> = HashMap::new();
        for me in &all {
            let t = targets(me, all.iter().copied());
            assert_eq!(t.len(), WATCHERS);
            assert!(!t.iter().any(|x| x == me));
            for x in t {
                *watched_by.entry(x).or_default() += 1;
            }
        }
        assert!(all.iter().all(|n| watched_by[*n] == WATCHERS), "{watched_by:?}");
        let three = ["a", "b", "c"];
        for me in three {
            assert_eq!(targets(me, three).len(), 2);
        }
        assert!(targets("a", ["a"]).is_empty());
        // `me` need not be listed; order of the input does not matter.
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(targets("n3", all.iter().copied()), targets("n3", rev.iter().copied().filter(|n| *n != "n3")));
    }

    /// The nodes `me` watches among the alive nodes (`me` among them or
    /// not): `Ring::targets` of a ring made of them.
    fn targets(me: &str, alive: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
        let mut ring = Ring::default();
        for n in alive {
            ring.insert(n.as_ref());
        }
        ring.targets(me).into_iter().map(str::to_string).collect()
    }

    /// The ring as first written: every node sorted by (key, name).
    fn targets_by_sorting<'a>(me: &'a str, alive: &[&'a str]) -> Vec<&'a str> {
        let mut ring: Vec<(u64, &str)> =
            alive.iter().copied().filter(|n| *n != me).chain([me]).map(|n| (ring_key(n), n)).collect();
        ring.sort_unstable();
        ring.dedup_by(|a, b| a.1 == b.1);
        let at = ring.iter().position(|(_, n)| *n == me).unwrap();
        (1..ring.len().min(WATCHERS + 1)).map(|i| ring[(at + i) % ring.len()].1).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// The ring picks what walking the sorted list of nodes picks,
        /// duplicates and `me` in the input or not, and a ring kept by
        /// changes (nodes dying, then coming back) picks what one made
        /// afresh picks.
        #[test]
        fn targets_are_the_next_nodes_on_the_sorted_ring(
            ids in proptest::collection::vec(0u16..300, 0..60),
            me in 0u16..300,
            dying in proptest::collection::vec(0u16..300, 0..30),
        ) {
            let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
            let alive: Vec<&str> = names.iter().map(String::as_str).collect();
            let me = format!("n{me}");
            prop_assert_eq!(targets(&me, alive.iter().copied()), targets_by_sorting(&me, &alive));
            let mut ring = Ring::default();
            alive.iter().for_each(|n| ring.insert(n));
            let dead: Vec<String> = dying.iter().map(|i| format!("n{i}")).collect();
            dead.iter().for_each(|n| ring.remove(n));
            let left: Vec<&str> = alive.iter().copied().filter(|n| !dead.iter().any(|d| d == n)).collect();
            prop_assert_eq!(ring.targets(&me), targets_by_sorting(&me, &left));
            dead.iter().filter(|n| alive.contains(&n.as_str())).for_each(|n| ring.insert(n));
            prop_assert_eq!(ring.targets(&me), targets_by_sorting(&me, &alive));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Garbage on a liveness port never panics the decoder.
        #[test]
        fn decoding_garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Hello::decode(&d);
        }
    }
}
