//! When to try a webhook again: a fixed schedule of maximum delays with full jitter,
//! `Retry-After` honoured, and what each answer means for the delivery. No I/O here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use foodseg_engine::AttemptOutcome;
use foodseg_engine::domain::Health;
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
    /// counts as 1). A retry that would fall after the schedule's end
    /// (`created_at + span()`) is pulled in to the end while the end is still ahead.
    /// `retry_after` is a floor, honoured up to [`MAX_SPAN`], the end included. Once the
    /// end has passed (the attempts ran late, say while no scheduler was up), the
    /// remaining retries keep at least half their step's delay between them instead of
    /// firing back to back. Never before `now`.
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
        let after = |d: Duration| {
            now.checked_add_signed(chrono_duration(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        let end = created_at
            .checked_add_signed(chrono_duration(self.span()))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let at = if end > now {
            after(max.mul_f64(jitter)).min(end)
        } else {
            after(max / 2 + (max / 2).mul_f64(jitter))
        };
        let floor = after(retry_after.unwrap_or_default().min(MAX_SPAN));
        Some(at.max(floor).max(now))
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

/// What an answer says about the receiver's endpoint: no answer, a 5xx, 408 or 429 is a
/// failure (with the `Retry-After` of a 429 or 503, which pauses the endpoint); any other
/// answer shows it up; a refused URL was never sent.
pub fn health(answer: &Answer) -> Health {
    match answer {
        Answer::Status {
            code, retry_after, ..
        } => match code {
            429 | 503 => Health::Down {
                retry_after: *retry_after,
            },
            408 | 500..=599 => Health::Down { retry_after: None },
            _ => Health::Up,
        },
        Answer::Transport(_) => Health::Down { retry_after: None },
        Answer::Refused(_) => Health::Unknown,
    }
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
    fn retry_after_is_a_floor_of_at_most_a_day() {
        let s = RetrySchedule::default();
        let ra = Some(Duration::from_secs(600));
        assert_eq!(
            s.next_attempt_at(1, t0(), t0(), ra, 0.1),
            Some(t0() + secs(600))
        );
        let day = t0() + secs(24 * 3600);
        let week = Some(Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.next_attempt_at(1, t0(), t0(), week, 0.1), Some(day));
        assert_eq!(
            s.next_attempt_at(1, t0(), t0(), Some(Duration::MAX), 0.1),
            Some(day)
        );
        // A schedule ending past the last representable instant ends there.
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(s.next_attempt_at(1, last, last, None, 1.0), Some(last));
    }

    /// Attempts that ran late (no scheduler for a day) do not fire back to back once the
    /// schedule's end has passed: each keeps half its step or more, and Retry-After.
    #[test]
    fn late_attempts_past_the_end_stay_spaced() {
        let s = RetrySchedule::default();
        let late = t0() + secs(30 * 3600);
        let mut now = late;
        for attempt in 3..s.max_attempts() {
            let at = s
                .next_attempt_at(attempt, t0(), now, None, 0.0)
                .expect("retry");
            let step = s.delays[attempt as usize - 1];
            assert_eq!(at, now + chrono::Duration::from_std(step / 2).unwrap());
            now = at;
        }
        let asked = Some(Duration::from_secs(7200));
        assert_eq!(
            s.next_attempt_at(3, t0(), late, asked, 0.0),
            Some(late + secs(7200)),
            "Retry-After past the end"
        );
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

    #[test]
    fn answers_say_whether_the_endpoint_is_up() {
        let status = |code, retry_after| Answer::Status {
            code,
            retry_after,
            excerpt: String::new(),
        };
        let wait = Some(Duration::from_secs(60));
        for code in [200, 204, 301, 400, 404, 410, 422] {
            assert_eq!(health(&status(code, wait)), Health::Up, "{code}");
        }
        for code in [408, 500, 502, 504, 599] {
            assert_eq!(
                health(&status(code, wait)),
                Health::Down { retry_after: None },
                "{code}"
            );
        }
        for code in [429, 503] {
            assert_eq!(
                health(&status(code, wait)),
                Health::Down { retry_after: wait },
                "{code}"
            );
        }
        assert_eq!(
            health(&Answer::Transport("connection refused".into())),
            Health::Down { retry_after: None }
        );
        assert_eq!(health(&Answer::Refused("private".into())), Health::Unknown);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Instants from chrono's first to its last, weighted towards the present.
    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        let present = 1_796_000_000_000i64; // late 2026, in milliseconds
        let (min, max) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        prop_oneof![
            3 => (present - 400 * 86_400_000..present + 400 * 86_400_000)
                .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap()),
            1 => Just(min),
            1 => Just(max),
            1 => (0..10 * 86_400i64).prop_map(move |s| max - chrono::Duration::seconds(s)),
            1 => (min.timestamp()..=max.timestamp())
                .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        ]
    }

    /// Valid schedules: empty, the default, and up to a dozen random steps within a day.
    fn any_schedule() -> impl Strategy<Value = RetrySchedule> {
        let step = prop_oneof![
            Just(Duration::ZERO),
            (0u64..10_000).prop_map(Duration::from_millis),
            (0u64..=MAX_SPAN.as_secs()).prop_map(Duration::from_secs),
        ];
        prop_oneof![
            Just(RetrySchedule::default()),
            Just(RetrySchedule { delays: Vec::new() }),
            proptest::collection::vec(step, 0..12)
                .prop_filter_map("over the 24 h limit", |d| RetrySchedule::new(d).ok()),
        ]
    }

    fn any_jitter() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => 0.0..=1.0f64,
            1 => Just(0.0),
            1 => Just(1.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => any::<f64>(),
        ]
    }

    fn any_retry_after() -> impl Strategy<Value = Option<Duration>> {
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(Duration::ZERO)),
            2 => (0u64..100_000).prop_map(|s| Some(Duration::from_secs(s))),
            1 => Just(Some(Duration::from_secs(u64::MAX))),
            1 => Just(Some(Duration::MAX)),
        ]
    }

    fn any_attempt() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..14, 1 => Just(u32::MAX), 1 => any::<u32>()]
    }

    /// `a + d`, or chrono's last instant when that is past it.
    fn plus(a: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| a.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The contract of `next_attempt_at`: a time only for attempts 1..max_attempts;
        /// never before `now`, nor before `Retry-After` (up to a day); while the schedule's
        /// end `created_at + span()` is ahead, never after it unless `Retry-After` asks;
        /// past the end, at least half the step later; no later than the step's maximum
        /// or `Retry-After`, whichever is longer; later the larger the jitter.
        #[test]
        fn retries_stay_between_now_and_the_schedule_end(
            schedule in any_schedule(),
            attempt in any_attempt(),
            created_at in any_time(),
            now in any_time(),
            retry_after in any_retry_after(),
            jitter in any_jitter(),
        ) {
            let at = schedule.next_attempt_at(attempt, created_at, now, retry_after, jitter);
            let last = attempt >= 1 && attempt < schedule.max_attempts();
            prop_assert_eq!(at.is_some(), last, "{:?}", at);
            let Some(at) = at else { return Ok(()) };
            let end = plus(created_at, schedule.span());
            prop_assert!(at >= now, "{at} before now {now}");
            let asked = retry_after.unwrap_or_default().min(MAX_SPAN);
            prop_assert!(at >= plus(now, asked), "{at} before Retry-After {asked:?}");
            let step = schedule.delays[attempt as usize - 1];
            if end > now {
                prop_assert!(at <= end.max(plus(now, asked)), "{at} after the end {end} (now {now})");
            } else {
                prop_assert!(at >= plus(now, step / 2), "{at} sooner than half of {step:?} past the end");
            }
            let longest = step.max(asked);
            prop_assert!(at <= plus(now, longest), "{at} later than {longest:?} after {now}");
            let soonest = schedule.next_attempt_at(attempt, created_at, now, retry_after, 0.0);
            let latest = schedule.next_attempt_at(attempt, created_at, now, retry_after, 1.0);
            prop_assert!(soonest <= Some(at) && Some(at) <= latest);
        }

        /// Delivered, gone and refused answers are final; anything else is retried while
        /// attempts remain, at the schedule's time, and fails once they are spent.
        #[test]
        fn only_retryable_answers_are_retried_and_never_past_the_last_attempt(
            schedule in any_schedule(),
            attempt in any_attempt(),
            created_at in any_time(),
            now in any_time(),
            jitter in any_jitter(),
            code in prop_oneof![100u16..600, Just(410u16), 200u16..300, any::<u16>()],
            retry_after in any_retry_after(),
            kind in 0..3u8,
            text in ".{0,40}",
        ) {
            let answer = match kind {
                0 => Answer::Status { code, retry_after, excerpt: text.clone() },
                1 => Answer::Transport(text.clone()),
                _ => Answer::Refused(text.clone()),
            };
            let d = decide(&answer, attempt, &schedule, created_at, now, jitter);
            let final_outcome = match &answer {
                Answer::Status { code, .. } if (200..300).contains(code) => {
                    Some(AttemptOutcome::Delivered)
                }
                Answer::Status { code: 410, .. } => Some(AttemptOutcome::Gone),
                Answer::Refused(_) => Some(AttemptOutcome::Failed),
                _ => None,
            };
            if let Some(outcome) = final_outcome {
                prop_assert_eq!(d.outcome, outcome);
                prop_assert_eq!(d.next_attempt_at, None);
            } else if attempt >= 1 && attempt < schedule.max_attempts() {
                prop_assert_eq!(d.outcome, AttemptOutcome::Retry);
                let ra = match &answer {
                    Answer::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                prop_assert_eq!(
                    d.next_attempt_at,
                    schedule.next_attempt_at(attempt, created_at, now, ra, jitter)
                );
            } else {
                prop_assert_eq!(d.outcome, AttemptOutcome::Failed);
                prop_assert_eq!(d.next_attempt_at, None);
                let error = d.error.clone().unwrap_or_default();
                let gave_up = format!("gave up after {attempt} attempts");
                prop_assert!(error.ends_with(&gave_up), "{}", error);
            }
            // The recorded error says what the receiver answered, or why there was none.
            let error = d.error.as_deref().unwrap_or_default();
            match &answer {
                Answer::Status { code, .. } if (200..300).contains(code) => {
                    prop_assert_eq!(d.error, None);
                }
                Answer::Status { code, .. } => {
                    prop_assert!(error.contains(&format!("HTTP {code}")), "{}", error);
                }
                Answer::Transport(reason) | Answer::Refused(reason) => {
                    prop_assert!(error.contains(reason.as_str()), "{}", error);
                }
            }
        }

        /// Any text parses or is refused with a message; an accepted schedule stays
        /// within a day and has one attempt more than it has steps.
        #[test]
        fn any_text_parses_or_is_refused(
            text in prop_oneof![
                1 => any::<String>(),
                3 => proptest::collection::vec(
                    prop_oneof![
                        4 => proptest::sample::select(vec![
                            "5s", "30s", "2m", "1h", "24h", "25h", "10ms", "1.5", "0", " 7 ",
                            "-5s", "1e19", "9223372036854775807", "18446744073709551615",
                            "584942417355y", "NaN", "inf", "1h 30m", "5x", "s", "", " ",
                        ])
                        .prop_map(str::to_owned),
                        1 => "[0-9a-z .é\t\u{0}-]{0,6}",
                    ],
                    0..6,
                )
                .prop_map(|items| items.join(",")),
            ],
        ) {
            match RetrySchedule::parse(&text) {
                Ok(schedule) => {
                    prop_assert!(schedule.span() <= MAX_SPAN);
                    let steps = text.split(',').filter(|s| !s.trim().is_empty()).count();
                    prop_assert_eq!(schedule.max_attempts() as usize, steps + 1);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// A schedule's delays, printed the way people write them, parse back to it;
        /// delays adding up to more than a day are refused as too long.
        #[test]
        fn printed_delays_parse_back(
            delays in proptest::collection::vec(
                prop_oneof![
                    (0u64..10_000).prop_map(Duration::from_millis),
                    (0u64..30 * 3600).prop_map(Duration::from_secs),
                    (0u64..86_400_000_000_000).prop_map(Duration::from_nanos),
                ],
                0..10,
            ),
            separator in prop_oneof![Just(","), Just(", "), Just(" ,\t")],
        ) {
            let text = delays
                .iter()
                .map(|&d| humantime::format_duration(d).to_string())
                .collect::<Vec<_>>()
                .join(separator);
            let total: Duration = delays.iter().sum();
            match RetrySchedule::parse(&text) {
                Ok(schedule) => {
                    prop_assert!(total <= MAX_SPAN);
                    prop_assert_eq!(schedule.delays, delays);
                }
                Err(e) => {
                    prop_assert!(total > MAX_SPAN, "{text:?}: {e}");
                    prop_assert_eq!(e, ScheduleError::TooLong(total));
                }
            }
        }
    }
}
