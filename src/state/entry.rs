//! One entry of the desired-state map: key, hybrid-logical-clock stamp,
//! origin node, and the value (JSON bytes) or a tombstone.
//!
//! Owns the entry's shape and its byte encodings (store keys, digests).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Kinds of entries besides the user's object kinds.
pub mod kinds {
    /// Outcome of a Job pod index (`model::pods::PodResult`).
    pub const POD_RESULT: &str = "PodResult";
    /// A join token's public record (issue: membership).
    pub const JOIN_TOKEN: &str = "JoinToken";
    /// A pod template a Deployment has had (`model::revision::Revision`),
    /// named `<deployment>-<hash>`.
    pub const REVISION: &str = "Revision";
    /// A node's maintenance (`model::node::NodeMaintenance`), named after it.
    pub const NODE_MAINTENANCE: &str = "NodeMaintenance";
    /// What a CronJob's trigger has dealt with (`model::cron::CronRecord`),
    /// named after the CronJob.
    pub const CRON_RECORD: &str = "CronRecord";
    /// How a Job ended when no pod result says so (`model::pods::JobEnd`:
    /// its `activeDeadlineSeconds` passed), named after the Job.
    pub const JOB_END: &str = "JobEnd";
}

/// Largest value an entry may carry.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Longest key component.
pub const MAX_KEY_PART: usize = 253;

/// Identity of an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(kind: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Key {
        Key { kind: kind.into(), namespace: namespace.into(), name: name.into() }
    }

    /// `kind \0 namespace \0 name`: sorts like the struct and never collides,
    /// since no component may contain a NUL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.kind.len() + self.namespace.len() + self.name.len() + 2);
        v.extend_from_slice(self.kind.as_bytes());
        v.push(0);
        v.extend_from_slice(self.namespace.as_bytes());
        v.push(0);
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    pub fn from_bytes(b: &[u8]) -> Option<Key> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split('\0');
        let k = Key::new(it.next()?, it.next()?, it.next()?);
        it.next().is_none().then_some(k)
    }

    /// Whether a peer-supplied key is well-formed.
    pub fn is_valid(&self) -> bool {
        [&self.kind, &self.namespace, &self.name].iter().all(|p| p.len() <= MAX_KEY_PART && !p.contains('\0'))
            && !self.kind.is_empty()
            && !self.name.is_empty()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A hybrid-logical-clock timestamp: NTP64 time, then the writer's HLC id to
/// break ties. Ordered by `(time, node)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Stamp {
    pub time: u64,
    pub node: u128,
}

impl Stamp {
    pub fn from_hlc(ts: &uhlc::Timestamp) -> Stamp {
        Stamp { time: ts.get_time().as_u64(), node: u128::from_le_bytes(ts.get_id().to_le_bytes()) }
    }

    /// Unix time in seconds (fractional) of the physical part.
    pub fn unix_secs(&self) -> f64 {
        uhlc::NTP64(self.time).as_secs_f64()
    }

    /// An opaque string that changes with every write: the object's
    /// `metadata.resourceVersion`.
    pub fn resource_version(&self) -> String {
        format!("{}.{:08x}", self.time, (self.node & 0xffff_ffff) as u32)
    }

    /// RFC 3339 of the physical part.
    pub fn rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(uhlc::NTP64(self.time).to_system_time()).to_string()
    }
}

/// One entry: a value, or a tombstone (`value == None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Key,
    pub stamp: Stamp,
    /// Name of the node that accepted the write.
    pub origin: String,
    pub value: Option<Vec<u8>>,
}

impl Entry {
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Total order used by merge: newer stamp wins; for equal stamps (which
    /// only a faulty peer produces) the larger value wins, so merge stays
    /// commutative even then.
    pub fn precedence(&self, other: &Entry) -> Ordering {
        self.stamp
            .cmp(&other.stamp)
            .then_with(|| self.value.cmp(&other.value))
            .then_with(|| self.origin.cmp(&other.origin))
    }

    /// 16-byte content hash for anti-entropy digests.
    pub fn digest(&self) -> [u8; 16] {
        let mut h = blake3::Hasher::new();
        h.update(&self.key.to_bytes());
        h.update(&[0xff]);
        h.update(&self.stamp.time.to_le_bytes());
        h.update(&self.stamp.node.to_le_bytes());
        match &self.value {
            Some(v) => {
                h.update(&[1]);
                h.update(blake3::hash(v).as_bytes());
            }
            None => {
                h.update(&[0]);
            }
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// Approximate encoded size, for batching under message limits.
    pub fn approx_size(&self) -> usize {
        self.key.kind.len()
            + self.key.namespace.len()
            + self.key.name.len()
            + self.origin.len()
            + self.value.as_ref().map_or(0, Vec::len)
            + 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_roundtrip_and_order() {
        let a = Key::new("Deployment", "default", "web");
        assert_eq!(Key::from_bytes(&a.to_bytes()), Some(a.clone()));
        let b = Key::new("Deployment", "default", "webz");
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(Key::from_bytes(b"a\0b"), None);
        assert!(!Key::new("", "", "x").is_valid());
        assert!(!Key::new("K", "a\0", "x").is_valid());
    }
}
