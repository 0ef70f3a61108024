//! The node's QUIC endpoint: one UDP port for gossip, state replication and
//! joins.
//!
//! Owns connections. Peer connections (ALPN `shoal/1`) require a client
//! certificate of the cluster CA; join connections (`shoal-join/1`) do not,
//! and may only open join streams. Each stream starts with a kind byte:
//! gossip frames travel on unidirectional streams, requests (sync, join) on
//! bidirectional ones. Every read is bounded; garbage, truncated or oversized
//! input is dropped, counted and logged (rate-limited), never a panic.
//! Sends never block the caller on a handshake: gossip goes through a
//! bounded per-peer queue drained by its own task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::mpsc;

use super::tls::{self, ALPN_JOIN, ALPN_PEER, Identity, TlsError};
use crate::metrics::Metrics;

/// Largest gossip frame (a chitchat message is at most 65,507 bytes).
pub const MAX_GOSSIP_FRAME: usize = 70_000;
/// Largest request or response on a bidirectional stream.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Gossip frames queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 32;
/// Inbound gossip frames queued for the gossip loop.
pub const GOSSIP_INBOX: usize = 1024;
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Inbound gossip frames: (sender's advertised address, chitchat message).
pub type GossipInbox = mpsc::Receiver<(SocketAddr, Bytes)>;

/// First byte of every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    Gossip = 1,
    Sync = 2,
    Join = 3,
    /// Cluster data keys (peers only: mutual TLS).
    Keys = 4,
}

impl StreamKind {
    fn from_u8(b: u8) -> Option<StreamKind> {
        match b {
            1 => Some(StreamKind::Gossip),
            2 => Some(StreamKind::Sync),
            3 => Some(StreamKind::Join),
            4 => Some(StreamKind::Keys),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot bind the QUIC port {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: SocketAddr, message: String },
    #[error("stream to {addr}: {message}")]
    Stream { addr: SocketAddr, message: String },
}

/// Answers requests of one kind.
#[async_trait]
pub trait Handler: Send + Sync {
    async fn handle(&self, peer: SocketAddr, request: Vec<u8>) -> Vec<u8>;
}

/// Logs at most once per interval per key.
struct RateLimit {
    last: Mutex<HashMap<&'static str, Instant>>,
}

impl RateLimit {
    fn allow(&self, key: &'static str) -> bool {
        let mut m = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match m.get(key) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(10) => false,
            _ => {
                m.insert(key, now);
                true
            }
        }
    }
}

pub struct Net {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    conns: tokio::sync::Mutex<HashMap<SocketAddr, quinn::Connection>>,
    queues: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    gossip_tx: mpsc::Sender<(SocketAddr, Bytes)>,
    sync: OnceLock<Arc<dyn Handler>>,
    join: OnceLock<Arc<dyn Handler>>,
    keys: OnceLock<Arc<dyn Handler>>,
    pub metrics: Arc<Metrics>,
    limit: RateLimit,
    /// The address peers know this node by (sent with every gossip frame).
    pub advertise: SocketAddr,
    /// This endpoint itself, to serve streams peers open on connections
    /// this node made.
    me: OnceLock<std::sync::Weak<Net>>,
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(10)).ok());
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_concurrent_uni_streams(256u32.into());
    t.max_concurrent_bidi_streams(64u32.into());
    Arc::new(t)
}

/// Client config for joining a cluster whose CA hashes to `pin`.
pub fn join_client(pin: &str) -> Result<quinn::ClientConfig, NetError> {
    let c = tls::join_client_config(pin)?;
    let q = QuicClientConfig::try_from(c).map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(q));
    cc.transport_config(transport());
    Ok(cc)
}

/// One request on a fresh join connection (used before a node has an identity).
pub async fn join_request(addr: SocketAddr, pin: &str, request: &[u8]) -> Result<Vec<u8>, NetError> {
    let cfg = join_client(pin)?;
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap_or(addr);
    let ep = quinn::Endpoint::client(bind).map_err(|source| NetError::Bind { addr: bind, source })?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT * 3, async {
        ep.connect_with(cfg, addr, tls::SERVER_NAME)
            .map_err(|e| NetError::Connect { addr, message: e.to_string() })?
            .await
            .map_err(|e| NetError::Connect { addr, message: e.to_string() })
    })
    .await
    .map_err(|_| NetError::Connect { addr, message: "timed out".into() })??;
    let resp = bi_request(&conn, addr, StreamKind::Join, request).await;
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    resp
}

async fn bi_request(
    conn: &quinn::Connection,
    addr: SocketAddr,
    kind: StreamKind,
    request: &[u8],
) -> Result<Vec<u8>, NetError> {
    let err = |m: String| NetError::Stream { addr, message: m };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| err(e.to_string()))?;
    send.write_all(&[kind as u8]).await.map_err(|e| err(e.to_string()))?;
    send.write_all(request).await.map_err(|e| err(e.to_string()))?;
    send.finish().map_err(|e| err(e.to_string()))?;
    recv.read_to_end(MAX_REQUEST_BYTES).await.map_err(|e| err(e.to_string()))
}

impl Net {
    /// Binds the QUIC port. Returns the inbox of gossip frames
    /// `(sender's advertised address, chitchat message bytes)`.
    pub fn bind(
        bind: SocketAddr,
        advertise: SocketAddr,
        identity: &Identity,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Net>, GossipInbox), NetError> {
        let server_tls = identity.server_config()?;
        let qs = QuicServerConfig::try_from(server_tls)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(qs));
        server.transport_config(transport());
        let client_tls = identity.client_config()?;
        let qc = QuicClientConfig::try_from(client_tls)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut client = quinn::ClientConfig::new(Arc::new(qc));
        client.transport_config(transport());
        let endpoint = quinn::Endpoint::server(server, bind).map_err(|source| NetError::Bind { addr: bind, source })?;
        let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_INBOX);
        let net = Arc::new(Net {
            endpoint,
            client,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            gossip_tx,
            sync: OnceLock::new(),
            join: OnceLock::new(),
            keys: OnceLock::new(),
            metrics,
            limit: RateLimit { last: Mutex::new(HashMap::new()) },
            advertise,
            me: OnceLock::new(),
        });
        let _ = net.me.set(Arc::downgrade(&net));
        tokio::spawn(net.clone().accept_loop());
        Ok((net, gossip_rx))
    }

    pub fn set_sync_handler(&self, h: Arc<dyn Handler>) {
        let _ = self.sync.set(h);
    }

    pub fn set_join_handler(&self, h: Arc<dyn Handler>) {
        let _ = self.join.set(h);
    }

    pub fn set_keys_handler(&self, h: Arc<dyn Handler>) {
        let _ = self.keys.set(h);
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    fn refuse(&self, reason: &'static str, peer: SocketAddr, detail: &str) {
        self.metrics.refused(reason);
        if self.limit.allow(reason) {
            tracing::warn!(%peer, reason, detail, "refused peer input (further ones counted in shoal_peer_refused, logged at most every 10s)");
        }
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => me.serve_connection(conn).await,
                    Err(e) => me.refuse("handshake", remote, &e.to_string()),
                }
            });
        }
    }

    async fn serve_connection(self: Arc<Self>, conn: quinn::Connection) {
        let remote = conn.remote_address();
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol);
        let authenticated = conn.peer_identity().is_some();
        let is_join = alpn.as_deref() == Some(ALPN_JOIN);
        if alpn.as_deref() == Some(ALPN_PEER) && !authenticated {
            self.refuse("no-client-certificate", remote, "peer connection without a certificate");
            conn.close(1u32.into(), b"client certificate required");
            return;
        }
        if !is_join && alpn.as_deref() != Some(ALPN_PEER) {
            self.refuse("alpn", remote, "unknown ALPN");
            conn.close(1u32.into(), b"unknown protocol");
            return;
        }
        if !is_join {
            // A peer that connects to us is alive at `remote` now: send to it
            // on this connection. A connection cached from before may lead to
            // a process that has since died (a restart within the idle
            // timeout): quinn cannot tell, and everything sent on it would be
            // lost for up to 10 s, the restarted node hearing no answers
            // (the chaos suite found it alone, running every replica).
            self.conns.lock().await.insert(remote, conn.clone());
        }
        self.serve_streams(conn, remote, is_join).await;
    }

    /// Serves the streams a peer opens on a connection, whichever side made it.
    async fn serve_streams(self: Arc<Self>, conn: quinn::Connection, remote: SocketAddr, is_join: bool) {
        loop {
            tokio::select! {
                uni = conn.accept_uni(), if !is_join => match uni {
                    Ok(recv) => { tokio::spawn(self.clone().serve_uni(remote, recv)); }
                    Err(_) => return,
                },
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => { tokio::spawn(self.clone().serve_bi(remote, is_join, send, recv)); }
                    Err(_) => return,
                },
            }
        }
    }

    async fn serve_uni(self: Arc<Self>, remote: SocketAddr, mut recv: quinn::RecvStream) {
        let data = match recv.read_to_end(MAX_GOSSIP_FRAME).await {
            Ok(d) => d,
            Err(e) => return self.refuse("gossip-frame", remote, &e.to_string()),
        };
        match parse_gossip_frame(&data) {
            Some((from, payload)) => {
                self.metrics.gossip_messages_received.inc();
                self.metrics.gossip_bytes_received.inc_by(data.len() as u64);
                if self.gossip_tx.try_send((from, Bytes::copy_from_slice(payload))).is_err() {
                    self.refuse("gossip-inbox-full", remote, "gossip inbox full; frame dropped");
                }
            }
            None => self.refuse("gossip-frame", remote, "malformed gossip frame"),
        }
    }

    async fn serve_bi(
        self: Arc<Self>,
        remote: SocketAddr,
        is_join: bool,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let data = match recv.read_to_end(MAX_REQUEST_BYTES).await {
            Ok(d) if !d.is_empty() => d,
            Ok(_) => return self.refuse("request", remote, "empty request"),
            Err(e) => return self.refuse("request", remote, &e.to_string()),
        };
        let handler = match (StreamKind::from_u8(data[0]), is_join) {
            (Some(StreamKind::Join), _) => self.join.get(),
            (Some(StreamKind::Sync), false) => self.sync.get(),
            (Some(StreamKind::Keys), false) => self.keys.get(),
            _ => None,
        };
        let Some(h) = handler.cloned() else {
            return self.refuse("stream-kind", remote, "unknown or forbidden stream kind");
        };
        let resp = h.handle(remote, data[1..].to_vec()).await;
        self.metrics.sync_bytes_sent.inc_by(resp.len() as u64);
        self.metrics.sync_bytes_received.inc_by(data.len() as u64);
        let _ = send.write_all(&resp).await;
        let _ = send.finish();
    }

    /// A connection to `addr`, reused while it lives.
    pub async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, NetError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&addr) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
            conns.remove(&addr);
        }
        drop(conns);
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, tls::SERVER_NAME)
            .map_err(|e| NetError::Connect { addr, message: e.to_string() })?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| NetError::Connect { addr, message: "timed out".into() })?
            .map_err(|e| NetError::Connect { addr, message: e.to_string() })?;
        self.conns.lock().await.insert(addr, conn.clone());
        // Connections serve both ways: the peer may answer on this one.
        if let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) {
            tokio::spawn(me.serve_streams(conn.clone(), addr, false));
        }
        Ok(conn)
    }

    /// Sends a request to a peer and waits for the answer.
    pub async fn request(&self, addr: SocketAddr, kind: StreamKind, request: &[u8]) -> Result<Vec<u8>, NetError> {
        let conn = self.connection(addr).await?;
        let r = bi_request(&conn, addr, kind, request).await;
        if r.is_err() {
            self.conns.lock().await.remove(&addr);
        }
        r
    }

    /// Queues a gossip message for `to`; never waits. Dropped (and counted)
    /// when the peer's queue is full.
    pub fn send_gossip(self: &Arc<Self>, to: SocketAddr, payload: &[u8]) {
        let frame = gossip_frame(self.advertise, payload);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let tx = queues.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            tokio::spawn(self.clone().peer_sender(to, rx));
            tx
        });
        if tx.try_send(frame).is_err() {
            self.metrics.refused("gossip-queue-full");
        }
    }

    async fn peer_sender(self: Arc<Self>, to: SocketAddr, mut rx: mpsc::Receiver<Bytes>) {
        while let Some(frame) = rx.recv().await {
            let sent = async {
                let conn = self.connection(to).await?;
                let mut s = conn.open_uni().await.map_err(|e| NetError::Stream { addr: to, message: e.to_string() })?;
                s.write_all(&frame).await.map_err(|e| NetError::Stream { addr: to, message: e.to_string() })?;
                s.finish().map_err(|e| NetError::Stream { addr: to, message: e.to_string() })?;
                Ok::<_, NetError>(())
            }
            .await;
            match sent {
                Ok(()) => {
                    self.metrics.gossip_messages_sent.inc();
                    self.metrics.gossip_bytes_sent.inc_by(frame.len() as u64);
                }
                Err(e) => {
                    self.conns.lock().await.remove(&to);
                    tracing::debug!(peer = %to, error = %e, "gossip send failed");
                    // Drop what queued up while the peer was unreachable: gossip
                    // is periodic, stale frames are worthless.
                    while rx.try_recv().is_ok() {}
                }
            }
        }
    }

    /// Closes every connection (the node is leaving).
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// `[kind][addr len u8][addr utf8][payload]`.
pub fn gossip_frame(from: SocketAddr, payload: &[u8]) -> Bytes {
    let a = from.to_string();
    let mut v = Vec::with_capacity(2 + a.len() + payload.len());
    v.push(StreamKind::Gossip as u8);
    v.push(a.len() as u8);
    v.extend_from_slice(a.as_bytes());
    v.extend_from_slice(payload);
    Bytes::from(v)
}

/// Parses a gossip frame; `None` for anything malformed.
pub fn parse_gossip_frame(d: &[u8]) -> Option<(SocketAddr, &[u8])> {
    if d.len() < 2 || d[0] != StreamKind::Gossip as u8 {
        return None;
    }
    let n = d[1] as usize;
    let addr = std::str::from_utf8(d.get(2..2 + n)?).ok()?.parse().ok()?;
    Some((addr, &d[2 + n..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gossip_frames_roundtrip() {
        let a: SocketAddr = "127.0.0.11:7421".parse().unwrap();
        let f = gossip_frame(a, b"hello");
        assert_eq!(parse_gossip_frame(&f), Some((a, &b"hello"[..])));
        assert_eq!(parse_gossip_frame(&[1, 200, 1]), None);
        assert_eq!(parse_gossip_frame(&[9, 0]), None);
    }

    proptest! {
        #[test]
        fn gossip_frame_parser_never_panics(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_gossip_frame(&d);
        }
    }
}
