//! Node records parsed once per process: a peer's `NodeInfo`, read from
//! the same bytes by everything in this process, is one `Arc`.
//!
//! A `shoal` process runs one node, which reads each peer's info once per
//! version of it, so here the table holds about one entry per peer (its
//! JSON and a weak pointer) and saves a parse when a peer republishes what
//! it had. netsim runs a thousand nodes in one process, each reading the
//! same thousand records: parsed apart, each node's copy of every other
//! node's info was about a quarter of the simulation's memory (a heap
//! profile of 300 nodes: 115 of 415 MB).
//!
//! Entries are keyed by the whole JSON text (no hash clash can hand out
//! another node's record) and hold the record weakly: a record no view
//! holds any more goes at the next sweep, made when the table has doubled
//! since the last one (amortized O(1) per parse).

use std::sync::{Arc, LazyLock, Mutex, Weak};

use rustc_hash::FxHashMap;

use super::view::NodeInfo;

/// Records parsed, by their text.
#[derive(Debug, Default)]
pub struct Table {
    by_text: FxHashMap<Box<str>, Weak<NodeInfo>>,
    /// Entries past which the next insert sweeps the dead ones.
    sweep_at: usize,
}

/// Fewest entries before a sweep (a sweep of a small table is not worth it).
const SWEEP_FLOOR: usize = 64;

impl Table {
    /// The record `json` parses to: the one already held for the same text
    /// while anything still holds it, else parsed now (and kept).
    pub fn node_info(&mut self, json: &str) -> Result<Arc<NodeInfo>, serde_json::Error> {
        if let Some(held) = self.by_text.get(json).and_then(Weak::upgrade) {
            return Ok(held);
        }
        let info = Arc::new(serde_json::from_str::<NodeInfo>(json)?);
        if self.by_text.len() >= self.sweep_at.max(SWEEP_FLOOR) {
            self.by_text.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = 2 * self.by_text.len();
        }
        self.by_text.insert(json.into(), Arc::downgrade(&info));
        Ok(info)
    }

    /// Entries held (live or not swept yet).
    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

/// `Table::node_info` on the process's table.
pub fn node_info(json: &str) -> Result<Arc<NodeInfo>, serde_json::Error> {
    // A panic elsewhere while holding the lock leaves the table as valid as
    // before it (every step of `Table::node_info` keeps it consistent).
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).node_info(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(name: &str, generation: u64) -> String {
        serde_json::to_string(&NodeInfo { name: name.into(), generation, ..Default::default() }).unwrap()
    }

    #[test]
    fn the_same_text_gives_the_same_record_while_it_is_held() {
        let mut t = Table::default();
        let a = t.node_info(&json("a", 1)).unwrap();
        let again = t.node_info(&json("a", 1)).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "parsed once");
        let newer = t.node_info(&json("a", 2)).unwrap();
        assert!(!Arc::ptr_eq(&a, &newer));
        assert_eq!((newer.name.as_str(), newer.generation), ("a", 2));
        let b = t.node_info(&json("b", 1)).unwrap();
        assert_eq!(b.name, "b");
        drop((a, again));
        // Nothing holds a's first record: it is parsed afresh, equal.
        let fresh = t.node_info(&json("a", 1)).unwrap();
        assert_eq!((fresh.name.as_str(), fresh.generation), ("a", 1));
    }

    #[test]
    fn garbage_is_an_error_and_is_not_kept() {
        let mut t = Table::default();
        assert!(t.node_info("{not json").is_err());
        assert!(t.node_info(r#"{"name": 3}"#).is_err());
        assert!(t.is_empty());
    }

    #[test]
    fn records_no_one_holds_are_swept_as_the_table_grows() {
        let mut t = Table::default();
        let kept: Vec<Arc<NodeInfo>> = (0..10).map(|i| t.node_info(&json(&format!("kept{i}"), 1)).unwrap()).collect();
        for round in 0..50 {
            for i in 0..100 {
                // Parsed and dropped at once: a peer's old versions.
                t.node_info(&json(&format!("n{i}"), round)).unwrap();
            }
            assert!(t.len() <= 2 * (SWEEP_FLOOR + kept.len()) + 100, "round {round}: {} entries", t.len());
        }
        for (i, k) in kept.iter().enumerate() {
            let again = t.node_info(&json(&format!("kept{i}"), 1)).unwrap();
            assert!(Arc::ptr_eq(k, &again), "a held record survives every sweep");
        }
    }
}
