//! Bucketed digests of the desired-state map for anti-entropy.
//!
//! Two levels: 256 buckets (by the first byte of blake3 of the key), each the
//! XOR of its entries' 16-byte hashes, and a root hash over the bucket
//! digests. XOR makes updates O(1) per write. Two maps with equal roots hold
//! the same entries (up to hash collisions); differing buckets say exactly
//! which keys to compare. Pure data; no I/O.

use super::entry::{Entry, Key};

/// Number of buckets. Part of the wire protocol: peers with another layout
/// are refused (`LAYOUT` below travels with every digest).
pub const BUCKETS: usize = 256;
/// Identifies this bucketing scheme on the wire.
pub const LAYOUT: u32 = 1;

pub fn bucket_of(key: &Key) -> usize {
    blake3::hash(&key.to_bytes()).as_bytes()[0] as usize
}

/// Bucket digests, maintained incrementally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    buckets: Vec<[u8; 16]>,
    counts: Vec<u32>,
}

impl Default for Digests {
    fn default() -> Self {
        Self { buckets: vec![[0; 16]; BUCKETS], counts: vec![0; BUCKETS] }
    }
}

fn xor(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

impl Digests {
    /// Accounts for `old` being replaced by `new` (either may be absent).
    pub fn replace(&mut self, old: Option<&Entry>, new: Option<&Entry>) {
        if let Some(o) = old {
            let b = bucket_of(&o.key);
            xor(&mut self.buckets[b], &o.digest());
            self.counts[b] = self.counts[b].saturating_sub(1);
        }
        if let Some(n) = new {
            let b = bucket_of(&n.key);
            xor(&mut self.buckets[b], &n.digest());
            self.counts[b] = self.counts[b].saturating_add(1);
        }
    }

    pub fn root(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&LAYOUT.to_le_bytes());
        for b in &self.buckets {
            h.update(b);
        }
        *h.finalize().as_bytes()
    }

    pub fn buckets(&self) -> &[[u8; 16]] {
        &self.buckets
    }

    /// Indices of buckets that differ from `other`'s.
    pub fn differing(&self, other: &[[u8; 16]]) -> Vec<u16> {
        self.buckets.iter().zip(other).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i as u16).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::Stamp;
    use super::*;

    fn e(name: &str, t: u64) -> Entry {
        Entry {
            key: Key::new("K", "", name),
            stamp: Stamp { time: t, node: 1 },
            origin: "a".into(),
            value: Some(vec![1]),
        }
    }

    #[test]
    fn incremental_equals_rebuilt() {
        let mut inc = Digests::default();
        inc.replace(None, Some(&e("a", 1)));
        inc.replace(None, Some(&e("b", 1)));
        inc.replace(Some(&e("a", 1)), Some(&e("a", 2)));
        let mut fresh = Digests::default();
        fresh.replace(None, Some(&e("b", 1)));
        fresh.replace(None, Some(&e("a", 2)));
        assert_eq!(inc.root(), fresh.root());
        assert_eq!(inc.differing(fresh.buckets()), Vec::<u16>::new());
        fresh.replace(None, Some(&e("c", 1)));
        assert_ne!(inc.root(), fresh.root());
        assert_eq!(inc.differing(fresh.buckets()), vec![bucket_of(&Key::new("K", "", "c")) as u16]);
    }
}
