//! LoadBalancer Services in the API: an address from the nodes' pools at
//! apply time, and `status.loadBalancer` with an `AddressHeld` condition.
//!
//! A Service of `type: LoadBalancer` without `spec.loadBalancerIP` gets the
//! first free address of the pools the live nodes offer (in node-name
//! order) when first applied, and keeps it on later applies, as node ports
//! are kept. A given `loadBalancerIP` must be in a live node's pool and not
//! another Service's. With no pool anywhere the Service is accepted and
//! says so in its condition. Two nodes that assign one address to two
//! Services at the same moment both succeed; the older Service keeps the
//! address (`placement::addresses::addresses`) and the other's condition
//! says so.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{Value, json};

use super::error::ApiError;
use crate::membership::view::ClusterView;
use crate::model::parse::{Issue, Parsed};
use crate::model::pool::Pool;
use crate::model::{Kind, Object, ObjectKey};
use crate::placement::addresses::{self, Holding, Offer};
use crate::placement::plan::PlanView;
use crate::state::Snapshot;

fn svc_id(k: &ObjectKey) -> String {
    format!("{}/{}", k.namespace, k.name)
}

/// The pools the live nodes offer, in node-name order (this node's is
/// `mine`), without repeats.
pub fn pools(view: &ClusterView, mine: Option<&Offer>) -> Pool {
    let all: BTreeSet<String> = view.nodes.keys().map(|n| n.to_string()).collect();
    let mut out = Pool::default();
    for c in addresses::candidates(view, &all, mine) {
        for r in c.pool.0 {
            if !out.0.contains(&r) {
                out.0.push(r);
            }
        }
    }
    out
}

fn refuse(parsed: &Parsed, msg: String) -> ApiError {
    let k = parsed.object.key();
    let issue = Issue {
        file: parsed.file.clone(),
        document: parsed.document,
        field: "spec.loadBalancerIP".into(),
        line: None,
        column: None,
        message: msg.clone(),
    };
    ApiError::invalid(format!("{k}: spec.loadBalancerIP: {msg}"), &[issue])
}

/// Fills in LoadBalancer addresses and refuses taken or foreign ones.
pub fn assign(snap: &Snapshot, objects: &mut [Parsed], pool: &Pool) -> Result<(), ApiError> {
    let applied: BTreeSet<ObjectKey> = objects.iter().map(|p| p.object.key()).collect();
    let mut used: BTreeMap<IpAddr, String> = BTreeMap::new();
    for o in snap.of_kind(Kind::Service).filter(|o| !applied.contains(&o.object.key())) {
        if let Object::Service(s) = &o.object
            && let Some(ip) = addresses::address_of(&s.spec)
        {
            used.insert(ip, svc_id(&o.object.key()));
        }
    }
    // Given addresses first, so that assigned ones never take them.
    for parsed in objects.iter() {
        let Object::Service(s) = &parsed.object else { continue };
        let Some(ip) = addresses::address_of(&s.spec) else { continue };
        let id = svc_id(&parsed.object.key());
        if let Some(other) = used.get(&ip).filter(|o| **o != id) {
            return Err(refuse(parsed, format!("{ip} is already the address of service {other}")));
        }
        let previous = match snap.get(&parsed.object.key()).map(|o| &o.object) {
            Some(Object::Service(old)) => addresses::address_of(&old.spec),
            _ => None,
        };
        if !pool.contains(ip) && previous != Some(ip) {
            let pools = if pool.is_empty() { "no live node has one".to_string() } else { format!("pools: {pool}") };
            return Err(refuse(
                parsed,
                format!(
                    "{ip} is in no node's load_balancer.pool ({pools}); give an address from a pool, or none to get one"
                ),
            ));
        }
        used.insert(ip, id);
    }
    for parsed in objects.iter_mut() {
        let key = parsed.object.key();
        let previous = match snap.get(&key).map(|o| &o.object) {
            Some(Object::Service(old)) => addresses::address_of(&old.spec),
            _ => None,
        };
        let Object::Service(s) = &mut parsed.object else { continue };
        if s.spec.kind.as_deref() != Some("LoadBalancer") || s.spec.load_balancer_ip.is_some() {
            continue;
        }
        let id = svc_id(&key);
        let taken: BTreeSet<IpAddr> = used.iter().filter(|(_, o)| **o != id).map(|(ip, _)| *ip).collect();
        let ip = match previous.filter(|ip| !taken.contains(ip)) {
            Some(ip) => ip,
            None if pool.is_empty() => continue,
            None => match pool.first_free(&taken) {
                Some(ip) => ip,
                None => return Err(refuse(parsed, format!("no free address left in the pools ({pool})"))),
            },
        };
        used.insert(ip, id);
        if let Object::Service(s) = &mut parsed.object {
            s.spec.load_balancer_ip = Some(ip.to_string());
        }
    }
    Ok(())
}

fn condition(ok: bool, reason: &str, message: String) -> Value {
    json!({"type": "AddressHeld", "status": if ok { "True" } else { "False" }, "reason": reason, "message": message})
}

/// `status.loadBalancer` and the `AddressHeld` condition of a
/// LoadBalancer Service `v` (its JSON), as this node sees the cluster.
pub fn decorate(v: &mut Value, snap: &Snapshot, plan: &PlanView, view: &ClusterView, mine: Option<&Offer>) {
    if v.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer") {
        return;
    }
    let ns = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let id = format!("{ns}/{}", v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""));
    let ip = v.pointer("/spec/loadBalancerIP").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
    let Some(ip) = ip else {
        v["status"]["loadBalancer"] = json!({});
        v["status"]["conditions"] = json!([condition(
            false,
            "NoAddress",
            "no node offers a load_balancer.pool: set one in the nodes' config, then apply the service again".into()
        )]);
        return;
    };
    let owner = addresses::addresses(snap).get(&ip).cloned();
    if owner.as_ref().is_some_and(|o| *o != id) {
        let o = owner.unwrap_or_default();
        v["status"]["loadBalancer"] = json!({});
        v["status"]["conditions"] = json!([condition(
            false,
            "AddressConflict",
            format!("{ip} is also service {o}'s, which is older and keeps it")
        )]);
        return;
    }
    v["status"]["loadBalancer"] = json!({"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]});
    let cands = addresses::candidates(view, &addresses::eligible(&plan.plan.nodes, snap), mine);
    let holding = addresses::holders(&[ip].into(), &cands).remove(&ip);
    let claims = addresses::claimed(view, mine).remove(&ip).unwrap_or_default();
    let c = match holding {
        Some(Holding::Held(n)) if claims.len() > 1 => {
            let all: Vec<&str> = claims.iter().map(String::as_str).collect();
            condition(true, "Moving", format!("{ip} moves to node {n}; held now by {}", all.join(", ")))
        }
        Some(Holding::Held(n)) if claims.contains(&n) => condition(true, "Held", format!("{ip} is held by node {n}")),
        Some(Holding::Held(n)) => match claims.first() {
            Some(old) => condition(true, "Moving", format!("{ip} moves from node {old} to node {n}")),
            None => condition(false, "Taking", format!("node {n} is taking {ip}")),
        },
        Some(Holding::Unheld(why)) => condition(false, "NoHolder", why),
        None => condition(false, "NoHolder", format!("no node holds {ip}")),
    };
    v["status"]["conditions"] = json!([c]);
}

#[cfg(test)]
mod tests;
