//! chitchat's `Transport` over the node's QUIC endpoint.
//!
//! Each chitchat message is serialized with chitchat's own encoding and sent
//! as one gossip frame on a QUIC stream (`net::quic`), so gossip gets QUIC's
//! mutual TLS and congestion control and no UDP datagram limits. Malformed
//! messages from peers are counted and dropped. `QuicLink` carries SWIM's
//! frames the same way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::mpsc;

use super::swim::link::Link;
use crate::net::quic::Net;

pub struct QuicTransport {
    net: Arc<Net>,
    inbox: Mutex<Option<mpsc::Receiver<(SocketAddr, Bytes)>>>,
}

impl QuicTransport {
    pub fn new(net: Arc<Net>, inbox: mpsc::Receiver<(SocketAddr, Bytes)>) -> QuicTransport {
        QuicTransport { net, inbox: Mutex::new(Some(inbox)) }
    }

    /// The same gossip frames as raw bytes, for SWIM (takes the inbox:
    /// a node runs one membership engine).
    pub fn link(&self) -> QuicLink {
        let inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        QuicLink { net: self.net.clone(), inbox: tokio::sync::Mutex::new(inbox) }
    }
}

/// SWIM's `Link` over the node's QUIC endpoint.
pub struct QuicLink {
    net: Arc<Net>,
    inbox: tokio::sync::Mutex<Option<mpsc::Receiver<(SocketAddr, Bytes)>>>,
}

#[async_trait]
impl Link for QuicLink {
    fn send(&self, to: SocketAddr, frame: Vec<u8>) {
        self.net.send_gossip(to, &frame);
    }

    async fn recv(&self) -> Option<(SocketAddr, Vec<u8>)> {
        let mut inbox = self.inbox.lock().await;
        let (from, bytes) = inbox.as_mut()?.recv().await?;
        Some((from, bytes.to_vec()))
    }
}

#[async_trait]
impl Transport for QuicTransport {
    async fn open(&self, _listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the QUIC gossip transport can be opened once"))?;
        Ok(Box::new(QuicSocket { net: self.net.clone(), inbox, buf: Vec::new() }))
    }
}

struct QuicSocket {
    net: Arc<Net>,
    inbox: mpsc::Receiver<(SocketAddr, Bytes)>,
    buf: Vec<u8>,
}

/// Decodes a chitchat message from untrusted bytes.
pub fn decode(bytes: &[u8]) -> Option<ChitchatMessage> {
    let mut b = bytes;
    ChitchatMessage::deserialize(&mut b).ok()
}

#[async_trait]
impl Socket for QuicSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        self.buf.clear();
        msg.serialize(&mut self.buf);
        self.net.send_gossip(to, &self.buf);
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, bytes) = self.inbox.recv().await.ok_or_else(|| anyhow::anyhow!("QUIC endpoint closed"))?;
            match decode(&bytes) {
                Some(m) => return Ok((from, m)),
                None => {
                    self.net.metrics.refused("gossip-message");
                    tracing::debug!(peer = %from, "undecodable gossip message dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Garbage from a peer never panics chitchat's decoder.
        #[test]
        fn decoding_garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&d);
        }
    }
}
