//! Scheduler settings, read from the environment (DESIGN §5 plus the scheduler's own).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::NaiveTime;
use foodseg_engine::Subjects;
use foodseg_engine::netguard::NetPolicy;

use crate::schedule::{RetrySchedule, parse_duration};
use crate::signature::WebhookSecret;

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub nats_url: String,
    /// NATS subject/stream names (tests use a unique prefix).
    pub subjects: Subjects,
    /// `/metrics` and `/health/*` listener; none when `FOODSEG_SCHEDULER_ADDR=off`.
    pub http_addr: Option<SocketAddr>,
    /// Signs webhooks when set (`FOODSEG_WEBHOOK_SECRET=whsec_…`).
    pub webhook_secret: Option<WebhookSecret>,
    /// Which webhook addresses may be called (`FOODSEG_URL_ALLOW_CIDRS`).
    pub net_policy: NetPolicy,
    /// Whole-request timeout of one delivery attempt.
    pub attempt_timeout: Duration,
    /// Connect timeout of one delivery attempt.
    pub connect_timeout: Duration,
    pub retry_schedule: RetrySchedule,
    /// Delivery attempts in flight at once; a hanging receiver holds one slot only.
    pub max_in_flight: usize,
    /// Scan for due deliveries at least this often (events and notifications wake it
    /// sooner).
    pub poll_interval: Duration,
    /// How often the sweeps run (lease expiry, lost messages).
    pub sweep_interval: Duration,
    /// A QUEUED job untouched this long may have lost its dispatch message.
    pub stale_queued_after: Duration,
    /// Daily reconciliation time, UTC.
    pub reconcile_at: NaiveTime,
    /// Actor name in job events and logs.
    pub scheduler_id: String,
    /// Uploaded images are purged this long after their job finished
    /// (`FOODSEG_UPLOAD_RETENTION_HOURS`, default 24).
    pub upload_retention: Duration,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (tests pass a map instead of the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let problem = |var: &'static str| move |p: String| ConfigError { var, problem: p };
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match var(name) {
                Some(v) => parse_duration(&v)
                    .map_err(|e| e.to_string())
                    .and_then(|d| {
                        if d.is_zero() {
                            Err("must be more than zero".to_string())
                        } else {
                            Ok(d)
                        }
                    })
                    .map_err(problem(name)),
                None => Ok(default),
            }
        };
        let net_policy = match var("FOODSEG_URL_ALLOW_CIDRS") {
            Some(list) => NetPolicy::parse_allow_list(&list)
                .map_err(|e| format!("{list:?} is not a comma-separated CIDR list: {e}"))
                .map_err(problem("FOODSEG_URL_ALLOW_CIDRS"))?,
            None => NetPolicy::default(),
        };
        let webhook_secret = var("FOODSEG_WEBHOOK_SECRET")
            .map(|s| s.parse::<WebhookSecret>())
            .transpose()
            .map_err(|e| e.to_string())
            .map_err(problem("FOODSEG_WEBHOOK_SECRET"))?;
        let http_addr = match var("FOODSEG_SCHEDULER_ADDR").as_deref() {
            Some("off") => None,
            Some(a) => Some(
                a.parse()
                    .map_err(|_| format!("{a:?} is not an address such as 0.0.0.0:8002"))
                    .map_err(problem("FOODSEG_SCHEDULER_ADDR"))?,
            ),
            None => Some(SocketAddr::from(([0, 0, 0, 0], 8002))),
        };
        let retry_schedule = match var("FOODSEG_WEBHOOK_RETRY_SCHEDULE") {
            Some(list) => RetrySchedule::parse(&list)
                .map_err(|e| e.to_string())
                .map_err(problem("FOODSEG_WEBHOOK_RETRY_SCHEDULE"))?,
            None => RetrySchedule::default(),
        };
        let max_in_flight = match var("FOODSEG_WEBHOOK_MAX_IN_FLIGHT") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{v:?} is not a positive number"))
                .map_err(problem("FOODSEG_WEBHOOK_MAX_IN_FLIGHT"))?,
            None => 64,
        };
        let reconcile_at = match var("FOODSEG_RECONCILE_AT") {
            Some(v) => NaiveTime::parse_from_str(v.trim(), "%H:%M")
                .map_err(|_| format!("{v:?} is not a UTC time such as 03:00"))
                .map_err(problem("FOODSEG_RECONCILE_AT"))?,
            None => NaiveTime::from_hms_opt(3, 0, 0).unwrap_or_default(),
        };
        let upload_retention = match var("FOODSEG_UPLOAD_RETENTION_HOURS") {
            Some(v) => crate::uploads::parse_retention_hours(&v)
                .map_err(problem("FOODSEG_UPLOAD_RETENTION_HOURS"))?,
            None => crate::uploads::DEFAULT_RETENTION,
        };
        Ok(Config {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://localhost/foodseg".into()),
            nats_url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            subjects: var("FOODSEG_NATS_PREFIX")
                .map(|p| Subjects::with_prefix(&p))
                .unwrap_or_default(),
            http_addr,
            webhook_secret,
            net_policy,
            attempt_timeout: duration("FOODSEG_WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            connect_timeout: duration("FOODSEG_WEBHOOK_CONNECT_TIMEOUT", Duration::from_secs(5))?,
            retry_schedule,
            max_in_flight,
            poll_interval: duration("FOODSEG_SCHEDULER_POLL", Duration::from_secs(1))?,
            sweep_interval: duration("FOODSEG_SWEEP_INTERVAL", Duration::from_secs(5))?,
            stale_queued_after: duration("FOODSEG_STALE_QUEUED_AFTER", Duration::from_secs(60))?,
            reconcile_at,
            scheduler_id: var("FOODSEG_SCHEDULER_ID").unwrap_or_else(default_scheduler_id),
            upload_retention,
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
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.http_addr, Some("0.0.0.0:8002".parse().unwrap()));
        assert_eq!(c.attempt_timeout, Duration::from_secs(10));
        assert_eq!(c.reconcile_at, NaiveTime::from_hms_opt(3, 0, 0).unwrap());
        assert_eq!(c.max_in_flight, 64);
        assert!(c.webhook_secret.is_none());
        assert_eq!(c.retry_schedule, RetrySchedule::default());
        assert_eq!(c.subjects, Subjects::default());
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
        ])
        .unwrap();
        assert_eq!(c.http_addr, None);
        assert_eq!(c.reconcile_at, NaiveTime::from_hms_opt(23, 45, 0).unwrap());
        assert_eq!(c.attempt_timeout, Duration::from_millis(250));
        assert!(c.webhook_secret.is_some());
        assert_eq!(c.net_policy.allow.len(), 1);
        assert_eq!(c.retry_schedule.max_attempts(), 3);
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
        ] {
            let e = config(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var);
        }
    }
}
