//! Restart decisions for a container that exited: pure functions.
//!
//! Kubernetes-like: the n-th consecutive crash waits `initial * 2^(n-1)`,
//! capped at `max`; a container that ran longer than `reset_after` starts the
//! count over. Which exits restart at all follows the pod's restartPolicy.

use std::time::Duration;

use crate::model::pods::RestartPolicy;

/// Backoff settings (from the node config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// Delay before the restart that follows `consecutive` crashes (>= 1).
    pub fn delay(&self, consecutive: u32) -> Duration {
        let shift = consecutive.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }
}

/// What to do after a container exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Restart after this delay; `consecutive` is the new crash count.
    Restart { delay: Duration, consecutive: u32 },
    /// Leave it terminated.
    Done,
}

/// Decides what follows an exit. `forced` is true when the agent killed the
/// container itself (failed liveness probe): it always restarts, except
/// under `Never`.
pub fn after_exit(
    policy: RestartPolicy,
    exit_code: i32,
    forced: bool,
    ran_for: Duration,
    consecutive: u32,
    backoff: &Backoff,
) -> AfterExit {
    let failed = exit_code != 0 || forced;
    let restart = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Never => false,
    };
    if !restart {
        return AfterExit::Done;
    }
    let consecutive = if ran_for >= backoff.reset_after { 1 } else { consecutive.saturating_add(1) };
    AfterExit::Restart { delay: backoff.delay(consecutive), consecutive }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(10));
        assert_eq!(b.delay(2), Duration::from_secs(20));
        assert_eq!(b.delay(5), Duration::from_secs(160));
        assert_eq!(b.delay(6), Duration::from_secs(300));
        assert_eq!(b.delay(1000), Duration::from_secs(300));
    }

    #[test]
    fn policies() {
        let b = Backoff::default();
        let short = Duration::from_secs(1);
        assert_eq!(
            after_exit(RestartPolicy::Always, 0, false, short, 0, &b),
            AfterExit::Restart { delay: b.delay(1), consecutive: 1 }
        );
        assert_eq!(after_exit(RestartPolicy::OnFailure, 0, false, short, 0, &b), AfterExit::Done);
        assert_eq!(
            after_exit(RestartPolicy::OnFailure, 1, false, short, 2, &b),
            AfterExit::Restart { delay: b.delay(3), consecutive: 3 }
        );
        assert_eq!(
            after_exit(RestartPolicy::OnFailure, 0, true, short, 0, &b),
            AfterExit::Restart { delay: b.delay(1), consecutive: 1 }
        );
        assert_eq!(after_exit(RestartPolicy::Never, 1, true, short, 0, &b), AfterExit::Done);
        // A long run resets the count.
        assert_eq!(
            after_exit(RestartPolicy::Always, 1, false, Duration::from_secs(601), 7, &b),
            AfterExit::Restart { delay: b.delay(1), consecutive: 1 }
        );
    }
}
