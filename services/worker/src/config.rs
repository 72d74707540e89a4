//! Worker settings, read from the environment (DESIGN §5 plus the worker's own variables).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use foodseg_engine::netguard::NetPolicy;
use foodseg_engine::{RetryPolicy, Subjects};
use foodseg_pipeline::Device;

/// Caps on the images the worker accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest download, enforced while streaming.
    pub max_bytes: u64,
    /// Largest width × height, checked from the header before decoding.
    pub max_pixels: u64,
    /// Whole-request timeout of one image download.
    pub fetch_timeout: Duration,
    /// TCP/TLS connect timeout of one image download.
    pub connect_timeout: Duration,
    /// Redirects followed, each re-checked against the private-address block.
    pub max_redirects: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 50_000_000,
            fetch_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 3,
        }
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub nats_url: String,
    /// NATS subject/stream names (tests use a unique prefix).
    pub subjects: Subjects,
    pub models_dir: PathBuf,
    /// Serve only these models (names or aliases); all models in the registry when empty.
    pub models: Vec<String>,
    pub net_policy: NetPolicy,
    /// Jobs in flight at once (fetching, waiting for the model, or running).
    pub concurrency: usize,
    /// Lease taken on a job; renewed every third of it while the job runs.
    pub lease: Duration,
    /// Where inference runs (`FOODSEG_EXECUTION_PROVIDER`: `cpu`, `cuda` or `cuda:<device>`).
    pub device: Device,
    /// ONNX Runtime intra-op threads; the runtime's choice when unset.
    pub intra_threads: Option<usize>,
    pub image: ImageLimits,
    /// Lease owner name in Postgres and in logs.
    pub worker_id: String,
    /// `/metrics` and `/health/*` listener; none when unset.
    pub http_addr: Option<SocketAddr>,
    /// Backoff of transient failures (the attempt bound is stored with each job).
    pub retry: RetryPolicy,
    /// How long in-flight jobs may run on after shutdown is asked before they are released.
    pub drain_timeout: Duration,
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
        let defaults = ImageLimits::default();
        let net_policy = match var("FOODSEG_URL_ALLOW_CIDRS") {
            Some(list) => NetPolicy::parse_allow_list(&list).map_err(|e| ConfigError {
                var: "FOODSEG_URL_ALLOW_CIDRS",
                problem: format!("{list:?} is not a comma-separated CIDR list: {e}"),
            })?,
            None => NetPolicy::default(),
        };
        let concurrency: usize = parse(&var, "FOODSEG_WORKER_CONCURRENCY")?.unwrap_or(2);
        if concurrency == 0 {
            return Err(ConfigError {
                var: "FOODSEG_WORKER_CONCURRENCY",
                problem: "must be at least 1".into(),
            });
        }
        let lease_secs: f64 = parse(&var, "FOODSEG_WORKER_LEASE_SECS")?.unwrap_or(15.0);
        let lease = positive_secs("FOODSEG_WORKER_LEASE_SECS", lease_secs)?;
        let device = match var("FOODSEG_EXECUTION_PROVIDER") {
            Some(v) => v.parse().map_err(|problem| ConfigError {
                var: "FOODSEG_EXECUTION_PROVIDER",
                problem,
            })?,
            None => Device::Cpu,
        };
        let fetch_timeout = match parse::<f64>(&var, "FOODSEG_IMAGE_FETCH_TIMEOUT_SECS")? {
            Some(s) => positive_secs("FOODSEG_IMAGE_FETCH_TIMEOUT_SECS", s)?,
            None => defaults.fetch_timeout,
        };
        let drain_timeout = match parse::<f64>(&var, "FOODSEG_WORKER_DRAIN_SECS")? {
            Some(s) => positive_secs("FOODSEG_WORKER_DRAIN_SECS", s)?,
            None => Duration::from_secs(30),
        };
        let image = ImageLimits {
            max_bytes: parse(&var, "FOODSEG_IMAGE_MAX_BYTES")?.unwrap_or(defaults.max_bytes),
            max_pixels: parse(&var, "FOODSEG_IMAGE_MAX_PIXELS")?.unwrap_or(defaults.max_pixels),
            fetch_timeout,
            ..defaults
        };
        let http_addr = match var("FOODSEG_WORKER_ADDR").as_deref() {
            Some("off") => None,
            Some(a) => Some(a.parse().map_err(|e| ConfigError {
                var: "FOODSEG_WORKER_ADDR",
                problem: format!("{a:?} is not a socket address: {e}"),
            })?),
            None => Some(SocketAddr::from(([0, 0, 0, 0], 8001))),
        };
        Ok(Config {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://localhost/foodseg".into()),
            nats_url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            subjects: var("FOODSEG_NATS_PREFIX")
                .map(|p| Subjects::with_prefix(&p))
                .unwrap_or_default(),
            models_dir: var("FOODSEG_MODELS_DIR")
                .unwrap_or_else(|| "models".into())
                .into(),
            models: var("FOODSEG_WORKER_MODELS")
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            net_policy,
            concurrency,
            lease,
            device,
            intra_threads: parse(&var, "FOODSEG_INTRA_THREADS")?,
            image,
            worker_id: var("FOODSEG_WORKER_ID").unwrap_or_else(default_worker_id),
            http_addr,
            retry: RetryPolicy::default(),
            drain_timeout,
        })
    }

    /// How often the lease is renewed (and JetStream told the job is in progress).
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}

fn parse<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    var(name)
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| ConfigError {
                var: name,
                problem: format!("{v:?}: {e}"),
            })
        })
        .transpose()
}

fn positive_secs(var: &'static str, secs: f64) -> Result<Duration, ConfigError> {
    if secs.is_finite() && secs > 0.0 && secs < 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ConfigError {
            var,
            problem: format!("{secs} is not a number of seconds between 0 and 86400"),
        })
    }
}

/// `hostname-pid-random`: unique per process even when pids repeat across containers.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
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
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.concurrency, 2);
        assert_eq!(c.lease, Duration::from_secs(15));
        assert_eq!(c.renew_every(), Duration::from_secs(5));
        assert_eq!(c.device, Device::Cpu);
        assert_eq!(c.image.max_bytes, 20 * 1024 * 1024);
        assert_eq!(c.image.max_pixels, 50_000_000);
        assert_eq!(c.http_addr, Some("0.0.0.0:8001".parse().unwrap()));
        assert_eq!(c.subjects, Subjects::default());
        assert!(c.net_policy.allow.is_empty());
        let pid = std::process::id().to_string();
        assert!(c.worker_id.contains(&pid), "{}", c.worker_id);
        assert_ne!(config(&[]).unwrap().worker_id, c.worker_id);
    }

    #[test]
    fn explicit_values() {
        let c = config(&[
            ("FOODSEG_WORKER_CONCURRENCY", "4"),
            ("FOODSEG_WORKER_LEASE_SECS", "1.5"),
            ("FOODSEG_EXECUTION_PROVIDER", "cuda:1"),
            ("FOODSEG_INTRA_THREADS", "3"),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8"),
            ("FOODSEG_IMAGE_MAX_PIXELS", "1000"),
            ("FOODSEG_WORKER_ID", "w1"),
            ("FOODSEG_WORKER_ADDR", "off"),
        ])
        .expect("valid");
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.lease, Duration::from_millis(1500));
        assert_eq!(c.device, Device::Cuda { device_id: 1 });
        assert_eq!(c.intra_threads, Some(3));
        assert_eq!(c.image.max_pixels, 1000);
        assert_eq!(c.worker_id, "w1");
        assert_eq!(c.http_addr, None);
        assert_eq!(c.net_policy.allow.len(), 1);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("FOODSEG_WORKER_CONCURRENCY", "0"),
            ("FOODSEG_WORKER_CONCURRENCY", "two"),
            ("FOODSEG_WORKER_LEASE_SECS", "-1"),
            ("FOODSEG_EXECUTION_PROVIDER", "tpu"),
            ("FOODSEG_EXECUTION_PROVIDER", "cuda:x"),
            ("FOODSEG_URL_ALLOW_CIDRS", "localhost"),
            ("FOODSEG_WORKER_ADDR", "nowhere"),
        ] {
            let err = config(&[(k, v)]).expect_err(v);
            assert_eq!(err.var, k);
        }
    }
}
