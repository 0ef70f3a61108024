//! The membership service a node runs, chitchat or SWIM
//! (`membership.engine`), behind one type: both give the same
//! `ClusterView`, the same majority signal for fencing and the same
//! handles, so nothing above membership knows which one runs.

use std::net::SocketAddr;
use std::sync::Arc;

use chitchat::transport::Transport;
use tokio::sync::watch;
use tokio::time::Instant;

use super::service::{ChitchatMembership, GossipConfig, Handles, MembershipError};
use super::swim::link::Link;
use super::swim::service::SwimMembership;
use super::view::{ClusterView, NodeInfo};
use super::watch::Liveness;
use crate::events::EventLog;
use crate::model::status::Statuses;

/// `membership.engine`: how nodes learn who is alive. Every node of a
/// cluster must run the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// chitchat's scuttlebutt gossip: every node's digest to a few peers
    /// each round (cost grows with the cluster; homelab sizes).
    #[default]
    Chitchat,
    /// SWIM (foca): one probe a period, changes piggybacked, records
    /// pulled on demand (cost per node independent of the cluster's size).
    Swim,
}

/// How the engine reaches its peers.
pub enum Wire<'a> {
    Chitchat(&'a dyn Transport),
    Swim(Arc<dyn Link>),
}

pub enum Membership {
    Chitchat(ChitchatMembership),
    Swim(SwimMembership),
}

impl Membership {
    pub async fn start(
        cfg: GossipConfig,
        info: NodeInfo,
        advertise: SocketAddr,
        net: (Wire<'_>, Arc<dyn Liveness>),
        statuses: watch::Receiver<Statuses>,
        events: Arc<EventLog>,
    ) -> Result<Membership, MembershipError> {
        Ok(match net {
            (Wire::Chitchat(t), live) => Membership::Chitchat(
                ChitchatMembership::start(cfg, info, advertise, (t, live), statuses, events).await?,
            ),
            (Wire::Swim(l), live) => {
                Membership::Swim(SwimMembership::start(cfg, info, advertise, (l, live), statuses, events).await?)
            }
        })
    }

    fn handles(&self) -> &Handles {
        match self {
            Membership::Chitchat(m) => &m.handles,
            Membership::Swim(m) => &m.handles,
        }
    }

    pub fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.handles().view.clone()
    }

    /// Until when this node may renew fenced pods' leases (`None`: not now).
    pub fn majority(&self) -> watch::Receiver<Option<Instant>> {
        self.handles().majority.clone()
    }

    /// A handle to update this node's record from another task.
    pub fn info_sender(&self) -> watch::Sender<NodeInfo> {
        self.handles().info.clone()
    }

    /// A function that sets one of this node's extra keys from another task.
    pub fn key_setter(&self) -> impl Fn(&str, String) + Send + 'static {
        let tx = self.handles().extra.clone();
        move |key, value| {
            tx.send_if_modified(|m| m.insert(key.to_string(), value.clone()).as_ref() != Some(&value));
        }
    }

    /// A function that contacts an address now (peers found by discovery).
    pub fn contact_handle(&self) -> Box<dyn Fn(SocketAddr) + Send + 'static> {
        match self {
            Membership::Chitchat(m) => Box::new(m.contact_handle()),
            Membership::Swim(m) => {
                let tx = m.contact_sender();
                Box::new(move |addr| {
                    let _ = tx.send(addr);
                })
            }
        }
    }

    /// Announces a graceful leave: peers see Left within a round trip.
    pub async fn leave(&self) {
        match self {
            Membership::Chitchat(m) => m.leave().await,
            Membership::Swim(m) => m.leave().await,
        }
    }

    /// Stops at once, as a crash would (netsim): no leave, no goodbye.
    pub fn abort(&self) {
        match self {
            Membership::Chitchat(m) => m.abort(),
            Membership::Swim(m) => m.abort(),
        }
    }

    pub async fn shutdown(self) {
        match self {
            Membership::Chitchat(m) => m.shutdown().await,
            Membership::Swim(m) => m.shutdown().await,
        }
    }
}
