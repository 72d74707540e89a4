//! Abuse limits: a token bucket per caller (API key, else client address; IPv6 clients
//! by their /64, the smallest network one subscriber gets) on enqueues, uploads, the feed
//! and redeliveries — over budget answers 429 with `Retry-After` — a budget of refused
//! API keys per client address (past it, 429 before any lookup), and a cap on uploads in
//! flight, at most half of them (rounded up) for one caller, so a burst of large or slow
//! uploads can neither exhaust the api's memory nor lock others out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::error::ApiError;

/// Requests refused by a limit, by route (`enqueue`, `uploads`, `feed`, `redeliver`,
/// `unauthorized`) and reason (`rate`, `uploads_in_flight`, `refused_keys`).
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
    /// `FOODSEG_LIMIT_FEED`: `GET /v2/jobs` per caller.
    pub feed: Option<Rate>,
    /// `FOODSEG_LIMIT_UNAUTHORIZED`: refused API keys (401) per client address and
    /// period; past it the address gets 429 without its token being looked up.
    pub unauthorized: Option<Rate>,
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
            feed: rate(10, 1),
            unauthorized: rate(20, 60),
            uploads_in_flight: 4,
        }
    }
}

/// What a limit guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Enqueue,
    Uploads,
    Feed,
    Redeliver,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Enqueue => "enqueue",
            Route::Uploads => "uploads",
            Route::Feed => "feed",
            Route::Redeliver => "redeliver",
        }
    }
}

/// The limits in force. Shared behind an `Arc` in the api's state.
pub struct Limits {
    enqueue: Option<DefaultKeyedRateLimiter<String>>,
    uploads: Option<DefaultKeyedRateLimiter<String>>,
    feed: Option<DefaultKeyedRateLimiter<String>>,
    redeliver: Option<DefaultKeyedRateLimiter<String>>,
    refused_keys: Option<Strikes>,
    uploads_in_flight: Arc<Semaphore>,
    /// Uploads in flight per caller, and the most one caller may hold.
    uploads_per_caller: Arc<Mutex<HashMap<String, usize>>>,
    max_uploads_per_caller: usize,
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
        let slots = settings.uploads_in_flight.max(1);
        Limits {
            enqueue: keyed(settings.enqueue),
            uploads: keyed(settings.uploads),
            feed: keyed(settings.feed),
            redeliver: keyed(settings.redeliver),
            refused_keys: settings.unauthorized.map(Strikes::new),
            uploads_in_flight: Arc::new(Semaphore::new(slots)),
            uploads_per_caller: Arc::default(),
            max_uploads_per_caller: slots.div_ceil(2),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request of `caller` from `route`'s budget; 429 when it is spent.
    pub fn check(&self, route: Route, caller: Option<&Caller>) -> Result<(), ApiError> {
        let limiter = match route {
            Route::Enqueue => &self.enqueue,
            Route::Uploads => &self.uploads,
            Route::Feed => &self.feed,
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

    /// 429 when the client at `ip` has had its budget of refused API keys: checked
    /// before a presented token is looked up.
    pub fn check_refused_keys(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(strikes) = &self.refused_keys else {
            return Ok(());
        };
        match strikes.spent(&address_key(ip)) {
            None => Ok(()),
            Some(retry_after) => {
                metrics::counter!(RATE_LIMITED_TOTAL, "route" => "unauthorized", "reason" => "refused_keys")
                    .increment(1);
                Err(ApiError::RateLimited {
                    what: "refused API keys from this address",
                    retry_after,
                })
            }
        }
    }

    /// Counts one refused API key against the client at `ip`.
    pub fn refused_key(&self, ip: Option<IpAddr>) {
        if let Some(strikes) = &self.refused_keys {
            strikes.strike(address_key(ip));
        }
    }

    /// A place among the uploads in flight, held until dropped; 429 when all are taken,
    /// or when `caller` holds half of them (rounded up) already.
    pub fn upload_slot(&self, caller: Option<&Caller>) -> Result<UploadSlot, ApiError> {
        let who = budget_key(caller);
        let refused = |what| {
            metrics::counter!(RATE_LIMITED_TOTAL, "route" => "uploads", "reason" => "uploads_in_flight")
                .increment(1);
            ApiError::RateLimited {
                what,
                retry_after: Duration::from_secs(1),
            }
        };
        {
            let mut held = self
                .uploads_per_caller
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mine = held.entry(who.clone()).or_default();
            if *mine >= self.max_uploads_per_caller {
                return Err(refused("uploads in flight from this caller"));
            }
            *mine += 1;
        }
        // From here the caller's count is given back on drop, whatever happens.
        let held = CallerHold {
            who,
            counts: self.uploads_per_caller.clone(),
        };
        match self.uploads_in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!(UPLOADS_IN_FLIGHT).increment(1.0);
                Ok(UploadSlot {
                    _permit: permit,
                    _held: held,
                })
            }
            Err(_) => Err(refused("uploads in flight")),
        }
    }
}

/// One upload's place in flight.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    _held: CallerHold,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        metrics::gauge!(UPLOADS_IN_FLIGHT).decrement(1.0);
    }
}

/// One caller's count of uploads in flight, given back when dropped.
struct CallerHold {
    who: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for CallerHold {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.who);
            }
        }
    }
}

/// A fixed-window count per client: at most `count` strikes per `period`. Unlike a
/// token bucket it can be asked whether the budget is spent without spending any.
struct Strikes {
    rate: Rate,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Strikes {
    fn new(rate: Rate) -> Self {
        Strikes {
            rate,
            windows: Mutex::default(),
        }
    }

    /// How long until `who` may be struck again, when its budget is spent.
    fn spent(&self, who: &str) -> Option<Duration> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let (start, n) = windows.get(who)?;
        let age = start.elapsed();
        (age < self.rate.period && *n >= self.rate.count.get()).then(|| self.rate.period - age)
    }

    fn strike(&self, who: String) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > MAX_CALLERS {
            windows.retain(|_, (start, _)| start.elapsed() < self.rate.period);
        }
        let window = windows.entry(who).or_insert((Instant::now(), 0));
        if window.0.elapsed() >= self.rate.period {
            *window = (Instant::now(), 0);
        }
        window.1 = window.1.saturating_add(1);
    }
}

/// One budget per key, else per client address.
fn budget_key(caller: Option<&Caller>) -> String {
    match caller {
        Some(Caller::Key(key)) => format!("key:{}", key.id),
        Some(Caller::Anonymous(ip)) => address_key(*ip),
        None => address_key(None),
    }
}

/// One budget per IPv4 address, or per IPv6 /64: a subscriber is routinely given a
/// whole /64, so counting its addresses one by one would give it unlimited budgets.
fn address_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let net = ipnet::Ipv6Net::new(v6, 64)
                .map(|net| net.trunc())
                .unwrap_or_else(|_| ipnet::Ipv6Net::from(v6));
            format!("ip:{net}")
        }
        None => "anonymous".into(),
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
        let (a, b) = (caller("203.0.113.1"), caller("203.0.113.2"));
        let one = limits.upload_slot(Some(&a)).unwrap();
        let _two = limits.upload_slot(Some(&b)).unwrap();
        assert!(matches!(
            limits.upload_slot(Some(&caller("203.0.113.3"))),
            Err(ApiError::RateLimited { .. })
        ));
        drop(one);
        assert!(limits.upload_slot(Some(&a)).is_ok());
    }

    #[test]
    fn one_caller_holds_at_most_half_of_the_upload_slots() {
        for (slots, half) in [(1, 1), (2, 1), (4, 2), (5, 3)] {
            let limits = Limits::new(&LimitSettings {
                uploads_in_flight: slots,
                ..LimitSettings::default()
            });
            let a = caller("203.0.113.1");
            let held: Vec<_> = (0..half)
                .map(|_| limits.upload_slot(Some(&a)).unwrap())
                .collect();
            assert!(
                limits.upload_slot(Some(&a)).is_err(),
                "{slots} slots: the caller's {} is refused",
                half + 1
            );
            if slots > half {
                assert!(limits.upload_slot(Some(&caller("203.0.113.2"))).is_ok());
            }
            drop(held);
            assert!(limits.upload_slot(Some(&a)).is_ok());
        }
    }

    #[test]
    fn ipv6_callers_share_a_budget_per_64() {
        let limits = Limits::new(&LimitSettings {
            redeliver: Some("2/1m".parse().unwrap()),
            ..LimitSettings::default()
        });
        assert!(
            limits
                .check(Route::Redeliver, Some(&caller("2001:db8:1:2::1")))
                .is_ok()
        );
        assert!(
            limits
                .check(Route::Redeliver, Some(&caller("2001:db8:1:2:ffff::9")))
                .is_ok()
        );
        assert!(
            limits
                .check(Route::Redeliver, Some(&caller("2001:db8:1:2:abcd::7")))
                .is_err(),
            "a third address of the same /64 shares its budget"
        );
        assert!(
            limits
                .check(Route::Redeliver, Some(&caller("2001:db8:1:3::1")))
                .is_ok()
        );
        assert_eq!(
            address_key(Some("::ffff:203.0.113.5".parse().unwrap())),
            "ip:203.0.113.5"
        );
    }

    #[test]
    fn refused_keys_are_counted_per_address_and_then_refused_before_lookup() {
        let limits = Limits::new(&LimitSettings {
            unauthorized: Some("3/1m".parse().unwrap()),
            ..LimitSettings::default()
        });
        let ip = Some("198.51.100.4".parse().unwrap());
        for _ in 0..3 {
            assert!(limits.check_refused_keys(ip).is_ok());
            limits.refused_key(ip);
        }
        let Err(ApiError::RateLimited { retry_after, .. }) = limits.check_refused_keys(ip) else {
            panic!("the fourth refused key within a minute is not looked up");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60));
        assert!(
            limits
                .check_refused_keys(Some("198.51.100.5".parse().unwrap()))
                .is_ok()
        );
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
