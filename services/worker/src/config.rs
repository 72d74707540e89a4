//! Worker settings, read from the environment with the shared loader.

use std::net::SocketAddr;
use std::time::Duration;

use foodseg_engine::RetryPolicy;
use foodseg_pipeline::Device;
use foodseg_runtime::{Common, ConfigError, Env, Unit};

/// Default `FOODSEG_DB_STATEMENT_TIMEOUT` of the worker: its statements touch one job (or one
/// batch of results) each.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Database, NATS, subjects, models, URL policy, pool size.
    pub common: Common,
    /// Serve only these models (names or aliases); all models in the registry when empty
    /// (`FOODSEG_WORKER_MODELS`).
    pub models: Vec<String>,
    /// Jobs in flight at once: fetching, waiting for the model, or running
    /// (`FOODSEG_WORKER_CONCURRENCY`, default 2).
    pub concurrency: usize,
    /// Lease taken on a job; renewed every third of it while the job runs
    /// (`FOODSEG_WORKER_LEASE_SECS`, default 15 s).
    pub lease: Duration,
    /// Where inference runs (`FOODSEG_EXECUTION_PROVIDER`: `cpu`, `cuda` or `cuda:<device>`).
    pub device: Device,
    /// ONNX Runtime intra-op threads; the runtime's choice when unset
    /// (`FOODSEG_INTRA_THREADS`).
    pub intra_threads: Option<usize>,
    pub image: ImageLimits,
    /// Lease owner name in Postgres and in logs (`FOODSEG_WORKER_ID`, default
    /// `hostname-pid-random`).
    pub worker_id: String,
    /// `/metrics` and `/health/*` listener (`FOODSEG_WORKER_ADDR`, default `0.0.0.0:8001`,
    /// `off` for none).
    pub http_addr: Option<SocketAddr>,
    /// Backoff of transient failures (the attempt budget is stored with each job).
    pub retry: RetryPolicy,
    /// How long in-flight jobs may run on after shutdown is asked before they are
    /// released (`FOODSEG_WORKER_DRAIN_SECS`, default 30 s).
    pub drain_timeout: Duration,
    /// Micro-batching of each model's inference.
    pub batch: BatchConfig,
    /// While both lanes of a model have jobs waiting, at least one claim in this many
    /// goes to a bulk job; the others go to interactive ones (`FOODSEG_BULK_SHARE`,
    /// default 10).
    pub bulk_share: u32,
    /// A candidate model run beside the served ones on a share of the jobs, for comparison
    /// (`FOODSEG_SHADOW=CANDIDATE:SHARE`); none when unset.
    pub shadow: Option<ShadowConfig>,
}

/// Shadow runs: after a job's result is written, a share of the jobs also runs on a
/// candidate model, whose answer is kept beside the job (never sent) for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    /// The candidate's registry name or alias.
    pub candidate: String,
    /// The share of jobs shadowed, in (0, 1]; which jobs is decided by their ids, so a
    /// redelivered job is shadowed (or not) again.
    pub share: f64,
}

impl std::str::FromStr for ShadowConfig {
    type Err = String;

    /// `CANDIDATE:SHARE`, e.g. `yolo11-food:0.1`.
    fn from_str(value: &str) -> Result<Self, String> {
        let expected = "expected CANDIDATE:SHARE, a model name or alias of the registry and \
                        the share of jobs to shadow in (0, 1], e.g. yolo11-food:0.1";
        let (candidate, share) = value
            .rsplit_once(':')
            .ok_or_else(|| format!("no share: {expected}"))?;
        let candidate = candidate.trim();
        if candidate.is_empty() {
            return Err(format!("no candidate model: {expected}"));
        }
        let share = share
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && *s <= 1.0)
            .ok_or_else(|| format!("the share {:?} is not in (0, 1]: {expected}", share.trim()))?;
        Ok(ShadowConfig {
            candidate: candidate.to_string(),
            share,
        })
    }
}

/// How a model's inference gathers jobs into one run (inference micro-batching; a batch of
/// jobs sent to `POST /v2/jobs` is another thing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most images in one run (`FOODSEG_BATCH_MAX`; default 4 on CUDA, 1 on CPU, where
    /// the photo benchmark shows batching does not raise throughput). Batches never
    /// exceed the jobs in flight (`FOODSEG_WORKER_CONCURRENCY`).
    pub max: usize,
    /// How long a run waits for more ready images once it has one (`FOODSEG_BATCH_WAIT_MS`,
    /// default 5 ms); images that became ready during the previous run join at once.
    pub wait: Duration,
    /// Single-threaded runs of one model that may go on at once while several of its
    /// jobs are in flight (`FOODSEG_PARALLEL_RUNS`). A job alone runs on all intra-op
    /// threads (lowest latency); under load, parallel single-threaded runs give more
    /// jobs per second on CPU than runs that share threads. Default on CPU: the intra-op
    /// threads, at most the jobs in flight; with CUDA, or when batching, 1 (off).
    pub parallel_runs: usize,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Env::from_process())
    }

    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let defaults = ImageLimits::default();
        let image = ImageLimits {
            max_bytes: env.positive_or("FOODSEG_IMAGE_MAX_BYTES", defaults.max_bytes)?,
            max_pixels: env.positive_or("FOODSEG_IMAGE_MAX_PIXELS", defaults.max_pixels)?,
            fetch_timeout: env.duration_or(
                "FOODSEG_IMAGE_FETCH_TIMEOUT_SECS",
                Unit::Seconds,
                defaults.fetch_timeout,
            )?,
            ..defaults
        };
        let device = env
            .with("FOODSEG_EXECUTION_PROVIDER", str::parse::<Device>)?
            .unwrap_or(Device::Cpu);
        let concurrency = env.positive_or("FOODSEG_WORKER_CONCURRENCY", 2)?;
        let intra_threads = env.with("FOODSEG_INTRA_THREADS", |v| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err("must be at least 1".to_string()),
            Err(e) => Err(e.to_string()),
        })?;
        let max = env.positive_or(
            "FOODSEG_BATCH_MAX",
            match device {
                Device::Cpu => 1,
                Device::Cuda { .. } => 4,
            },
        )?;
        let threads = intra_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let parallel_default = match device {
            Device::Cpu if max == 1 => threads.min(concurrency),
            _ => 1,
        };
        let parallel_runs = env.positive_or("FOODSEG_PARALLEL_RUNS", parallel_default)?;
        if parallel_runs > 1 && max > 1 {
            return Err(ConfigError {
                var: "FOODSEG_PARALLEL_RUNS",
                value: Some(parallel_runs.to_string()),
                reason: format!(
                    "parallel runs exclude batches (FOODSEG_BATCH_MAX is {max}); set one of \
                     them to 1"
                ),
            });
        }
        let batch = BatchConfig {
            max,
            wait: env.duration_or_zero(
                "FOODSEG_BATCH_WAIT_MS",
                Unit::Milliseconds,
                Duration::from_millis(5),
            )?,
            parallel_runs,
        };
        let common = Common::load(env, DEFAULT_STATEMENT_TIMEOUT)?;
        Ok(Config {
            lease: common.worker_lease,
            common,
            models: env.list("FOODSEG_WORKER_MODELS"),
            concurrency,
            device,
            intra_threads,
            image,
            worker_id: env
                .get("FOODSEG_WORKER_ID")
                .map(str::to_string)
                .unwrap_or_else(default_worker_id),
            http_addr: env.listen_addr_or(
                "FOODSEG_WORKER_ADDR",
                Some(SocketAddr::from(([0, 0, 0, 0], 8001))),
            )?,
            retry: RetryPolicy::default(),
            drain_timeout: env.duration_or(
                "FOODSEG_WORKER_DRAIN_SECS",
                Unit::Seconds,
                Duration::from_secs(30),
            )?,
            batch,
            bulk_share: env.positive_or("FOODSEG_BULK_SHARE", 10)?,
            shadow: env.with("FOODSEG_SHADOW", str::parse::<ShadowConfig>)?,
        })
    }

    /// How often the lease is renewed (and JetStream told the job is in progress).
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
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
    use foodseg_engine::Subjects;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.concurrency, 2);
        assert_eq!(c.lease, foodseg_runtime::config::DEFAULT_WORKER_LEASE);
        assert_eq!(c.renew_every(), Duration::from_secs(5));
        assert_eq!(c.device, Device::Cpu);
        assert_eq!(c.batch.max, 1);
        assert_eq!(c.batch.wait, Duration::from_millis(5));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.batch.parallel_runs, cores.min(2));
        assert_eq!(c.image.max_bytes, 20 * 1024 * 1024);
        assert_eq!(c.image.max_pixels, 50_000_000);
        assert_eq!(c.http_addr, Some("0.0.0.0:8001".parse().unwrap()));
        assert_eq!(c.common.subjects, Subjects::default());
        assert!(c.common.net_policy.allow.is_empty());
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
            ("FOODSEG_IMAGE_FETCH_TIMEOUT_SECS", "2m"),
            ("FOODSEG_WORKER_ID", "w1"),
            ("FOODSEG_WORKER_ADDR", "off"),
            ("FOODSEG_WORKER_MODELS", "a, b"),
            ("FOODSEG_BATCH_WAIT_MS", "0"),
        ])
        .expect("valid");
        assert_eq!(c.batch.max, 4, "CUDA batches by default");
        assert_eq!(c.batch.parallel_runs, 1);
        let cpu = config(&[
            ("FOODSEG_INTRA_THREADS", "3"),
            ("FOODSEG_WORKER_CONCURRENCY", "8"),
        ])
        .expect("valid");
        assert_eq!(
            cpu.batch.parallel_runs, 3,
            "one single-threaded run per intra-op thread"
        );
        assert_eq!(c.batch.wait, Duration::ZERO);
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.lease, Duration::from_millis(1500));
        assert_eq!(c.device, Device::Cuda { device_id: 1 });
        assert_eq!(c.intra_threads, Some(3));
        assert_eq!(c.image.max_pixels, 1000);
        assert_eq!(c.image.fetch_timeout, Duration::from_secs(120));
        assert_eq!(c.worker_id, "w1");
        assert_eq!(c.http_addr, None);
        assert_eq!(c.common.net_policy.allow.len(), 1);
        assert_eq!(c.models, ["a", "b"]);
        assert_eq!(c.shadow, None);
    }

    #[test]
    fn shadow_names_a_candidate_and_a_share() {
        let c = config(&[("FOODSEG_SHADOW", " yolo11-food : 0.1 ")]).expect("valid");
        assert_eq!(
            c.shadow,
            Some(ShadowConfig {
                candidate: "yolo11-food".into(),
                share: 0.1
            })
        );
        let all = config(&[("FOODSEG_SHADOW", "124096:1")]).expect("valid");
        assert_eq!(all.shadow.map(|s| s.share), Some(1.0));
        for bad in [
            "yolo11-food",
            ":0.5",
            "yolo11-food:",
            "yolo11-food:0",
            "yolo11-food:1.5",
            "yolo11-food:-0.1",
            "yolo11-food:half",
            "yolo11-food:NaN",
        ] {
            let err = config(&[("FOODSEG_SHADOW", bad)]).expect_err(bad);
            assert_eq!(err.var, "FOODSEG_SHADOW");
            assert!(
                err.reason.contains("CANDIDATE:SHARE"),
                "{bad}: {}",
                err.reason
            );
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let both = config(&[("FOODSEG_PARALLEL_RUNS", "2"), ("FOODSEG_BATCH_MAX", "2")])
            .expect_err("parallel runs and batches together");
        assert_eq!(both.var, "FOODSEG_PARALLEL_RUNS");
        for (k, v) in [
            ("FOODSEG_WORKER_CONCURRENCY", "0"),
            ("FOODSEG_WORKER_CONCURRENCY", "two"),
            ("FOODSEG_BATCH_MAX", "0"),
            ("FOODSEG_PARALLEL_RUNS", "0"),
            ("FOODSEG_BATCH_WAIT_MS", "soon"),
            ("FOODSEG_WORKER_LEASE_SECS", "-1"),
            ("FOODSEG_WORKER_LEASE_SECS", "0"),
            ("FOODSEG_EXECUTION_PROVIDER", "tpu"),
            ("FOODSEG_EXECUTION_PROVIDER", "cuda:x"),
            ("FOODSEG_URL_ALLOW_CIDRS", "localhost"),
            ("FOODSEG_WORKER_ADDR", "nowhere"),
            ("FOODSEG_INTRA_THREADS", "0"),
        ] {
            let err = config(&[(k, v)]).expect_err(v);
            assert_eq!(err.var, k);
        }
    }
}
