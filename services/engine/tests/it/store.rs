//! The job store against a real Postgres (one database per test).

use std::time::Duration;

use foodseg_engine::store::{ClaimOutcome, NewJob, RetryOutcome};
use foodseg_engine::{Attempt, Fence, JobId, JobStatus, RetryPolicy, Store, StoreError, Subjects};
use sqlx::PgPool;

const LEASE: Duration = Duration::from_secs(30);

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tstore"))
}

fn new_job(webhook: Option<&str>) -> NewJob {
    NewJob {
        id: JobId::new(),
        model_id: "124096".into(),
        model_name: "yolov5s-seg-coco".into(),
        image_url: "https://images.example.org/a.jpg".into(),
        webhook_url: webhook.map(str::to_string),
        max_attempts: Attempt::new(2),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        owner: None,
        priority: Default::default(),
        batch_id: None,
    }
}

/// Rows a job has in `job_events`, `outbox` and `deliveries`.
struct Rows {
    events: i64,
    outbox: i64,
    deliveries: i64,
}

async fn rows(pool: &PgPool, id: JobId) -> Rows {
    sqlx::query_as!(
        Rows,
        r#"SELECT (SELECT count(*) FROM job_events WHERE job_id = $1) AS "events!",
                  (SELECT count(*) FROM outbox WHERE payload->>'job_id' = $1::text) AS "outbox!",
                  (SELECT count(*) FROM deliveries WHERE job_id = $1) AS "deliveries!""#,
        id as JobId
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

fn fence_lost(e: StoreError) -> bool {
    matches!(e, StoreError::FenceLost(_))
}

fn fence(id: JobId, attempt: i32, owner: &str) -> Fence {
    Fence {
        job_id: id,
        attempt: Attempt::new(attempt),
        owner: owner.into(),
    }
}

async fn claimed(store: &Store, id: JobId, owner: &str) -> (foodseg_engine::Job, Fence) {
    match store.claim(id, owner, LEASE).await.unwrap() {
        ClaimOutcome::Claimed { job, fence } => (job, fence),
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn enqueue_writes_job_event_and_outbox_row(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(None);
    let job = store.enqueue(&new, "api").await.unwrap();
    assert_eq!(job.id, new.id);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempt, Attempt::NONE);
    assert_eq!(job.message, "Job queued");
    assert_eq!(store.get(new.id).await.unwrap(), Some(job.clone()));

    let events = store.events(new.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].from_status, None);
    assert_eq!(events[0].to_status, JobStatus::Queued);
    assert_eq!(events[0].actor, "api");

    let row = sqlx::query!("SELECT subject, msg_id, payload, headers FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.subject, "tstore.jobs.segment.yolov5s-seg-coco");
    assert_eq!(row.msg_id, new.id.to_string());
    assert_eq!(row.payload, serde_json::json!({"job_id": new.id}));
    assert_eq!(row.headers["traceparent"], new.traceparent.clone().unwrap());
}

#[sqlx::test(migrations = "../../migrations")]
async fn duplicate_job_id_is_rejected_without_side_effects(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(None);
    store.enqueue(&new, "api").await.unwrap();
    assert!(store.enqueue(&new, "api").await.is_err());
    let rows = rows(&pool, new.id).await;
    assert_eq!((rows.events, rows.outbox), (1, 1));
}

#[sqlx::test(migrations = "../../migrations")]
async fn claim_renew_succeed_with_fencing(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(Some("https://mfr.example.org/hook"));
    store.enqueue(&new, "api").await.unwrap();

    let (job, w1) = claimed(&store, new.id, "w1").await;
    assert_eq!(w1, fence(new.id, 1, "w1"));
    assert_eq!(job.fence(), Some(w1.clone()));
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.attempt, Attempt::FIRST);
    assert_eq!(job.lease_owner.as_deref(), Some("w1"));
    assert!(job.lease_expires_at.is_some());

    // A second claim sees the lease.
    assert!(matches!(
        store.claim(new.id, "w2", LEASE).await.unwrap(),
        ClaimOutcome::Running(_)
    ));
    // Renewal works for the holder only.
    store.renew(&w1, LEASE).await.unwrap();
    assert!(fence_lost(
        store
            .renew(&fence(new.id, 1, "w2"), LEASE)
            .await
            .unwrap_err()
    ));
    assert!(fence_lost(
        store
            .renew(&fence(new.id, 2, "w1"), LEASE)
            .await
            .unwrap_err()
    ));
    // A stale attempt cannot write a result.
    let items = serde_json::json!([{"id": 0}]);
    assert!(fence_lost(
        store
            .succeed(&fence(new.id, 0, "w1"), &items, "v1")
            .await
            .unwrap_err()
    ));

    let done = store.succeed(&w1, &items, "v1").await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.response, Some(items.clone()));
    assert!(done.processing_time.is_some_and(|t| t >= 0.0));
    assert!(done.lease_expires_at.is_none());

    // Finished: no more writes, claims say so.
    assert!(fence_lost(
        store.succeed(&w1, &items, "v1").await.unwrap_err()
    ));
    assert!(fence_lost(store.fail(&w1, "late").await.unwrap_err()));
    assert_eq!(
        store.claim(new.id, "w2", LEASE).await.unwrap(),
        ClaimOutcome::Finished(JobStatus::Succeeded)
    );

    let to: Vec<JobStatus> = store
        .events(new.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to_status)
        .collect();
    assert_eq!(
        to,
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded]
    );
    // Finished-job event in the outbox and a webhook delivery.
    let subjects = sqlx::query_scalar!("SELECT subject FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(subjects[1], "tstore.events.job.succeeded");
    assert_eq!(rows(&pool, new.id).await.deliveries, 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn fail_is_final_and_without_webhook_writes_no_delivery(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(None);
    store.enqueue(&new, "api").await.unwrap();
    let (_, w1) = claimed(&store, new.id, "w1").await;
    let job = store.fail(&w1, "image not found (404)").await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.message, "image not found (404)");
    assert_eq!(job.last_error.as_deref(), Some("image not found (404)"));
    assert_eq!(rows(&pool, new.id).await.deliveries, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn retry_requeues_with_backoff_then_fails_when_attempts_run_out(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(None); // max_attempts = 2
    store.enqueue(&new, "api").await.unwrap();
    let policy = RetryPolicy::default();

    let (_, w1) = claimed(&store, new.id, "w1").await;
    let RetryOutcome::Requeued { not_before } = store
        .retry(&w1, "image host 503", &policy, 1.0)
        .await
        .unwrap()
    else {
        panic!("expected a requeue");
    };
    let job = store.get(new.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.not_before, Some(not_before));
    assert!(not_before > job.updated_at);
    // The stale attempt cannot write after the retry.
    assert!(fence_lost(store.fail(&w1, "late").await.unwrap_err()));
    // Not claimable before its backoff.
    assert!(matches!(
        store.claim(new.id, "w2", LEASE).await.unwrap(),
        ClaimOutcome::NotYet(_)
    ));
    // A re-dispatch message was written with a per-attempt msg id.
    let ids = sqlx::query_scalar!("SELECT msg_id FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, [new.id.to_string(), format!("{}.1", new.id)]);
    // It waits in Postgres for the backoff: parked until `not_before`, not handed to the
    // relay, not counted as backlog.
    let parked = sqlx::query_scalar!(
        "SELECT not_before FROM outbox WHERE msg_id = $1",
        format!("{}.1", new.id)
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(parked, Some(not_before));
    let due = store.outbox_batch(10).await.unwrap();
    assert_eq!(
        due.rows()
            .iter()
            .map(|r| r.msg_id.clone())
            .collect::<Vec<_>>(),
        [new.id.to_string()]
    );
    drop(due);
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
    sqlx::query!(
        "UPDATE outbox SET not_before = now() WHERE msg_id = $1",
        format!("{}.1", new.id)
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(store.outbox_pending().await.unwrap(), 2);

    sqlx::query!(
        "UPDATE jobs SET not_before = now() WHERE id = $1",
        new.id as JobId
    )
    .execute(&pool)
    .await
    .unwrap();
    let (job, w2) = claimed(&store, new.id, "w2").await;
    assert_eq!(job.attempt, Attempt::new(2));
    let RetryOutcome::Failed(job) = store
        .retry(&w2, "image host 503", &policy, 1.0)
        .await
        .unwrap()
    else {
        panic!("expected a final failure");
    };
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.message.contains("gave up after 2 attempts"),
        "{}",
        job.message
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn release_hands_the_job_back_at_once(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(None);
    store.enqueue(&new, "api").await.unwrap();
    let (_, w1) = claimed(&store, new.id, "w1").await;
    assert!(fence_lost(
        store.release(&fence(new.id, 1, "w2")).await.unwrap_err()
    ));
    let job = store.release(&w1).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert!(job.lease_owner.is_none());
    let (job, _) = claimed(&store, new.id, "w2").await;
    assert_eq!(job.attempt, Attempt::new(2));
}

#[sqlx::test(migrations = "../../migrations")]
async fn releases_do_not_spend_the_attempt_budget(pool: PgPool) {
    let store = store(pool.clone());
    let new = new_job(None);
    assert_eq!(new.max_attempts, Attempt::new(2));
    store.enqueue(&new, "api").await.unwrap();
    // Three scale-ins in a row: every worker hands the job back while shutting down.
    for n in 1..=3 {
        let (_, f) = claimed(&store, new.id, &format!("w{n}")).await;
        let job = store.release(&f).await.unwrap();
        assert_eq!(job.max_attempts, Attempt::new(2 + n));
    }
    // The job still has its two real attempts: a transient failure is retried...
    let (_, f) = claimed(&store, new.id, "w4").await;
    let retried = store
        .retry(&f, "image host answered 503", &RetryPolicy::default(), 0.0)
        .await
        .unwrap();
    assert!(
        matches!(retried, RetryOutcome::Requeued { .. }),
        "{retried:?}"
    );
    sqlx::query!(
        "UPDATE jobs SET not_before = NULL WHERE id = $1",
        new.id as JobId
    )
    .execute(&pool)
    .await
    .unwrap();
    // ...and the second failure is the last.
    let (_, f) = claimed(&store, new.id, "w5").await;
    let failed = store
        .retry(&f, "image host answered 503", &RetryPolicy::default(), 0.0)
        .await
        .unwrap();
    assert!(matches!(failed, RetryOutcome::Failed(_)), "{failed:?}");
}

#[sqlx::test(migrations = "../../migrations")]
async fn claim_of_unknown_job_is_not_found(pool: PgPool) {
    let store = store(pool);
    assert_eq!(
        store.claim(JobId::new(), "w1", LEASE).await.unwrap(),
        ClaimOutcome::NotFound
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn outbox_batches_skip_rows_another_relay_holds(pool: PgPool) {
    let store = store(pool.clone());
    for _ in 0..5 {
        store.enqueue(&new_job(None), "api").await.unwrap();
    }
    let first = store.outbox_batch(3).await.unwrap();
    let second = store.outbox_batch(10).await.unwrap();
    assert_eq!(first.rows().len(), 3);
    assert_eq!(second.rows().len(), 2);
    let a: Vec<i64> = first.rows().iter().map(|r| r.id).collect();
    assert!(second.rows().iter().all(|r| !a.contains(&r.id)));

    let failed_id = second.rows()[0].id;
    let ok_id = second.rows()[1].id;
    second
        .finish(&[(ok_id, 42)], &[(failed_id, "nats down".into())])
        .await
        .unwrap();
    let stored = sqlx::query!(
        "SELECT stream_seq, published_at IS NOT NULL AS \"published!\" FROM outbox WHERE id = $1",
        ok_id
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((stored.stream_seq, stored.published), (Some(42), true));
    drop(first); // rolled back: its rows are pending again
    assert_eq!(store.outbox_pending().await.unwrap(), 4);
    let row = sqlx::query!(
        "SELECT attempts, last_error FROM outbox WHERE id = $1",
        failed_id
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (row.attempts, row.last_error.as_deref()),
        (1, Some("nats down"))
    );
    assert_eq!(store.outbox_batch(10).await.unwrap().rows().len(), 4);
}

#[sqlx::test(migrations = "../../migrations")]
async fn prune_deletes_only_rows_published_long_ago(pool: PgPool) {
    let store = store(pool.clone());
    let old = new_job(None);
    let recent = new_job(None);
    let unpublished = new_job(None);
    for job in [&old, &recent, &unpublished] {
        store.enqueue(job, "test").await.unwrap();
    }
    let mark = |id: JobId, ago_secs: f64| {
        sqlx::query!(
            "UPDATE outbox SET published_at = now() - make_interval(secs => $2) \
             WHERE payload->>'job_id' = $1::text",
            id as JobId,
            ago_secs
        )
        .execute(&pool)
    };
    mark(old.id, 2.0 * 86_400.0).await.unwrap();
    mark(recent.id, 60.0).await.unwrap();

    let pruned = store
        .outbox_prune(Duration::from_secs(86_400), 100)
        .await
        .unwrap();

    assert_eq!(pruned, 1);
    assert_eq!(rows(&pool, old.id).await.outbox, 0);
    assert_eq!(rows(&pool, recent.id).await.outbox, 1);
    assert_eq!(rows(&pool, unpublished.id).await.outbox, 1);
}

/// A store on the test's database (by URL, as a service connects) whose connections
/// carry `statement_timeout`.
fn store_with_timeout(pool: &PgPool, timeout: Duration) -> anyhow::Result<Store> {
    let url = foodseg_testkit::database_url_of(pool)?;
    let mut config = foodseg_engine::StoreConfig::new(url);
    config.statement_timeout = Some(timeout);
    Ok(Store::connect_lazy(
        &config,
        Subjects::with_prefix("tstore"),
    )?)
}

#[sqlx::test(migrations = false)]
async fn statements_past_the_timeout_are_cancelled_but_migrations_are_not(
    pool: PgPool,
) -> anyhow::Result<()> {
    // Migrations run on a connection of their own without the timeout: even a timeout of
    // one millisecond does not cut an index build short.
    store_with_timeout(&pool, Duration::from_millis(1))?
        .migrate()
        .await?;
    let store = store_with_timeout(&pool, Duration::from_millis(200))?;
    let setting: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(setting, "200ms");
    let slow = sqlx::query("SELECT pg_sleep(2)")
        .execute(store.pool())
        .await
        .map_err(StoreError::from);
    assert!(
        matches!(slow, Err(StoreError::TimedOut(_))),
        "Postgres cancels the statement: {slow:?}"
    );
    assert!(!slow.unwrap_err().is_unavailable());
    Ok(())
}
