//! A node's own settle decision after it was cut off from the majority.
//!
//! Every node must agree on which nodes placement may use, or two nodes
//! both think they own a replica. "Has this node been flapping?" judged by
//! each observer from what it saw is not such a fact: a node that was
//! paused or isolated sees *everyone else* die and come back, and would
//! damp the whole cluster while the cluster damps it (netsim's
//! flapping-node scenario found exactly that). So the node judges itself,
//! from the one thing it can observe: losing and regaining its majority. It
//! publishes `settling` in its record; every node, itself included, reads
//! the same flag.
//!
//! While a node lacks a majority nobody should wait for it (the minority
//! side keeps running every replica it can): placement ignores `settling`
//! in a view without quorum.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::view::{ClusterView, NodeInfo};

/// Isolations remembered for damping.
pub const WINDOW_SECS: u64 = 600;

/// How long a node settles: `base`, doubled for each recent isolation or
/// restart before this one, at most 2 minutes.
pub fn settle_for(base_secs: u64, recent: u32) -> u64 {
    base_secs.saturating_mul(1u64 << recent.min(6)).min(120)
}

/// The decision, fed with the node's quorum over time. Pure.
#[derive(Debug, Clone, Default)]
pub struct Settle {
    base_secs: u64,
    had_quorum: bool,
    isolated: bool,
    until: Option<u64>,
    /// Unix seconds of recent losses of the majority.
    isolations: Vec<u64>,
}

impl Settle {
    pub fn new(base_secs: u64) -> Settle {
        Settle { base_secs, ..Default::default() }
    }

    /// Whether the node is settling, given whether it sees a majority now.
    pub fn observe(&mut self, quorum: bool, now_unix: u64) -> bool {
        self.isolations.retain(|t| now_unix.saturating_sub(*t) < WINDOW_SECS);
        if !quorum {
            // A node that never had a majority (still joining) was not cut off.
            if self.had_quorum && !self.isolated {
                self.isolated = true;
                self.until = None;
                self.isolations.push(now_unix);
            }
            return self.isolated;
        }
        self.had_quorum = true;
        if self.isolated {
            self.isolated = false;
            let before = self.isolations.len().saturating_sub(1) as u32;
            self.until = Some(now_unix + settle_for(self.base_secs, before));
        }
        match self.until {
            Some(t) if now_unix < t => true,
            _ => {
                self.until = None;
                false
            }
        }
    }
}

/// Keeps `info.settling` up to date from the view's quorum.
pub async fn run(
    mut view: watch::Receiver<Arc<ClusterView>>,
    info: watch::Sender<NodeInfo>,
    base: Duration,
    clock: fn() -> u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut s = Settle::new(base.as_secs());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = view.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let quorum = view.borrow_and_update().quorum;
        let settling = s.observe(quorum, clock());
        info.send_if_modified(|i| {
            let changed = i.settling != settling;
            i.settling = settling;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_after_regaining_the_majority_longer_when_it_flaps() {
        assert_eq!(settle_for(3, 0), 3);
        assert_eq!(settle_for(3, 2), 12);
        assert_eq!(settle_for(3, 30), 120);
        let mut s = Settle::new(3);
        assert!(!s.observe(false, 0), "joining without a majority yet is not an isolation");
        assert!(!s.observe(true, 1));
        assert!(s.observe(false, 10), "cut off: settling (the others will see it at the heal)");
        assert!(s.observe(true, 20), "back: settles for 3 s");
        assert!(s.observe(true, 22));
        assert!(!s.observe(true, 23));
        // A second isolation within the window doubles the wait.
        assert!(s.observe(false, 30));
        assert!(s.observe(true, 31));
        assert!(s.observe(true, 36));
        assert!(!s.observe(true, 37));
        // Long forgotten isolations do not count.
        assert!(s.observe(false, 2000));
        assert!(s.observe(true, 2001));
        assert!(!s.observe(true, 2004));
    }
}
