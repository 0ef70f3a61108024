//! Which pods back a Service: Ready pods whose labels match its selector,
//! reached at `host-ip:host-port`. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::membership::view::ClusterView;
use crate::model::pods::DesiredPod;
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
    desired: &BTreeMap<String, DesiredPod>,
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
