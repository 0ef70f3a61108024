//! This node's copy of the cluster data keys (`seal::KeyRing`): kept in a
//! private file outside the data dir (mode 0600, in a 0700 directory), so a
//! copy of the data dir (a backup, a pulled SD card) holds Secrets only
//! sealed. The ring reaches the node from its peers over mutual TLS
//! (`node::keys`); this module only holds it, saves it and uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use tokio::sync::{Notify, watch};

use super::seal::{self, KEY_BYTES, KeyRing, SealError};
use crate::model::Secret;
use crate::model::types::Sealed;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("data key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "data key file {path} is unreadable ({message}); restore it from a backup, or delete it to fetch the keys from a peer"
    )]
    Corrupt { path: String, message: String },
}

/// The cluster data keys this node holds.
pub struct DataKeys {
    path: PathBuf,
    ring: RwLock<KeyRing>,
    /// Bumped whenever the ring changes.
    changed: watch::Sender<u64>,
    /// Woken when the node needs keys it lacks (a Secret sealed with an
    /// unknown key, a write with no key): the exchange asks peers now.
    wanted: Notify,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys").field("path", &self.path).field("ring", &*self.read()).finish()
    }
}

impl DataKeys {
    /// Loads the ring from `path` (none yet is an empty ring).
    pub fn open(path: &Path) -> Result<DataKeys, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let ring = match std::fs::read(path) {
            Ok(bytes) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                serde_json::from_slice(&bytes)
                    .map_err(|e| KeyError::Corrupt { path: path.display().to_string(), message: e.to_string() })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyRing::default(),
            Err(e) => return Err(io(e)),
        };
        Ok(DataKeys {
            path: path.to_path_buf(),
            ring: RwLock::new(ring),
            changed: watch::channel(0).0,
            wanted: Notify::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the ring (to send to a peer).
    pub fn ring(&self) -> KeyRing {
        self.read().clone()
    }

    /// Usable keys held.
    pub fn usable(&self) -> usize {
        self.read().usable()
    }

    /// The id of the key that seals now.
    pub fn primary_id(&self) -> Option<String> {
        self.read().primary().map(|(id, _)| id)
    }

    /// Whether ring holds a usable key `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.read().keys.get(id).is_some_and(|k| k.material.is_some())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Asks the exchange to fetch keys from peers now.
    pub fn want(&self) {
        self.wanted.notify_one();
    }

    /// Waits until someone wants keys.
    pub async fn wanted(&self) {
        self.wanted.notified().await
    }

    fn update(&self, f: impl FnOnce(&mut KeyRing) -> bool) -> Result<bool, KeyError> {
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        let mut next = ring.clone();
        if !f(&mut next) {
            return Ok(false);
        }
        if !self.path.as_os_str().is_empty() {
            save(&self.path, &next)?;
        }
        *ring = next;
        drop(ring);
        self.changed.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Merges a peer's ring in (saved before it is used); returns whether
    /// anything was new.
    pub fn merge(&self, other: &KeyRing) -> Result<bool, KeyError> {
        self.update(|r| r.merge(other))
    }

    /// Makes a new key (it becomes the one that seals); returns its id.
    pub fn generate(&self, now_ms: u64) -> Result<String, KeyError> {
        use ring::rand::SecureRandom as _;
        let mut key = [0u8; KEY_BYTES];
        ring::rand::SystemRandom::new().fill(&mut key).map_err(|_| KeyError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other("the system's random number generator failed"),
        })?;
        let mut id = String::new();
        self.update(|r| {
            id = r.add(&key, r.next_created(now_ms));
            true
        })?;
        Ok(id)
    }

    /// Retires the keys older than `keep`; returns the ids retired.
    pub fn retire_older_than(&self, keep: &str) -> Result<Vec<String>, KeyError> {
        let mut out = Vec::new();
        self.update(|r| {
            out = r.retire_older_than(keep);
            !out.is_empty()
        })?;
        Ok(out)
    }

    /// Seals the data of Secret `namespace/name`.
    pub fn seal(&self, namespace: &str, name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Sealed, SealError> {
        seal::seal_data(&self.read(), namespace, name, data)
    }

    /// Opens a stored Secret's data. A key this node lacks wakes the
    /// exchange, so the next attempt may succeed.
    pub fn open_secret(&self, s: &Secret) -> Result<BTreeMap<String, Vec<u8>>, SealError> {
        let Some(sealed) = &s.sealed else { return Ok(BTreeMap::new()) };
        let ns = s.metadata.namespace.as_deref().unwrap_or(crate::model::DEFAULT_NAMESPACE);
        let r = seal::open_data(&self.read(), ns, &s.metadata.name, sealed);
        if matches!(r, Err(SealError::UnknownKey(_) | SealError::NoKey)) {
            self.want();
        }
        r
    }
}

/// What nodes exchange: a ring, and how many of the sender's stored
/// Secrets each key seals (a retirement waits until no node has one left).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct KeyNews {
    pub ring: KeyRing,
    #[serde(default)]
    pub sealed_with: BTreeMap<String, usize>,
}

/// How many of the Secrets in `snapshot` each key seals.
pub fn sealed_with(snapshot: &super::Snapshot) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for o in snapshot.of_kind(crate::model::Kind::Secret) {
        if let crate::model::Object::Secret(s) = &o.object
            && let Some(x) = &s.sealed
        {
            *out.entry(x.key.clone()).or_default() += 1;
        }
    }
    out
}

/// Writes the ring: a private file in a private directory, replaced whole.
fn save(path: &Path, ring: &KeyRing) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| KeyError::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(ring).unwrap_or_default();
    crate::util::write_private(path, &text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_saved_privately_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/n1.json");
        let k = DataKeys::open(&path).unwrap();
        assert_eq!(k.usable(), 0);
        let id = k.generate(5).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let again = DataKeys::open(&path).unwrap();
        assert_eq!(again.primary_id(), Some(id.clone()));
        let data = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
        let mut s = Secret::default();
        s.metadata.name = "x".into();
        s.metadata.namespace = Some("default".into());
        s.sealed = Some(k.seal("default", "x", &data).unwrap());
        assert_eq!(again.open_secret(&s).unwrap(), data);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(DataKeys::open(&path), Err(KeyError::Corrupt { .. })));
    }
}
