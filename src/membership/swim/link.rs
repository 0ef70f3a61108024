//! The bytes SWIM sends and receives, one gossip message each: QUIC
//! frames on a real node (the same path as chitchat's messages), the
//! simulated network in netsim.

use std::net::SocketAddr;

use async_trait::async_trait;

#[async_trait]
pub trait Link: Send + Sync {
    /// Sends one message; never waits (a lost message is SWIM's normal case).
    fn send(&self, to: SocketAddr, frame: Vec<u8>);
    /// The next message: the sender's gossip address and the bytes; `None`
    /// once the link is closed (or was already taken by another reader).
    async fn recv(&self) -> Option<(SocketAddr, Vec<u8>)>;
}
