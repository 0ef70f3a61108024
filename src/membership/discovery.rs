//! Optional LAN discovery (`--discover mdns`): advertise this node and find
//! nodes of the same cluster with mDNS (mdns-sd), feeding their gossip
//! addresses to the seed list.
//!
//! A node advertises `_shoal._udp.local.` with TXT `ca=<first 16 hex of the
//! cluster CA hash>` and `gossip=<its gossip address>`. Matching on the CA
//! hash works before a node has joined (its token carries the hash) and never
//! mixes two clusters on one LAN. Nothing learnt here is trusted: a found
//! address is only dialled, and mutual TLS decides.

use std::net::SocketAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

pub const SERVICE: &str = "_shoal._udp.local.";

/// The TXT value that identifies a cluster: 16 hex of its CA hash.
pub fn cluster_tag(ca_hash: &str) -> String {
    ca_hash.chars().take(16).collect()
}

/// A running advertiser and browser; dropping it stops both.
pub struct Discovery {
    daemon: ServiceDaemon,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

/// Gossip address a resolved service advertises, if it is of our cluster.
fn matching(tag: &str, props: &mdns_sd::TxtProperties) -> Option<SocketAddr> {
    if props.get("ca").map(|p| p.val_str()) != Some(tag) {
        return None;
    }
    props.get("gossip").and_then(|p| p.val_str().parse().ok())
}

/// Starts browsing (and, with `advertise`, advertising). Found peers of the
/// cluster `tag` arrive on the returned channel.
pub fn start(
    tag: &str,
    advertise: Option<(&str, SocketAddr)>,
) -> Result<(Discovery, mpsc::Receiver<SocketAddr>), String> {
    let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
    if let Some((name, addr)) = advertise {
        let host = format!("{name}.local.");
        let props = [("ca", tag.to_string()), ("gossip", addr.to_string())];
        let info = ServiceInfo::new(SERVICE, name, &host, addr.ip(), addr.port(), &props[..])
            .map_err(|e| format!("mDNS: {e}"))?;
        daemon.register(info).map_err(|e| format!("mDNS: {e}"))?;
    }
    let events = daemon.browse(SERVICE).map_err(|e| format!("mDNS: {e}"))?;
    let (tx, rx) = mpsc::channel(64);
    let tag = tag.to_string();
    let me = advertise.map(|(_, a)| a);
    tokio::spawn(async move {
        while let Ok(ev) = events.recv_async().await {
            if let ServiceEvent::ServiceResolved(svc) = ev
                && let Some(addr) = matching(&tag, &svc.txt_properties).filter(|a| Some(*a) != me)
            {
                tracing::debug!(peer = %addr, "found a node by mDNS");
                if tx.send(addr).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((Discovery { daemon }, rx))
}

/// Collects peers for up to `wait` (to find a node to join).
pub async fn find(tag: &str, wait: Duration) -> Vec<SocketAddr> {
    let Ok((_d, mut rx)) = start(tag, None) else { return Vec::new() };
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(a)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}
