//! Virtual time for a simulated run.
//!
//! A run executes on one thread with tokio's clock paused: time moves only
//! when every task waits, and jumps straight to the next timer. The HLC and
//! the "unix time" the nodes see are derived from that clock, starting at a
//! fixed epoch, so two runs with the same events see the same times.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// Unix time (seconds) at which every simulated run starts.
pub const EPOCH_UNIX: u64 = 1_800_000_000;

thread_local! {
    static START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Marks the start of a run (call inside the run's runtime).
pub fn start() {
    START.with(|s| s.set(Some(Instant::now())));
}

/// Virtual time since the start of the run.
pub fn elapsed() -> Duration {
    START.with(|s| s.get()).map(|t| Instant::now().saturating_duration_since(t)).unwrap_or_default()
}

/// Unix seconds, virtual (for membership and planning).
pub fn unix_secs() -> u64 {
    EPOCH_UNIX + elapsed().as_secs()
}

/// Unix milliseconds, virtual.
pub fn unix_millis() -> u64 {
    EPOCH_UNIX * 1000 + elapsed().as_millis() as u64
}

/// NTP64 time, virtual (the nodes' HLC clock).
pub fn ntp64() -> uhlc::NTP64 {
    uhlc::NTP64::from(Duration::from_secs(EPOCH_UNIX) + elapsed())
}
