//! Polling intervals: start quick (most jobs finish in about a second), grow, cap.

use std::time::Duration;

/// Geometric backoff between `first` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    factor: f64,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration, factor: f64) -> Self {
        Self {
            next: first.min(max),
            max,
            factor: factor.max(1.0),
        }
    }

    /// The interval for status polling: 200 ms growing by half up to 2 s.
    pub fn polling() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(2), 1.5)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = current.mul_f64(self.factor).min(self.max);
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let steps: Vec<_> =
            Backoff::new(Duration::from_millis(100), Duration::from_millis(300), 2.0)
                .take(4)
                .collect();
        assert_eq!(
            steps,
            [100, 200, 300, 300].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn never_shrinks() {
        let steps: Vec<_> = Backoff::new(Duration::from_millis(50), Duration::from_secs(1), 0.5)
            .take(3)
            .collect();
        assert!(steps.iter().all(|d| *d == Duration::from_millis(50)));
    }
}
