//! A node's own settle decision: after it starts, and after it was cut off
//! from the majority.
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
//!
//! Restarts and isolations are one kind of disturbance with one formula: a
//! node settles `base`, doubled for every other disturbance in the last ten
//! minutes (a restart counts from the second start in that window), at most
//! two minutes. A node that just started takes no pods (`schedulable`
//! false) for its settle time; one back from an isolation publishes
//! `settling` for its settle time.
#![deny(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::view::{ClusterView, NodeInfo, NodeState};

/// Disturbances (starts, isolations) remembered for damping.
pub const WINDOW_SECS: u64 = 600;

/// Longest settle time.
pub const MAX_SETTLE: Duration = Duration::from_secs(120);

/// How long a node settles: `base`, doubled for each recent disturbance
/// before this one, at most `MAX_SETTLE`.
pub fn settle_for(base: Duration, recent: u32) -> Duration {
    base.saturating_mul(1u32 << recent.min(6)).min(MAX_SETTLE)
}

/// The decision, fed with the node's quorum over time. Pure.
#[derive(Debug, Clone, Default)]
pub struct Settle {
    base: Duration,
    /// Unix seconds of this node's recent starts (this one included).
    starts: Vec<u64>,
    /// Unix seconds of recent losses of the majority.
    isolations: Vec<u64>,
    had_quorum: bool,
    isolated: bool,
    until: Option<u64>,
    after_start: Duration,
}

impl Settle {
    /// `starts`: the unix seconds of this node's starts, this one included
    /// (older ones are forgotten).
    pub fn new(base: Duration, mut starts: Vec<u64>, now_unix: u64) -> Settle {
        starts.retain(|t| now_unix.saturating_sub(*t) < WINDOW_SECS);
        let mut s = Settle { base, starts, ..Default::default() };
        s.after_start = settle_for(base, s.recent().saturating_sub(1));
        s
    }

    /// Disturbances in the window: restarts (every start but the first in
    /// the window) and isolations.
    fn recent(&self) -> u32 {
        (self.starts.len().saturating_sub(1) + self.isolations.len()) as u32
    }

    /// How long the node takes no pods after this start.
    pub fn after_start(&self) -> Duration {
        self.after_start
    }

    /// Whether the node is settling, given whether it sees a majority now.
    pub fn observe(&mut self, quorum: bool, now_unix: u64) -> bool {
        self.isolations.retain(|t| now_unix.saturating_sub(*t) < WINDOW_SECS);
        self.starts.retain(|t| now_unix.saturating_sub(*t) < WINDOW_SECS);
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
            let before = self.recent().saturating_sub(1);
            self.until = Some(now_unix + settle_for(self.base, before).as_secs());
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

/// Keeps this node's record up to date: `schedulable` once the settle time
/// after its start has passed (unless it is leaving), `settling` from the
/// view's quorum.
pub async fn run(
    mut view: watch::Receiver<Arc<ClusterView>>,
    info: watch::Sender<NodeInfo>,
    mut s: Settle,
    clock: fn() -> u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = tokio::time::sleep(s.after_start());
    tokio::pin!(start);
    let mut started = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut start, if !started => {
                started = true;
                let v = view.borrow().clone();
                let leaving = v.nodes.get(v.self_name.as_str()).is_some_and(|n| n.state == NodeState::Left);
                if !leaving {
                    info.send_modify(|i| i.schedulable = true);
                }
            }
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
#[allow(clippy::disallowed_methods)] // tests may read the clock for a base instant
mod tests {
    use super::*;

    const B: Duration = Duration::from_secs(3);

    #[test]
    fn settles_after_regaining_the_majority_longer_when_it_flaps() {
        assert_eq!(settle_for(B, 0), B);
        assert_eq!(settle_for(B, 2), Duration::from_secs(12));
        assert_eq!(settle_for(B, 30), MAX_SETTLE);
        let mut s = Settle::new(B, vec![0], 0);
        assert_eq!(s.after_start(), B);
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

    #[test]
    fn restarts_and_isolations_count_alike() {
        // The first start in the window is free, and so is the first restart.
        assert_eq!(Settle::new(B, vec![100], 100).after_start(), B);
        assert_eq!(Settle::new(B, vec![50, 100], 100).after_start(), B);
        // A third start within ten minutes doubles, a fourth quadruples.
        assert_eq!(Settle::new(B, vec![10, 50, 100], 100).after_start(), 2 * B);
        assert_eq!(Settle::new(B, vec![5, 10, 50, 100], 100).after_start(), 4 * B);
        // Starts older than the window are forgotten.
        assert_eq!(Settle::new(B, vec![0, 1, 2, 700], 700).after_start(), B);
        // An isolation after a restart settles as long as a second isolation.
        let mut s = Settle::new(B, vec![50, 100], 100);
        assert!(!s.observe(true, 101));
        assert!(s.observe(false, 110));
        assert!(s.observe(true, 111));
        assert!(s.observe(true, 116), "restart + isolation: 6 s");
        assert!(!s.observe(true, 117));
    }
}
