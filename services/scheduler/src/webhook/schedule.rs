//! When to try a webhook again: a fixed schedule of maximum delays with full jitter,
//! `Retry-After` honoured, and what each answer means for the delivery. No I/O here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use foodseg_engine::AttemptOutcome;
use foodseg_runtime::config::{Unit, parse_duration};

/// Longest a delivery may keep being retried, from its creation.
pub const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);

/// Maximum delay before each retry; the real delay is uniform in `[0, max]` ("full
/// jitter"), or longer when the receiver sent `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// A schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0:?} is not a duration such as 500ms, 5s, 2m, 1h")]
    Duration(String),
    #[error("the delays add up to {0:?}, over the 24 h limit")]
    TooLong(Duration),
}

impl Default for RetrySchedule {
    /// 11 attempts over at most 23.7 h: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h,
    /// 8 h, 8 h.
    fn default() -> Self {
        let s = Duration::from_secs;
        RetrySchedule {
            delays: vec![
                s(5),
                s(30),
                s(120),
                s(600),
                s(1800),
                s(3600),
                s(7200),
                s(14_400),
                s(28_800),
                s(28_800),
            ],
        }
    }
}

impl RetrySchedule {
    /// A schedule of maximum delays (one per retry); empty means a single attempt.
    pub fn new(delays: Vec<Duration>) -> Result<Self, ScheduleError> {
        let total = delays
            .iter()
            .fold(Duration::ZERO, |sum, &d| sum.saturating_add(d));
        if total > MAX_SPAN {
            return Err(ScheduleError::TooLong(total));
        }
        Ok(RetrySchedule { delays })
    }

    /// Parses a comma-separated list such as `5s,30s,2m,10m`.
    pub fn parse(list: &str) -> Result<Self, ScheduleError> {
        let delays = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|step| {
                parse_duration(step, Unit::Seconds)
                    .map_err(|_| ScheduleError::Duration(step.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Self::new(delays)
    }

    /// Attempts a delivery gets in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The sum of the maximum delays: no retry is scheduled later than this after the
    /// delivery was created.
    pub fn span(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// When to retry after attempt `attempt` (1-based) failed, or `None` when it was the
    /// last. `jitter` in `[0, 1]` picks the delay within the step's maximum (clamped; NaN
    /// counts as 1); `retry_after` is a lower bound, itself bounded by the schedule's
    /// end. Never before `now`, and never after the end unless `now` already is.
    pub fn next_attempt_at(
        &self,
        attempt: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        let max = *self.delays.get(index)?;
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let mut delay = max.mul_f64(jitter);
        if let Some(asked) = retry_after {
            delay = delay.max(asked);
        }
        let end = created_at
            .checked_add_signed(chrono_duration(self.span()))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let at = now
            .checked_add_signed(chrono_duration(delay))
            .unwrap_or(end);
        Some(at.min(end).max(now))
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// How the receiver answered one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response.
    Status {
        code: u16,
        retry_after: Option<Duration>,
        /// The start of the response body, for the attempt's error text.
        excerpt: String,
    },
    /// No response: timeout, connection refused, TLS or DNS failure, too many redirects.
    Transport(String),
    /// The URL may not be called (private address, bad scheme): no attempt can succeed.
    Refused(String),
}

/// What to record for an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: AttemptOutcome,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Any 2xx delivers; 410 stops; a refused URL fails; anything else is retried on the
/// schedule, and fails once it is exhausted.
pub fn decide(
    answer: &Answer,
    attempt: u32,
    schedule: &RetrySchedule,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    let (error, retry_after) = match answer {
        Answer::Status { code, .. } if (200..300).contains(code) => {
            return Decision {
                outcome: AttemptOutcome::Delivered,
                next_attempt_at: None,
                error: None,
            };
        }
        Answer::Status { code: 410, .. } => {
            return Decision {
                outcome: AttemptOutcome::Gone,
                next_attempt_at: None,
                error: Some("receiver answered HTTP 410 Gone; not retrying".into()),
            };
        }
        Answer::Refused(reason) => {
            return Decision {
                outcome: AttemptOutcome::Failed,
                next_attempt_at: None,
                error: Some(format!("webhook URL refused: {reason}")),
            };
        }
        Answer::Status {
            code,
            retry_after,
            excerpt,
        } => {
            let mut error = format!("receiver answered HTTP {code}");
            if !excerpt.is_empty() {
                error.push_str(": ");
                error.push_str(excerpt);
            }
            (error, *retry_after)
        }
        Answer::Transport(reason) => (reason.clone(), None),
    };
    match schedule.next_attempt_at(attempt, created_at, now, retry_after, jitter) {
        Some(at) => Decision {
            outcome: AttemptOutcome::Retry,
            next_attempt_at: Some(at),
            error: Some(error),
        },
        None => Decision {
            outcome: AttemptOutcome::Failed,
            next_attempt_at: None,
            error: Some(format!("{error}; gave up after {attempt} attempts")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    #[test]
    fn default_schedule_starts_within_seconds_and_ends_within_a_day() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 11);
        assert!(s.span() <= MAX_SPAN);
        assert!(s.span() > Duration::from_secs(20 * 3600));
        let first = s.next_attempt_at(1, t0(), t0(), None, 1.0).unwrap();
        assert_eq!(first, t0() + secs(5));
        assert_eq!(s.next_attempt_at(11, t0(), t0(), None, 1.0), None);
    }

    #[test]
    fn full_jitter_stays_within_each_step() {
        let s = RetrySchedule::default();
        let now = t0() + secs(40);
        assert_eq!(s.next_attempt_at(3, t0(), now, None, 0.0), Some(now));
        assert_eq!(
            s.next_attempt_at(3, t0(), now, None, 0.5),
            Some(now + secs(60))
        );
        assert_eq!(
            s.next_attempt_at(3, t0(), now, None, 7.0),
            Some(now + secs(120))
        );
        assert_eq!(
            s.next_attempt_at(3, t0(), now, None, f64::NAN),
            Some(now + secs(120))
        );
    }

    #[test]
    fn retry_after_is_a_floor_bounded_by_the_schedule_end() {
        let s = RetrySchedule::default();
        let ra = Some(Duration::from_secs(600));
        assert_eq!(
            s.next_attempt_at(1, t0(), t0(), ra, 0.1),
            Some(t0() + secs(600))
        );
        let end = t0() + chrono::Duration::from_std(s.span()).unwrap();
        let week = Some(Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.next_attempt_at(1, t0(), t0(), week, 0.1), Some(end));
        assert_eq!(
            s.next_attempt_at(1, t0(), t0(), Some(Duration::MAX), 0.1),
            Some(end)
        );
        // A schedule ending past the last representable instant ends there.
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(s.next_attempt_at(1, last, last, None, 1.0), Some(last));
    }

    #[test]
    fn schedules_parse_and_stay_within_a_day() {
        let s = RetrySchedule::parse("10ms, 1.5s,2m,1h").unwrap();
        assert_eq!(s.max_attempts(), 5);
        assert_eq!(
            s.span(),
            Duration::from_millis(10) + Duration::from_millis(1500) + Duration::from_secs(3720)
        );
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
        assert!(matches!(
            RetrySchedule::parse("5x"),
            Err(ScheduleError::Duration(_))
        ));
        assert!(matches!(
            RetrySchedule::parse("-5s"),
            Err(ScheduleError::Duration(_))
        ));
        assert!(matches!(
            RetrySchedule::parse("20h,5h"),
            Err(ScheduleError::TooLong(_))
        ));
        // Delays too long to add up are too long, not a crash.
        assert_eq!(
            RetrySchedule::parse("1e19, 1e19"),
            Err(ScheduleError::TooLong(Duration::MAX))
        );
    }

    #[test]
    fn answers_decide_the_outcome() {
        let s = RetrySchedule::parse("1s,1s").unwrap();
        let status = |code, retry_after| Answer::Status {
            code,
            retry_after,
            excerpt: String::new(),
        };
        let d = |a: &Answer, attempt| decide(a, attempt, &s, t0(), t0(), 1.0);
        for code in [200, 201, 204, 299] {
            assert_eq!(d(&status(code, None), 1).outcome, AttemptOutcome::Delivered);
        }
        assert_eq!(d(&status(410, None), 1).outcome, AttemptOutcome::Gone);
        let refused = d(&Answer::Refused("10.0.0.1 is private".into()), 1);
        assert_eq!(refused.outcome, AttemptOutcome::Failed);
        assert!(refused.error.unwrap().contains("10.0.0.1 is private"));
        for answer in [
            status(500, None),
            status(404, None),
            status(301, None),
            Answer::Transport("timed out".into()),
        ] {
            let first = d(&answer, 1);
            assert_eq!(first.outcome, AttemptOutcome::Retry, "{answer:?}");
            assert_eq!(first.next_attempt_at, Some(t0() + secs(1)));
            let last = d(&answer, 3);
            assert_eq!(last.outcome, AttemptOutcome::Failed);
            assert!(last.error.unwrap().ends_with("gave up after 3 attempts"));
        }
        let ra = d(&status(503, Some(Duration::from_secs(2))), 1);
        assert_eq!(ra.next_attempt_at, Some(t0() + secs(2)));
    }
}

