//! The desired state: every applied object, on every node, as a CRDT map.
//!
//! - `apply`: apply, create, replace and delete planned over a snapshot;
//! - `entry`: key, HLC stamp, origin, value or tombstone;
//! - `merge`: the pure last-writer-wins rule;
//! - `digest`: bucketed digests for anti-entropy;
//! - `store`: the crash-safe on-disk copy (redb);
//! - `seal`: the cluster data keys, and Secrets sealed with them;
//! - `keys`: this node's copy of the data keys, in a private file;
//! - `db`: the owner of the map on a node, which validates peer input.

pub mod apply;
pub mod db;
pub mod digest;
pub mod entry;
pub mod keys;
pub mod merge;
pub mod protocol;
pub mod seal;
pub mod store;
pub mod sync;
pub mod writer;

pub use db::{Snapshot, StateDb, StoredObject, object_key};
pub use entry::{Entry, Key, Stamp};
pub use writer::{LocalWriter, WriteError, Writer};
