//! Holding LoadBalancer addresses: the driver around
//! `placement::addresses`. Every node computes the holder of every address;
//! the node that finds itself the holder puts the address on its interface
//! (`net::vip`), announces it (a gratuitous ARP, or an unsolicited
//! neighbour advertisement for IPv6), and the proxy serves the Service's
//! ports on it (`server`). The others do nothing.
//!
//! **Fencing.** A node holds addresses only while it is in touch with a
//! majority of the cluster both ways (the same right that lets it renew
//! fenced pods' leases), and each address it holds is guarded by
//! `shoal lease-watchdog --address`, a process that outlives `shoal`:
//! the node renews its lease every `ttl / 4`; the watchdog takes the
//! address off when renewals stop for `ttl` (the node hangs) or at once
//! when its pipe closes (the node was killed, or released the address). So
//! a holder cut off from the majority stops answering for its addresses
//! once its right lapses (`dead_after` after it last heard from a
//! majority, as its peers declare it dead), plus at most `ttl` if it hangs,
//! while the majority gives them to a new holder when it declares the old
//! one Dead. The overlap is the difference of those two moments.
//!
//! A planned move (a cordon, a node back that scores higher) is break
//! before make: the new holder waits until the old one no longer says it
//! holds the address (`may_take`), so that two nodes answer for it only
//! during a partition.
//!
//! Each node gossips an `Offer` (its pool, its interface, whether it can
//! add addresses, what it holds now) under the `lb` key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::EventLog;
use crate::membership::view::ClusterView;
use crate::model::pool::Pool;
use crate::net::vip;
use crate::placement::addresses::{self, Holding, OFFER_KEY, Offer};
use crate::placement::plan::PlanView;
use crate::state::Snapshot;

/// After an address could not be added here, how long this node says it
/// cannot hold addresses (so that placement gives them to another) before
/// it tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The longest a new holder waits for a live old holder to let an address
/// go (a planned move: the old holder was cordoned, or a node came back and
/// scores higher). A dead or cut-off holder is not live and is not waited
/// for.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// How many gratuitous ARPs announce a takeover, one per lease beat, after
/// no other node says it holds the address: one lost broadcast must not
/// leave a neighbour's cache on the old holder, and neither must an old
/// holder that answered ARP a moment longer than the announcements lasted
/// (its neighbours' entries would then stay on it for their reachable time,
/// 15-45 s on Linux).
const ANNOUNCEMENTS: u32 = 3;

/// This node's settings for holding addresses.
#[derive(Debug, Clone)]
pub struct LbConfig {
    pub node: String,
    pub pool: Pool,
    /// The pool as configured (gossiped as written).
    pub pool_text: Vec<String>,
    pub interface: String,
    /// The lease each held address is guarded by (`agent.fence_lease`).
    pub ttl: Duration,
    /// How often the lease is renewed (`agent::lease::beat_interval`).
    pub beat: Duration,
}

/// Sets one of this node's gossiped keys.
pub type KeySetter = Box<dyn Fn(&str, String) + Send>;

/// What the holder watches.
pub struct LbInputs {
    pub state: watch::Receiver<Arc<Snapshot>>,
    pub plan: watch::Receiver<Arc<PlanView>>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Until when this node may hold what needs a majority.
    pub majority: watch::Receiver<Option<Instant>>,
    /// Sets this node's gossiped `lb` key.
    pub publish: KeySetter,
    /// The addresses held now, and the Service of each (for the proxy).
    pub held: watch::Sender<Arc<BTreeMap<IpAddr, String>>>,
    /// This node's offer, for the API (a node's own gossiped keys are not
    /// in its view).
    pub status: Arc<super::server::ProxyStatus>,
    pub events: Arc<EventLog>,
    pub shutdown: watch::Receiver<bool>,
}

/// One held address: its watchdog, and the pipe that renews its lease.
struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Announcements still to send, and when the last one went.
    announce: u32,
    announced_at: Option<Instant>,
}

/// The addresses this node should hold now: those placement gives it,
/// while it has a majority. Pure.
pub fn mine(
    snap: &Snapshot,
    plan: &PlanView,
    view: &ClusterView,
    offer: &Offer,
    may_hold: bool,
) -> BTreeMap<IpAddr, String> {
    if !may_hold {
        return BTreeMap::new();
    }
    let wanted = addresses::addresses(snap);
    let ips: BTreeSet<IpAddr> = wanted.keys().copied().collect();
    let cands = addresses::candidates(view, &addresses::eligible(&plan.plan.nodes, snap), Some(offer));
    addresses::holders(&ips, &cands)
        .into_iter()
        .filter(|(_, h)| matches!(h, Holding::Held(n) if *n == view.self_name))
        .filter_map(|(ip, _)| Some((ip, wanted.get(&ip)?.clone())))
        .collect()
}

/// Whether this node (`me`) may take an address that `claimants` (the live
/// nodes that say they hold it) still hold, having waited `waited`: only
/// once none of them does, or after `TAKEOVER_WAIT` (one whose view lags
/// must not keep the address unserved). Pure.
pub fn may_take(claimants: Option<&BTreeSet<String>>, me: &str, waited: Duration) -> bool {
    waited >= TAKEOVER_WAIT || claimants.is_none_or(|c| c.iter().all(|n| n == me))
}

async fn acquire(cfg: &LbConfig, ip: IpAddr) -> Result<Guard, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the shoal binary for the watchdog: {e}"))?;
    let dev = cfg.interface.clone();
    tokio::task::spawn_blocking(move || vip::add(&dev, ip))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let spawned = tokio::process::Command::new(exe)
        .args(["lease-watchdog", "--ttl-ms", &cfg.ttl.as_millis().to_string()])
        .args(["--address", &ip.to_string(), "--dev", &cfg.interface])
        .stdin(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(false)
        .spawn();
    match spawned {
        Ok(mut child) => {
            let stdin = child.stdin.take();
            Ok(Guard { child, stdin, announce: ANNOUNCEMENTS, announced_at: None })
        }
        Err(e) => {
            let _ = vip::del(&cfg.interface, ip);
            Err(format!("cannot start the address's watchdog: {e}"))
        }
    }
}

/// Closes the watchdog's pipe (it takes the address off) and waits for it.
async fn release(cfg: &LbConfig, ip: IpAddr, mut g: Guard) {
    drop(g.stdin.take());
    if tokio::time::timeout(Duration::from_secs(5), g.child.wait()).await.is_err() {
        let _ = g.child.start_kill();
        let dev = cfg.interface.clone();
        let _ = tokio::task::spawn_blocking(move || vip::del(&dev, ip)).await;
    }
}

/// Takes off the interface any address of this node's pool that no
/// watchdog guards: one a run of this node left when it and its watchdogs
/// were killed together (`kill -9` of the whole group). A holder would
/// otherwise keep answering for it after placement moved it elsewhere.
async fn sweep(cfg: &LbConfig) {
    let (dev, pool) = (cfg.interface.clone(), cfg.pool.clone());
    let swept = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for ip in vip::present(&dev).into_iter().filter(|ip| pool.contains(*ip) && !vip::guarded(*ip)) {
            out.push((ip, vip::del(&dev, ip)));
        }
        out
    })
    .await
    .unwrap_or_default();
    for (ip, r) in swept {
        match r {
            Ok(()) => {
                tracing::warn!(%ip, interface = %cfg.interface, "took off a LoadBalancer address no watchdog guarded (left by a killed run)")
            }
            Err(e) => tracing::warn!(%ip, error = %e, "cannot take off an unguarded LoadBalancer address"),
        }
    }
}

/// Runs until shutdown; releases every address on the way out.
pub async fn run(cfg: LbConfig, mut inputs: LbInputs) {
    let unable_at_start = vip::unable(&cfg.interface);
    if let Some(why) = &unable_at_start {
        tracing::warn!(interface = %cfg.interface, "this node cannot hold LoadBalancer addresses: {why}");
    }
    if unable_at_start.is_none() {
        sweep(&cfg).await;
    }
    let mut held: BTreeMap<IpAddr, Guard> = BTreeMap::new();
    let mut failed: Option<(Instant, String)> = None;
    // Addresses this node should take, waiting for their old holder to let go.
    let mut waiting: BTreeMap<IpAddr, Instant> = BTreeMap::new();
    let mut last_offer = String::new();
    let beat = cfg.beat;
    loop {
        let now = Instant::now();
        if failed.as_ref().is_some_and(|(at, _)| now.duration_since(*at) >= RETRY_AFTER) {
            failed = None;
        }
        let until = *inputs.majority.borrow_and_update();
        let may_hold = until.is_some_and(|u| now < u) && unable_at_start.is_none() && failed.is_none();
        let snap = inputs.state.borrow_and_update().clone();
        let plan = inputs.plan.borrow_and_update().clone();
        let view = inputs.view.borrow_and_update().clone();
        let offer = |held: &BTreeMap<IpAddr, Guard>, failed: &Option<(Instant, String)>| Offer {
            pool: cfg.pool_text.clone(),
            interface: cfg.interface.clone(),
            unable: unable_at_start.clone().or_else(|| failed.as_ref().map(|f| f.1.clone())),
            held: held.keys().copied().collect(),
        };
        let want = mine(&snap, &plan, &view, &offer(&held, &failed), may_hold);
        for ip in held.keys().filter(|ip| !want.contains_key(ip)).copied().collect::<Vec<_>>() {
            if let Some(g) = held.remove(&ip) {
                release(&cfg, ip, g).await;
                inputs.events.node(false, &cfg.node, "AddressReleased", format!("released {ip} ({})", cfg.interface));
            }
        }
        let claims = addresses::claimed(&view, None);
        waiting.retain(|ip, _| want.contains_key(ip) && !held.contains_key(ip));
        for (ip, svc) in &want {
            if held.contains_key(ip) {
                continue;
            }
            // Break before make: a live node that still says it holds the
            // address lets go as soon as it sees the same placement.
            let since = *waiting.entry(*ip).or_insert(now);
            if !may_take(claims.get(ip), &view.self_name, now.duration_since(since)) {
                continue;
            }
            waiting.remove(ip);
            match acquire(&cfg, *ip).await {
                Ok(g) => {
                    held.insert(*ip, g);
                    let msg = format!("holds {ip} on {} for service {svc}", cfg.interface);
                    inputs.events.node(false, &cfg.node, "AddressHeld", msg);
                }
                Err(e) => {
                    let msg = format!("cannot hold {ip} for service {svc}: {e}; another node will");
                    inputs.events.node(true, &cfg.node, "AddressFailed", msg);
                    failed = Some((now, e));
                    break;
                }
            }
        }
        // An address taken off behind this node's back (by hand, by another
        // program) is put back and announced again.
        if !held.is_empty() {
            let dev = cfg.interface.clone();
            let present = tokio::task::spawn_blocking(move || vip::present(&dev)).await.unwrap_or_default();
            for (ip, g) in held.iter_mut().filter(|(ip, _)| !present.contains(ip)) {
                let (dev, ip) = (cfg.interface.clone(), *ip);
                match tokio::task::spawn_blocking(move || vip::add(&dev, ip)).await {
                    Ok(Ok(())) => g.announce = ANNOUNCEMENTS,
                    _ => tracing::warn!(%ip, "a held LoadBalancer address is gone and cannot be put back"),
                }
            }
        }
        // Renew every lease, and announce new holdings.
        for (ip, g) in held.iter_mut() {
            if let Some(stdin) = g.stdin.as_mut()
                && (stdin.write_all(b".").await.is_err() || stdin.flush().await.is_err())
            {
                // The watchdog is gone: so is the address. Take it again next round.
                g.stdin = None;
            }
            // Another node still says it holds the address: announce again
            // once it has let go.
            if claims.get(ip).is_some_and(|c| c.iter().any(|n| *n != view.self_name)) {
                g.announce = ANNOUNCEMENTS;
            }
            if g.announce > 0 && g.announced_at.is_none_or(|t| now.duration_since(t) >= beat) {
                g.announce -= 1;
                g.announced_at = Some(now);
                let (dev, ip) = (cfg.interface.clone(), *ip);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || vip::announce(&dev, ip)).await {
                    tracing::warn!(%ip, error = %e, "cannot announce a held address (gratuitous ARP or neighbour advertisement)");
                }
            }
        }
        held.retain(|_, g| g.stdin.is_some());
        let now_offer = offer(&held, &failed);
        let encoded = now_offer.encode();
        if encoded != last_offer {
            (inputs.publish)(OFFER_KEY, encoded.clone());
            *inputs.status.offer.lock().unwrap_or_else(|p| p.into_inner()) = Some(now_offer);
            last_offer = encoded;
        }
        let serving: BTreeMap<IpAddr, String> =
            held.keys().filter_map(|ip| Some((*ip, want.get(ip)?.clone()))).collect();
        inputs.held.send_if_modified(|h| {
            let changed = **h != serving;
            if changed {
                *h = Arc::new(serving);
            }
            changed
        });
        let lapse = until.filter(|u| *u > now).unwrap_or(now + beat);
        tokio::select! {
            r = inputs.state.changed() => if r.is_err() { break },
            r = inputs.plan.changed() => if r.is_err() { break },
            r = inputs.view.changed() => if r.is_err() { break },
            r = inputs.majority.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(beat) => {}
            _ = tokio::time::sleep_until(lapse) => {}
            _ = inputs.shutdown.wait_for(|s| *s) => break,
        }
    }
    for (ip, g) in std::mem::take(&mut held) {
        release(&cfg, ip, g).await;
    }
    let gone =
        Offer { pool: cfg.pool_text.clone(), interface: cfg.interface.clone(), unable: None, held: BTreeSet::new() };
    (inputs.publish)(OFFER_KEY, gone.encode());
    *inputs.status.offer.lock().unwrap_or_else(|p| p.into_inner()) = Some(gone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_move_waits_for_the_old_holder_but_not_forever() {
        let old: BTreeSet<String> = ["a".to_string()].into();
        assert!(!may_take(Some(&old), "b", Duration::ZERO), "a still holds it");
        assert!(may_take(Some(&old), "b", TAKEOVER_WAIT), "a lagging view does not keep it unserved");
        assert!(may_take(None, "b", Duration::ZERO), "nobody holds it: at once");
        assert!(may_take(Some(&["b".to_string()].into()), "b", Duration::ZERO), "its own claim");
    }
}
