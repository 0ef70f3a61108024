//! Probe timing and thresholds: pure.
//!
//! `Timing` is a probe's schedule with Kubernetes' defaults; `Tracker` turns
//! consecutive check results into a verdict (healthy or not). The checks
//! themselves (HTTP, TCP, exec) are I/O and live in `exec::checks`.

use std::time::Duration;

use crate::model::types::Probe;

/// Timing of a probe, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i64>, d: i64| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive-result thresholds: pure.
#[derive(Debug, Clone, Copy)]
pub struct Tracker {
    successes: u32,
    failures: u32,
    healthy: bool,
}

impl Tracker {
    /// `initially_healthy`: liveness starts healthy, readiness does not.
    pub fn new(initially_healthy: bool) -> Tracker {
        Tracker { successes: 0, failures: 0, healthy: initially_healthy }
    }

    /// Records one check; returns the verdict after it.
    pub fn record(&mut self, ok: bool, t: &Timing) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= t.success_threshold {
                self.healthy = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= t.failure_threshold {
                self.healthy = false;
            }
        }
        self.healthy
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let t = Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut ready = Tracker::new(false);
        assert!(!ready.record(true, &t));
        assert!(ready.record(true, &t));
        assert!(ready.record(false, &t));
        assert!(ready.record(false, &t));
        assert!(!ready.record(false, &t));
        let mut live = Tracker::new(true);
        assert!(live.record(false, &t) && live.record(false, &t));
        assert!(!live.record(false, &t));
    }
}
