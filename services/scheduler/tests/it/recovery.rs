//! Recovery: lost dispatch messages, dead workers (expired leases), attempts exhausted,
//! the daily reconciliation, and the scheduler's probes.

use anyhow::Context;
use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{DEADLINE, Env, wait_until};
use async_nats::jetstream::stream::Stream;
use foodseg_engine::message::JobMessage;
use foodseg_engine::store::{ClaimOutcome, LOST_FAIL_DETAIL, REDRIVE_DETAIL, REPUBLISH_DETAIL};
use foodseg_engine::{DeliveryStatus, JobId, JobStatus, Relay, RelayConfig};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// `(stream sequence, Nats-Msg-Id, job id)` of every message now in the jobs stream.
async fn stream_messages(env: &Env) -> anyhow::Result<Vec<(u64, String, JobId)>> {
    let mut stream: Stream = env
        .bus
        .jetstream()
        .get_stream(&env.subjects.jobs_stream)
        .await?;
    let state = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let msg_id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let job: JobMessage = serde_json::from_slice(&m.payload)?;
        out.push((seq, msg_id, job.job_id));
    }
    Ok(out)
}

/// `(Nats-Msg-Id, job id)` of every message now in the jobs stream.
async fn job_messages(env: &Env) -> anyhow::Result<Vec<(String, JobId)>> {
    let messages = stream_messages(env).await?;
    Ok(messages.into_iter().map(|(_, m, id)| (m, id)).collect())
}

/// The stream sequence of each job's dispatch message now in the jobs stream.
async fn job_sequences(env: &Env) -> anyhow::Result<Vec<(u64, JobId)>> {
    let messages = stream_messages(env).await?;
    Ok(messages.into_iter().map(|(s, _, id)| (s, id)).collect())
}

/// Stands in for a worker: claims each dispatched job and stores an empty result.
fn fake_worker(
    env: &Env,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let store = env.store.clone();
    let bus = env.bus.clone();
    tokio::spawn(async move {
        let consumer = bus
            .job_consumer(
                "test-model",
                foodseg_engine::Priority::Interactive,
                Duration::from_secs(30),
                1000,
            )
            .await?;
        let mut messages = consumer.messages().await?;
        loop {
            let m = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            let Some(Ok(m)) = m else { return Ok(()) };
            let job: JobMessage = serde_json::from_slice(&m.payload)?;
            if let ClaimOutcome::Claimed { fence, .. } = store
                .claim(job.job_id, "fake-worker", Duration::from_secs(30))
                .await?
            {
                store
                    .succeed(&fence, &serde_json::json!([]), "test-version")
                    .await?;
            }
            m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        }
    })
}

#[sqlx::test(migrations = "../../migrations")]
async fn lost_dispatch_messages_are_republished_and_the_jobs_complete(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(env.enqueue(Some(&receiver.url("ok")), 3).await?.id);
    }
    let relay = Relay::new(env.store.clone(), env.bus.clone(), RelayConfig::default());
    assert_eq!(relay.publish_pending().await?, 5);
    assert_eq!(job_messages(&env).await?.len(), 5);
    // JetStream loses the messages (e.g. a crash before fsync).
    env.bus
        .jetstream()
        .get_stream(&env.subjects.jobs_stream)
        .await?
        .purge()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    assert!(job_messages(&env).await?.is_empty());

    let mut config = env.config();
    config.stale_queued_after = Duration::from_millis(300);
    let scheduler = env.start(config).await?;
    let republished = wait_until(DEADLINE, || async {
        let msgs = job_messages(&env).await.ok()?;
        (msgs.len() >= 5).then_some(msgs)
    })
    .await
    .context("republished messages")?;
    for id in &ids {
        let (msg_id, _) = republished
            .iter()
            .find(|(_, job)| job == id)
            .expect("republished");
        assert!(
            msg_id.starts_with(&format!("{id}.republish.")),
            "a new Nats-Msg-Id: {msg_id}"
        );
        let events = env.store.events(*id).await?;
        assert!(
            events
                .iter()
                .any(|e| e.detail.as_deref() == Some(REPUBLISH_DETAIL))
        );
    }

    let stop_worker = CancellationToken::new();
    let worker = fake_worker(&env, stop_worker.clone());
    for id in &ids {
        let d = env.settled_delivery(*id).await?;
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(
            env.store.get(*id).await?.unwrap().status,
            JobStatus::Succeeded
        );
    }
    stop_worker.cancel();
    worker.await??;
    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn only_a_message_the_stream_lost_is_republished(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(env.enqueue(None, 3).await?.id);
    }
    let relay = Relay::new(env.store.clone(), env.bus.clone(), RelayConfig::default());
    assert_eq!(relay.publish_pending().await?, 5);
    // Nobody consumes: four jobs wait in a long queue, the first one's message is lost.
    let lost = ids[0];
    let (seq, _) = job_sequences(&env)
        .await?
        .into_iter()
        .find(|(_, id)| *id == lost)
        .context("the first job's message")?;
    env.bus
        .jetstream()
        .get_stream(&env.subjects.jobs_stream)
        .await?
        .delete_message(seq)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;

    let mut config = env.config();
    config.stale_queued_after = Duration::from_millis(300);
    // Start sweeping once all five are stale, so the first sweep judges them together.
    wait_until(DEADLINE, || async {
        let stale = env
            .store
            .stale_queued(config.stale_queued_after, None, 10)
            .await
            .ok()?;
        (stale.len() == 5).then_some(())
    })
    .await
    .context("the jobs never became stale")?;
    let scheduler = env.start(config).await?;
    // The republish writes its event and outbox row together; the relay publishes the
    // row after, so wait for the message itself.
    let in_stream = wait_until(DEADLINE, || async {
        let in_stream = job_sequences(&env).await.ok()?;
        in_stream
            .iter()
            .any(|(_, id)| *id == lost)
            .then_some(in_stream)
    })
    .await
    .context("the lost message's republish")?;
    let events = env.store.events(lost).await?;
    assert!(
        events
            .iter()
            .any(|e| e.detail.as_deref() == Some(REPUBLISH_DETAIL)),
        "the republish is in the job's events: {events:?}"
    );
    // The same sweep saw the other four, all stale too, and left them alone: their
    // messages are still in the stream.
    for id in &ids[1..] {
        let job = env.store.get(*id).await?.context("job")?;
        assert_eq!(job.redispatches, 0, "job {id} was not republished");
    }
    assert_eq!(in_stream.len(), 5, "four waiting messages and the new one");
    assert_eq!(in_stream.iter().filter(|(_, id)| *id == lost).count(), 1);

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_job_whose_worker_died_is_redriven(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let job = env.enqueue(None, 3).await?;
    // The worker takes a short lease and is never heard of again.
    let (claimed, _) = env.claim_for(job.id, Duration::from_millis(200)).await?;
    assert_eq!(claimed.attempt.get(), 1);

    let scheduler = env.start(env.config()).await?;
    let store = env.store.clone();
    let requeued = wait_until(DEADLINE, || {
        let store = store.clone();
        async move {
            let job = store.get(job.id).await.ok()??;
            (job.status == JobStatus::Queued).then_some(job)
        }
    })
    .await
    .context("the re-drive")?;
    assert_eq!(requeued.attempt.get(), 1);
    assert!(requeued.lease_owner.is_none());
    assert!(
        requeued.message.contains("worker lost (lease expired)"),
        "{}",
        requeued.message
    );
    let events = env.store.events(job.id).await?;
    let last = events.last().unwrap();
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(JobStatus::Running), JobStatus::Queued)
    );
    assert_eq!(last.detail.as_deref(), Some(REDRIVE_DETAIL));
    // A fresh dispatch message, published by the scheduler's relay.
    let msg_id = format!("{}.1", job.id);
    wait_until(DEADLINE, || async {
        let msgs = job_messages(&env).await.ok()?;
        msgs.iter()
            .any(|(m, id)| *m == msg_id && *id == job.id)
            .then_some(())
    })
    .await
    .context("the redispatch message")?;
    // And a worker can run it again.
    assert_eq!(env.claim(job.id).await?.0.attempt.get(), 2);

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_job_out_of_attempts_after_lost_workers_fails_with_a_webhook(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    let job = env.enqueue(Some(&receiver.url("ok")), 2).await?;
    env.claim_for(job.id, Duration::from_millis(100)).await?;
    let scheduler = env.start(env.config()).await?;
    let store = env.store.clone();
    wait_until(DEADLINE, || {
        let store = store.clone();
        async move {
            let job = store.get(job.id).await.ok()??;
            (job.status == JobStatus::Queued).then_some(())
        }
    })
    .await
    .context("the first re-drive")?;
    env.claim_for(job.id, Duration::from_millis(100)).await?;

    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    let failed = env.store.get(job.id).await?.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.message,
        "worker lost 2 times (lease expired); giving up"
    );
    let events = env.store.events(job.id).await?;
    assert_eq!(
        events.last().unwrap().detail.as_deref(),
        Some(LOST_FAIL_DETAIL)
    );
    let doc = receiver
        .hits_for(&d.webhook_id)
        .remove(0)
        .document
        .expect("accepted");
    assert_eq!(doc["status"], "MFR.Job.ERROR");
    assert_eq!(
        doc["message"],
        "worker lost 2 times (lease expired); giving up"
    );
    assert_eq!(doc["response"], serde_json::json!({}));

    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_daily_reconciliation_runs_once_and_counts(pool: PgPool) -> anyhow::Result<()> {
    let metrics = foodseg_telemetry::metrics::install()?;
    let env = Env::new(pool).await?;
    env.enqueue(None, 3).await?;
    env.enqueue(None, 3).await?;
    env.succeeded_job("http://127.0.0.1:9/hook").await?;
    let day = chrono::Utc::now().date_naive();

    let other = env.store.clone();
    let (a, b) = tokio::join!(
        foodseg_scheduler::maintenance::reconcile::reconcile(&env.store, day),
        foodseg_scheduler::maintenance::reconcile::reconcile(&other, day),
    );
    let reports: Vec<_> = [a?, b?].into_iter().flatten().collect();
    assert_eq!(
        reports.len(),
        1,
        "exactly one scheduler runs the day's pass"
    );
    let report = &reports[0];
    let count = |status: JobStatus| {
        report
            .jobs
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!(
        (count(JobStatus::Queued), count(JobStatus::Succeeded)),
        (2, 1)
    );
    assert_eq!(report.deliveries_pending, 1);
    assert_eq!(report.deliveries_failed_24h, 0);
    // Three dispatch messages and one finished-job event, no relay running.
    assert_eq!(report.outbox_unpublished, 4);
    assert!(
        foodseg_scheduler::maintenance::reconcile::reconcile(&env.store, day)
            .await?
            .is_none()
    );
    let tomorrow = day.succ_opt().unwrap();
    assert!(
        foodseg_scheduler::maintenance::reconcile::reconcile(&env.store, tomorrow)
            .await?
            .is_some()
    );

    let text = metrics.render();
    assert!(
        text.contains(r#"foodseg_reconcile_counts{count="deliveries_pending"}"#),
        "{text}"
    );
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn probes_and_metrics_are_served(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let parts = foodseg_scheduler::Parts {
        store: env.store.clone(),
        bus: env.bus.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(foodseg_scheduler::serve(
        env.config(),
        parts,
        Some(listener),
        shutdown.clone(),
    ));
    let client = foodseg_http::client()?;
    let ready = wait_until(DEADLINE, || async {
        let r = client
            .get(format!("http://{addr}/health/ready"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(r)
    })
    .await
    .context("readiness")?;
    let body: serde_json::Value = ready.json().await?;
    assert_eq!(body["checks"]["postgres"], true);
    let live = client
        .get(format!("http://{addr}/health/live"))
        .send()
        .await?;
    assert_eq!(live.status(), 200);
    let metrics = client.get(format!("http://{addr}/metrics")).send().await?;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await?;
    assert!(
        text.contains("foodseg_queue_oldest_queued_seconds"),
        "{text}"
    );

    shutdown.cancel();
    task.await??;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_job_for_a_model_no_worker_serves_ends_error_with_its_webhook(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    // "test-model" has never had a worker in this database.
    let job = env.enqueue(Some(&receiver.url("ok")), 3).await?;
    let mut config = env.config();
    config.max_queue_wait = Duration::from_millis(500);
    let scheduler = env.start(config).await?;

    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Delivered);
    let failed = env.store.get(job.id).await?.context("job")?;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.message, "no worker serves model test-model");
    let doc = receiver
        .hits_for(&d.webhook_id)
        .remove(0)
        .document
        .expect("accepted");
    assert_eq!(doc["status"], "MFR.Job.ERROR");
    assert_eq!(doc["message"], "no worker serves model test-model");

    scheduler.stop().await?;
    env.cleanup().await
}
