//! Webhook endpoints (a webhook URL's scheme, host and port) and their health: when an
//! endpoint is paused, probed and resumed, and how many deliveries a claim may take
//! within its rate and concurrency limits. No I/O here.
//!
//! An endpoint is paused after a run of failed attempts with no answer between that
//! showed it up, or at once when it asks for a pause with `Retry-After` on a 429 or 503.
//! While paused, nothing is sent to it but one probe (its oldest due delivery) per probe
//! interval, the interval doubling while probes fail, up to a maximum. An answer showing
//! the endpoint up resumes it, unless an operator paused it by hand.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// State of a webhook endpoint (Postgres type `endpoint_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "endpoint_state", rename_all = "lowercase")]
pub enum EndpointState {
    /// Deliveries are sent within the endpoint's limits.
    Active,
    /// Nothing is sent but probes (none when paused by hand).
    Paused,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Active => "active",
            EndpointState::Paused => "paused",
        }
    }
}

impl fmt::Display for EndpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of an endpoint's state, as its event log records it (Postgres type
/// `endpoint_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "endpoint_action", rename_all = "lowercase")]
pub enum EndpointAction {
    Paused,
    Resumed,
}

impl EndpointAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointAction::Paused => "paused",
            EndpointAction::Resumed => "resumed",
        }
    }
}

/// At most `count` deliveries per `period` to one endpoint (`50/1s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

/// A rate that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate needs a count of 1 or more per period of 1 ms or more, such as 50/1s")]
pub struct RateError;

impl Rate {
    pub fn new(count: u32, period: Duration) -> Result<Self, RateError> {
        if count == 0 || period < Duration::from_millis(1) {
            return Err(RateError);
        }
        Ok(Rate { count, period })
    }

    /// The spacing of deliveries sent at this rate.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// How many deliveries one endpoint is sent, and how soon they are claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointLimits {
    pub rate: Rate,
    /// Attempts in flight at once to one endpoint, across schedulers.
    pub concurrency: u32,
    /// A claim reserves send times up to this far ahead; each delivery waits for its own.
    pub ahead: Duration,
}

impl Default for EndpointLimits {
    /// 50 a second, 8 at once, claimed up to a second ahead.
    fn default() -> Self {
        EndpointLimits {
            rate: Rate {
                count: 50,
                period: Duration::from_secs(1),
            },
            concurrency: 8,
            ahead: Duration::from_secs(1),
        }
    }
}

impl EndpointLimits {
    /// As operators see them: `50/1s, 8 at once`.
    pub fn describe(&self) -> String {
        format!("{}, {} at once", self.rate, self.concurrency)
    }
}

/// When an endpoint is paused and how it is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failed attempts in a row that pause an endpoint.
    pub failures_to_pause: u32,
    /// Wait before the first probe of a paused endpoint.
    pub probe_interval: Duration,
    /// Longest wait between probes.
    pub probe_max_interval: Duration,
}

impl Default for HealthPolicy {
    /// Paused after 5 failures in a row; probed after 30 s, then at most every 5 min.
    fn default() -> Self {
        HealthPolicy {
            failures_to_pause: 5,
            probe_interval: Duration::from_secs(30),
            probe_max_interval: Duration::from_secs(300),
        }
    }
}

/// Longest pause a `Retry-After` can ask for.
pub const MAX_RETRY_AFTER_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// What one attempt's answer says about its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It answered in a way that shows it up (a 2xx, or any answer but a 5xx, 408 or 429).
    Up,
    /// It failed: no answer (connection error, timeout), or a 5xx, 408 or 429, with the
    /// `Retry-After` of a 429 or 503.
    Down { retry_after: Option<Duration> },
    /// Nothing was sent (the URL was refused before connecting).
    Unknown,
}

/// An endpoint's health as stored, the part a failed attempt changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    pub state: EndpointState,
    pub failures: i32,
    pub manual: bool,
    pub probe_interval: Option<Duration>,
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// An endpoint's health after a failed attempt, and why it was paused if it just was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterFailure {
    pub health: EndpointHealth,
    pub paused: Option<String>,
}

/// The endpoint's health after a failed attempt at `now` (`probe` when the attempt was
/// its probe). A failure while active counts towards a pause, and a `Retry-After` pauses
/// at once until then; a failed probe doubles the wait before the next one, up to the
/// maximum (and no sooner than a `Retry-After`). A pause by hand is left alone.
pub fn after_failure(
    health: &EndpointHealth,
    probe: bool,
    retry_after: Option<Duration>,
    policy: &HealthPolicy,
    now: DateTime<Utc>,
) -> AfterFailure {
    let mut next = health.clone();
    next.failures = health.failures.saturating_add(1);
    let retry_after = retry_after.map(|d| d.min(MAX_RETRY_AFTER_PAUSE));
    let at = |wait: Duration| {
        now.checked_add_signed(chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    if health.manual {
        return AfterFailure {
            health: next,
            paused: None,
        };
    }
    match health.state {
        EndpointState::Active => {
            let threshold = i32::try_from(policy.failures_to_pause.max(1)).unwrap_or(i32::MAX);
            let reason = match retry_after {
                Some(wait) => format!(
                    "the endpoint asked to wait {} (Retry-After)",
                    humantime::format_duration(wait)
                ),
                None if next.failures >= threshold => {
                    format!("{} failed attempts in a row", next.failures)
                }
                None => {
                    return AfterFailure {
                        health: next,
                        paused: None,
                    };
                }
            };
            next.state = EndpointState::Paused;
            next.probe_interval = Some(policy.probe_interval);
            next.next_probe_at = Some(at(retry_after.unwrap_or(policy.probe_interval)));
            AfterFailure {
                health: next,
                paused: Some(reason),
            }
        }
        EndpointState::Paused if probe => {
            let interval = health
                .probe_interval
                .unwrap_or(policy.probe_interval)
                .saturating_mul(2)
                .min(policy.probe_max_interval.max(policy.probe_interval));
            next.probe_interval = Some(interval);
            next.next_probe_at = Some(at(interval.max(retry_after.unwrap_or_default())));
            AfterFailure {
                health: next,
                paused: None,
            }
        }
        // An attempt sent before the pause: it only counts.
        EndpointState::Paused => AfterFailure {
            health: next,
            paused: None,
        },
    }
}

/// A due endpoint as a claim sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEndpoint {
    pub endpoint: String,
    pub state: EndpointState,
    pub manual: bool,
    /// Earliest time the next delivery may be sent (the rate limit).
    pub next_send_at: DateTime<Utc>,
    pub next_probe_at: Option<DateTime<Utc>>,
    pub probe_until: Option<DateTime<Utc>>,
    /// Its attempts in flight now (claimed and not yet recorded), any scheduler's.
    pub in_flight: i64,
}

/// What a claim takes from one endpoint: how many deliveries, sent from `first_send_at`
/// one rate interval apart, and whether the one taken is a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub endpoint: String,
    pub count: u32,
    pub first_send_at: DateTime<Utc>,
    pub probe: bool,
}

impl Take {
    /// The send time of the `i`-th delivery taken (0-based); with `i` the number taken,
    /// the earliest send time left for the next claim.
    pub fn send_at(&self, i: u32, limits: &EndpointLimits) -> DateTime<Utc> {
        self.first_send_at + to_chrono(limits.rate.interval().saturating_mul(i))
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// What a claim at `now` may take from `endpoint`, with at most `room` deliveries left
/// in this claim: an active endpoint, as many as its free concurrency and the send times
/// within `limits.ahead` allow; a paused one, one probe when it is due and nothing is in
/// flight; nothing when it was paused by hand.
pub fn take(
    endpoint: &DueEndpoint,
    limits: &EndpointLimits,
    room: u32,
    now: DateTime<Utc>,
) -> Option<Take> {
    let first_send_at = endpoint.next_send_at.max(now);
    let (count, probe) = match endpoint.state {
        EndpointState::Active => {
            let free = i64::from(limits.concurrency).saturating_sub(endpoint.in_flight);
            let horizon = now + to_chrono(limits.ahead);
            let slots = if first_send_at > horizon {
                0
            } else {
                let spare = (horizon - first_send_at).to_std().unwrap_or_default();
                let interval = limits.rate.interval().as_nanos().max(1);
                u64::try_from(spare.as_nanos() / interval)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1)
            };
            let count = u64::try_from(free.max(0))
                .unwrap_or(0)
                .min(slots)
                .min(u64::from(room));
            (u32::try_from(count).unwrap_or(u32::MAX), false)
        }
        EndpointState::Paused => {
            let due = endpoint.next_probe_at.is_some_and(|at| at <= now);
            let free = endpoint.probe_until.is_none_or(|until| until <= now);
            let probe = !endpoint.manual && due && free && endpoint.in_flight == 0 && room > 0;
            (u32::from(probe), true)
        }
    };
    (count > 0).then(|| Take {
        endpoint: endpoint.endpoint.clone(),
        count,
        first_send_at,
        probe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn policy() -> HealthPolicy {
        HealthPolicy::default()
    }

    fn limits() -> EndpointLimits {
        EndpointLimits::default()
    }

    fn active() -> EndpointHealth {
        EndpointHealth {
            state: EndpointState::Active,
            failures: 0,
            manual: false,
            probe_interval: None,
            next_probe_at: None,
        }
    }

    fn due(state: EndpointState) -> DueEndpoint {
        DueEndpoint {
            endpoint: "https://mfr.example:443".into(),
            state,
            manual: false,
            next_send_at: DateTime::<Utc>::UNIX_EPOCH,
            next_probe_at: None,
            probe_until: None,
            in_flight: 0,
        }
    }

    #[test]
    fn rates_are_counts_per_period() {
        let rate = Rate::new(20, secs(1)).unwrap();
        assert_eq!(rate.interval(), Duration::from_millis(50));
        assert_eq!(rate.to_string(), "20/1s");
        assert_eq!(Rate::new(0, secs(1)), Err(RateError));
        assert_eq!(Rate::new(5, Duration::ZERO), Err(RateError));
    }

    #[test]
    fn the_fifth_failure_in_a_row_pauses() {
        let mut health = active();
        for n in 1..5 {
            let after = after_failure(&health, false, None, &policy(), t0());
            assert_eq!(after.paused, None, "failure {n}");
            assert_eq!(after.health.failures, n);
            health = after.health;
        }
        let after = after_failure(&health, false, None, &policy(), t0());
        assert_eq!(after.paused.as_deref(), Some("5 failed attempts in a row"));
        assert_eq!(after.health.state, EndpointState::Paused);
        assert_eq!(
            after.health.next_probe_at,
            Some(t0() + chrono::Duration::seconds(30))
        );
    }

    #[test]
    fn retry_after_pauses_at_once_until_then() {
        let after = after_failure(&active(), false, Some(secs(120)), &policy(), t0());
        assert!(after.paused.unwrap().contains("Retry-After"));
        assert_eq!(
            after.health.next_probe_at,
            Some(t0() + chrono::Duration::seconds(120))
        );
        let week = after_failure(&active(), false, Some(secs(7 * 86_400)), &policy(), t0());
        assert_eq!(
            week.health.next_probe_at,
            Some(t0() + chrono::Duration::hours(24))
        );
    }

    #[test]
    fn failed_probes_double_the_wait_up_to_the_maximum() {
        let mut health = after_failure(
            &EndpointHealth {
                failures: 4,
                ..active()
            },
            false,
            None,
            &policy(),
            t0(),
        )
        .health;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let after = after_failure(&health, true, None, &policy(), t0());
            assert_eq!(after.paused, None);
            waits.push(after.health.probe_interval.unwrap().as_secs());
            health = after.health;
        }
        assert_eq!(waits, [60, 120, 240, 300, 300, 300]);
        assert_eq!(
            health.next_probe_at,
            Some(t0() + chrono::Duration::seconds(300))
        );
        // A failure that was not the probe does not move the probe.
        let stray = after_failure(&health, false, None, &policy(), t0());
        assert_eq!(stray.health.next_probe_at, health.next_probe_at);
    }

    #[test]
    fn a_pause_by_hand_is_left_alone() {
        let manual = EndpointHealth {
            state: EndpointState::Paused,
            manual: true,
            ..active()
        };
        let after = after_failure(&manual, true, Some(secs(5)), &policy(), t0());
        assert_eq!(after.paused, None);
        assert_eq!(after.health.next_probe_at, None);
        assert_eq!(after.health.failures, 1);
    }

    #[test]
    fn an_active_endpoint_takes_what_its_rate_and_concurrency_allow() {
        let limits = limits();
        let t = take(&due(EndpointState::Active), &limits, 64, t0()).unwrap();
        assert_eq!((t.count, t.probe), (8, false));
        assert_eq!(t.first_send_at, t0());
        assert_eq!(
            t.send_at(7, &limits),
            t0() + chrono::Duration::milliseconds(140)
        );
        let busy = DueEndpoint {
            in_flight: 6,
            ..due(EndpointState::Active)
        };
        assert_eq!(take(&busy, &limits, 64, t0()).unwrap().count, 2);
        let full = DueEndpoint {
            in_flight: 8,
            ..due(EndpointState::Active)
        };
        assert_eq!(take(&full, &limits, 64, t0()), None);
        // Send times already reserved 900 ms ahead leave 6 slots within the second.
        let reserved = DueEndpoint {
            next_send_at: t0() + chrono::Duration::milliseconds(900),
            ..due(EndpointState::Active)
        };
        let t = take(&reserved, &limits, 64, t0()).unwrap();
        assert_eq!(t.count, 6);
        assert_eq!(t.first_send_at, reserved.next_send_at);
        let beyond = DueEndpoint {
            next_send_at: t0() + chrono::Duration::seconds(2),
            ..due(EndpointState::Active)
        };
        assert_eq!(take(&beyond, &limits, 64, t0()), None);
        assert_eq!(
            take(&due(EndpointState::Active), &limits, 3, t0())
                .unwrap()
                .count,
            3
        );
        assert_eq!(take(&due(EndpointState::Active), &limits, 0, t0()), None);
    }

    #[test]
    fn a_paused_endpoint_takes_one_probe_when_due() {
        let limits = limits();
        let paused = DueEndpoint {
            next_probe_at: Some(t0()),
            ..due(EndpointState::Paused)
        };
        let t = take(&paused, &limits, 64, t0()).unwrap();
        assert_eq!((t.count, t.probe), (1, true));
        let early = DueEndpoint {
            next_probe_at: Some(t0() + chrono::Duration::seconds(1)),
            ..paused.clone()
        };
        assert_eq!(take(&early, &limits, 64, t0()), None);
        let probing = DueEndpoint {
            probe_until: Some(t0() + chrono::Duration::seconds(40)),
            ..paused.clone()
        };
        assert_eq!(take(&probing, &limits, 64, t0()), None);
        let draining = DueEndpoint {
            in_flight: 1,
            ..paused.clone()
        };
        assert_eq!(take(&draining, &limits, 64, t0()), None);
        let by_hand = DueEndpoint {
            manual: true,
            ..paused
        };
        assert_eq!(take(&by_hand, &limits, 64, t0()), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    proptest! {
        /// However claims fall in time, and however many attempts are in flight, the send
        /// times given to one endpoint are at least one rate interval apart, never in the
        /// past, never beyond the claim horizon, and never more than its free concurrency
        /// at once.
        #[test]
        fn send_times_keep_the_rate_and_the_concurrency(
            count in 1u32..200,
            period_ms in 1u64..5_000,
            concurrency in 1u32..16,
            claims in proptest::collection::vec((0u64..3_000, 0i64..20, 0u32..80), 1..40),
        ) {
            let limits = EndpointLimits {
                rate: Rate::new(count, Duration::from_millis(period_ms)).unwrap(),
                concurrency,
                ahead: Duration::from_secs(1),
            };
            let interval = chrono::Duration::from_std(limits.rate.interval()).unwrap();
            let mut now = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap();
            let mut endpoint = DueEndpoint {
                endpoint: "http://mfr.example:80".into(),
                state: EndpointState::Active,
                manual: false,
                next_send_at: DateTime::<Utc>::UNIX_EPOCH,
                next_probe_at: None,
                probe_until: None,
                in_flight: 0,
            };
            let mut sent: Vec<DateTime<Utc>> = Vec::new();
            for (after_ms, in_flight, room) in claims {
                now += chrono::Duration::milliseconds(after_ms as i64);
                endpoint.in_flight = in_flight;
                let Some(t) = take(&endpoint, &limits, room, now) else {
                    continue;
                };
                prop_assert!(t.count <= room);
                prop_assert!(i64::from(t.count) <= i64::from(concurrency) - in_flight);
                for i in 0..t.count {
                    let at = t.send_at(i, &limits);
                    prop_assert!(at >= now);
                    prop_assert!(at <= now + chrono::Duration::seconds(1));
                    sent.push(at);
                }
                endpoint.next_send_at = t.send_at(t.count, &limits);
            }
            for pair in sent.windows(2) {
                prop_assert!(pair[1] - pair[0] >= interval, "{:?} then {:?}", pair[0], pair[1]);
            }
        }
    }
}
