//! Sender-side load balancing: power of two choices over peak-EWMA cost.
//!
//! Pure: time and randomness come in as arguments. Each endpoint keeps this
//! node's own view of it: requests outstanding and a peak-EWMA of latency
//! (jumps up at once on a slow sample, decays slowly; Finagle's "peak EWMA").
//! A pick draws two distinct Ready endpoints and takes the one with the lower
//! `latency × (outstanding + 1)`. Gossiped load is never used: it is stale by
//! the time it arrives and makes every sender herd onto the same backend.

use std::time::{Duration, Instant};

/// Latency assumed for an endpoint never measured (optimistic, so new
/// endpoints get traffic and get measured).
pub const INITIAL_LATENCY: Duration = Duration::from_millis(1);
/// Latency charged to an endpoint that failed or timed out.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(5);
/// How fast the EWMA forgets (time constant). Short enough that a healthy
/// backend's occasional spike fades within a second, long enough that a
/// consistently slow one stays expensive (each of its samples renews it).
pub const DECAY: Duration = Duration::from_secs(1);
/// Smallest weight of a faster sample.
pub const MIN_BLEND: f64 = 0.3;

/// This node's view of one endpoint.
#[derive(Debug, Clone)]
pub struct Stats {
    pub outstanding: u32,
    /// Peak-EWMA latency, in nanoseconds.
    pub ewma_ns: f64,
    pub last: Instant,
}

impl Stats {
    pub fn new(now: Instant) -> Stats {
        Stats { outstanding: 0, ewma_ns: INITIAL_LATENCY.as_nanos() as f64, last: now }
    }

    /// The EWMA decayed to `now` (without recording a sample).
    fn decayed(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        let w = (-dt / DECAY.as_secs_f64()).exp();
        // Decay toward the optimistic initial value, so a penalised endpoint
        // is eventually tried again.
        let floor = INITIAL_LATENCY.as_nanos() as f64;
        floor + (self.ewma_ns - floor) * w
    }

    /// Records one latency sample: a slower sample is taken at once (peak);
    /// a faster one is blended in with a weight that grows with the time
    /// since the last sample (Finagle's peak EWMA), but is at least
    /// `MIN_BLEND`, so that at hundreds of requests per second a healthy
    /// backend's spike fades within tens of samples while a consistently
    /// slow backend stays expensive.
    pub fn observe(&mut self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        let a = (1.0 - (-dt / DECAY.as_secs_f64()).exp()).max(MIN_BLEND);
        self.ewma_ns = if sample > self.ewma_ns { sample } else { self.ewma_ns * (1.0 - a) + sample * a };
        self.last = now;
    }

    /// Records a failure (refused, reset, timed out).
    pub fn fail(&mut self, now: Instant) {
        self.observe(FAILURE_PENALTY, now);
    }

    pub fn cost(&self, now: Instant) -> f64 {
        self.decayed(now) * f64::from(self.outstanding + 1)
    }
}

/// Picks among `candidates` (indices into `stats`): two distinct draws from
/// `r1`, `r2` (uniform random numbers), lower cost wins. `None` when empty.
pub fn p2c(stats: &[Stats], candidates: &[usize], r1: u64, r2: u64, now: Instant) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let a = (r1 % n as u64) as usize;
            let mut b = (r2 % (n as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let (ia, ib) = (candidates[a], candidates[b]);
            Some(if stats[ib].cost(now) < stats[ia].cost(now) { ib } else { ia })
        }
    }
}

/// Round-robin, for comparison experiments (`proxy.balancer = "round-robin"`).
pub fn round_robin(candidates: &[usize], counter: u64) -> Option<usize> {
    if candidates.is_empty() { None } else { Some(candidates[(counter % candidates.len() as u64) as usize]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slow_and_busy_endpoints_lose() {
        let now = Instant::now();
        let mut s = vec![Stats::new(now), Stats::new(now)];
        s[0].observe(Duration::from_millis(100), now);
        s[1].observe(Duration::from_millis(10), now);
        for (r1, r2) in [(0, 0), (1, 0), (5, 3)] {
            assert_eq!(p2c(&s, &[0, 1], r1, r2, now), Some(1));
        }
        s[1].outstanding = 20;
        assert_eq!(p2c(&s, &[0, 1], 0, 0, now), Some(0));
        assert_eq!(p2c(&s, &[], 1, 2, now), None);
        assert_eq!(p2c(&s, &[1], 1, 2, now), Some(1));
    }

    #[test]
    fn peak_then_decay() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.observe(Duration::from_millis(10), t0);
        s.observe(Duration::from_millis(500), t0);
        assert_eq!(s.ewma_ns, 500e6, "peaks at once");
        s.observe(Duration::from_millis(10), t0);
        assert!(s.ewma_ns > 300e6, "one fast sample right after does not erase the peak");
        s.observe(Duration::from_millis(10), t0 + Duration::from_secs(3));
        assert!(s.ewma_ns < 50e6, "but the peak fades with time");
        // A failed endpoint recovers its chance with time.
        s.fail(t0);
        assert!(s.cost(t0 + Duration::from_secs(60)) < s.cost(t0) / 100.0);
    }

    proptest! {
        /// Never picks outside the candidates (i.e. never an unready
        /// endpoint); handles any size including empty.
        #[test]
        fn picks_only_candidates(n in 0usize..20, mask in any::<u32>(), r1 in any::<u64>(), r2 in any::<u64>(), out in proptest::collection::vec(0u32..50, 20)) {
            let now = Instant::now();
            let stats: Vec<Stats> = (0..n).map(|i| Stats { outstanding: out[i], ..Stats::new(now) }).collect();
            let ready: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            match p2c(&stats, &ready, r1, r2, now) {
                None => prop_assert!(ready.is_empty()),
                Some(i) => prop_assert!(ready.contains(&i)),
            }
            match round_robin(&ready, r1) {
                None => prop_assert!(ready.is_empty()),
                Some(i) => prop_assert!(ready.contains(&i)),
            }
        }
    }
}
