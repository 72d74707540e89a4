//! The one backoff of the workspace: exponential from `first`, capped at `max`, with
//! "equal jitter" (each delay uniform in `[d/2, d]`) so that many processes retrying the
//! same outage do not come back in step. [`Backoff::delay`] is pure (the jitter is an
//! argument); [`Retries`] is the stateful form the retry loops use.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub first: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The delay before retry number `step` (0-based): `first · 2^step`, at most `max`,
    /// scaled into `[d/2, d]` by `jitter` in `[0, 1]` (clamped; NaN counts as 1).
    pub fn delay(&self, step: u32, jitter: f64) -> Duration {
        let mut full = self.first.min(self.max);
        // At most ~96 doublings before `max` (≤ Duration::MAX) is reached.
        for _ in 0..step {
            if full.is_zero() || full >= self.max {
                break;
            }
            full = full.saturating_mul(2).min(self.max);
        }
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        // In nanoseconds so that no rounding can leave `[d/2, d]`.
        let half = full / 2;
        let upper = (full - half).as_nanos();
        let extra = ((upper as f64 * jitter) as u128).min(upper);
        half + nanos(extra)
    }

    /// A fresh sequence of delays with random jitter.
    pub fn retries(&self) -> Retries {
        Retries {
            backoff: *self,
            step: 0,
        }
    }
}

/// `n` nanoseconds; `n` is at most `Duration::MAX` in nanoseconds.
fn nanos(n: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    Duration::new(
        u64::try_from(n / PER_SEC).unwrap_or(u64::MAX),
        (n % PER_SEC) as u32,
    )
}

/// The delays of one run of retries: grows on each [`Retries::next_delay`], starts over
/// on [`Retries::reset`] (after a success).
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    step: u32,
}

impl Retries {
    /// The next delay, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.step, rand::random::<f64>());
        self.step = self.step.saturating_add(1);
        delay
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// How many delays were taken since the last reset.
    pub fn failures(&self) -> u32 {
        self.step
    }

    /// Sleeps for the next delay; `false` when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(MS(100), MS(500));
        let full: Vec<_> = (0..5).map(|s| b.delay(s, 1.0)).collect();
        assert_eq!(full, [100, 200, 400, 500, 500].map(MS).to_vec());
        assert_eq!(b.delay(40, 1.0), MS(500));
        // Doubling goes on as long as it stays under the cap, however small the start.
        let tiny = Backoff::new(Duration::from_nanos(1), Duration::from_secs(3600));
        assert_eq!(tiny.delay(40, 1.0), Duration::from_nanos(1 << 40));
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(0, 1.0), Duration::MAX);
        assert_eq!(huge.delay(u32::MAX, 0.0), Duration::MAX / 2);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let b = Backoff::new(MS(100), MS(500));
        assert_eq!(b.delay(1, 0.0), MS(100));
        assert_eq!(b.delay(1, 0.5), MS(150));
        assert_eq!(b.delay(1, 7.0), MS(200));
        assert_eq!(b.delay(1, f64::NAN), MS(200));
        let mut r = b.retries();
        for step in 0..6 {
            let d = r.next_delay();
            let full = b.delay(step, 1.0);
            assert!(d >= full / 2 && d <= full, "{d:?} vs {full:?}");
        }
        assert_eq!(r.failures(), 6);
        r.reset();
        assert!(r.next_delay() <= MS(100));
    }

    /// Durations from zero to `Duration::MAX`, weighted towards the boundaries and the
    /// sizes retry loops use.
    fn any_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(Duration::MAX),
            (0u64..=10_000).prop_map(Duration::from_millis),
            any::<u64>().prop_map(Duration::from_nanos),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    /// Jitter inside `[0, 1]`, at its ends, and outside it.
    fn any_jitter() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.0..=1.0f64,
            Just(0.0),
            Just(1.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>(),
        ]
    }

    /// The capped exponential `min(first · 2^step, max)` in nanoseconds, computed
    /// without overflow.
    fn capped(first: Duration, max: Duration, step: u32) -> u128 {
        let (first, max) = (first.as_nanos(), max.as_nanos());
        if first == 0 {
            return 0;
        }
        // first ≥ 1 ns, so 2^step ≥ max once step ≥ 128.
        match 1u128.checked_shl(step).and_then(|f| first.checked_mul(f)) {
            Some(full) => full.min(max),
            None => max,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn delay_is_half_to_all_of_the_capped_exponential(
            first in any_duration(),
            max in any_duration(),
            step in prop_oneof![0u32..70, Just(u32::MAX), any::<u32>()],
            jitter in any_jitter(),
        ) {
            let delay = Backoff::new(first, max).delay(step, jitter).as_nanos();
            let full = capped(first, max, step);
            prop_assert!(delay <= full, "{delay} ns over the full {full} ns");
            // Half rounds down to whole nanoseconds, as `Duration / 2` does.
            prop_assert!(delay >= full / 2, "{delay} ns under half of {full} ns");
            prop_assert!(delay <= max.as_nanos());
        }
    }

    #[tokio::test]
    async fn waiting_stops_at_shutdown() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut r = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600)).retries();
        assert!(!r.wait(&shutdown).await);
    }
}
