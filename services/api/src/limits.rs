//! Abuse limits: a token bucket per caller (API key, else client address) on enqueues,
//! uploads and redeliveries — over budget answers 429 with `Retry-After` — and a cap on
//! uploads in flight, so a burst of large uploads cannot exhaust the api's memory.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::error::ApiError;

/// Requests refused by a limit, by route (`enqueue`, `uploads`, `redeliver`) and reason
/// (`rate`, `uploads_in_flight`).
pub const RATE_LIMITED_TOTAL: &str = "foodseg_api_rate_limited_total";
/// Uploads being received or stored right now.
pub const UPLOADS_IN_FLIGHT: &str = "foodseg_api_uploads_in_flight";

/// `count` requests per `period` and caller, at most `count` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let step = self.period / self.count.get();
        Quota::with_period(step).map(|q| q.allow_burst(self.count))
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `120/1m`, `10/1s`, `5/1h`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (count, period) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a rate such as 120/1m"))?;
        let count: NonZeroU32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a count of at least 1"))?;
        let period =
            foodseg_runtime::config::parse_duration(period, foodseg_runtime::Unit::Seconds)?;
        if period.is_zero() {
            return Err("the period must be more than zero".into());
        }
        Ok(Rate { count, period })
    }
}

/// The limits' settings; `None` turns a rate limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// `FOODSEG_LIMIT_ENQUEUE`: `POST /enqueue` per caller.
    pub enqueue: Option<Rate>,
    /// `FOODSEG_LIMIT_UPLOADS`: `POST /v2/uploads` per caller.
    pub uploads: Option<Rate>,
    /// `FOODSEG_LIMIT_REDELIVER`: `POST /jobs/{id}/redeliver` per caller.
    pub redeliver: Option<Rate>,
    /// `FOODSEG_UPLOADS_IN_FLIGHT`: uploads received or stored at once, all callers.
    pub uploads_in_flight: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let rate = |count: u32, secs: u64| {
            NonZeroU32::new(count).map(|count| Rate {
                count,
                period: Duration::from_secs(secs),
            })
        };
        LimitSettings {
            enqueue: rate(600, 1),
            uploads: rate(60, 60),
            redeliver: rate(30, 60),
            uploads_in_flight: 4,
        }
    }
}

/// What a limit guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Enqueue,
    Uploads,
    Redeliver,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Enqueue => "enqueue",
            Route::Uploads => "uploads",
            Route::Redeliver => "redeliver",
        }
    }
}

/// The limits in force. Shared behind an `Arc` in the api's state.
pub struct Limits {
    enqueue: Option<DefaultKeyedRateLimiter<String>>,
    uploads: Option<DefaultKeyedRateLimiter<String>>,
    redeliver: Option<DefaultKeyedRateLimiter<String>>,
    uploads_in_flight: Arc<Semaphore>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

/// Callers remembered per limiter before idle ones are forgotten.
const MAX_CALLERS: usize = 100_000;

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        let keyed = |rate: Option<Rate>| rate.and_then(Rate::quota).map(RateLimiter::keyed);
        Limits {
            enqueue: keyed(settings.enqueue),
            uploads: keyed(settings.uploads),
            redeliver: keyed(settings.redeliver),
            uploads_in_flight: Arc::new(Semaphore::new(settings.uploads_in_flight.max(1))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request of `caller` from `route`'s budget; 429 when it is spent.
    pub fn check(&self, route: Route, caller: Option<&Caller>) -> Result<(), ApiError> {
        let limiter = match route {
            Route::Enqueue => &self.enqueue,
            Route::Uploads => &self.uploads,
            Route::Redeliver => &self.redeliver,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_CALLERS {
            limiter.retain_recent();
        }
        match limiter.check_key(&budget_key(caller)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!(RATE_LIMITED_TOTAL, "route" => route.as_str(), "reason" => "rate")
                    .increment(1);
                Err(ApiError::RateLimited {
                    what: route.as_str(),
                    retry_after: not_until.wait_time_from(self.clock.now()),
                })
            }
        }
    }

    /// A place among the uploads in flight, held until dropped; 429 when all are taken.
    pub fn upload_slot(&self) -> Result<UploadSlot, ApiError> {
        match self.uploads_in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!(UPLOADS_IN_FLIGHT).increment(1.0);
                Ok(UploadSlot(permit))
            }
            Err(_) => {
                metrics::counter!(RATE_LIMITED_TOTAL, "route" => "uploads", "reason" => "uploads_in_flight")
                    .increment(1);
                Err(ApiError::RateLimited {
                    what: "uploads in flight",
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }
}

/// One upload's place in flight.
pub struct UploadSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for UploadSlot {
    fn drop(&mut self) {
        metrics::gauge!(UPLOADS_IN_FLIGHT).decrement(1.0);
    }
}

/// One budget per key, else per client address.
fn budget_key(caller: Option<&Caller>) -> String {
    match caller {
        Some(Caller::Key(key)) => format!("key:{}", key.id),
        Some(Caller::Anonymous(Some(ip))) => format!("ip:{ip}"),
        Some(Caller::Anonymous(None)) | None => "anonymous".into(),
    }
}

pub fn describe() {
    metrics::describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests answered 429 by a limit, by route and reason (rate, uploads_in_flight)"
    );
    metrics::describe_gauge!(
        UPLOADS_IN_FLIGHT,
        "Uploads being received or stored right now"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(ip: &str) -> Caller {
        Caller::Anonymous(Some(ip.parse().unwrap()))
    }

    #[test]
    fn rates_parse() {
        let r: Rate = "120/1m".parse().unwrap();
        assert_eq!(r.count.get(), 120);
        assert_eq!(r.period, Duration::from_secs(60));
        assert_eq!(
            "5/2".parse::<Rate>().unwrap().period,
            Duration::from_secs(2)
        );
        for bad in ["0/1s", "10", "x/1s", "10/0s", "10/soon"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_caller_has_its_own_budget_and_429_says_when_to_retry() {
        let limits = Limits::new(&LimitSettings {
            redeliver: Some("2/1m".parse().unwrap()),
            ..LimitSettings::default()
        });
        let a = caller("203.0.113.1");
        let b = caller("203.0.113.2");
        assert!(limits.check(Route::Redeliver, Some(&a)).is_ok());
        assert!(limits.check(Route::Redeliver, Some(&a)).is_ok());
        let Err(ApiError::RateLimited { retry_after, .. }) =
            limits.check(Route::Redeliver, Some(&a))
        else {
            panic!("the third redelivery within a minute is refused");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(30));
        assert!(limits.check(Route::Redeliver, Some(&b)).is_ok());
    }

    #[test]
    fn uploads_in_flight_are_capped() {
        let limits = Limits::new(&LimitSettings {
            uploads_in_flight: 2,
            ..LimitSettings::default()
        });
        let one = limits.upload_slot().unwrap();
        let _two = limits.upload_slot().unwrap();
        assert!(matches!(
            limits.upload_slot(),
            Err(ApiError::RateLimited { .. })
        ));
        drop(one);
        assert!(limits.upload_slot().is_ok());
    }

    #[test]
    fn a_limit_that_is_off_never_refuses() {
        let limits = Limits::new(&LimitSettings {
            enqueue: None,
            ..LimitSettings::default()
        });
        for _ in 0..10_000 {
            assert!(limits.check(Route::Enqueue, None).is_ok());
        }
    }
}
