//! Settings of the api service, read from the environment (DESIGN §5).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use foodseg_engine::Subjects;
use foodseg_engine::netguard::NetPolicy;

/// Default `FOODSEG_MAX_ATTEMPTS`: attempts a job gets in all.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 4;

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {var}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// Everything the api needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `NATS_URL`.
    pub nats_url: String,
    /// `FOODSEG_API_ADDR`, default `0.0.0.0:8000`.
    pub addr: SocketAddr,
    /// `FOODSEG_MODELS_DIR`, default `models`.
    pub models_dir: PathBuf,
    /// `FOODSEG_DEFAULT_MODEL`: model used when a request's `model_id` is null.
    pub default_model: Option<String>,
    /// `FOODSEG_MAX_ATTEMPTS`, default 4.
    pub max_attempts: i32,
    /// `FOODSEG_URL_ALLOW_CIDRS`: IP-literal hosts in these ranges are accepted.
    pub net_policy: NetPolicy,
    /// `FOODSEG_DB_MAX_CONNECTIONS`, default 32.
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before answering 503.
    pub db_acquire_timeout: Duration,
    /// NATS subject and stream names (`FOODSEG_NATS_PREFIX`, default `foodseg`).
    pub subjects: Subjects,
    /// `FOODSEG_UPLOAD_MAX_BYTES` (default 20 MiB) and the uploads' hard maximum age.
    pub uploads: crate::upload::UploadLimits,
}

impl Config {
    /// Defaults for everything but the two URLs.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            nats_url: nats_url.into(),
            addr: SocketAddr::from(([0, 0, 0, 0], 8000)),
            models_dir: PathBuf::from("models"),
            default_model: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            net_policy: NetPolicy::default(),
            db_max_connections: 32,
            db_acquire_timeout: Duration::from_secs(3),
            subjects: Subjects::default(),
            uploads: crate::upload::UploadLimits::default(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut config = Config::new(
            get("DATABASE_URL").unwrap_or_else(|| "postgres://localhost/foodseg".into()),
            get("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
        );
        if let Some(v) = get("FOODSEG_API_ADDR") {
            config.addr = parse("FOODSEG_API_ADDR", &v, |v| v.parse::<SocketAddr>())?;
        }
        if let Some(v) = get("FOODSEG_MODELS_DIR") {
            config.models_dir = PathBuf::from(v);
        }
        config.default_model = get("FOODSEG_DEFAULT_MODEL");
        if let Some(v) = get("FOODSEG_MAX_ATTEMPTS") {
            config.max_attempts = parse("FOODSEG_MAX_ATTEMPTS", &v, |v| {
                v.parse::<i32>().map_err(|e| e.to_string()).and_then(|n| {
                    if n > 0 {
                        Ok(n)
                    } else {
                        Err("must be at least 1".into())
                    }
                })
            })?;
        }
        if let Some(v) = get("FOODSEG_URL_ALLOW_CIDRS") {
            config.net_policy = parse("FOODSEG_URL_ALLOW_CIDRS", &v, NetPolicy::parse_allow_list)?;
        }
        if let Some(v) = get("FOODSEG_DB_MAX_CONNECTIONS") {
            config.db_max_connections = parse("FOODSEG_DB_MAX_CONNECTIONS", &v, |v| {
                v.parse::<u32>().map_err(|e| e.to_string()).and_then(|n| {
                    if n > 0 {
                        Ok(n)
                    } else {
                        Err("must be at least 1".into())
                    }
                })
            })?;
        }
        if let Some(v) = get("FOODSEG_UPLOAD_MAX_BYTES") {
            config.uploads.max_bytes = parse("FOODSEG_UPLOAD_MAX_BYTES", &v, |v| {
                v.parse::<usize>().map_err(|e| e.to_string()).and_then(|n| {
                    if n > 0 {
                        Ok(n)
                    } else {
                        Err("must be at least 1".into())
                    }
                })
            })?;
        }
        if let Some(v) = get("FOODSEG_NATS_PREFIX") {
            config.subjects = Subjects::with_prefix(&v);
        }
        Ok(config)
    }
}

fn parse<T, E: ToString>(
    var: &'static str,
    value: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ConfigError> {
    f(value.trim()).map_err(|e| ConfigError {
        var,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = from(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:8000");
        assert_eq!(c.models_dir, PathBuf::from("models"));
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.database_url, "postgres://localhost/foodseg");
        assert_eq!(c.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(c.default_model, None);
        assert_eq!(c.subjects, Subjects::default());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = from(&[("FOODSEG_API_ADDR", "nope")]).unwrap_err();
        assert_eq!(e.var, "FOODSEG_API_ADDR");
        let e = from(&[("FOODSEG_MAX_ATTEMPTS", "0")]).unwrap_err();
        assert_eq!(e.var, "FOODSEG_MAX_ATTEMPTS");
        let e = from(&[("FOODSEG_URL_ALLOW_CIDRS", "10.0.0.0/99")]).unwrap_err();
        assert_eq!(e.var, "FOODSEG_URL_ALLOW_CIDRS");
    }

    #[test]
    fn values_are_read() {
        let c = from(&[
            ("FOODSEG_API_ADDR", "127.0.0.1:9000"),
            ("FOODSEG_DEFAULT_MODEL", "124096"),
            ("FOODSEG_MAX_ATTEMPTS", "2"),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8"),
        ])
        .unwrap();
        assert_eq!(c.addr.port(), 9000);
        assert_eq!(c.default_model.as_deref(), Some("124096"));
        assert_eq!(c.max_attempts, 2);
        assert_eq!(c.net_policy.allow.len(), 1);
    }
}
