//! The three services as processes of their real binaries on a test's database and
//! streams, the photo fixtures served over HTTP, a webhook endpoint that keeps what it
//! receives, and a Prometheus text reader: what the end-to-end tests (traces, metrics,
//! secrets, the console in a browser) run against.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use foodseg_engine::Subjects;
use foodseg_testkit::{FileServer, free_port, nats_url, wait_until};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

/// Generous bound for conditions; never a timing assertion.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Sum of the samples of `name` whose labels include `labels` (`None` when none match).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        if labels.iter().all(|(k, v)| {
            series_labels
                .split(',')
                .any(|l| l == format!("{k}=\"{v}\""))
        }) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// The three services as child processes of their real binaries.
pub struct Stack {
    pub children: Mutex<Vec<(String, Child)>>,
    pub logs: PathBuf,
    pub subjects: Subjects,
    pub http: reqwest::Client,
    pub api: SocketAddr,
    pub worker: SocketAddr,
    pub scheduler: SocketAddr,
    pub _images: FileServer,
    pub image_url: String,
}

impl Stack {
    pub async fn start(pool: &PgPool, otlp_endpoint: Option<&str>) -> anyhow::Result<Stack> {
        Self::start_with(pool, otlp_endpoint, Vec::new()).await
    }

    /// Like [`Stack::start`], with more variables for every service.
    pub async fn start_with(
        pool: &PgPool,
        otlp_endpoint: Option<&str>,
        extra: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Stack> {
        let bin = built_binaries().await?;
        let root = workspace_root();
        let subjects = Subjects::with_prefix(&format!("t{}", Uuid::new_v4().simple()));
        let database_url = foodseg_testkit::database_url_of(pool)?;
        let images = FileServer::serve_dir(root.join("services/pipeline/tests/fixtures")).await?;
        let image_url = images.url("fruits.jpg");
        let logs = std::env::temp_dir().join(format!("foodseg-e2e-{}", subjects.prefix));
        std::fs::create_dir_all(&logs)?;
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let (api, worker, scheduler) = (addr(free_port()?), addr(free_port()?), addr(free_port()?));

        let mut common: Vec<(&str, String)> = vec![
            ("DATABASE_URL", database_url.to_string()),
            ("NATS_URL", nats_url()),
            ("FOODSEG_NATS_PREFIX", subjects.prefix.clone()),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8".into()),
            (
                "FOODSEG_MODELS_DIR",
                root.join("models").display().to_string(),
            ),
            ("FOODSEG_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
            // Export each batch quickly; shutdown flushes the rest.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ];
        if let Some(endpoint) = otlp_endpoint {
            common.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()));
            common.push(("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".into()));
        }
        common.extend(extra);
        let services: [(&str, Vec<(&str, String)>); 3] = [
            (
                "foodseg-api",
                vec![
                    ("FOODSEG_API_ADDR", api.to_string()),
                    // The console over plain HTTP.
                    ("FOODSEG_CONSOLE_INSECURE_COOKIE", "true".into()),
                ],
            ),
            (
                "foodseg-worker",
                vec![
                    ("FOODSEG_WORKER_ADDR", worker.to_string()),
                    ("FOODSEG_INTRA_THREADS", "1".into()),
                ],
            ),
            (
                "foodseg-scheduler",
                vec![
                    ("FOODSEG_SCHEDULER_ADDR", scheduler.to_string()),
                    ("FOODSEG_SCHEDULER_POLL", "200ms".into()),
                ],
            ),
        ];
        let mut children = Vec::new();
        for (name, own) in services {
            let log = File::create(logs.join(format!("{name}.log")))?;
            let mut cmd = Command::new(bin.join(name));
            for (key, _) in std::env::vars() {
                if key.starts_with("OTEL_") || key.starts_with("FOODSEG_") {
                    cmd.env_remove(key);
                }
            }
            cmd.envs(common.iter().cloned())
                .envs(own)
                .env("OTEL_SERVICE_NAME", name)
                .current_dir(&root)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            children.push((
                name.to_string(),
                cmd.spawn().with_context(|| format!("starting {name}"))?,
            ));
        }
        let stack = Stack {
            children: Mutex::new(children),
            logs,
            subjects,
            http: foodseg_http::client()?,
            api,
            worker,
            scheduler,
            _images: images,
            image_url,
        };
        for addr in [stack.api, stack.worker, stack.scheduler] {
            let url = format!("http://{addr}/health/ready");
            let ready = wait_until(DEADLINE, || async {
                stack
                    .http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
            if ready.is_err() {
                stack.dump_logs();
                bail!("{url} never became ready");
            }
        }
        Ok(stack)
    }

    /// `POST /enqueue` as MFR does it; returns the job id.
    pub async fn enqueue(&self, webhook_url: &str) -> anyhow::Result<Uuid> {
        self.enqueue_image(&self.image_url, webhook_url).await
    }

    /// `POST /enqueue` of `image_url` as MFR does it; returns the job id.
    pub async fn enqueue_image(&self, image_url: &str, webhook_url: &str) -> anyhow::Result<Uuid> {
        let body = serde_json::json!({ "image_url": image_url, "model_id": null, "webhook_url": webhook_url });
        let response = self
            .http
            .post(format!("http://{}/enqueue", self.api))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "enqueue answered {}",
            response.status()
        );
        let doc: serde_json::Value = response.json().await?;
        Ok(doc["job_id"].as_str().context("job_id")?.parse()?)
    }

    pub async fn scrape(&self, addr: &SocketAddr) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "/metrics answered {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.logs.join(format!("{service}.log"))
    }

    /// Every service's log, by service.
    pub fn read_logs(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        ["foodseg-api", "foodseg-worker", "foodseg-scheduler"]
            .into_iter()
            .map(|name| Ok((name, std::fs::read_to_string(self.log_path(name))?)))
            .collect()
    }

    pub fn dump_logs(&self) {
        for name in ["foodseg-api", "foodseg-worker", "foodseg-scheduler"] {
            let mut text = String::new();
            let _ = File::open(self.log_path(name)).and_then(|mut f| f.read_to_string(&mut text));
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- {name} (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    /// SIGTERM to every service, then waits for each to exit successfully.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let pids: Vec<(String, u32)> = self
            .lock()
            .iter()
            .map(|(n, c)| (n.clone(), c.id()))
            .collect();
        for (name, pid) in &pids {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            ensure!(status.success(), "cannot signal {name}");
        }
        for (name, _) in &pids {
            let exit = wait_until(DEADLINE, || async {
                let mut children = self.lock();
                let child = children
                    .iter_mut()
                    .find(|(n, _)| n == name)
                    .map(|(_, c)| c)?;
                child.try_wait().ok().flatten()
            })
            .await
            .with_context(|| format!("{name} did not stop"))?;
            if !exit.success() {
                self.dump_logs();
                bail!("{name} exited with {exit}");
            }
        }
        Ok(())
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Child)>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes this test's streams and logs.
    pub async fn cleanup(&self) {
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(&self.subjects.jobs_stream).await;
            let _ = js.delete_stream(&self.subjects.events_stream).await;
        }
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in self.lock().iter_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the service binaries once per test process (with the targets and features
/// `cargo test --workspace` compiles, so nothing is compiled twice); returns their
/// directory.
pub async fn built_binaries() -> anyhow::Result<PathBuf> {
    static BUILT: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_try_init(|| async {
            let dir = Path::new(env!("CARGO_BIN_EXE_foodseg-scheduler"))
                .parent()
                .context("binary directory")?
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = tokio::process::Command::new(cargo);
            build
                .args(["build", "--workspace", "--all-targets"])
                .current_dir(workspace_root());
            // Cargo gives this test process the variables of the package under test;
            // build scripts that watch one of them (ring watches CARGO_MANIFEST_DIR)
            // would see it changed and rebuild half the tree.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if [
                    "CARGO_PKG_",
                    "CARGO_BIN_",
                    "CARGO_MANIFEST_",
                    "CARGO_CRATE_",
                ]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                    || matches!(
                        name.as_ref(),
                        "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
                    )
                {
                    build.env_remove(name.as_ref());
                }
            }
            let status = build.status().await?;
            ensure!(status.success(), "building the service binaries failed");
            Ok(dir)
        })
        .await
        .cloned()
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A webhook endpoint on 127.0.0.1 answering 200 to everything and keeping each request.
pub struct Hooks {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hooks {
    pub async fn start() -> anyhow::Result<Hooks> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(Mutex::new(Vec::new()));
        let store = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    if let Ok(hit) = read_request(stream).await {
                        store
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(hit);
                    }
                });
            }
        });
        Ok(Hooks { addr, hits, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_for(&self, n: usize, deadline: Duration) -> anyhow::Result<Vec<Hit>> {
        wait_until(deadline, || async {
            let hits = self
                .hits
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            (hits.len() >= n).then_some(hits)
        })
        .await
        .with_context(|| format!("fewer than {n} webhooks arrived"))
    }

    pub async fn wait_for_one(&self, deadline: Duration) -> anyhow::Result<Hit> {
        let hits = self.wait_for(1, deadline).await?;
        ensure!(hits.len() == 1, "{} webhooks for one job", hits.len());
        Ok(hits[0].clone())
    }
}

/// Reads one HTTP/1.1 request (Content-Length body) and answers 200.
pub async fn read_request(stream: tokio::net::TcpStream) -> std::io::Result<Hit> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await?;
    let stream = reader.get_mut();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await?;
    stream.flush().await?;
    Ok(Hit {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
