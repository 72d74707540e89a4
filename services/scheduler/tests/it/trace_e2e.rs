//! End to end across the three real binaries, each its own process with its own
//! `OTEL_SERVICE_NAME`, against the real Postgres and NATS:
//!
//! - one enqueue with a webhook is ONE trace: spans from api, worker and scheduler, every
//!   parent inside the trace, a single root, and the webhook's `traceparent` names the
//!   delivery's CLIENT span in that trace (decoded from real OTLP/HTTP protobuf);
//! - with the exporter pointed at a collector that never answers, jobs still complete and
//!   the services still shut down gracefully;
//! - `/metrics` of each service counts what a few jobs did;
//! - a password and a signature planted in image and webhook URLs reach no span, no log
//!   line, no job event and no stored delivery error.
//!
//! The binaries are built (incrementally) by the test itself: `cargo test -p
//! foodseg-scheduler` only builds this package's binary.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use foodseg_engine::Subjects;
use foodseg_telemetry::receiver::{OtlpReceiver, ReceivedSpan, trace_problems};
use foodseg_telemetry::trace::trace_id_of;
use foodseg_testkit::{FileServer, free_port, nats_url, wait_until};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

/// Generous bound for conditions; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(120);

const STAGES: [&str; 5] = ["fetch", "decode", "preprocess", "inference", "postprocess"];

#[sqlx::test(migrations = "../../migrations")]
async fn one_enqueue_is_one_trace_across_api_worker_scheduler(pool: PgPool) -> anyhow::Result<()> {
    let otlp = OtlpReceiver::start().await?;
    let hooks = Hooks::start().await?;
    let stack = Stack::start(&pool, Some(&otlp.endpoint())).await?;

    let job_id = stack.enqueue(&hooks.url("/hook")).await?;
    let hit = hooks.wait_for_one(DEADLINE).await?;
    let stored = sqlx::query_scalar!("SELECT trace_id FROM jobs WHERE id = $1", job_id)
        .fetch_one(&pool)
        .await?;
    let trace_id = stored.context("the job has no stored trace id")?;
    let traceparent = hit
        .header("traceparent")
        .context("webhook without traceparent")?;
    assert_eq!(
        trace_id_of(traceparent),
        Some(trace_id.as_str()),
        "webhook names another trace"
    );

    let jobs_subject = stack.subjects.job("");
    let events_subject = stack.subjects.job_event("");
    let complete = |spans: &[ReceivedSpan]| {
        let has = |service: &str, kind: &str, name: &str| {
            spans
                .iter()
                .any(|s| s.service_name == service && s.kind == kind && s.name.starts_with(name))
        };
        has("foodseg-api", "server", "POST /enqueue")
            && spans
                .iter()
                .any(|s| s.kind == "producer" && s.name.contains(&jobs_subject))
            && spans
                .iter()
                .any(|s| s.kind == "producer" && s.name.contains(&events_subject))
            && has("foodseg-worker", "consumer", "process ")
            && STAGES
                .iter()
                .all(|stage| has("foodseg-worker", "internal", stage))
            && has("foodseg-scheduler", "consumer", "process ")
            && has("foodseg-scheduler", "client", "POST")
    };
    let spans = otlp
        .wait_for(DEADLINE, |all| {
            let trace: Vec<_> = all
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            complete(&trace)
        })
        .await;
    let trace: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();
    let summary: Vec<String> = trace
        .iter()
        .map(|s| format!("{} {} {:?}", s.service_name, s.kind, s.name))
        .collect();
    if !complete(&trace) {
        stack.dump_logs();
    }
    assert!(complete(&trace), "incomplete trace: {summary:#?}");
    assert_eq!(trace_problems(&trace), Vec::<String>::new(), "{summary:#?}");

    // The root is the enqueue; the webhook's traceparent is the delivery's CLIENT span.
    let root = trace
        .iter()
        .find(|s| s.parent_span_id.is_none())
        .context("root")?;
    assert_eq!(
        (root.service_name.as_str(), root.name.as_str()),
        ("foodseg-api", "POST /enqueue")
    );
    assert_eq!(root.attr("http.request.method"), Some("POST"));
    assert_eq!(root.attr("http.response.status_code"), Some("200"));
    let client = trace
        .iter()
        .find(|s| s.kind == "client" && s.service_name == "foodseg-scheduler")
        .context("client span")?;
    let sent_span_id = traceparent.split('-').nth(2).unwrap_or_default();
    assert_eq!(
        client.span_id, sent_span_id,
        "the webhook's traceparent names the CLIENT span"
    );
    assert_eq!(client.attr("http.response.status_code"), Some("200"));
    assert_eq!(client.attr("url.full"), Some(hooks.url("/hook").as_str()));
    assert_eq!(client.attr("job.id"), Some(job_id.to_string().as_str()));

    // Messaging spans follow the semantic conventions, and the worker continues the
    // producer: its CONSUMER span's parent is a PRODUCER span.
    let by_id: HashMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for s in trace
        .iter()
        .filter(|s| s.kind == "producer" || s.kind == "consumer")
    {
        assert_eq!(s.attr("messaging.system"), Some("nats"), "{s:?}");
        assert!(
            s.attr("messaging.destination.name")
                .is_some_and(|d| d.starts_with(&stack.subjects.prefix)),
            "{s:?}"
        );
        let op = if s.kind == "producer" {
            "send"
        } else {
            "process"
        };
        assert_eq!(s.attr("messaging.operation.type"), Some(op), "{s:?}");
    }
    for s in trace.iter().filter(|s| s.kind == "consumer") {
        let parent = s
            .parent_span_id
            .as_deref()
            .and_then(|p| by_id.get(p))
            .context("consumer parent")?;
        assert_eq!(
            parent.kind, "producer",
            "{} continues {:?}",
            s.name, parent.name
        );
    }
    let worker = trace
        .iter()
        .find(|s| s.kind == "consumer" && s.service_name == "foodseg-worker")
        .context("worker consumer")?;
    assert_eq!(worker.attr("job.id"), Some(job_id.to_string().as_str()));
    assert_eq!(worker.attr("attempt"), Some("1"));
    assert!(worker.attr("model").is_some());
    let post = trace
        .iter()
        .find(|s| s.name == "postprocess")
        .context("postprocess")?;
    assert!(
        post.attr("detections")
            .is_some_and(|d| d.parse::<u32>().is_ok_and(|n| n > 0)),
        "{post:?}"
    );

    // Every worker log line written inside the job's spans names its trace.
    stack.stop().await?;
    let worker_log = std::fs::read_to_string(stack.log_path("foodseg-worker"))?;
    let job_lines: Vec<&str> = worker_log
        .lines()
        .filter(|l| l.contains(&job_id.to_string()) && l.contains("\"span\""))
        .collect();
    assert!(
        !job_lines.is_empty(),
        "no worker log line about the job:\n{worker_log}"
    );
    for line in job_lines {
        assert!(
            line.contains(&format!("\"trace_id\":\"{trace_id}\"")),
            "{line}"
        );
    }
    stack.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn services_work_normally_with_a_collector_that_never_answers(
    pool: PgPool,
) -> anyhow::Result<()> {
    // Accepts connections and never answers: the worst kind of dead collector.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", blackhole.local_addr()?);
    let hooks = Hooks::start().await?;
    let stack = Stack::start(&pool, Some(&endpoint)).await?;

    for _ in 0..2 {
        stack.enqueue(&hooks.url("/hook")).await?;
    }
    let hits = hooks.wait_for(2, DEADLINE).await?;
    for hit in &hits {
        assert!(hit.header("traceparent").and_then(trace_id_of).is_some());
        assert!(hit.body.contains("MFR.Job.SUCCESS"), "{}", hit.body);
    }
    // Graceful shutdown still completes (span flush gives up after its bound).
    stack.stop().await?;
    stack.cleanup().await;
    drop(blackhole);
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn metrics_count_what_a_few_jobs_did(pool: PgPool) -> anyhow::Result<()> {
    let hooks = Hooks::start().await?;
    let stack = Stack::start(&pool, None).await?;
    const JOBS: usize = 3;
    for _ in 0..JOBS {
        stack.enqueue(&hooks.url("/hook")).await?;
    }
    hooks.wait_for(JOBS, DEADLINE).await?;
    let n = JOBS as f64;

    let api = stack.scrape(&stack.api).await?;
    assert_eq!(
        metric(&api, "foodseg_jobs_enqueued_total", &[]),
        Some(n),
        "{api}"
    );

    let worker = stack.scrape(&stack.worker).await?;
    let transition = |from, to| {
        metric(
            &worker,
            "foodseg_job_transitions_total",
            &[("from", from), ("to", to)],
        )
    };
    assert_eq!(transition("queued", "running"), Some(n), "{worker}");
    assert_eq!(transition("running", "succeeded"), Some(n), "{worker}");
    for stage in STAGES {
        assert_eq!(
            metric(
                &worker,
                "foodseg_worker_stage_seconds_count",
                &[("stage", stage)]
            ),
            Some(n),
            "{stage}: {worker}"
        );
    }
    assert_eq!(
        metric(&worker, "foodseg_queue_wait_seconds_count", &[]),
        Some(n),
        "{worker}"
    );

    // The webhook is recorded after it is answered: wait for the counter, then check it.
    let scheduler = wait_until(DEADLINE, || async {
        let text = stack.scrape(&stack.scheduler).await.ok()?;
        (metric(
            &text,
            "foodseg_webhook_attempts_total",
            &[("outcome", "delivered")],
        ) == Some(n))
        .then_some(text)
    })
    .await
    .context("scheduler never counted the deliveries")?;
    assert_eq!(
        metric(
            &scheduler,
            "foodseg_webhook_attempts_total",
            &[("outcome", "retry")]
        ),
        None
    );
    assert!(
        scheduler.contains("foodseg_queue_oldest_queued_seconds"),
        "{scheduler}"
    );

    stack.stop().await?;
    stack.cleanup().await;
    Ok(())
}

/// A password and a presigned-URL signature in an image URL and a webhook URL: the jobs
/// run (one succeeds, one fails on an unreachable host, one webhook fails on one), and
/// neither secret appears in any exported span, any log line (our crates at debug), any
/// job event or any delivery's stored error.
#[sqlx::test(migrations = "../../migrations")]
async fn secrets_in_urls_reach_no_span_log_event_or_stored_error(
    pool: PgPool,
) -> anyhow::Result<()> {
    const PASSWORD: &str = "pl4nted-Passw0rd";
    const SIGNATURE: &str = "pl4nted5ignature";
    let otlp = OtlpReceiver::start().await?;
    let hooks = Hooks::start().await?;
    let debug = "info,foodseg_api=debug,foodseg_worker=debug,foodseg_scheduler=debug,\
                 foodseg_engine=debug,foodseg_pipeline=debug,foodseg_telemetry=debug";
    let stack = Stack::start_with(
        &pool,
        Some(&otlp.endpoint()),
        vec![
            ("RUST_LOG", debug.into()),
            ("FOODSEG_MAX_ATTEMPTS", "1".into()),
        ],
    )
    .await?;
    let secret = |url: &str, path: Option<&str>| -> anyhow::Result<String> {
        let mut url = url::Url::parse(url)?;
        url.set_username("mfr")
            .map_err(|()| anyhow::anyhow!("no userinfo"))?;
        url.set_password(Some(PASSWORD))
            .map_err(|()| anyhow::anyhow!("no userinfo"))?;
        if let Some(path) = path {
            url.set_path(path);
        }
        url.set_query(Some(&format!(
            "X-Amz-Signature={SIGNATURE}&X-Amz-Expires=300"
        )));
        Ok(url.to_string())
    };
    let image = secret(&stack.image_url, None)?;
    let hook = secret(&hooks.url("/hook"), None)?;
    let closed = format!("http://127.0.0.1:{}/", free_port()?);
    let unreachable_image = secret(&closed, Some("/dish.jpg"))?;
    let unreachable_hook = secret(&closed, Some("/hook"))?;

    let ok = stack.enqueue_image(&image, &hook).await?;
    let failed = stack.enqueue_image(&unreachable_image, &hook).await?;
    let undelivered = stack.enqueue_image(&image, &unreachable_hook).await?;
    hooks.wait_for(2, DEADLINE).await?;
    let store = foodseg_engine::Store::from_pool(pool.clone(), stack.subjects.clone());
    let first_attempt = wait_until(DEADLINE, || async {
        let deliveries = store.deliveries(undelivered.into()).await.ok()?;
        deliveries.into_iter().find(|d| !d.attempt_log.is_empty())
    })
    .await
    .context("the failing webhook's first attempt")?;
    assert!(first_attempt.attempt_log[0].error.is_some());
    stack.stop().await?;

    let leaked = |text: &str| text.contains(PASSWORD) || text.contains(SIGNATURE);
    let spans = otlp.spans();
    assert!(spans.len() > 10, "{} spans", spans.len());
    for span in &spans {
        let text = span.text();
        assert!(
            !leaked(&text),
            "span {} of {}: {text}",
            span.name,
            span.service_name
        );
    }
    for (service, log) in stack.read_logs()? {
        assert!(!log.is_empty(), "{service} logged nothing");
        for line in log.lines() {
            assert!(!leaked(line), "{service} logged: {line}");
        }
    }
    for id in [ok, failed, undelivered] {
        for event in store.events(id.into()).await? {
            let text = format!("{event:?}");
            assert!(!leaked(&text), "event of {id}: {text}");
        }
        for delivery in store.deliveries(id.into()).await? {
            let text = format!("{:?} {:?}", delivery.last_error, delivery.attempt_log);
            assert!(!leaked(&text), "delivery of {id}: {text}");
        }
        let job = store.get(id.into()).await?.context("job")?;
        let text = format!("{} {:?}", job.message, job.last_error);
        assert!(!leaked(&text), "job {id}: {text}");
    }
    let failed = store.get(failed.into()).await?.context("job")?;
    assert_eq!(
        failed.status,
        foodseg_engine::JobStatus::Failed,
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("Connection refused"),
        "the reason still says what went wrong: {}",
        failed.message
    );
    stack.cleanup().await;
    Ok(())
}

/// Sum of the samples of `name` whose labels include `labels` (`None` when none match).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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
struct Stack {
    children: Mutex<Vec<(String, Child)>>,
    logs: PathBuf,
    subjects: Subjects,
    http: reqwest::Client,
    api: SocketAddr,
    worker: SocketAddr,
    scheduler: SocketAddr,
    _images: FileServer,
    image_url: String,
}

impl Stack {
    async fn start(pool: &PgPool, otlp_endpoint: Option<&str>) -> anyhow::Result<Stack> {
        Self::start_with(pool, otlp_endpoint, Vec::new()).await
    }

    /// Like [`Stack::start`], with more variables for every service.
    async fn start_with(
        pool: &PgPool,
        otlp_endpoint: Option<&str>,
        extra: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Stack> {
        let bin = built_binaries().await?;
        let root = workspace_root();
        let subjects = Subjects::with_prefix(&format!("t{}", Uuid::new_v4().simple()));
        let mut database_url =
            url::Url::parse(&std::env::var("DATABASE_URL").context("DATABASE_URL")?)?;
        database_url.set_path(
            pool.connect_options()
                .get_database()
                .context("test database")?,
        );
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
            ("foodseg-api", vec![("FOODSEG_API_ADDR", api.to_string())]),
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
    async fn enqueue(&self, webhook_url: &str) -> anyhow::Result<Uuid> {
        self.enqueue_image(&self.image_url, webhook_url).await
    }

    /// `POST /enqueue` of `image_url` as MFR does it; returns the job id.
    async fn enqueue_image(&self, image_url: &str, webhook_url: &str) -> anyhow::Result<Uuid> {
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

    async fn scrape(&self, addr: &SocketAddr) -> anyhow::Result<String> {
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

    fn log_path(&self, service: &str) -> PathBuf {
        self.logs.join(format!("{service}.log"))
    }

    /// Every service's log, by service.
    fn read_logs(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        ["foodseg-api", "foodseg-worker", "foodseg-scheduler"]
            .into_iter()
            .map(|name| Ok((name, std::fs::read_to_string(self.log_path(name))?)))
            .collect()
    }

    fn dump_logs(&self) {
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
    async fn stop(&self) -> anyhow::Result<()> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Child)>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes this test's streams and logs.
    async fn cleanup(&self) {
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the three binaries once per test process; returns their directory.
async fn built_binaries() -> anyhow::Result<PathBuf> {
    static BUILT: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_try_init(|| async {
            let dir = Path::new(env!("CARGO_BIN_EXE_foodseg-scheduler"))
                .parent()
                .context("binary directory")?
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = tokio::process::Command::new(cargo)
                .args([
                    "build",
                    "-p",
                    "foodseg-api",
                    "-p",
                    "foodseg-worker",
                    "-p",
                    "foodseg-scheduler",
                ])
                .current_dir(workspace_root())
                .status()
                .await?;
            ensure!(status.success(), "building the service binaries failed");
            Ok(dir)
        })
        .await
        .cloned()
}

/// One webhook request as received.
#[derive(Debug, Clone)]
struct Hit {
    headers: HashMap<String, String>,
    body: String,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A webhook endpoint on 127.0.0.1 answering 200 to everything and keeping each request.
struct Hooks {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hooks {
    async fn start() -> anyhow::Result<Hooks> {
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_for(&self, n: usize, deadline: Duration) -> anyhow::Result<Vec<Hit>> {
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

    async fn wait_for_one(&self, deadline: Duration) -> anyhow::Result<Hit> {
        let hits = self.wait_for(1, deadline).await?;
        ensure!(hits.len() == 1, "{} webhooks for one job", hits.len());
        Ok(hits[0].clone())
    }
}

/// Reads one HTTP/1.1 request (Content-Length body) and answers 200.
async fn read_request(stream: tokio::net::TcpStream) -> std::io::Result<Hit> {
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
