//! Heard-by: how recently each peer heard this node, read from the digests
//! peers send.
//!
//! Asking only "do I hear a majority?" misses an asymmetric fault: a node
//! whose outgoing packets are lost still hears its peers while they hear
//! nothing of it, declare it Dead, and start its fenced replicas elsewhere.
//! Every chitchat SYN and SYN-ACK carries its sender's digest, which holds
//! the heartbeat the sender knows for *this* node (heard directly or
//! through others): what that peer will judge this node by. The driver
//! (`service`) dates that heartbeat with its own samples (`Beats`), and the
//! detector renews fenced leases only while a majority both is heard and
//! has heard this node lately (`Detector::majority_until`).
//!
//! `Echo` wraps any chitchat socket, so a real node (QUIC) and netsim (the
//! simulated network) read digests with this same code.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatId, ChitchatMessage, Deserializable, Serializable};
use rustc_hash::FxHashMap;
use tokio::time::Instant;

/// The heartbeat `me` has in a digest, from its encoding (chitchat keeps
/// the digest's entries private; its encoding is public: a u16 count, then
/// per node its id and three u64s: heartbeat, last GC version, max
/// version). `None` when `me` is not in it or the encoding is not that.
pub fn heartbeat_in(digest: &[u8], me: &ChitchatId) -> Option<u64> {
    let mut b = digest;
    let n = u16::deserialize(&mut b).ok()?;
    for _ in 0..n {
        let id = ChitchatId::deserialize(&mut b).ok()?;
        let heartbeat = u64::deserialize(&mut b).ok()?;
        let _last_gc = u64::deserialize(&mut b).ok()?;
        let _max_version = u64::deserialize(&mut b).ok()?;
        if id == *me {
            return Some(heartbeat);
        }
    }
    None
}

/// The newest heartbeat of this node each sender's digest held, by the
/// sender's advertised address; drained by the driver every tick.
pub type Heard = Arc<Mutex<FxHashMap<SocketAddr, u64>>>;

/// A chitchat transport whose one socket was opened beforehand and is
/// wrapped in `Echo` (`Transport` must be `'static`, so the wrapper cannot
/// borrow the node's transport; it opens it first instead).
pub struct Opened(Mutex<Option<Box<dyn Socket>>>);

impl Opened {
    /// Opens `inner` at `listen` and wraps its socket: digests received
    /// are read for `me`'s heartbeat into `heard`.
    pub async fn open(
        inner: &dyn Transport,
        listen: SocketAddr,
        me: ChitchatId,
        heard: Heard,
    ) -> anyhow::Result<Opened> {
        let socket = inner.open(listen).await?;
        Ok(Opened(Mutex::new(Some(Box::new(Echo { inner: socket, me, heard, buf: Vec::new() })))))
    }
}

#[async_trait]
impl Transport for Opened {
    async fn open(&self, _listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip socket can be opened once"))
    }
}

struct Echo {
    inner: Box<dyn Socket>,
    me: ChitchatId,
    heard: Heard,
    buf: Vec<u8>,
}

#[async_trait]
impl Socket for Echo {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        self.inner.send(to, msg).await
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        let (from, msg) = self.inner.recv().await?;
        if let ChitchatMessage::Syn { digest, .. } | ChitchatMessage::SynAck { digest, .. } = &msg {
            self.buf.clear();
            digest.serialize(&mut self.buf);
            if let Some(h) = heartbeat_in(&self.buf, &self.me) {
                let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
                let e = heard.entry(from).or_default();
                *e = (*e).max(h);
            }
        }
        Ok((from, msg))
    }
}

/// This node's own heartbeat over the last while, sampled every tick: a
/// heartbeat a peer reports is dated by when this node still had an older
/// one (the earliest it can have been sent, so never too late).
#[derive(Debug)]
pub struct Beats {
    samples: VecDeque<(u64, Instant)>,
    keep: std::time::Duration,
}

impl Beats {
    /// Keeps samples for `keep` (older reports are too old to count).
    pub fn new(keep: std::time::Duration) -> Beats {
        Beats { samples: VecDeque::new(), keep }
    }

    /// This node's heartbeat is `heartbeat` at `now`.
    pub fn sample(&mut self, heartbeat: u64, now: Instant) {
        if self.samples.back().is_none_or(|(h, _)| *h != heartbeat) {
            self.samples.push_back((heartbeat, now));
        }
        // Keep one sample older than the window: it dates what follows it.
        while self.samples.len() > 2 && self.samples[1].1 + self.keep < now {
            self.samples.pop_front();
        }
    }

    /// The latest instant at which this node's heartbeat was still below
    /// `heartbeat`: the peer that knows `heartbeat` heard this node no
    /// earlier than that. `None` when that is older than the window.
    pub fn date(&self, heartbeat: u64) -> Option<Instant> {
        self.samples.iter().rev().find(|(h, _)| *h < heartbeat).map(|(_, at)| *at)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a base instant for the pure parts
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(name: &str, generation: u64, port: u16) -> ChitchatId {
        ChitchatId::new(name, generation, ([127, 0, 0, 1], port).into())
    }

    /// A digest's encoding, written by hand in chitchat's layout.
    fn digest(entries: &[(ChitchatId, u64)]) -> Vec<u8> {
        let mut b = Vec::new();
        (entries.len() as u16).serialize(&mut b);
        for (id, hb) in entries {
            id.serialize(&mut b);
            hb.serialize(&mut b);
            0u64.serialize(&mut b);
            7u64.serialize(&mut b);
        }
        b
    }

    #[test]
    fn finds_this_nodes_heartbeat_and_only_this_generations() {
        let me = id("me", 2, 7000);
        let d = digest(&[(id("a", 1, 7001), 50), (id("me", 1, 7000), 9), (me.clone(), 41)]);
        assert_eq!(heartbeat_in(&d, &me), Some(41));
        assert_eq!(heartbeat_in(&d, &id("me", 3, 7000)), None, "a newer generation is not in it");
        assert_eq!(heartbeat_in(&digest(&[]), &me), None);
        // Truncated or garbage: nothing, no panic.
        for cut in 0..d.len() {
            let _ = heartbeat_in(&d[..cut], &me);
        }
        assert_eq!(heartbeat_in(&[0xff, 0xff, 1, 2, 3], &me), None);
    }

    #[tokio::test]
    async fn real_chitchat_digests_tell_what_peers_know_of_this_node() {
        // Two chitchat nodes on chitchat's in-memory transport; "me" reads
        // the digests "p" sends: the layout read above is chitchat's own.
        let transport = chitchat::transport::ChannelTransport::default();
        let cfg = |cid: ChitchatId, seeds: Vec<String>| chitchat::ChitchatConfig {
            chitchat_id: cid.clone(),
            cluster_id: "c".into(),
            gossip_interval: Duration::from_millis(20),
            listen_addr: cid.gossip_advertise_addr,
            seed_nodes: seeds,
            failure_detector_config: Default::default(),
            marked_for_deletion_grace_period: Duration::from_secs(60),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let (me, p) = (id("me", 1, 7000), id("p", 1, 7001));
        let heard: Heard = Default::default();
        let opened = Opened::open(&transport, me.gossip_advertise_addr, me.clone(), heard.clone()).await.unwrap();
        let mine = chitchat::spawn_chitchat(cfg(me.clone(), vec![]), Vec::new(), &opened).await.unwrap();
        let peer = chitchat::spawn_chitchat(cfg(p.clone(), vec!["127.0.0.1:7000".into()]), Vec::new(), &transport)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let known = heard.lock().unwrap().get(&p.gossip_advertise_addr).copied();
            let now = u64::from(mine.chitchat().lock().await.self_node_state().heartbeat());
            if let Some(k) = known
                && k >= 3
            {
                assert!(k <= now, "a peer cannot know a heartbeat this node has not had: {k} > {now}");
                break;
            }
            assert!(Instant::now() < deadline, "no digest from the peer named this node's heartbeat: {known:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(opened.open(me.gossip_advertise_addr).await.is_err(), "its socket is handed out once");
        drop((mine, peer));
    }

    #[test]
    fn a_reported_heartbeat_is_dated_before_it_existed() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = Beats::new(Duration::from_secs(5));
        b.sample(1, ms(0));
        b.sample(1, ms(100));
        b.sample(2, ms(200));
        b.sample(3, ms(400));
        assert_eq!(b.date(3), Some(ms(200)), "3 did not exist before the sample at 200 said 2");
        assert_eq!(b.date(2), Some(ms(0)));
        assert_eq!(b.date(4), Some(ms(400)), "sent after the last sample");
        assert_eq!(b.date(1), None, "as old as the oldest sample: undated");
        // Old samples go, but one before the window stays to date the next.
        for i in 1..=100 {
            b.sample(3 + i, ms(400 + i * 100));
        }
        assert_eq!(b.samples.len(), 52);
        assert_eq!(b.date(5), None, "older than the window");
    }
}
