//! Kubernetes-style service environment variables for pods:
//! `<NAME>_SERVICE_HOST` (this node's IP: its proxy serves every service),
//! `<NAME>_SERVICE_PORT` (the first port's node port) and
//! `<NAME>_SERVICE_PORT_<PORT>` (each named port). Pure.

use crate::model::{Kind, Object};
use crate::state::Snapshot;

fn upper(s: &str) -> String {
    s.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// Variables for the pods of `namespace` on a node with IP `node_ip`.
pub fn service_env(snap: &Snapshot, namespace: &str, node_ip: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in snap.of_kind(Kind::Service) {
        let Object::Service(s) = &o.object else { continue };
        if s.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let name = upper(&s.metadata.name);
        let ports: Vec<(Option<String>, i64)> =
            s.spec.ports.iter().filter_map(|p| p.node_port.map(|np| (p.name.clone(), np))).collect();
        let Some((_, first)) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), node_ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.to_string()));
        for (pn, np) in &ports {
            if let Some(pn) = pn {
                out.push((format!("{name}_SERVICE_PORT_{}", upper(pn)), np.to_string()));
            }
        }
    }
    out
}
