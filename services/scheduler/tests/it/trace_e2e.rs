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

use anyhow::Context;
use foodseg_telemetry::receiver::{OtlpReceiver, ReceivedSpan, trace_problems};
use foodseg_telemetry::trace::trace_id_of;
use foodseg_testkit::{free_port, wait_until};
use sqlx::PgPool;

use crate::common::stack::{DEADLINE, Hooks, Stack, metric};

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
