//! Group-committed enqueues against a real Postgres (one database per test).

use foodseg_engine::store::NewJob;
use foodseg_engine::{
    Attempt, Enqueuer, GroupConfig, JobId, JobStatus, Store, StoreError, Subjects,
};
use sqlx::PgPool;

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tbatch"))
}

fn new_job(n: usize) -> NewJob {
    NewJob {
        id: JobId::new(),
        model_id: "124096".into(),
        model_name: if n.is_multiple_of(2) { "m1" } else { "m2" }.into(),
        image_url: format!("https://images.example.org/{n}.jpg"),
        webhook_url: n
            .is_multiple_of(3)
            .then(|| format!("https://mfr.example.org/hook/{n}")),
        max_attempts: Attempt::new(3),
        trace_id: (!n.is_multiple_of(2)).then(|| "0af7651916cd43dd8448eb211c80319c".into()),
        traceparent: (!n.is_multiple_of(2))
            .then(|| "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        owner: None,
        priority: Default::default(),
        batch_id: None,
    }
}

/// The job's event and outbox rows, as `Store::enqueue` writes them.
async fn assert_written_like_enqueue(pool: &PgPool, store: &Store, new: &NewJob, actor: &str) {
    let job = store.get(new.id).await.unwrap().expect("job stored");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempt, Attempt::NONE);
    assert_eq!(job.message, "Job queued");
    assert_eq!(job.model_name, new.model_name);
    assert_eq!(job.image_url, new.image_url);
    assert_eq!(job.webhook_url, new.webhook_url);
    assert_eq!(job.max_attempts, new.max_attempts);
    assert_eq!(job.trace_id, new.trace_id);
    assert_eq!(job.traceparent, new.traceparent);
    let events = store.events(new.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].from_status, None);
    assert_eq!(events[0].to_status, JobStatus::Queued);
    assert_eq!(events[0].actor, actor);
    let row = sqlx::query!(
        "SELECT subject, msg_id, payload, headers FROM outbox WHERE payload->>'job_id' = $1::text",
        new.id as JobId
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        row.subject,
        format!("tbatch.jobs.segment.{}", new.model_name)
    );
    assert_eq!(row.msg_id, new.id.to_string());
    assert_eq!(row.payload, serde_json::json!({"job_id": new.id}));
    match &new.traceparent {
        Some(tp) => assert_eq!(row.headers, serde_json::json!({"traceparent": tp})),
        None => assert_eq!(row.headers, serde_json::json!({})),
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn enqueue_many_writes_each_job_like_enqueue(pool: PgPool) {
    let store = store(pool.clone());
    let jobs: Vec<NewJob> = (0..6).map(new_job).collect();
    let actors = ["api", "api", "key:a", "api", "key:b", "api"];
    let rows = store.enqueue_many(&jobs, &actors).await.unwrap();
    assert_eq!(rows.len(), jobs.len());
    for (new, actor) in jobs.iter().zip(actors) {
        let row = rows.iter().find(|r| r.id == new.id).expect("row returned");
        assert_eq!(Some(row.clone()), store.get(new.id).await.unwrap());
        assert_written_like_enqueue(&pool, &store, new, actor).await;
    }
    assert_eq!(store.outbox_pending().await.unwrap(), 6);
    assert!(
        store
            .enqueue_many::<NewJob>(&[], &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn enqueue_many_is_all_or_nothing(pool: PgPool) {
    let store = store(pool.clone());
    let taken = new_job(0);
    store.enqueue(&taken, "api").await.unwrap();
    let jobs = vec![new_job(1), taken.clone(), new_job(2)];
    assert!(
        store
            .enqueue_many(&jobs, &["api", "api", "api"])
            .await
            .is_err()
    );
    let n = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM jobs"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn concurrent_enqueues_are_each_committed_before_they_answer(pool: PgPool) {
    let store = store(pool.clone());
    let config = GroupConfig {
        writers: 2,
        max_batch: 8,
        queue: 16,
    };
    let enqueuer = Enqueuer::start(store.clone(), config);
    let jobs: Vec<NewJob> = (0..50).map(new_job).collect();
    let outcomes = futures::future::join_all(jobs.iter().map(|job| {
        let enqueuer = enqueuer.clone();
        let store = store.clone();
        async move {
            let row = enqueuer.enqueue(job.clone(), "api").await?;
            // Answered only once committed: another connection sees it.
            let seen = store.get(job.id).await?;
            Ok::<_, StoreError>((row, seen))
        }
    }))
    .await;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let (row, seen) = outcome.unwrap();
        assert_eq!(row.id, job.id);
        assert_eq!(seen, Some(row));
        assert_written_like_enqueue(&pool, &store, job, "api").await;
    }
    assert_eq!(store.outbox_pending().await.unwrap(), 50);
}

#[sqlx::test(migrations = "../../migrations")]
async fn one_bad_job_fails_alone(pool: PgPool) {
    let store = store(pool.clone());
    let taken = new_job(0);
    store.enqueue(&taken, "api").await.unwrap();
    // One writer: the duplicate most likely shares a batch with the others; either way
    // it alone fails.
    let config = GroupConfig {
        writers: 1,
        max_batch: 16,
        queue: 16,
    };
    let enqueuer = Enqueuer::start(store.clone(), config);
    let jobs = [new_job(1), taken.clone(), new_job(2), new_job(3)];
    let outcomes =
        futures::future::join_all(jobs.iter().map(|job| enqueuer.enqueue(job.clone(), "api")))
            .await;
    assert!(outcomes[1].is_err(), "{:?}", outcomes[1]);
    for i in [0, 2, 3] {
        assert_eq!(outcomes[i].as_ref().unwrap().id, jobs[i].id);
        assert_written_like_enqueue(&pool, &store, &jobs[i], "api").await;
    }
    assert_eq!(store.outbox_pending().await.unwrap(), 4);
}
