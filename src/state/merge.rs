//! The CRDT merge: last writer wins per key by HLC stamp, tombstones included.
//!
//! Pure functions over maps; no I/O, no clock. This is the whole conflict
//! resolution of the desired state, and what the property tests exercise.
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use super::entry::{Entry, Key};

/// Whether `incoming` should replace `current`.
pub fn wins(incoming: &Entry, current: Option<&Entry>) -> bool {
    match current {
        None => true,
        Some(cur) => incoming.precedence(cur).is_gt(),
    }
}

/// Merges one entry into a map; returns true when the map changed.
pub fn merge_entry(map: &mut BTreeMap<Key, Entry>, incoming: Entry) -> bool {
    if wins(&incoming, map.get(&incoming.key)) {
        map.insert(incoming.key.clone(), incoming);
        true
    } else {
        false
    }
}

/// Merges every entry of `other` into `map`.
pub fn merge_maps(map: &mut BTreeMap<Key, Entry>, other: &BTreeMap<Key, Entry>) {
    for e in other.values() {
        merge_entry(map, e.clone());
    }
}

/// Entries of `map` whose tombstone is older than `horizon` (NTP64 time).
pub fn expired_tombstones(map: &BTreeMap<Key, Entry>, horizon: u64) -> Vec<Key> {
    map.values().filter(|e| e.is_tombstone() && e.stamp.time < horizon).map(|e| e.key.clone()).collect()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests may read the clock for a base instant
mod tests {
    use super::super::entry::Stamp;
    use super::*;
    use proptest::prelude::*;

    fn entry(key: u8, time: u64, node: u128, value: Option<u8>) -> Entry {
        Entry {
            key: Key::new("K", "ns", format!("k{key}")),
            stamp: Stamp { time, node },
            origin: format!("n{node}"),
            value: value.map(|v| vec![v]),
        }
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (0u8..6, 0u64..20, 0u128..3, proptest::option::of(any::<u8>())).prop_map(|(k, t, n, v)| entry(k, t, n, v))
    }

    fn fold(entries: &[Entry]) -> BTreeMap<Key, Entry> {
        let mut m = BTreeMap::new();
        for e in entries {
            merge_entry(&mut m, e.clone());
        }
        m
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in proptest::collection::vec(arb_entry(), 0..30), b in proptest::collection::vec(arb_entry(), 0..30)) {
            let (ma, mb) = (fold(&a), fold(&b));
            let mut ab = ma.clone();
            merge_maps(&mut ab, &mb);
            let mut ba = mb.clone();
            merge_maps(&mut ba, &ma);
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(a in proptest::collection::vec(arb_entry(), 0..20), b in proptest::collection::vec(arb_entry(), 0..20), c in proptest::collection::vec(arb_entry(), 0..20)) {
            let (ma, mb, mc) = (fold(&a), fold(&b), fold(&c));
            let mut left = ma.clone();
            merge_maps(&mut left, &mb);
            merge_maps(&mut left, &mc);
            let mut bc = mb.clone();
            merge_maps(&mut bc, &mc);
            let mut right = ma.clone();
            merge_maps(&mut right, &bc);
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_idempotent(a in proptest::collection::vec(arb_entry(), 0..30)) {
            let ma = fold(&a);
            let mut twice = ma.clone();
            merge_maps(&mut twice, &ma);
            prop_assert_eq!(twice, ma);
        }

        /// Any delivery order, with duplicates and with losses that are later
        /// retried, converges to the same map.
        #[test]
        fn any_order_duplication_and_retry_converge(
            writes in proptest::collection::vec(arb_entry(), 1..30),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..60),
            lost in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let reference = fold(&writes);
            let mut replica = BTreeMap::new();
            // First pass: shuffled, duplicated, some lost.
            for idx in &order {
                let i = idx.index(writes.len());
                if !lost[i % lost.len()] {
                    merge_entry(&mut replica, writes[i].clone());
                }
            }
            // Retry: everything is eventually delivered once more.
            for e in writes.iter().rev() {
                merge_entry(&mut replica, e.clone());
            }
            prop_assert_eq!(replica, reference);
        }

        #[test]
        fn tombstone_wins_over_older_and_loses_to_newer(t in 1u64..1000, v in any::<u8>()) {
            let write = entry(1, t, 1, Some(v));
            let del = entry(1, t + 1, 2, None);
            let rewrite = entry(1, t + 2, 1, Some(v));
            let m = fold(&[write.clone(), del.clone()]);
            prop_assert!(m.values().next().unwrap().is_tombstone());
            let m = fold(&[del.clone(), write.clone()]);
            prop_assert!(m.values().next().unwrap().is_tombstone());
            let m = fold(&[rewrite.clone(), del, write]);
            prop_assert_eq!(m.values().next().unwrap(), &rewrite);
        }
    }

    #[test]
    fn expired_tombstones_only() {
        let m = fold(&[entry(1, 5, 0, None), entry(2, 5, 0, Some(1)), entry(3, 50, 0, None)]);
        assert_eq!(expired_tombstones(&m, 10), vec![Key::new("K", "ns", "k1")]);
    }
}
