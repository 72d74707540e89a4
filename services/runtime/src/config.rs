//! The one configuration loader of the services: [`Env`] reads variables (from the
//! process, or from pairs in tests) with typed getters whose errors name the variable,
//! one syntax for durations, and [`Common`], the settings every service shares with
//! their defaults in one place. Each service's own `Config` is built from an [`Env`].

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use foodseg_engine::bus::MAX_REPLICAS;
use foodseg_engine::netguard::NetPolicy;
use foodseg_engine::relay::DEFAULT_BULK_WINDOW;
use foodseg_engine::{Bus, BusError, RelayConfig, StoreConfig, Subjects};

/// A variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}{} is invalid: {reason}", .value.as_ref().map(|v| format!("={v:?}")).unwrap_or_default())]
pub struct ConfigError {
    pub var: &'static str,
    /// The value as given; `None` for secrets, which are never printed.
    pub value: Option<String>,
    pub reason: String,
}

/// The unit of a bare number given for a duration (`FOODSEG_UPLOAD_RETENTION_HOURS=24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Milliseconds,
    Seconds,
    Hours,
    Days,
}

impl Unit {
    fn secs(self) -> f64 {
        match self {
            Unit::Milliseconds => 0.001,
            Unit::Seconds => 1.0,
            Unit::Hours => 3600.0,
            Unit::Days => 86_400.0,
        }
    }
}

/// Parses a duration: a number with a unit (`500ms`, `15s`, `2m`, `1h`, `7d`, `1h 30m`,
/// read by `humantime`), or a bare number (fractions allowed) counted in `unit`.
pub fn parse_duration(value: &str, unit: Unit) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return Err("must be a number of zero or more".into());
        }
        return Duration::try_from_secs_f64(n * unit.secs()).map_err(|e| e.to_string());
    }
    humantime::parse_duration(value)
        .map_err(|e| format!("not a duration such as 500ms, 15s, 2m, 1h or 7d ({e})"))
}

/// Variables to read settings from. Empty values count as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Given pairs (tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        Env { vars }
    }

    /// The value of `var`, trimmed, if set and not empty.
    pub fn get(&self, var: &'static str) -> Option<&str> {
        self.vars.get(var).map(|v| v.trim())
    }

    /// The value of `var`, or `default`.
    pub fn string_or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    /// Parses `var` with `f` when set; an error names the variable and shows its value.
    pub fn with<T, E: Display>(
        &self,
        var: &'static str,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|value| {
                f(value).map_err(|e| ConfigError {
                    var,
                    value: Some(value.to_string()),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Like [`Env::with`] for a secret: the error does not show the value.
    pub fn secret<T, E: Display>(
        &self,
        var: &'static str,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        self.with(var, f)
            .map_err(|e| ConfigError { value: None, ..e })
    }

    /// `var` parsed with `FromStr`, or `default`.
    pub fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.with(var, str::parse::<T>)?.unwrap_or(default))
    }

    /// `var` as a number of at least 1, or `default`.
    pub fn positive_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + From<u8>,
        T::Err: Display,
    {
        Ok(self
            .with(var, |v| match v.parse::<T>() {
                Ok(n) if n >= T::from(1) => Ok(n),
                Ok(_) => Err("must be at least 1".to_string()),
                Err(e) => Err(e.to_string()),
            })?
            .unwrap_or(default))
    }

    /// `var` as a duration of more than zero (bare numbers in `unit`), or `default`.
    pub fn duration_or(
        &self,
        var: &'static str,
        unit: Unit,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        Ok(self
            .with(var, |v| {
                parse_duration(v, unit).and_then(|d| {
                    if d.is_zero() {
                        Err("must be more than zero".to_string())
                    } else {
                        Ok(d)
                    }
                })
            })?
            .unwrap_or(default))
    }

    /// `var` as a duration that may be zero (bare numbers in `unit`), or `default`.
    pub fn duration_or_zero(
        &self,
        var: &'static str,
        unit: Unit,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        Ok(self
            .with(var, |v| parse_duration(v, unit))?
            .unwrap_or(default))
    }

    /// `var` as a comma-separated list (empty items dropped); empty when unset.
    pub fn list(&self, var: &'static str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A listen address: `off` for none, else a socket address; `default` when unset.
    pub fn listen_addr_or(
        &self,
        var: &'static str,
        default: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        Ok(self
            .with(var, |v| match v {
                "off" => Ok(None),
                a => a
                    .parse::<SocketAddr>()
                    .map(Some)
                    .map_err(|_| "not an address such as 0.0.0.0:8000, nor off".to_string()),
            })?
            .unwrap_or(default))
    }
}

/// Default `DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://localhost/foodseg";
/// Default `NATS_URL`.
pub use foodseg_engine::bus::DEFAULT_NATS_URL;
/// Default `FOODSEG_MODELS_DIR`.
pub const DEFAULT_MODELS_DIR: &str = "models";
/// Default `FOODSEG_MODELS_POLL`.
pub const DEFAULT_MODELS_POLL: Duration = Duration::from_secs(30);
/// Default `FOODSEG_NATS_REPLICAS`.
pub const DEFAULT_NATS_REPLICAS: usize = 1;
/// Default `FOODSEG_DB_MAX_CONNECTIONS`.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 32;
/// Default `FOODSEG_WORKER_LEASE_SECS`.
pub const DEFAULT_WORKER_LEASE: Duration = Duration::from_secs(15);

/// The settings every service reads.
#[derive(Debug, Clone)]
pub struct Common {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `NATS_URL`: one server or a comma-separated list of servers of one cluster.
    pub nats_url: String,
    /// NATS subject and stream names, from `FOODSEG_NATS_PREFIX` (default `foodseg`).
    pub subjects: Subjects,
    /// `FOODSEG_NATS_REPLICAS`: copies JetStream keeps of each stream (1 to 5).
    pub nats_replicas: usize,
    /// `FOODSEG_URL_ALLOW_CIDRS`: ranges exempt from the private-address block.
    pub net_policy: NetPolicy,
    /// `FOODSEG_MODELS_DIR`.
    pub models_dir: PathBuf,
    /// `FOODSEG_MODELS_POLL`: how often the api and the workers look for added or changed
    /// model directories (default 30 s; `0` for SIGHUP only).
    pub models_poll: Option<Duration>,
    /// `FOODSEG_DB_MAX_CONNECTIONS`: the Postgres pool's size.
    pub db_max_connections: u32,
    /// `FOODSEG_DB_STATEMENT_TIMEOUT`: Postgres cancels a statement of this service that
    /// runs longer (each service has its own default: [`Common::load`]).
    pub db_statement_timeout: Duration,
    /// `FOODSEG_WORKER_LEASE_SECS`: the lease a worker takes on a claimed job, renewed
    /// every third of it. Workers take it; the scheduler waits that long after an outage
    /// before re-driving lapsed leases, so both read it here.
    pub worker_lease: Duration,
    /// `FOODSEG_BULK_WINDOW`: most bulk dispatch messages the outbox relays of the api
    /// and the scheduler let wait on the stream per model (0: hold every bulk job).
    pub bulk_window: u32,
}

impl Common {
    /// The shared settings; `statement_timeout` is the service's default
    /// `FOODSEG_DB_STATEMENT_TIMEOUT`.
    pub fn load(env: &Env, statement_timeout: Duration) -> Result<Self, ConfigError> {
        Ok(Common {
            database_url: env.string_or("DATABASE_URL", DEFAULT_DATABASE_URL),
            nats_url: env.string_or("NATS_URL", DEFAULT_NATS_URL),
            subjects: env
                .get("FOODSEG_NATS_PREFIX")
                .map(Subjects::with_prefix)
                .unwrap_or_default(),
            nats_replicas: env
                .with("FOODSEG_NATS_REPLICAS", |v| match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "must be a number of stream replicas from 1 to {MAX_REPLICAS} \
                         (more than 1 needs a JetStream cluster of at least that many servers)"
                    )),
                })?
                .unwrap_or(DEFAULT_NATS_REPLICAS),
            net_policy: env
                .with("FOODSEG_URL_ALLOW_CIDRS", |v| {
                    NetPolicy::parse_allow_list(v)
                        .map_err(|e| format!("not a comma-separated CIDR list: {e}"))
                })?
                .unwrap_or_default(),
            models_dir: PathBuf::from(env.string_or("FOODSEG_MODELS_DIR", DEFAULT_MODELS_DIR)),
            models_poll: Some(env.duration_or_zero(
                "FOODSEG_MODELS_POLL",
                Unit::Seconds,
                DEFAULT_MODELS_POLL,
            )?)
            .filter(|d| !d.is_zero()),
            db_max_connections: env
                .positive_or("FOODSEG_DB_MAX_CONNECTIONS", DEFAULT_DB_MAX_CONNECTIONS)?,
            db_statement_timeout: env.duration_or(
                "FOODSEG_DB_STATEMENT_TIMEOUT",
                Unit::Seconds,
                statement_timeout,
            )?,
            worker_lease: env.duration_or(
                "FOODSEG_WORKER_LEASE_SECS",
                Unit::Seconds,
                DEFAULT_WORKER_LEASE,
            )?,
            bulk_window: env.parse_or("FOODSEG_BULK_WINDOW", DEFAULT_BULK_WINDOW)?,
        })
    }

    /// A watch of the models directory with `FOODSEG_MODELS_POLL`, its fingerprint taken
    /// now (before the registry the service starts with is loaded).
    pub fn models_watch(&self) -> crate::ModelsWatch {
        crate::ModelsWatch::new(self.models_dir.clone(), self.models_poll)
    }

    /// The outbox relay's tuning: the defaults, with `FOODSEG_BULK_WINDOW`.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            bulk_window: self.bulk_window,
            ..RelayConfig::default()
        }
    }

    /// Connects to NATS (`NATS_URL`) with the subjects of `FOODSEG_NATS_PREFIX` and the
    /// stream replicas of `FOODSEG_NATS_REPLICAS`.
    pub async fn connect_bus(&self) -> Result<Bus, BusError> {
        Ok(Bus::connect(&self.nats_url, self.subjects.clone())
            .await?
            .with_replicas(self.nats_replicas))
    }

    /// How the service's store connects.
    pub fn store_config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(&self.database_url);
        config.max_connections = self.db_max_connections;
        config.statement_timeout = Some(self.db_statement_timeout);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn durations_have_one_syntax_and_a_unit_for_bare_numbers() {
        let secs = |v| parse_duration(v, Unit::Seconds);
        assert_eq!(secs("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(secs("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(secs("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(secs("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(
            parse_duration("24", Unit::Hours),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("1d", Unit::Hours),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("30", Unit::Days),
            Ok(Duration::from_secs(30 * 86_400))
        );
        for bad in ["-1", "soon", "5 parsecs", "NaN", "inf"] {
            assert!(secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_variable_and_hide_secrets() {
        let e = env(&[("EXAMPLE_X", "zero")]);
        let err = e.positive_or::<u32>("EXAMPLE_X", 1).unwrap_err();
        assert_eq!(err.var, "EXAMPLE_X");
        assert!(err.to_string().contains("EXAMPLE_X=\"zero\""), "{err}");
        let err = e.secret("EXAMPLE_X", |v| v.parse::<u32>()).unwrap_err();
        assert_eq!(err.value, None);
        assert!(!err.to_string().contains("zero"), "{err}");
        let err = env(&[("EXAMPLE_X", "0")])
            .positive_or::<u32>("EXAMPLE_X", 1)
            .unwrap_err();
        assert_eq!(err.reason, "must be at least 1");
        let err = env(&[("EXAMPLE_X", "0s")])
            .duration_or("EXAMPLE_X", Unit::Seconds, Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(err.reason, "must be more than zero");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let e = env(&[("DATABASE_URL", "  "), ("EXAMPLE_LIST", " a, ,b ")]);
        assert_eq!(e.get("DATABASE_URL"), None);
        assert_eq!(e.list("EXAMPLE_LIST"), ["a", "b"]);
        assert!(e.list("EXAMPLE_NONE").is_empty());
    }

    #[test]
    fn listen_addresses_can_be_off() {
        let default = Some(SocketAddr::from(([0, 0, 0, 0], 8001)));
        let read = |v: &str| env(&[("EXAMPLE_ADDR", v)]).listen_addr_or("EXAMPLE_ADDR", default);
        assert_eq!(read("off"), Ok(None));
        assert_eq!(read(""), Ok(default));
        assert_eq!(
            read("127.0.0.1:9"),
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9))))
        );
        assert_eq!(read("port 9").unwrap_err().var, "EXAMPLE_ADDR");
    }

    #[test]
    fn common_settings_and_their_defaults() {
        let c = Common::load(&Env::default(), Duration::from_secs(5)).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.nats_url, DEFAULT_NATS_URL);
        assert_eq!(c.subjects, Subjects::default());
        assert!(c.net_policy.allow.is_empty());
        assert_eq!(c.models_dir, PathBuf::from("models"));
        assert_eq!(c.models_poll, Some(DEFAULT_MODELS_POLL));
        assert_eq!(c.nats_replicas, 1);
        assert_eq!(c.store_config().max_connections, 32);
        assert_eq!(
            c.store_config().statement_timeout,
            Some(Duration::from_secs(5))
        );
        let c = Common::load(
            &env(&[
                ("FOODSEG_NATS_PREFIX", "t1"),
                ("FOODSEG_DB_STATEMENT_TIMEOUT", "2s"),
                ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8"),
                ("FOODSEG_DB_MAX_CONNECTIONS", "4"),
                ("FOODSEG_NATS_REPLICAS", "3"),
                ("FOODSEG_MODELS_POLL", "0"),
            ]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(c.nats_replicas, 3);
        assert_eq!(c.models_poll, None, "0: on SIGHUP only");
        let poll = |v: &str| Common::load(&env(&[("FOODSEG_MODELS_POLL", v)]), Duration::ZERO);
        assert_eq!(
            poll("5s").unwrap().models_poll,
            Some(Duration::from_secs(5))
        );
        assert_eq!(poll("soon").unwrap_err().var, "FOODSEG_MODELS_POLL");
        assert_eq!(
            c.store_config().statement_timeout,
            Some(Duration::from_secs(2))
        );
        assert_eq!(c.subjects, Subjects::with_prefix("t1"));
        assert_eq!(c.net_policy.allow.len(), 1);
        assert_eq!(c.store_config().max_connections, 4);
        for (var, value) in [
            ("FOODSEG_URL_ALLOW_CIDRS", "localhost"),
            ("FOODSEG_DB_MAX_CONNECTIONS", "0"),
            ("FOODSEG_NATS_REPLICAS", "0"),
            ("FOODSEG_NATS_REPLICAS", "6"),
            ("FOODSEG_NATS_REPLICAS", "three"),
            ("FOODSEG_DB_STATEMENT_TIMEOUT", "0"),
        ] {
            assert_eq!(
                Common::load(&env(&[(var, value)]), Duration::from_secs(5))
                    .unwrap_err()
                    .var,
                var
            );
        }
    }
}
