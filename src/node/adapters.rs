//! Trait implementations that join two parts of a node, and so belong to
//! neither: replication over QUIC, Job results into the desired state, join
//! tokens behind the API, the QUIC network behind the node assembly.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chitchat::transport::Transport;
use tokio::sync::mpsc;

use super::assembly::Network;
use super::cluster::{TokenWriteError, Tokens};
use crate::agent::driver::{RecordError, ResultSink};
use crate::api::server::{ClusterOpError, ClusterOps};
use crate::membership::transport::QuicTransport;
use crate::membership::watch::{Hello, Liveness};
use crate::model::pods::PodResult;
use crate::net::quic::{Handler, Net, StreamKind};
use crate::node::liveness::TcpLiveness;
use crate::state::entry::kinds;
use crate::state::sync::{Rpc, RpcError, SyncService};
use crate::state::{Key, Writer};

/// State replication requests travel on QUIC streams.
#[async_trait]
impl Rpc for Net {
    async fn call(&self, peer: SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        self.request(peer, StreamKind::Sync, &request).await.map_err(|e| RpcError(e.to_string()))
    }
}

/// Peers' replication requests are answered by the node's `SyncService`.
pub struct SyncHandler(pub Arc<SyncService>);

#[async_trait]
impl Handler for SyncHandler {
    async fn handle(&self, _peer: SocketAddr, request: Vec<u8>) -> Vec<u8> {
        self.0.handle(request).await
    }
}

/// The node's QUIC endpoint, as the network of the node assembly, and
/// the liveness port beside it (TCP, same address and port number).
pub struct QuicNetwork {
    net: Arc<Net>,
    transport: QuicTransport,
    liveness_addr: SocketAddr,
}

impl QuicNetwork {
    /// `liveness_addr`: where the liveness port binds (the gossip bind
    /// address, with the port QUIC got).
    pub fn new(net: Arc<Net>, inbox: mpsc::Receiver<(SocketAddr, Bytes)>, liveness_addr: SocketAddr) -> QuicNetwork {
        QuicNetwork { transport: QuicTransport::new(net.clone(), inbox), net, liveness_addr }
    }
}

impl Network for QuicNetwork {
    fn gossip(&self) -> &dyn Transport {
        &self.transport
    }
    fn link(&self) -> Arc<dyn crate::membership::swim::link::Link> {
        Arc::new(self.transport.link())
    }
    fn liveness(&self) -> Arc<dyn Liveness> {
        Arc::new(TcpLiveness)
    }
    fn serve_liveness(&self, hello: Hello) {
        // Served until the process ends (its end is what watchers see).
        if let Err(e) = crate::node::liveness::serve(self.liveness_addr, hello, crate::util::unix_millis) {
            tracing::warn!("{e}");
        }
    }
    fn rpc(&self) -> Arc<dyn Rpc> {
        self.net.clone()
    }
    fn serve_sync(&self, svc: Arc<SyncService>) {
        self.net.set_sync_handler(Arc::new(SyncHandler(svc)));
    }
}

/// Records Job pod outcomes in the desired state (replicated writes).
pub struct StateResults {
    pub writer: Arc<dyn Writer>,
}

#[async_trait]
impl ResultSink for StateResults {
    async fn record(&self, namespace: &str, name: &str, result: PodResult) -> Result<(), RecordError> {
        let err = |message: String| RecordError { namespace: namespace.into(), name: name.into(), message };
        let bytes = serde_json::to_vec(&result).map_err(|e| err(e.to_string()))?;
        self.writer
            .write(vec![(Key::new(kinds::POD_RESULT, namespace, name), Some(bytes))])
            .await
            .map(|_| ())
            .map_err(|e| err(e.to_string()))
    }
}

impl From<TokenWriteError> for ClusterOpError {
    fn from(e: TokenWriteError) -> ClusterOpError {
        match e {
            TokenWriteError::Write(w) => ClusterOpError::Write(w),
            TokenWriteError::Encode(e) => ClusterOpError::Internal(e.to_string()),
        }
    }
}

/// Join tokens behind `/shoal/v1/token`.
#[async_trait]
impl ClusterOps for Tokens {
    fn join_token(&self) -> Option<String> {
        self.current()
    }
    async fn rotate_join_token(&self) -> Result<String, ClusterOpError> {
        Ok(self.rotate().await?)
    }
    async fn create_join_token(&self, ttl_secs: u64) -> Result<String, ClusterOpError> {
        Ok(self.create(ttl_secs).await?)
    }
}
