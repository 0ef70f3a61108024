//! How a node writes to the desired state: durably here, then (in a
//! cluster) on enough peers before the write is acknowledged.
//!
//! `Writer` is the seam: the API and the agent write through it; the local
//! implementation commits on this node only, the replicated one (`sync`)
//! also waits for `write_replicas - 1` peers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::StateDb;
use super::entry::{Entry, Key};
use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored here, but not on enough peers in time. The write stays here
    /// and spreads by anti-entropy; the client should treat it as not
    /// acknowledged and may retry (applies are idempotent).
    #[error(
        "stored on {reached} of the {wanted} nodes required (write_replicas) within {timeout:?}; retry, possibly on another node"
    )]
    Replicas { reached: u32, wanted: u32, timeout: Duration },
    #[error(transparent)]
    Run(#[from] super::db::RunError),
}

#[async_trait]
pub trait Writer: Send + Sync {
    /// Writes values (`None`: delete) as one transaction; returns the entries.
    async fn write(&self, changes: Vec<(Key, Option<Vec<u8>>)>) -> Result<Vec<Entry>, WriteError>;
}

/// Writes on this node only (a one-node cluster, tests).
pub struct LocalWriter {
    pub db: Arc<StateDb>,
}

#[async_trait]
impl Writer for LocalWriter {
    async fn write(&self, changes: Vec<(Key, Option<Vec<u8>>)>) -> Result<Vec<Entry>, WriteError> {
        Ok(super::db::run(&self.db, move |db| db.write(changes)).await??)
    }
}
