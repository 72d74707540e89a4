//! Scheduler settings, read from the environment with the shared loader.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::NaiveTime;
use foodseg_runtime::config::parse_duration;
use foodseg_runtime::{Common, ConfigError, Env, Unit};

use foodseg_engine::domain::{EndpointLimits, HealthPolicy, Rate};

use crate::webhook::schedule::RetrySchedule;
use crate::webhook::signature::WebhookSecrets;

/// Default `FOODSEG_DB_STATEMENT_TIMEOUT` of the scheduler: its periodic statements are
/// bounded batches read through indexes (retention, purges, the daily reconciliation).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, NATS, subjects, models, URL policy, pool size.
    pub common: Common,
    /// `/metrics` and `/health/*` listener (`FOODSEG_SCHEDULER_ADDR`, default
    /// `0.0.0.0:8002`, `off` for none).
    pub http_addr: Option<SocketAddr>,
    /// Signs webhooks when set, one signature per secret (`FOODSEG_WEBHOOK_SECRET=whsec_…`,
    /// several separated by spaces while a secret is rotated).
    pub webhook_secrets: Option<WebhookSecrets>,
    /// Whole-request timeout of one delivery attempt (`FOODSEG_WEBHOOK_TIMEOUT`, 10 s).
    pub attempt_timeout: Duration,
    /// Connect timeout of one delivery attempt (`FOODSEG_WEBHOOK_CONNECT_TIMEOUT`, 5 s).
    pub connect_timeout: Duration,
    /// `FOODSEG_WEBHOOK_RETRY_SCHEDULE`: the maximum delay before each retry.
    pub retry_schedule: RetrySchedule,
    /// Delivery attempts in flight at once; a hanging receiver holds one slot only
    /// (`FOODSEG_WEBHOOK_MAX_IN_FLIGHT`, 64).
    pub max_in_flight: usize,
    /// Rate and concurrency per webhook endpoint, shared by all schedulers
    /// (`FOODSEG_WEBHOOK_ENDPOINT_RATE`, `50/1s`; `FOODSEG_WEBHOOK_ENDPOINT_CONCURRENCY`, 8).
    pub endpoint_limits: EndpointLimits,
    /// When an endpoint is paused and how it is probed
    /// (`FOODSEG_WEBHOOK_ENDPOINT_FAILURES`, 5; `FOODSEG_WEBHOOK_PROBE_INTERVAL`, 30 s;
    /// `FOODSEG_WEBHOOK_PROBE_MAX_INTERVAL`, 5 min).
    pub endpoint_health: HealthPolicy,
    /// A delivery pending this long fails, however its endpoint fares
    /// (`FOODSEG_WEBHOOK_MAX_AGE`, 72 h).
    pub delivery_max_age: Duration,
    /// Scan for due deliveries at least this often; events and notifications wake it
    /// sooner (`FOODSEG_SCHEDULER_POLL`, 1 s).
    pub poll_interval: Duration,
    /// How often the sweeps run (`FOODSEG_SWEEP_INTERVAL`, 5 s).
    pub sweep_interval: Duration,
    /// A QUEUED job untouched this long may have lost its dispatch message
    /// (`FOODSEG_STALE_QUEUED_AFTER`, 60 s).
    pub stale_queued_after: Duration,
    /// A job queued this long for a model no worker has served in that time ends
    /// `MFR.Job.ERROR` "no worker serves model X", with its webhook
    /// (`FOODSEG_MAX_QUEUE_WAIT`, 1 h).
    pub max_queue_wait: Duration,
    /// Daily reconciliation time, UTC (`FOODSEG_RECONCILE_AT`, `03:00`).
    pub reconcile_at: NaiveTime,
    /// Actor name in job events and logs (`FOODSEG_SCHEDULER_ID`).
    pub scheduler_id: String,
    /// Uploaded images are purged this long after their job finished
    /// (`FOODSEG_UPLOAD_RETENTION_HOURS`, 24; 0 purges at once).
    pub upload_retention: Duration,
    /// The workers' lease (`FOODSEG_WORKER_LEASE_SECS`, 15 s, read by the common config).
    /// After Postgres was unreachable, lapsed leases are re-driven only once the scheduler
    /// and Postgres have been up this long again, so live workers renew theirs first.
    pub redrive_grace: Duration,
    /// Finished jobs (with their events, deliveries, upload and idempotency key) are
    /// deleted this long after they finished (`FOODSEG_RETENTION_DAYS`, 30; `0` or `off`
    /// keeps them forever). `None` when off.
    pub retention: Option<Duration>,
}

/// Default `FOODSEG_WEBHOOK_MAX_AGE`.
pub const DEFAULT_DELIVERY_MAX_AGE: Duration = Duration::from_secs(72 * 3600);

/// `FOODSEG_WEBHOOK_ENDPOINT_RATE`: `<count>/<period>`, such as `50/1s` or `600/1m`.
fn parse_rate(value: &str) -> Result<Rate, String> {
    let usage = "a count per period such as 50/1s or 600/1m";
    let (count, period) = value.split_once('/').ok_or(usage)?;
    let count: u32 = count.trim().parse().map_err(|_| usage)?;
    let period = parse_duration(period, Unit::Seconds).map_err(|e| format!("{e}; {usage}"))?;
    Rate::new(count, period).map_err(|e| e.to_string())
}

/// Default `FOODSEG_UPLOAD_RETENTION_HOURS`.
pub const DEFAULT_UPLOAD_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Default `FOODSEG_RETENTION_DAYS`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// `FOODSEG_RETENTION_DAYS`: `off` or zero for none, else a duration (bare numbers are
/// days, fractions allowed: `0.5` is twelve hours; `36h` works too).
fn parse_retention(value: &str) -> Result<Option<Duration>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let retention = parse_duration(value, Unit::Days)
        .map_err(|e| format!("{e}; or off (or 0) to keep finished jobs forever"))?;
    Ok((!retention.is_zero()).then_some(retention))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Env::from_process())
    }

    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let secs = |var, default| env.duration_or(var, Unit::Seconds, default);
        let (limits, health) = (EndpointLimits::default(), HealthPolicy::default());
        let common = Common::load(env, DEFAULT_STATEMENT_TIMEOUT)?;
        Ok(Config {
            http_addr: env.listen_addr_or(
                "FOODSEG_SCHEDULER_ADDR",
                Some(SocketAddr::from(([0, 0, 0, 0], 8002))),
            )?,
            webhook_secrets: env.secret("FOODSEG_WEBHOOK_SECRET", str::parse::<WebhookSecrets>)?,
            attempt_timeout: secs("FOODSEG_WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            connect_timeout: secs("FOODSEG_WEBHOOK_CONNECT_TIMEOUT", Duration::from_secs(5))?,
            retry_schedule: env
                .with("FOODSEG_WEBHOOK_RETRY_SCHEDULE", RetrySchedule::parse)?
                .unwrap_or_default(),
            max_in_flight: env.positive_or("FOODSEG_WEBHOOK_MAX_IN_FLIGHT", 64)?,
            poll_interval: secs("FOODSEG_SCHEDULER_POLL", Duration::from_secs(1))?,
            endpoint_limits: EndpointLimits {
                rate: env
                    .with("FOODSEG_WEBHOOK_ENDPOINT_RATE", parse_rate)?
                    .unwrap_or(limits.rate),
                concurrency: env
                    .positive_or("FOODSEG_WEBHOOK_ENDPOINT_CONCURRENCY", limits.concurrency)?,
                ahead: limits.ahead,
            },
            endpoint_health: HealthPolicy {
                failures_to_pause: env.positive_or(
                    "FOODSEG_WEBHOOK_ENDPOINT_FAILURES",
                    health.failures_to_pause,
                )?,
                probe_interval: secs("FOODSEG_WEBHOOK_PROBE_INTERVAL", health.probe_interval)?,
                probe_max_interval: secs(
                    "FOODSEG_WEBHOOK_PROBE_MAX_INTERVAL",
                    health.probe_max_interval,
                )?,
            },
            delivery_max_age: env.duration_or(
                "FOODSEG_WEBHOOK_MAX_AGE",
                Unit::Hours,
                DEFAULT_DELIVERY_MAX_AGE,
            )?,
            sweep_interval: secs("FOODSEG_SWEEP_INTERVAL", Duration::from_secs(5))?,
            stale_queued_after: secs("FOODSEG_STALE_QUEUED_AFTER", Duration::from_secs(60))?,
            max_queue_wait: secs("FOODSEG_MAX_QUEUE_WAIT", Duration::from_secs(3600))?,
            reconcile_at: env
                .with("FOODSEG_RECONCILE_AT", |v| {
                    NaiveTime::parse_from_str(v, "%H:%M")
                        .map_err(|_| "not a UTC time such as 03:00")
                })?
                .unwrap_or(NaiveTime::from_hms_opt(3, 0, 0).unwrap_or_default()),
            scheduler_id: env
                .get("FOODSEG_SCHEDULER_ID")
                .map(str::to_string)
                .unwrap_or_else(default_scheduler_id),
            upload_retention: env.duration_or_zero(
                "FOODSEG_UPLOAD_RETENTION_HOURS",
                Unit::Hours,
                DEFAULT_UPLOAD_RETENTION,
            )?,
            redrive_grace: common.worker_lease,
            retention: env
                .with("FOODSEG_RETENTION_DAYS", parse_retention)?
                .unwrap_or(Some(DEFAULT_RETENTION)),
            common,
        })
    }
}

fn default_scheduler_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("scheduler:{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foodseg_engine::Subjects;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.http_addr, Some("0.0.0.0:8002".parse().unwrap()));
        assert_eq!(c.attempt_timeout, Duration::from_secs(10));
        assert_eq!(c.reconcile_at, NaiveTime::from_hms_opt(3, 0, 0).unwrap());
        assert_eq!(c.max_in_flight, 64);
        assert!(c.webhook_secrets.is_none());
        assert_eq!(c.retry_schedule, RetrySchedule::default());
        assert_eq!(c.common.subjects, Subjects::default());
        assert_eq!(c.upload_retention, DEFAULT_UPLOAD_RETENTION);
        assert_eq!(c.max_queue_wait, Duration::from_secs(3600));
        assert_eq!(c.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.endpoint_limits.rate.to_string(), "50/1s");
        assert_eq!(c.endpoint_limits.concurrency, 8);
        assert_eq!(c.endpoint_health.failures_to_pause, 5);
        assert_eq!(c.endpoint_health.probe_interval, Duration::from_secs(30));
        assert_eq!(
            c.endpoint_health.probe_max_interval,
            Duration::from_secs(300)
        );
        assert_eq!(c.delivery_max_age, Duration::from_secs(72 * 3600));
    }

    #[test]
    fn endpoint_rates_are_a_count_per_period() {
        let rate = |v: &str| {
            config(&[("FOODSEG_WEBHOOK_ENDPOINT_RATE", v)]).map(|c| c.endpoint_limits.rate)
        };
        assert_eq!(rate("20/1s").unwrap().interval(), Duration::from_millis(50));
        assert_eq!(
            rate("600/1m").unwrap().interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            rate(" 5 / 2s ").unwrap().interval(),
            Duration::from_millis(400)
        );
        for bad in ["50", "0/1s", "50/0s", "x/1s", "50/soon", "-1/1s"] {
            let e = rate(bad).unwrap_err();
            assert_eq!(e.var, "FOODSEG_WEBHOOK_ENDPOINT_RATE", "{bad:?}");
            assert!(e.reason.contains("50/1s"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn retention_is_days_or_off() {
        let retention = |v: &str| config(&[("FOODSEG_RETENTION_DAYS", v)]).map(|c| c.retention);
        assert_eq!(
            retention("7").unwrap(),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(retention("0.5").unwrap(), Some(Duration::from_secs(43_200)));
        assert_eq!(
            retention("36h").unwrap(),
            Some(Duration::from_secs(36 * 3600))
        );
        assert_eq!(retention("0").unwrap(), None);
        assert_eq!(retention("OFF").unwrap(), None);
        for bad in ["-1", "a month", "never"] {
            let e = retention(bad).unwrap_err();
            assert_eq!(e.var, "FOODSEG_RETENTION_DAYS");
            assert!(e.reason.contains("off"), "{e}");
        }
    }

    #[test]
    fn settings_are_read() {
        let c = config(&[
            ("FOODSEG_SCHEDULER_ADDR", "off"),
            ("FOODSEG_RECONCILE_AT", "23:45"),
            ("FOODSEG_WEBHOOK_TIMEOUT", "250ms"),
            ("FOODSEG_WEBHOOK_SECRET", "whsec_c2VjcmV0"),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8"),
            ("FOODSEG_WEBHOOK_RETRY_SCHEDULE", "1s,2s"),
            ("FOODSEG_UPLOAD_RETENTION_HOURS", "0.5"),
            ("FOODSEG_MAX_QUEUE_WAIT", "20m"),
        ])
        .unwrap();
        assert_eq!(c.max_queue_wait, Duration::from_secs(1200));
        assert_eq!(c.http_addr, None);
        assert_eq!(c.reconcile_at, NaiveTime::from_hms_opt(23, 45, 0).unwrap());
        assert_eq!(c.attempt_timeout, Duration::from_millis(250));
        assert!(c.webhook_secrets.is_some());
        assert_eq!(c.common.net_policy.allow.len(), 1);
        assert_eq!(c.retry_schedule.max_attempts(), 3);
        assert_eq!(c.upload_retention, Duration::from_secs(1800));
        let zero = config(&[("FOODSEG_UPLOAD_RETENTION_HOURS", "0")]).unwrap();
        assert_eq!(zero.upload_retention, Duration::ZERO);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (var, value) in [
            ("FOODSEG_RECONCILE_AT", "3am"),
            ("FOODSEG_WEBHOOK_SECRET", "secret"),
            ("FOODSEG_URL_ALLOW_CIDRS", "localhost"),
            ("FOODSEG_WEBHOOK_TIMEOUT", "0s"),
            ("FOODSEG_SCHEDULER_ADDR", "port 8002"),
            ("FOODSEG_WEBHOOK_MAX_IN_FLIGHT", "0"),
            ("FOODSEG_WEBHOOK_ENDPOINT_CONCURRENCY", "0"),
            ("FOODSEG_WEBHOOK_ENDPOINT_FAILURES", "none"),
            ("FOODSEG_WEBHOOK_PROBE_INTERVAL", "often"),
            ("FOODSEG_WEBHOOK_MAX_AGE", "-1"),
            ("FOODSEG_UPLOAD_RETENTION_HOURS", "-1"),
            ("FOODSEG_UPLOAD_RETENTION_HOURS", "soon"),
        ] {
            let e = config(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var);
        }
    }

    #[test]
    fn a_bad_webhook_secret_is_not_printed() {
        let e = config(&[("FOODSEG_WEBHOOK_SECRET", "hunter2-not-base64")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
