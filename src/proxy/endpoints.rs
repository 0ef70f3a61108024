//! Which pods back a Service: Ready pods whose labels match its selector,
//! reached at `host-ip:host-port`. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::membership::view::ClusterView;
use crate::model::status::PodStatus;
use crate::model::types::{IntOrString, ServicePort, ServiceSpec};

/// One backend of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `namespace/name` of the pod.
    pub pod: String,
    pub node: String,
    pub ip: String,
    pub port: u16,
}

/// The host port a pod listens on for `target` (a number or a port name).
pub fn resolve_target(st: &PodStatus, target: &IntOrString) -> Option<u16> {
    match target {
        IntOrString::Int(p) => {
            let p = u16::try_from(*p).ok()?;
            Some(st.ports.iter().find(|m| m.container_port == p).map(|m| m.host_port).unwrap_or(p))
        }
        IntOrString::Str(name) => st.ports.iter().find(|m| &m.name == name).map(|m| m.host_port),
    }
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Ready endpoints of one port of a service in `namespace`, sorted.
pub fn endpoints(
    namespace: &str,
    spec: &ServiceSpec,
    port: &ServicePort,
    desired: &crate::placement::desired::DesiredPods,
    view: &ClusterView,
) -> Vec<Endpoint> {
    let target = port.target_port.clone().unwrap_or(IntOrString::Int(port.port));
    let mut out = Vec::new();
    for n in view.nodes.values().filter(|n| n.state.alive()) {
        for (id, st) in n.pods.iter() {
            if st.namespace != namespace || !st.ready || st.terminating {
                continue;
            }
            let Some(d) = desired.get(id) else { continue };
            if !matches(&spec.selector, &d.labels) {
                continue;
            }
            if let Some(p) = resolve_target(st, &target) {
                out.push(Endpoint { pod: id.clone(), node: n.info.name.clone(), ip: st.host_ip.clone(), port: p });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Endpoints a connection may go to (indices into `eps`): not yet tried,
/// and on this node (`self_node`) when a `Local` traffic policy applies to
/// the client. Empty means the connection is refused, as Kubernetes drops
/// traffic for a `Local` policy with no endpoint on the node.
pub fn candidates(eps: &[Endpoint], tried: &[(String, u16)], local_only: bool, self_node: &str) -> Vec<usize> {
    (0..eps.len())
        .filter(|i| !tried.iter().any(|(ip, p)| *ip == eps[*i].ip && *p == eps[*i].port))
        .filter(|i| !local_only || eps[*i].node == self_node)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(node: &str, port: u16) -> Endpoint {
        Endpoint { pod: format!("default/p{port}"), node: node.into(), ip: format!("10.0.0.{}", node.len()), port }
    }

    #[test]
    fn local_policies_keep_this_nodes_endpoints_and_retries_skip_tried_ones() {
        let eps = vec![ep("n1", 1), ep("n2", 2), ep("n1", 3)];
        assert_eq!(candidates(&eps, &[], false, "n1"), vec![0, 1, 2]);
        assert_eq!(candidates(&eps, &[], true, "n1"), vec![0, 2]);
        assert_eq!(candidates(&eps, &[("10.0.0.2".into(), 1)], true, "n1"), vec![2]);
        assert!(candidates(&eps, &[], true, "n3").is_empty(), "no local endpoint: nothing");
    }
}
