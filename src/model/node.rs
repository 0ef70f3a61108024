//! What placement knows about a node: its capacity and constraints.
//!
//! The shared vocabulary between membership (which gossips it) and
//! placement (which uses it); pure data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::pods::{Resources, RuntimeKind};

/// What placement knows about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: NodeName,
    /// What pods may request in total.
    pub allocatable: Resources,
    /// Relative capacity (by default the node's CPU in millicores).
    pub weight: u64,
    /// Shared with the node's gossiped record: a cluster's node list is
    /// rebuilt whenever a node joins, leaves or turns schedulable, and at
    /// 1,000 nodes copying every label map each time cost more than placing.
    pub labels: Arc<BTreeMap<String, String>>,
    pub runtimes: Arc<BTreeSet<RuntimeKind>>,
    pub max_pods: u32,
    /// Cordoned: it keeps the pods pinned to it, and takes no other.
    pub unschedulable: bool,
}

/// A node's name in placement's lists: shared, so that copying a list
/// copies no name (the lists are patched whenever a node changes, and at
/// 1,000 nodes a copy of every name each time was most of a plan). Compares
/// and orders as the string it holds; two copies of one name compare
/// without reading it (a view's diff compares every key it passes).
#[derive(Clone, Default, Eq)]
pub struct NodeName(Arc<str>);

impl std::hash::Hash for NodeName {
    /// As the string (what `Borrow<str>` requires).
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (*self.0).hash(h)
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &NodeName) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Ord for NodeName {
    fn cmp(&self, other: &NodeName) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) { std::cmp::Ordering::Equal } else { self.0.cmp(&other.0) }
    }
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NodeName, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = NodeName;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a node name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeName, E> {
                Ok(NodeName::from(v))
            }
        }
        d.deserialize_str(Name)
    }
}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &NodeName) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for NodeName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeName {
    fn from(s: &str) -> NodeName {
        NodeName(s.into())
    }
}

impl From<String> for NodeName {
    fn from(s: String) -> NodeName {
        NodeName(s.into())
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.as_str().to_string()
    }
}

/// `NodeName == "a"` and `"a" == NodeName`, for `str`, `&str` and `String`.
macro_rules! eq_str {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for NodeName {
            fn eq(&self, other: &$t) -> bool {
                *self.0 == **other
            }
        }
        impl PartialEq<NodeName> for $t {
            fn eq(&self, other: &NodeName) -> bool {
                **self == *other.0
            }
        }
    )*};
}
eq_str!(&str, String);

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<NodeName> for str {
    fn eq(&self, other: &NodeName) -> bool {
        *self == *other.0
    }
}

/// Maintenance of a node, kept in the desired state so that every node
/// agrees: cordoned (`unschedulable`), it keeps what runs there and takes
/// nothing new; draining, its replicas move away a few at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMaintenance {
    pub unschedulable: bool,
    #[serde(default)]
    pub draining: bool,
}

/// Maintenance records by node name; a persistent map so that snapshots of
/// the desired state share it.
pub type Maintenance = imbl::OrdMap<String, NodeMaintenance>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_and_order_as_their_strings_shared_or_not() {
        let words = ["", "a", "ab", "b", "n10", "n2", "n2", "é", "node-1"];
        for x in words {
            for y in words {
                let (a, b) = (NodeName::from(x), NodeName::from(y));
                assert_eq!(a == b, x == y, "{x:?} == {y:?}");
                assert_eq!(a.cmp(&b), x.cmp(y), "{x:?} cmp {y:?}");
                assert_eq!(a.partial_cmp(&b), Some(x.cmp(y)));
            }
            let a = NodeName::from(x);
            let shared = a.clone();
            assert!(a == shared && a.cmp(&shared).is_eq(), "a copy of {x:?} is itself");
            let owned = x.to_string();
            assert_eq!(a, *x);
            assert_eq!(a, owned);
            assert_eq!(owned, a);
        }
    }
}
