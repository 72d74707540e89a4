//! Settings of the api service, read from the environment with the shared loader.

use std::net::SocketAddr;
use std::time::Duration;

use foodseg_engine::Attempt;
use foodseg_runtime::{Common, ConfigError, Env, Unit};

use crate::auth::AccessConfig;
use crate::limits::{LimitSettings, Rate};
use crate::upload::UploadLimits;

/// Default `FOODSEG_DB_STATEMENT_TIMEOUT` of the api: no answer waits longer on the
/// database ([`crate::state::DB_DEADLINE`]), so no statement should run longer either.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default `FOODSEG_MAX_ATTEMPTS`: attempts a job gets in all.
pub const DEFAULT_MAX_ATTEMPTS: Attempt = Attempt::new(4);

/// Everything the api needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, NATS, subjects, models, URL policy, pool size.
    pub common: Common,
    /// `FOODSEG_API_ADDR`.
    pub addr: SocketAddr,
    /// `FOODSEG_DEFAULT_MODEL`: model used when a request's `model_id` is null (default:
    /// the first in the registry).
    pub default_model: Option<String>,
    /// `FOODSEG_MAX_ATTEMPTS`: the attempt budget of each new job.
    pub max_attempts: Attempt,
    /// `FOODSEG_UPLOAD_MAX_BYTES` (default 20 MiB) and the uploads' hard maximum age.
    pub uploads: UploadLimits,
    /// `FOODSEG_REQUIRE_KEYS`, `FOODSEG_V1_ALLOW_CIDRS`, `FOODSEG_TRUSTED_PROXIES`,
    /// `FOODSEG_V1_OWNER`, `FOODSEG_CONSOLE_INSECURE_COOKIE`.
    pub access: AccessConfig,
    /// `FOODSEG_LIMIT_ENQUEUE`, `FOODSEG_LIMIT_UPLOADS`, `FOODSEG_LIMIT_REDELIVER`,
    /// `FOODSEG_LIMIT_FEED`, `FOODSEG_LIMIT_UNAUTHORIZED`, `FOODSEG_UPLOADS_IN_FLIGHT`.
    pub limits: LimitSettings,
    /// `FOODSEG_IDEMPOTENCY_HOURS`: how long an `Idempotency-Key` is kept (at least).
    pub idempotency_keep: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Env::from_process())
    }

    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let defaults = UploadLimits::default();
        Ok(Config {
            common: Common::load(env, DEFAULT_STATEMENT_TIMEOUT)?,
            addr: env.parse_or("FOODSEG_API_ADDR", SocketAddr::from(([0, 0, 0, 0], 8000)))?,
            default_model: env.get("FOODSEG_DEFAULT_MODEL").map(str::to_string),
            max_attempts: Attempt::new(
                env.positive_or("FOODSEG_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS.get())?,
            ),
            uploads: UploadLimits {
                max_bytes: env.positive_or("FOODSEG_UPLOAD_MAX_BYTES", defaults.max_bytes)?,
                body_timeout: env.duration_or(
                    "FOODSEG_UPLOAD_BODY_TIMEOUT",
                    Unit::Seconds,
                    defaults.body_timeout,
                )?,
                ..defaults
            },
            access: {
                let defaults = AccessConfig::default();
                AccessConfig {
                    require_keys: env.parse_or("FOODSEG_REQUIRE_KEYS", defaults.require_keys)?,
                    v1_allow: cidrs(env, "FOODSEG_V1_ALLOW_CIDRS")?,
                    trusted_proxies: cidrs(env, "FOODSEG_TRUSTED_PROXIES")?,
                    v1_owner: env.get("FOODSEG_V1_OWNER").map(str::to_string),
                    console_insecure_cookie: env.parse_or(
                        "FOODSEG_CONSOLE_INSECURE_COOKIE",
                        defaults.console_insecure_cookie,
                    )?,
                }
            },
            limits: {
                let defaults = LimitSettings::default();
                LimitSettings {
                    enqueue: rate(env, "FOODSEG_LIMIT_ENQUEUE", defaults.enqueue)?,
                    uploads: rate(env, "FOODSEG_LIMIT_UPLOADS", defaults.uploads)?,
                    redeliver: rate(env, "FOODSEG_LIMIT_REDELIVER", defaults.redeliver)?,
                    feed: rate(env, "FOODSEG_LIMIT_FEED", defaults.feed)?,
                    unauthorized: rate(env, "FOODSEG_LIMIT_UNAUTHORIZED", defaults.unauthorized)?,
                    uploads_in_flight: env
                        .positive_or("FOODSEG_UPLOADS_IN_FLIGHT", defaults.uploads_in_flight)?,
                }
            },
            idempotency_keep: env.duration_or(
                "FOODSEG_IDEMPOTENCY_HOURS",
                Unit::Hours,
                crate::idempotency::DEFAULT_KEEP,
            )?,
        })
    }
}

/// A rate limit such as `120/1m`, `off` for none, or `default` when unset.
fn rate(env: &Env, var: &'static str, default: Option<Rate>) -> Result<Option<Rate>, ConfigError> {
    Ok(env
        .with(var, |v| match v {
            "off" => Ok(None),
            v => v.parse::<Rate>().map(Some),
        })?
        .unwrap_or(default))
}

/// A comma-separated CIDR list (empty when unset).
fn cidrs(env: &Env, var: &'static str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    env.list(var)
        .iter()
        .map(|item| {
            item.parse::<ipnet::IpNet>().map_err(|e| ConfigError {
                var,
                value: env.get(var).map(str::to_string),
                reason: format!("{item:?} is not a CIDR such as 10.0.0.0/8: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use foodseg_engine::Subjects;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Env::from_pairs(vars.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:8000");
        assert_eq!(c.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(c.default_model, None);
        assert_eq!(c.common.subjects, Subjects::default());
        assert_eq!(c.uploads, UploadLimits::default());
        assert_eq!(c.uploads.max_bytes, 20 * 1024 * 1024);
        assert_eq!(c.uploads.body_timeout, Duration::from_secs(30));
        assert_eq!(c.common.db_statement_timeout, DEFAULT_STATEMENT_TIMEOUT);
        // What ships is safe: keys required, Secure console cookies, no v1 owner.
        assert_eq!(c.access, AccessConfig::default());
        assert!(c.access.require_keys);
        assert!(!c.access.console_insecure_cookie);
        assert_eq!(c.access.v1_owner, None);
        assert!(c.limits.feed.is_some() && c.limits.unauthorized.is_some());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("FOODSEG_API_ADDR", "nope"),
            ("FOODSEG_MAX_ATTEMPTS", "0"),
            ("FOODSEG_URL_ALLOW_CIDRS", "10.0.0.0/99"),
            ("FOODSEG_UPLOAD_MAX_BYTES", "0"),
            ("FOODSEG_UPLOAD_MAX_BYTES", "-1"),
            ("FOODSEG_UPLOAD_MAX_BYTES", "20MiB"),
        ] {
            assert_eq!(from(&[(var, value)]).unwrap_err().var, var, "{value}");
        }
    }

    #[test]
    fn values_are_read() {
        let c = from(&[
            ("FOODSEG_API_ADDR", "127.0.0.1:9000"),
            ("FOODSEG_DEFAULT_MODEL", "124096"),
            ("FOODSEG_MAX_ATTEMPTS", "2"),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8"),
            ("FOODSEG_UPLOAD_MAX_BYTES", "1048576"),
        ])
        .unwrap();
        assert_eq!(c.addr.port(), 9000);
        assert_eq!(c.default_model.as_deref(), Some("124096"));
        assert_eq!(c.max_attempts, Attempt::new(2));
        assert_eq!(c.common.net_policy.allow.len(), 1);
        assert_eq!(c.uploads.max_bytes, 1 << 20);
    }
}
