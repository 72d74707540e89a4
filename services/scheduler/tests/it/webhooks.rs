//! Webhook delivery against local receivers: the v1 body MFR's Rails endpoint accepts,
//! signatures, retries, 410, hanging receivers, Retry-After, refused addresses,
//! redelivery, and two schedulers sharing one database.

use anyhow::Context;
use std::collections::HashMap;
use std::time::Duration;

use crate::common::receiver::{Receiver, rails_params};
use crate::common::{DEADLINE, Env, wait_until};
use foodseg_engine::domain::{EndpointLimits, Health, HealthPolicy};
use foodseg_engine::store::{AttemptRecord, Redelivery};
use foodseg_engine::{AttemptOutcome, DeliveryStatus};
use sqlx::PgPool;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[sqlx::test(migrations = "../../migrations")]
async fn delivers_the_v1_document_as_a_json_string_mfr_accepts(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(Some(SECRET)).await;
    let mut config = env.config();
    config.webhook_secrets = Some(SECRET.parse()?);
    let scheduler = env.start(config).await?;

    let ok = env.succeeded_job(&receiver.url("ok")).await?;
    let bad = env
        .failed_job(&receiver.url("ok"), "image_url returned HTTP 404")
        .await?;
    for job in [&ok, &bad] {
        let d = env.settled_delivery(job.id).await?;
        assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
        assert_eq!(d.attempts, 1);
        assert_eq!(d.webhook_id, format!("msg_{}", job.id.simple()));
        assert_eq!(d.attempt_log[0].outcome, AttemptOutcome::Delivered);
        assert_eq!(d.attempt_log[0].status_code, Some(200));
    }

    let hit = receiver
        .hits_for(&format!("msg_{}", ok.id.simple()))
        .remove(0);
    assert_eq!(hit.content_type.as_deref(), Some("application/json"));
    assert_eq!(hit.signature_ok, Some(true));
    assert_eq!(hit.status, 200);
    let tp = hit.traceparent.expect("traceparent sent");
    assert_eq!(
        tp.split('-').nth(1),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{tp}"
    );
    let doc = hit.document.expect("Rails accepts the body");
    assert_eq!(doc["job_id"], ok.id.to_string());
    assert_eq!(doc["status"], "MFR.Job.SUCCESS");
    assert_eq!(doc["message"], "Job completed");
    assert_eq!(doc["model_identifier"], "124096");
    assert_eq!(doc["api_version"], "v1.0");
    assert_eq!(
        doc["request"]["image_url"],
        "https://images.example/dish.jpeg"
    );
    assert_eq!(doc["request"]["webhook_url"], receiver.url("ok"));
    assert!(doc["processing_time"].is_number());
    assert_eq!(doc["response"][0]["category_name"], "apple");
    assert_eq!(doc["response"][0]["size"], serde_json::json!([640, 480]));
    assert_eq!(doc.as_object().map(|o| o.len()), Some(10));

    let hit = receiver
        .hits_for(&format!("msg_{}", bad.id.simple()))
        .remove(0);
    let doc = hit.document.expect("Rails accepts the body");
    assert_eq!(doc["status"], "MFR.Job.ERROR");
    assert_eq!(doc["message"], "image_url returned HTTP 404");
    assert_eq!(doc["response"], serde_json::json!({}));

    scheduler.stop().await?;
    env.cleanup().await
}

/// Verifies a delivery with the Standard Webhooks reference library (PyPI
/// `standardwebhooks`, in `.cache/standardwebhooks-venv`) under `secret`.
async fn verified_by_the_reference_library(
    secret: &str,
    hit: &crate::common::receiver::Hit,
) -> anyhow::Result<bool> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = tokio::process::Command::new(root.join("scripts/python-venv.sh"))
        .arg(root.join(".cache/standardwebhooks-venv"))
        .arg("import standardwebhooks")
        .arg("standardwebhooks==1.3.0")
        .output()
        .await?;
    anyhow::ensure!(venv.status.success(), "{venv:?}");
    let python = String::from_utf8(venv.stdout)?.trim().to_string();
    const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
case = json.load(sys.stdin)
try:
    Webhook(case["secret"]).verify(case["body"], case["headers"])
    print("verified")
except Exception as e:
    print(f"refused: {e!r}")
"#;
    let case = serde_json::json!({
        "secret": secret,
        "body": hit.body,
        "headers": {
            "webhook-id": hit.webhook_id,
            "webhook-timestamp": hit.timestamp.map(|t| t.to_string()),
            "webhook-signature": hit.signature,
        },
    });
    let mut child = tokio::process::Command::new(python)
        .args(["-c", VERIFY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("python's stdin")?;
    tokio::io::AsyncWriteExt::write_all(&mut stdin, case.to_string().as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    anyhow::ensure!(out.status.success(), "python failed: {out:?}");
    Ok(said == "verified")
}

#[sqlx::test(migrations = "../../migrations")]
async fn with_two_secrets_each_receiver_verifies_the_webhook_with_the_reference_library(
    pool: PgPool,
) -> anyhow::Result<()> {
    const NEW: &str = "whsec_c2VjcmV0LW9mLXRoZS1uZXctcmVjZWl2ZXI=";
    let env = Env::new(pool).await?;
    // A receiver holding only the new secret, while the scheduler signs with both.
    let receiver = Receiver::start(Some(NEW)).await;
    let mut config = env.config();
    config.webhook_secrets = Some(format!("{NEW} {SECRET}").parse()?);
    let scheduler = env.start(config).await?;
    let job = env.succeeded_job(&receiver.url("ok")).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
    let hit = receiver
        .hits_for(&format!("msg_{}", job.id.simple()))
        .remove(0);
    let signatures = hit.signature.clone().unwrap_or_default();
    assert_eq!(
        signatures
            .split(' ')
            .filter(|s| s.starts_with("v1,"))
            .count(),
        2,
        "one signature per secret: {signatures}"
    );
    for secret in [NEW, SECRET] {
        assert!(
            verified_by_the_reference_library(secret, &hit).await?,
            "standardwebhooks verifies under {}…",
            &secret[..10]
        );
    }
    assert!(
        !verified_by_the_reference_library("whsec_b3RoZXItc2VjcmV0", &hit).await?,
        "and refuses it under a secret the scheduler does not hold"
    );
    scheduler.stop().await?;
    env.cleanup().await
}

#[tokio::test]
async fn the_test_receiver_refuses_what_rails_refuses() {
    // A plain object lands in params without `_json`: MFR's controller answers 400.
    assert!(rails_params(Some("application/json"), r#"{"job_id":"x"}"#).is_err());
    assert!(rails_params(Some("application/json"), "not json").is_err());
    assert!(rails_params(Some("text/plain"), r#""{}""#).is_err());
    assert!(rails_params(Some("application/json"), "42").is_err());
    assert!(rails_params(Some("application/json"), r#""not a document""#).is_err());
    let doc = rails_params(
        Some("application/json; charset=utf-8"),
        r#""{\"job_id\":\"x\"}""#,
    );
    assert_eq!(doc.unwrap()["job_id"], "x");

    let receiver = Receiver::start(Some(SECRET)).await;
    let response = foodseg_http::client()
        .unwrap()
        .post(receiver.url("ok"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_1")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,AAAA")
        .body(r#""{\"job_id\":\"x\"}""#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "a wrong signature is refused");
}

#[sqlx::test(migrations = "../../migrations")]
async fn retries_until_the_receiver_recovers(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let scheduler = env.start(env.config()).await?;

    let job = env.succeeded_job(&receiver.url("fail/2")).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
    let outcomes: Vec<_> = d.attempt_log.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
    let codes: Vec<_> = d.attempt_log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);
    assert!(
        d.attempt_log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("HTTP 500")
    );
    assert!(d.attempt_log.iter().all(|a| a.latency_ms >= 0.0));
    assert!(
        d.attempt_log
            .windows(2)
            .all(|w| w[0].started_at <= w[1].started_at)
    );
    // Three requests, one webhook-id: the id is stable across retries.
    assert_eq!(receiver.hits_for(&d.webhook_id).len(), 3);
    assert_eq!(receiver.hits().len(), 3);

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn gone_stops_retries(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let scheduler = env.start(env.config()).await?;

    let job = env.succeeded_job(&receiver.url("gone")).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.attempt_log[0].outcome, AttemptOutcome::Gone);
    assert_eq!(d.attempt_log[0].status_code, Some(410));
    assert!(d.finished_at.is_some());
    assert_eq!(receiver.hits().len(), 1);

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn exhausted_schedule_fails_the_delivery_and_counts_it(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let scheduler = env.start(env.config()).await?;
    let metrics = foodseg_telemetry::metrics::install()?;

    let job = env.succeeded_job(&receiver.url("fail/100")).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Failed);
    // The test schedule has three retries: four attempts in all.
    assert_eq!(d.attempts, 4);
    let outcomes: Vec<_> = d.attempt_log.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "retry", "failed"]);
    let last = d.last_error.as_deref().unwrap();
    assert!(
        last.contains("HTTP 500") && last.ends_with("gave up after 4 attempts"),
        "{last}"
    );
    assert_eq!(receiver.hits().len(), 4);
    let text = metrics.render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("foodseg_webhook_deliveries_failed_total ")),
        "{text}"
    );
    assert!(text.contains("foodseg_webhook_attempts_total{outcome=\"retry\"}"));

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn retry_after_is_honoured(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let mut config = env.config();
    // The schedule alone would retry within 20 ms; the receiver asks for 1 s.
    config.retry_schedule = foodseg_scheduler::webhook::schedule::RetrySchedule::parse("20ms,10s")?;
    let scheduler = env.start(config).await?;

    let job = env.succeeded_job(&receiver.url("retry-after/1")).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempt_log.len(), 2);
    assert_eq!(d.attempt_log[0].status_code, Some(503));
    let gap = d.attempt_log[1].started_at - d.attempt_log[0].started_at;
    assert!(gap >= chrono::Duration::seconds(1), "retried after {gap}");

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_hanging_receiver_times_out_and_is_retried(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let mut config = env.config();
    // Long enough that the answered retry never times out on a busy machine; the hanging
    // first attempt costs this much once.
    config.attempt_timeout = Duration::from_secs(2);
    let scheduler = env.start(config).await?;

    let job = env.succeeded_job(&receiver.url("hang-once")).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert!(d.attempt_log.len() >= 2, "{d:?}");
    assert_eq!(
        d.attempt_log.last().map(|a| a.outcome),
        Some(AttemptOutcome::Delivered)
    );
    assert_eq!(d.attempt_log[0].outcome, AttemptOutcome::Retry);
    assert_eq!(d.attempt_log[0].status_code, None);
    let error = d.attempt_log[0].error.as_deref().unwrap();
    assert!(error.contains("no answer within"), "{error}");

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_hanging_receiver_does_not_hold_up_other_deliveries(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let slow = Receiver::start(None).await;
    let fast = Receiver::start(None).await;
    let mut config = env.config();
    config.attempt_timeout = Duration::from_secs(120);
    let scheduler = env.start(config).await?;

    let stuck = env.succeeded_job(&slow.url("hang")).await?;
    wait_until(DEADLINE, || async { (slow.hanging() == 1).then_some(()) })
        .await
        .context("the hanging attempt to be in flight")?;
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(env.succeeded_job(&fast.url("ok")).await?);
    }
    for job in &others {
        assert_eq!(
            env.settled_delivery(job.id).await?.status,
            DeliveryStatus::Delivered
        );
    }
    // All delivered while the first attempt of the stuck one is still waiting.
    let pending = env.store.deliveries(stuck.id).await?.remove(0);
    assert_eq!((pending.status.as_str(), pending.attempts), ("pending", 0));
    assert_eq!(slow.hanging(), 1);

    slow.release();
    let d = env.settled_delivery(stuck.id).await?;
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 1));

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn private_webhook_addresses_are_refused_at_send_time(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let mut config = env.config();
    config.common.net_policy = Default::default();
    let scheduler = env.start(config).await?;

    let by_ip = env.succeeded_job(&receiver.url("ok")).await?;
    let by_name = env
        .succeeded_job(&format!("http://localhost:{}/ok", receiver.addr.port()))
        .await?;
    for job in [by_ip, by_name] {
        let d = env.settled_delivery(job.id).await?;
        assert_eq!((d.status.as_str(), d.attempts), ("failed", 1));
        assert_eq!(d.attempt_log[0].outcome, AttemptOutcome::Failed);
        let error = d.last_error.clone().unwrap();
        assert!(error.starts_with("webhook URL refused"), "{error}");
    }
    assert!(receiver.hits().is_empty());

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn redelivery_sends_again_with_a_new_webhook_id(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let scheduler = env.start(env.config()).await?;

    let job = env.succeeded_job(&receiver.url("ok")).await?;
    let first = env.settled_delivery(job.id).await?;
    let Redelivery::Created(second) = env.store.redeliver(job.id, "operator").await? else {
        panic!("redelivery of a finished job");
    };
    assert_ne!(second.webhook_id, first.webhook_id);
    // The running scheduler may already have sent it by the time the view is read.
    assert!(
        matches!(second.status.as_str(), "pending" | "delivered"),
        "{}",
        second.status
    );
    let store = env.store.clone();
    wait_until(DEADLINE, || {
        let store = store.clone();
        let id = second.id;
        async move {
            store
                .delivery(id)
                .await
                .ok()?
                .filter(|d| d.status == DeliveryStatus::Delivered)
        }
    })
    .await
    .context("the redelivery")?;
    assert_eq!(receiver.hits_for(&second.webhook_id).len(), 1);
    assert_eq!(receiver.hits_for(&first.webhook_id).len(), 1);
    let events = env.store.events(job.id).await?;
    let last = events.last().unwrap();
    assert_eq!(last.actor, "operator");
    assert!(last.detail.as_deref().unwrap().contains(&second.webhook_id));

    let queued = env.enqueue(Some(&receiver.url("ok")), 3).await?;
    assert!(matches!(
        env.store.redeliver(queued.id, "operator").await?,
        Redelivery::NotFinished(foodseg_engine::JobStatus::Queued)
    ));
    let silent = env.enqueue(None, 3).await?;
    let (_, fence) = env.claim(silent.id).await?;
    env.store
        .succeed(&fence, &serde_json::json!([]), "test-version")
        .await?;
    assert_eq!(
        env.store.redeliver(silent.id, "operator").await?,
        Redelivery::NoWebhook
    );
    assert_eq!(
        env.store
            .redeliver(foodseg_engine::JobId::new(), "operator")
            .await?,
        Redelivery::NotFound
    );

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn attempts_are_fenced_on_the_claim(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let job = env.succeeded_job("http://127.0.0.1:9/ok").await?;
    let lease = Duration::from_secs(60);
    let limits = EndpointLimits::default();
    let claims = env.store.claim_due_deliveries(10, lease, &limits).await?;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].delivery.job_id, job.id);
    assert_eq!(claims[0].attempt(), 1);
    // Locked: nobody else gets it.
    assert!(
        env.store
            .claim_due_deliveries(10, lease, &limits)
            .await?
            .is_empty()
    );

    let record = AttemptRecord {
        started_at: chrono::Utc::now(),
        latency: Duration::from_millis(5),
        status_code: Some(500),
        error: Some("receiver answered HTTP 500".into()),
        outcome: AttemptOutcome::Retry,
        next_attempt_at: Some(chrono::Utc::now()),
    };
    let mut stale = claims[0].clone();
    stale.locked_until -= chrono::Duration::seconds(1);
    let down = Health::Down { retry_after: None };
    let policy = HealthPolicy::default();
    let record_as = |claim| {
        env.store
            .record_attempt(claim, &record, &down, &policy, "test")
    };
    assert!(record_as(&stale).await?.is_none(), "another claim's token");
    assert!(record_as(&claims[0]).await?.is_some());
    assert!(record_as(&claims[0]).await?.is_none(), "same attempt twice");

    let again = env.store.claim_due_deliveries(10, lease, &limits).await?;
    assert_eq!(again[0].attempt(), 2);
    let d = env.store.deliveries(job.id).await?.remove(0);
    assert_eq!(
        (d.status.as_str(), d.attempts, d.attempt_log.len()),
        ("pending", 1, 1)
    );
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn two_schedulers_deliver_each_of_200_jobs_exactly_once(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let a = env.start(env.config()).await?;
    let b = env.start(env.config()).await?;

    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(env.succeeded_job(&receiver.url("ok")).await?.id);
    }
    let pool = env.pool.clone();
    wait_until(DEADLINE, || {
        let pool = pool.clone();
        async move {
            let delivered: i64 =
                sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (delivered == 200).then_some(())
        }
    })
    .await
    .context("all 200 deliveries")?;
    a.stop().await?;
    b.stop().await?;

    let mut per_id: HashMap<String, usize> = HashMap::new();
    for hit in receiver.hits() {
        *per_id.entry(hit.webhook_id.unwrap()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 200);
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
    for id in ids {
        assert!(per_id.contains_key(&format!("msg_{}", id.simple())));
    }
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
        .fetch_one(&env.pool)
        .await?;
    assert_eq!(attempts, 200);
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn finished_jobs_wake_the_scheduler_without_waiting_for_a_poll(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let mut config = env.config();
    // Only a wake-up (Postgres notification or finished-job event) can start a delivery
    // within the test's deadline.
    config.poll_interval = Duration::from_secs(3600);
    let scheduler = env.start(config).await?;
    for _ in 0..20 {
        let job = env.succeeded_job(&receiver.url("ok")).await?;
        assert_eq!(
            env.settled_delivery(job.id).await?.status,
            DeliveryStatus::Delivered
        );
    }
    scheduler.stop().await?;
    env.cleanup().await
}
