//! Service specifics of the API: node-port assignment at apply time and the
//! current endpoints shown with a service.
//!
//! A service port without `nodePort` gets the lowest free port of the node
//! port range when first applied (and keeps it on later applies), as in
//! Kubernetes. An explicit `nodePort` used by another service is refused
//! with the field named. Node ports are per protocol: a service's TCP and
//! UDP ports of the same number (DNS on 53) share one node port; an
//! automatic one is otherwise free for both protocols.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::ApiError;
use super::server::Ctx;
use crate::membership::view::ClusterView;
use crate::model::parse::{Issue, Parsed};
use crate::model::types::{Protocol, ServiceSpec};
use crate::model::{Kind, Object, ObjectKey};
use crate::placement::plan::PlanView;
use crate::proxy::endpoints::endpoints;
use crate::state::Snapshot;

fn svc_id(k: &ObjectKey) -> String {
    format!("{}/{}", k.namespace, k.name)
}

/// Fills in missing node ports and refuses conflicting ones.
pub fn assign_node_ports(snap: &Snapshot, objects: &mut [Parsed], range: (u16, u16)) -> Result<(), ApiError> {
    // Ports held by stored services not being re-applied now.
    let applied: std::collections::BTreeSet<ObjectKey> = objects.iter().map(|p| p.object.key()).collect();
    let mut used: BTreeMap<(u16, Protocol), String> = BTreeMap::new();
    for o in snap.of_kind(Kind::Service) {
        let k = o.object.key();
        if applied.contains(&k) {
            continue;
        }
        if let Object::Service(s) = &o.object {
            for p in &s.spec.ports {
                if let Some(np) = p.node_port {
                    used.insert((np as u16, p.proto()), svc_id(&k));
                }
            }
        }
    }
    // Explicit ports first, so automatic ones never take them.
    for parsed in objects.iter() {
        let k = parsed.object.key();
        let Object::Service(s) = &parsed.object else {
            continue;
        };
        for (i, p) in s.spec.ports.iter().enumerate() {
            let Some(np) = p.node_port else { continue };
            if let Some(other) = used.get(&(np as u16, p.proto())).filter(|o| **o != svc_id(&k)) {
                let field = format!("spec.ports[{i}].nodePort");
                let msg = format!("node port {np}/{} is already used by service {other}", p.proto());
                let issue = Issue {
                    file: parsed.file.clone(),
                    document: parsed.document,
                    field,
                    line: None,
                    column: None,
                    message: msg.clone(),
                };
                return Err(ApiError::invalid(format!("{k}: {msg}"), &[issue]));
            }
            used.insert((np as u16, p.proto()), svc_id(&k));
        }
    }
    for parsed in objects.iter_mut() {
        let k = parsed.object.key();
        let previous: BTreeMap<(i64, Protocol), i64> = match snap.get(&k).map(|o| &o.object) {
            Some(Object::Service(old)) => {
                old.spec.ports.iter().filter_map(|p| p.node_port.map(|np| ((p.port, p.proto()), np))).collect()
            }
            _ => BTreeMap::new(),
        };
        let Object::Service(s) = &mut parsed.object else {
            continue;
        };
        let id = svc_id(&k);
        for i in 0..s.spec.ports.len() {
            if s.spec.ports[i].node_port.is_some() {
                continue;
            }
            let (port, proto) = (s.spec.ports[i].port, s.spec.ports[i].proto());
            let free_for = |np: u16, proto: Protocol| used.get(&(np, proto)).is_none_or(|o| *o == id);
            // The same port number of this service in the other protocol.
            let sibling = s.spec.ports.iter().find(|q| q.port == port && q.proto() != proto).and_then(|q| q.node_port);
            let keep =
                previous.get(&(port, proto)).copied().or(sibling).map(|np| np as u16).filter(|np| free_for(*np, proto));
            let np = match keep {
                Some(np) => np,
                None => (range.0..=range.1)
                    .find(|c| !used.contains_key(&(*c, Protocol::Tcp)) && !used.contains_key(&(*c, Protocol::Udp)))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("{k}: no free node port left in {}-{}", range.0, range.1),
                            &[Issue {
                                file: parsed.file.clone(),
                                document: parsed.document,
                                field: "spec.ports".into(),
                                line: None,
                                column: None,
                                message: "no free node port".into(),
                            }],
                        )
                    })?,
            };
            used.insert((np, proto), id.clone());
            s.spec.ports[i].node_port = Some(i64::from(np));
        }
    }
    Ok(())
}

fn endpoints_json(ns: &str, spec: &ServiceSpec, plan: &PlanView, view: &ClusterView) -> Vec<Value> {
    spec.ports
        .iter()
        .map(|p| {
            let eps = endpoints(ns, spec, p, &plan.plan.desired, view);
            json!({
                "name": p.name.clone().unwrap_or_default(),
                "port": p.port,
                "protocol": p.proto().as_str(),
                "nodePort": p.node_port,
                "endpoints": eps,
            })
        })
        .collect()
}

/// Fills in node ports and LoadBalancer addresses of the Services being
/// applied (`addresses`), refusing taken ones.
pub fn assign(ctx: &super::server::ApiCtx, snap: &Snapshot, objects: &mut [Parsed]) -> Result<(), ApiError> {
    assign_node_ports(snap, objects, ctx.validation.node_port_range)?;
    let offer = ctx.proxy.as_ref().and_then(|p| p.offer.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let pool = super::addresses::pools(&ctx.view.borrow(), offer.as_ref());
    super::addresses::assign(snap, objects, &pool)
}

/// Adds `status.ports[]` with each port's current endpoints, and a
/// LoadBalancer's `status.loadBalancer` (`addresses`).
pub fn decorate(
    v: &mut Value,
    snap: &Snapshot,
    plan: &PlanView,
    view: &ClusterView,
    proxy: Option<&crate::proxy::server::ProxyStatus>,
) {
    let ns = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(spec) = v.get("spec").cloned().and_then(|s| serde_json::from_value::<ServiceSpec>(s).ok()) else {
        return;
    };
    v["status"] = json!({"ports": endpoints_json(&ns, &spec, plan, view)});
    if let Some(c) = proxy.map(|p| p.conflicts_of(&format!("{ns}/{name}"))).filter(|c| !c.is_empty()) {
        v["status"]["conflicts"] = json!(c);
    }
    let offer = proxy.and_then(|p| p.offer.lock().unwrap_or_else(|e| e.into_inner()).clone());
    super::addresses::decorate(v, snap, plan, view, offer.as_ref());
}

/// `GET /api/v1/namespaces/{ns}/endpoints/{name}`, in Kubernetes' shape.
pub async fn get_endpoints(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey { kind: Kind::Service, namespace: ns.clone(), name: name.clone() };
    let snap = ctx.db.snapshot();
    let Some(Object::Service(s)) = snap.get(&key).map(|o| &o.object) else {
        return Err(ApiError::not_found(&key));
    };
    let plan = ctx.plan.borrow().clone();
    let view = ctx.view.borrow().clone();
    let subsets: Vec<Value> = s
        .spec
        .ports
        .iter()
        .map(|p| {
            let eps = endpoints(&ns, &s.spec, p, &plan.plan.desired, &view);
            json!({
                "addresses": eps.iter().map(|e| json!({"ip": e.ip, "nodeName": e.node, "targetRef": {"kind": "Pod", "name": e.pod}, "port": e.port})).collect::<Vec<_>>(),
                "ports": [{"name": p.name.clone().unwrap_or_default(), "port": p.port, "protocol": p.proto().as_str()}],
            })
        })
        .collect();
    Ok(Json(
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}, "subsets": subsets}),
    ))
}
