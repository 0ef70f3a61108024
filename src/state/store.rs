//! The desired state on disk: one redb file, crash-safe.
//!
//! Owns persistence only. Every write is one transaction committed with
//! `Durability::Immediate` (fsync) before it returns, so an acknowledged apply
//! survives `kill -9` and power loss. redb (copy-on-write B-tree, checksummed
//! commits) was chosen over write-fsync-rename files because applies touch
//! several objects at once and need them atomically. This module never runs on
//! a gossip or placement path.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::entry::{Entry, Key};

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("desired-state database {path}: {source}")]
    Open { path: String, source: redb::DatabaseError },
    #[error("desired-state database: {0}")]
    Db(#[from] redb::Error),
    #[error("desired-state database holds an unreadable entry for key {0:?}: {1}")]
    Corrupt(String, postcard::Error),
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::SetDurabilityError> for StoreError {
    fn from(e: redb::SetDurabilityError) -> Self {
        StoreError::Db(e.into())
    }
}

/// A change to persist: write an entry, or forget a key (tombstone GC).
pub enum Change<'a> {
    Put(&'a Entry),
    Forget(&'a Key),
}

pub struct Store {
    /// `None` after a failed write until it could be opened again.
    db: Option<Database>,
    /// Where it lives (`None`: in memory).
    path: Option<std::path::PathBuf>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db =
            Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let mut s = Store::init(db)?;
        s.path = Some(path.to_path_buf());
        Ok(s)
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Db(redb::Error::PreviousIo))
    }

    /// After a failed write redb refuses every transaction until the file
    /// is opened again: reopen it, so that a disk that filled up and has
    /// room again takes writes without a restart of the node.
    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else { return };
        self.db = None; // the old handle holds the file's lock
        match Database::create(&path) {
            Ok(db) => self.db = Some(db),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot reopen the desired-state store yet"),
        }
    }

    /// The same store on redb's in-memory backend (netsim: many nodes, no disk).
    pub fn in_memory() -> Result<Store, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StoreError::Open { path: "<memory>".into(), source })?;
        Store::init(db)
    }

    fn init(db: Database) -> Result<Store, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Store { db: Some(db), path: None })
    }

    /// Every stored entry.
    pub fn load(&self) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let e: Entry = postcard::from_bytes(v.value())
                .map_err(|err| StoreError::Corrupt(String::from_utf8_lossy(k.value()).into_owned(), err))?;
            out.push(e);
        }
        Ok(out)
    }

    /// Applies changes and metadata in one durable transaction: all of
    /// them, or (an error) none.
    pub fn commit(&mut self, changes: &[Change<'_>], meta: &[(&str, Vec<u8>)]) -> Result<(), StoreError> {
        if self.db.is_none() {
            self.reopen();
        }
        let r = self.try_commit(changes, meta);
        if r.is_err() {
            self.reopen();
        }
        r
    }

    fn try_commit(&self, changes: &[Change<'_>], meta: &[(&str, Vec<u8>)]) -> Result<(), StoreError> {
        let mut txn = self.db()?.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(ENTRIES)?;
            for c in changes {
                match c {
                    Change::Put(e) => {
                        let bytes = postcard::to_allocvec(e).unwrap_or_default();
                        table.insert(e.key.to_bytes().as_slice(), bytes.as_slice())?;
                    }
                    Change::Forget(k) => {
                        table.remove(k.to_bytes().as_slice())?;
                    }
                }
            }
            let mut m = txn.open_table(META)?;
            for (k, v) in meta {
                m.insert(*k, v.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let m = txn.open_table(META)?;
        Ok(m.get(key)?.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::Stamp;
    use super::*;

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let e = Entry {
            key: Key::new("K", "ns", "a"),
            stamp: Stamp { time: 7, node: 1 },
            origin: "n".into(),
            value: Some(b"{}".to_vec()),
        };
        let gone = Entry { key: Key::new("K", "ns", "b"), ..e.clone() };
        {
            let mut s = Store::open(&path).unwrap();
            s.commit(&[Change::Put(&e), Change::Put(&gone)], &[("watermark", vec![1, 2])]).unwrap();
            s.commit(&[Change::Forget(&gone.key)], &[]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![e]);
        assert_eq!(s.get_meta("watermark").unwrap(), Some(vec![1, 2]));
    }
}
