//! Which node holds each LoadBalancer address: a pure function of the
//! addresses and the nodes that may hold them, evaluated by every node on
//! its own, so that no node is elected to hand addresses out (MetalLB and
//! kube-vip elect a leader per address for this).
//!
//! An address goes to the eligible node with the highest rendezvous score
//! of (address, node name): placed like a replica, so a node's death moves
//! only its own addresses, and a node that comes back takes back only those
//! it scores highest on. A node is eligible when it is one placement uses
//! (alive, settled, schedulable) and not cordoned, its gossiped offer (`Offer`, the `lb`
//! key) names a pool that contains the address, and it can add addresses
//! (it has `CAP_NET_ADMIN` and the interface exists).
//!
//! Two nodes that see the same inputs name the same holder. While views
//! differ (a node's death is being detected) two may each think it is
//! theirs, or neither; the driver (`proxy::lb`) bounds the first case by
//! holding addresses only while its node has a majority, under a lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::membership::view::ClusterView;
use crate::model::node::NodeSpec;
use crate::model::pool::Pool;
use crate::model::types::ServiceSpec;
use crate::model::{Kind, Object};
use crate::state::Snapshot;

/// The gossip key under which a node offers to hold addresses.
pub const OFFER_KEY: &str = "lb";

/// What a node tells the cluster about the addresses it can hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Its pool, as configured (`load_balancer.pool`).
    pub pool: Vec<String>,
    pub interface: String,
    /// Why it cannot hold addresses (no `CAP_NET_ADMIN`, no such
    /// interface); `None` when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unable: Option<String>,
    /// The addresses it holds now (for status and for tests that look for
    /// two holders).
    #[serde(default)]
    pub held: BTreeSet<IpAddr>,
}

impl Offer {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    /// A peer's offer; a malformed one is no offer.
    pub fn decode(s: &str) -> Option<Offer> {
        serde_json::from_str(s).ok()
    }
}

/// A node that may hold addresses, as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub pool: Pool,
    /// Why it cannot hold addresses, if it cannot.
    pub unable: Option<String>,
}

/// Where an address stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    Held(String),
    /// No node may hold it, and why (for the Service's condition).
    Unheld(String),
}

/// A LoadBalancer Service's address: its `spec.loadBalancerIP` (given by
/// the user, or assigned from a pool when it was applied).
pub fn address_of(spec: &ServiceSpec) -> Option<IpAddr> {
    if spec.kind.as_deref() != Some("LoadBalancer") {
        return None;
    }
    spec.load_balancer_ip.as_deref()?.parse().ok()
}

/// Every LoadBalancer address in the desired state and the Service that
/// has it (`ns/name`). Two Services given one address (applied at once on
/// two nodes) do not share it: the older keeps it, as with node ports.
pub fn addresses(snap: &Snapshot) -> BTreeMap<IpAddr, String> {
    let mut all: Vec<(String, String, IpAddr)> = snap
        .of_kind(Kind::Service)
        .filter_map(|o| {
            let Object::Service(s) = &o.object else { return None };
            let ip = address_of(&s.spec)?;
            let id = format!("{}/{}", s.metadata.namespace.as_deref().unwrap_or_default(), s.metadata.name);
            Some((s.metadata.creation_timestamp.clone().unwrap_or_default(), id, ip))
        })
        .collect();
    all.sort();
    let mut out = BTreeMap::new();
    for (_, id, ip) in all {
        out.entry(ip).or_insert(id);
    }
    out
}

/// The nodes that may hold addresses: those placement uses (`schedulable`:
/// alive, settled), less the cordoned ones, so that `shoal cordon` or
/// `drain` moves a node's addresses off it as it moves its pods.
pub fn eligible(schedulable: &[NodeSpec], snap: &Snapshot) -> BTreeSet<String> {
    schedulable
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| !snap.maintenance.get(*n).is_some_and(|m| m.unschedulable))
        .map(str::to_string)
        .collect()
}

/// Each live node's offer. A node's own gossiped keys are not in its own
/// view, so its offer comes as `mine`.
fn offers<'a>(view: &'a ClusterView, mine: Option<&'a Offer>) -> impl Iterator<Item = (&'a str, Offer)> + 'a {
    view.nodes.values().filter(|n| n.state.alive()).filter_map(move |n| {
        let offer = if n.info.name == view.self_name { mine?.clone() } else { Offer::decode(n.extra.get(OFFER_KEY)?)? };
        Some((n.info.name.as_str(), offer))
    })
}

/// The candidates among `schedulable` nodes of `view`, from their offers
/// (this node's is `mine`).
pub fn candidates(view: &ClusterView, schedulable: &BTreeSet<String>, mine: Option<&Offer>) -> Vec<Candidate> {
    offers(view, mine)
        .filter(|(name, _)| schedulable.contains(*name))
        .filter_map(|(name, offer)| {
            let pool = Pool::parse(&offer.pool).ok()?;
            Some(Candidate { name: name.to_string(), pool, unable: offer.unable })
        })
        .collect()
}

/// The live nodes that say they hold each address now.
pub fn claimed(view: &ClusterView, mine: Option<&Offer>) -> BTreeMap<IpAddr, BTreeSet<String>> {
    let mut out: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for (name, o) in offers(view, mine) {
        for ip in o.held {
            out.entry(ip).or_default().insert(name.to_string());
        }
    }
    out
}

fn score(ip: IpAddr, node: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    match ip {
        IpAddr::V4(v) => h.update(&v.octets()),
        IpAddr::V6(v) => h.update(&v.octets()),
    };
    h.update(&[0]);
    h.update(node.as_bytes());
    super::mix(u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8])))
}

/// The holder of every address. Same inputs, in any order, same answer.
pub fn holders(addresses: &BTreeSet<IpAddr>, nodes: &[Candidate]) -> BTreeMap<IpAddr, Holding> {
    addresses
        .iter()
        .map(|&ip| {
            let in_pool: Vec<&Candidate> = nodes.iter().filter(|c| c.pool.contains(ip)).collect();
            let best = in_pool
                .iter()
                .filter(|c| c.unable.is_none())
                .max_by(|a, b| (score(ip, &a.name), &b.name).cmp(&(score(ip, &b.name), &a.name)));
            let h = match best {
                Some(c) => Holding::Held(c.name.clone()),
                None if in_pool.is_empty() => {
                    Holding::Unheld(format!("no live node has {ip} in its load_balancer.pool"))
                }
                None => {
                    let mut why: Vec<String> = in_pool
                        .iter()
                        .map(|c| format!("{}: {}", c.name, c.unable.as_deref().unwrap_or_default()))
                        .collect();
                    why.sort();
                    Holding::Unheld(format!("no node whose pool has {ip} can hold it ({})", why.join("; ")))
                }
            };
            (ip, h)
        })
        .collect()
}

#[cfg(test)]
mod tests;
