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
    /// scaled into `[d/2, d]` by `jitter` in `[0, 1]`.
    pub fn delay(&self, step: u32, jitter: f64) -> Duration {
        let full = self
            .first
            .saturating_mul(1u32 << step.min(30))
            .min(self.max);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// A fresh sequence of delays with random jitter.
    pub fn retries(&self) -> Retries {
        Retries {
            backoff: *self,
            step: 0,
        }
    }
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

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(MS(100), MS(500));
        let full: Vec<_> = (0..5).map(|s| b.delay(s, 1.0)).collect();
        assert_eq!(full, [100, 200, 400, 500, 500].map(MS).to_vec());
        assert_eq!(b.delay(40, 1.0), MS(500));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let b = Backoff::new(MS(100), MS(500));
        assert_eq!(b.delay(1, 0.0), MS(100));
        assert_eq!(b.delay(1, 0.5), MS(150));
        assert_eq!(b.delay(1, 7.0), MS(200));
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

    #[tokio::test]
    async fn waiting_stops_at_shutdown() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut r = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600)).retries();
        assert!(!r.wait(&shutdown).await);
    }
}
