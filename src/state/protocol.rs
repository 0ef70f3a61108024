//! The replication protocol: messages between nodes' desired states, and
//! the pure functions that answer them.
//!
//! Eager push: `Push` → `PushAck` (sent only after the entries are durable).
//! Anti-entropy, three steps: `Digest` (root) → `InSync` or `Buckets` (the
//! 256 bucket digests) → `Stamps` (the initiator's (key, stamp) pairs in the
//! differing buckets) → `Diff` (what the initiator lacks, what it should send,
//! and what it should drop because the responder collected that tombstone
//! long ago). All messages are postcard with a version byte; sizes and entry
//! counts are bounded by named limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::LAYOUT;
use super::entry::{Entry, Key, Stamp};

/// Protocol version (first byte of every message).
pub const VERSION: u8 = 1;
/// Most entries in one message; more are sent in further rounds.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 2000;
/// Most bytes of entries in one message.
pub const MAX_ENTRY_BYTES_PER_MESSAGE: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SyncMsg {
    Push { entries: Vec<Entry> },
    PushAck { applied: u32, refused: u32 },
    Digest { layout: u32, root: [u8; 32], entries: u64, watermark: u64 },
    InSync,
    Buckets { buckets: Vec<[u8; 16]> },
    Stamps { buckets: Vec<u16>, stamps: Vec<(Key, Stamp)> },
    Diff { entries: Vec<Entry>, want: Vec<Key>, stale: Vec<Key>, watermark: u64, truncated: bool },
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("empty message")]
    Empty,
    #[error("protocol version {0} (this node speaks {VERSION})")]
    Version(u8),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("message over the limits: {0}")]
    TooLarge(String),
}

pub fn encode(m: &SyncMsg) -> Vec<u8> {
    let mut v = vec![VERSION];
    v.extend(postcard::to_allocvec(m).unwrap_or_default());
    v
}

/// Decodes and checks the limits of an untrusted message.
pub fn decode(b: &[u8]) -> Result<SyncMsg, ProtocolError> {
    let (&v, rest) = b.split_first().ok_or(ProtocolError::Empty)?;
    if v != VERSION {
        return Err(ProtocolError::Version(v));
    }
    let m: SyncMsg = postcard::from_bytes(rest).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let count = match &m {
        SyncMsg::Push { entries } | SyncMsg::Diff { entries, .. } => entries.len(),
        SyncMsg::Stamps { stamps, .. } => stamps.len() / 8,
        SyncMsg::Buckets { buckets } if buckets.len() != super::digest::BUCKETS => {
            return Err(ProtocolError::TooLarge(format!(
                "{} buckets instead of {}",
                buckets.len(),
                super::digest::BUCKETS
            )));
        }
        _ => 0,
    };
    if count > MAX_ENTRIES_PER_MESSAGE {
        return Err(ProtocolError::TooLarge(format!(
            "{count} entries > MAX_ENTRIES_PER_MESSAGE ({MAX_ENTRIES_PER_MESSAGE})"
        )));
    }
    Ok(m)
}

/// Takes entries in order until a message limit is reached; returns whether
/// some were left out.
pub fn take_bounded(all: Vec<Entry>) -> (Vec<Entry>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0;
    let total = all.len();
    for e in all {
        let sz = e.approx_size();
        if out.len() >= MAX_ENTRIES_PER_MESSAGE || bytes + sz > MAX_ENTRY_BYTES_PER_MESSAGE {
            break;
        }
        bytes += sz;
        out.push(e);
    }
    let truncated = out.len() < total;
    (out, truncated)
}

/// The responder's side of step 3: given the initiator's stamps in some
/// buckets and this node's entries in the same buckets, decide what to send,
/// what to ask for, and what the initiator should drop. Pure.
pub fn diff(
    theirs: &[(Key, Stamp)],
    mine: &BTreeMap<Key, Entry>,
    my_watermark: u64,
) -> (Vec<Entry>, Vec<Key>, Vec<Key>) {
    let theirs_map: BTreeMap<&Key, &Stamp> = theirs.iter().map(|(k, s)| (k, s)).collect();
    let mut send = Vec::new();
    let mut want = Vec::new();
    let mut stale = Vec::new();
    for (k, s) in &theirs_map {
        match mine.get(*k) {
            Some(e) if e.stamp > **s => send.push(e.clone()),
            Some(e) if e.stamp < **s => want.push((*k).clone()),
            Some(_) => {}
            // Unknown here and older than a tombstone this node collected:
            // it was deleted; the initiator must not bring it back.
            None if s.time <= my_watermark => stale.push((*k).clone()),
            None => want.push((*k).clone()),
        }
    }
    for (k, e) in mine {
        if !theirs_map.contains_key(k) {
            send.push(e.clone());
        }
    }
    (send, want, stale)
}

/// The layout this node speaks.
pub fn layout() -> u32 {
    LAYOUT
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(name: &str, t: u64) -> Entry {
        Entry {
            key: Key::new("K", "", name),
            stamp: Stamp { time: t, node: 1 },
            origin: "a".into(),
            value: Some(vec![1]),
        }
    }

    #[test]
    fn diff_sends_newer_wants_older_and_flags_stale() {
        let mine: BTreeMap<Key, Entry> =
            [e("a", 5), e("b", 1), e("c", 3), e("mine-only", 9)].into_iter().map(|x| (x.key.clone(), x)).collect();
        let theirs = vec![
            (Key::new("K", "", "a"), Stamp { time: 1, node: 1 }),
            (Key::new("K", "", "b"), Stamp { time: 7, node: 1 }),
            (Key::new("K", "", "c"), Stamp { time: 3, node: 1 }),
            (Key::new("K", "", "theirs-new"), Stamp { time: 50, node: 1 }),
            (Key::new("K", "", "theirs-old"), Stamp { time: 2, node: 1 }),
        ];
        let (send, want, stale) = diff(&theirs, &mine, 10);
        let names = |v: &[Entry]| v.iter().map(|e| e.key.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&send), ["a", "mine-only"]);
        assert_eq!(want.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["b", "theirs-new"]);
        assert_eq!(stale.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["theirs-old"]);
    }

    #[test]
    fn messages_roundtrip_and_garbage_is_an_error() {
        let m = SyncMsg::Push { entries: vec![e("a", 1)] };
        assert_eq!(decode(&encode(&m)), Ok(m));
        assert_eq!(decode(&[]), Err(ProtocolError::Empty));
        assert!(matches!(decode(&[9, 1, 2]), Err(ProtocolError::Version(9))));
        let bad_buckets = encode(&SyncMsg::Buckets { buckets: vec![[0; 16]; 3] });
        assert!(matches!(decode(&bad_buckets), Err(ProtocolError::TooLarge(_))));
        let mut truncated = encode(&SyncMsg::Push { entries: vec![e("a", 1), e("b", 2)] });
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(decode(&truncated), Err(ProtocolError::Decode(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(d in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = d;
            if !d.is_empty() { d[0] = VERSION; }
            let _ = decode(&d);
        }
    }
}
