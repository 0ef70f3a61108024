//! What SWIM's loop last published, so that a round whose inputs did not
//! change costs nothing.
//!
//! The node's pod statuses arrive as a shared map (`Statuses`, an `Arc`)
//! replaced whole on every change, so they are compared by identity, not
//! by content (a walk of every pod each round). The `Arc` itself is kept:
//! compared by address alone, a newer map could be given the address of
//! one already freed and its change would go unseen (the node would not
//! publish its pods' new states).

use std::sync::Arc;

use crate::model::status::Statuses;

/// The last inputs: `K` compared by value, the statuses by identity.
#[derive(Debug)]
pub struct LastInputs<K>(Option<(K, Statuses)>);

impl<K> Default for LastInputs<K> {
    fn default() -> Self {
        LastInputs(None)
    }
}

impl<K: PartialEq> LastInputs<K> {
    /// Whether `key` and `pods` are the inputs last recorded.
    pub fn same(&self, key: &K, pods: &Statuses) -> bool {
        self.0.as_ref().is_some_and(|(k, p)| k == key && Arc::ptr_eq(p, pods))
    }

    /// Records new inputs; `true` if they differ from the last ones.
    pub fn update(&mut self, key: K, pods: &Statuses) -> bool {
        if self.same(&key, pods) {
            return false;
        }
        self.0 = Some((key, pods.clone()));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_same_map_is_unchanged_and_a_new_one_is_a_change() {
        let mut last = LastInputs::default();
        let a: Statuses = Arc::new(BTreeMap::new());
        assert!(last.update(1u8, &a), "the first inputs are news");
        assert!(!last.update(1, &a.clone()), "the same map again");
        assert!(last.update(2, &a), "the key changed");
        let equal: Statuses = Arc::new(BTreeMap::new());
        assert!(last.update(2, &equal), "another map: identity, not content, is compared");
    }

    /// The map a watch held is dropped when the next one replaces it: the
    /// allocator then tends to give the next map that very address. Each
    /// new map must still count as a change (kept by address alone, most
    /// of these rounds would have been taken for unchanged).
    #[test]
    fn a_new_map_at_a_freed_address_is_still_a_change() {
        let mut last = LastInputs::default();
        for round in 0..200 {
            let pods: Statuses = Arc::new(BTreeMap::new());
            assert!(last.update((), &pods), "round {round}: a new map was taken for the last one");
            assert!(!last.update((), &pods));
        }
    }
}
