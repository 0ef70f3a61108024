//! The desired pods of a plan: one shared list, in placement's order
//! (namespace, then name), and an index by pod id for the agent, the proxy
//! and the API, which look pods up by id.
//!
//! A plan used to hold a second copy of every pod in a map by id. During a
//! rollout every node replans up to ten times a second, and at 100 nodes
//! copying 300 pods into that map and freeing the last plan's copy was a
//! tenth of a simulated rollout; the index costs one id per pod.

use std::collections::BTreeMap;
use std::ops::Index;
use std::sync::Arc;

use crate::model::pods::DesiredPod;

/// Every desired pod of a plan, by id.
#[derive(Debug, Clone, Default)]
pub struct DesiredPods {
    pods: Arc<Vec<DesiredPod>>,
    /// Where each id is in `pods` (the last one, for an id given twice).
    by_id: Arc<BTreeMap<String, u32>>,
}

impl DesiredPods {
    /// `pods`, shared, with their index.
    pub fn new(pods: Arc<Vec<DesiredPod>>) -> DesiredPods {
        let by_id = pods.iter().enumerate().map(|(i, d)| (d.id(), i as u32)).collect();
        DesiredPods { pods, by_id: Arc::new(by_id) }
    }

    /// The pods in the order they were given (placement's).
    pub fn pods(&self) -> &Arc<Vec<DesiredPod>> {
        &self.pods
    }

    pub fn get(&self, id: &str) -> Option<&DesiredPod> {
        self.by_id.get(id).map(|i| &self.pods[*i as usize])
    }

    pub fn get_key_value(&self, id: &str) -> Option<(&String, &DesiredPod)> {
        self.by_id.get_key_value(id).map(|(k, i)| (k, &self.pods[*i as usize]))
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// How many distinct ids.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The pods by id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &DesiredPod)> {
        self.by_id.iter().map(|(k, i)| (k, &self.pods[*i as usize]))
    }

    /// The ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_id.keys()
    }

    /// The pods, in id order.
    pub fn values(&self) -> impl Iterator<Item = &DesiredPod> {
        self.iter().map(|(_, d)| d)
    }

    /// These pods and `more` (a pod whose id is here already replaces it).
    pub fn with(&self, more: impl IntoIterator<Item = DesiredPod>) -> DesiredPods {
        let mut pods = (*self.pods).clone();
        pods.extend(more);
        DesiredPods::new(Arc::new(pods))
    }
}

impl FromIterator<DesiredPod> for DesiredPods {
    fn from_iter<I: IntoIterator<Item = DesiredPod>>(iter: I) -> DesiredPods {
        DesiredPods::new(Arc::new(iter.into_iter().collect()))
    }
}

impl<K: std::borrow::Borrow<str> + ?Sized> Index<&K> for DesiredPods {
    type Output = DesiredPod;

    fn index(&self, id: &K) -> &DesiredPod {
        let id = id.borrow();
        match self.get(id) {
            Some(d) => d,
            None => panic!("no desired pod {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, hash: &str) -> DesiredPod {
        crate::model::pods::test_pod(ns, name, hash, false)
    }

    #[test]
    fn looks_pods_up_by_id_in_id_order_whatever_the_list_order() {
        // (namespace, name) order, as placement sorts: "a" before "a-b",
        // while the id "a-b/x" sorts before "a/x".
        let d: DesiredPods = [pod("a", "x", "1"), pod("a-b", "x", "2"), pod("b", "y", "3")].into_iter().collect();
        assert_eq!(d.keys().cloned().collect::<Vec<_>>(), ["a-b/x", "a/x", "b/y"]);
        assert_eq!(d.values().map(|p| p.template_hash.as_str()).collect::<Vec<_>>(), ["2", "1", "3"]);
        assert_eq!(d.pods().iter().map(|p| p.template_hash.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
        assert_eq!(d.get("a/x").map(|p| p.template_hash.as_str()), Some("1"));
        assert_eq!(d["b/y"].template_hash, "3");
        assert!(d.contains_key("a-b/x") && !d.contains_key("a/y") && d.get("c/x").is_none());
        assert_eq!((d.len(), d.is_empty()), (3, false));
        let more = d.with([pod("a", "x", "4"), pod("c", "z", "5")]);
        assert_eq!(more.len(), 4);
        assert_eq!(more["a/x"].template_hash, "4", "a pod added again replaces the one held");
        assert_eq!(d["a/x"].template_hash, "1", "the original is unchanged");
        assert!(DesiredPods::default().is_empty());
    }
}
