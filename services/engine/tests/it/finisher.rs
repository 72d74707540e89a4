//! Group-committed results against a real Postgres (one database per test).

use std::time::Duration;

use foodseg_engine::store::{ClaimOutcome, NewJob};
use foodseg_engine::{
    Attempt, Fence, Finisher, GroupConfig, JobId, JobStatus, Store, StoreError, Subjects,
};
use sqlx::PgPool;

const VERSION: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tfinish"))
}

/// `n` jobs enqueued and claimed by `owner` (every other one with a webhook).
async fn claimed(store: &Store, n: usize, owner: &str) -> Vec<Fence> {
    let mut fences = Vec::new();
    for i in 0..n {
        let job = NewJob {
            id: JobId::new(),
            model_id: "124096".into(),
            model_name: "m1".into(),
            image_url: format!("https://images.example.org/{i}.jpg"),
            webhook_url: i
                .is_multiple_of(2)
                .then(|| format!("https://mfr.example.org/hook/{i}")),
            max_attempts: Attempt::new(3),
            trace_id: None,
            traceparent: None,
            owner: None,
            priority: Default::default(),
            batch_id: None,
        };
        store.enqueue(&job, "api").await.unwrap();
        match store
            .claim(job.id, owner, Duration::from_secs(60))
            .await
            .unwrap()
        {
            ClaimOutcome::Claimed { fence, .. } => fences.push(fence),
            other => panic!("claim: {other:?}"),
        }
    }
    fences
}

fn config() -> GroupConfig {
    GroupConfig {
        writers: 2,
        max_batch: 8,
        queue: 16,
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn results_finishing_together_are_each_written_whole(pool: PgPool) {
    let store = store(pool.clone());
    let fences = claimed(&store, 30, "worker-a").await;
    let finisher = Finisher::start(store.clone(), config());
    let outcomes = futures::future::join_all(fences.iter().enumerate().map(|(i, fence)| {
        let (finisher, store) = (finisher.clone(), store.clone());
        async move {
            let response = serde_json::json!([{ "n": i }]);
            let row = finisher.succeed(fence, &response, VERSION).await?;
            // Answered only once committed: another connection sees it.
            let seen = store.get(fence.job_id).await?;
            Ok::<_, StoreError>((row, seen))
        }
    }))
    .await;
    for (i, (fence, outcome)) in fences.iter().zip(outcomes).enumerate() {
        let (row, seen) = outcome.unwrap();
        assert_eq!(seen.as_ref(), Some(&row));
        assert_eq!(row.status, JobStatus::Succeeded);
        assert_eq!(row.response, Some(serde_json::json!([{ "n": i }])));
        assert_eq!(row.model_version.as_deref(), Some(VERSION));
        assert_eq!(row.lease_owner, None);
        assert!(row.processing_time.is_some());
        let events = store.events(fence.job_id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.from_status, last.to_status),
            (Some(JobStatus::Running), JobStatus::Succeeded)
        );
        assert_eq!(last.actor, "worker-a");
        assert_eq!(
            last.detail.as_deref(),
            Some("model m1 version 0123456789ab")
        );
        let counts = sqlx::query!(
            r#"SELECT (SELECT count(*) FROM outbox WHERE payload->>'job_id' = $1::text
                        AND payload->>'status' = 'succeeded') AS "finished!",
                      (SELECT count(*) FROM deliveries WHERE job_id = $1::uuid) AS "deliveries!""#,
            fence.job_id as JobId
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(counts.finished, 1, "one finished-job message");
        let webhooks = if i.is_multiple_of(2) { 1 } else { 0 };
        assert_eq!(
            counts.deliveries, webhooks,
            "a delivery only with a webhook"
        );
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_stale_attempt_in_a_batch_is_refused_alone(pool: PgPool) {
    let store = store(pool.clone());
    let fences = claimed(&store, 6, "worker-a").await;
    // The third job's lease went to another attempt.
    let stale = Fence {
        owner: "worker-gone".into(),
        ..fences[2].clone()
    };
    let finisher = Finisher::start(store.clone(), config());
    let response = serde_json::json!([]);
    let outcomes = futures::future::join_all(
        fences
            .iter()
            .enumerate()
            .map(|(i, fence)| if i == 2 { &stale } else { fence })
            .map(|fence| finisher.succeed(fence, &response, VERSION)),
    )
    .await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(outcome, Err(StoreError::FenceLost(_))),
                "{outcome:?}"
            );
            let job = store.get(fences[2].job_id).await.unwrap().unwrap();
            assert_eq!(
                job.status,
                JobStatus::Running,
                "the current attempt keeps it"
            );
        } else {
            assert_eq!(outcome.unwrap().status, JobStatus::Succeeded);
        }
    }
    // Written once: a second result for a finished job is refused too.
    let again = finisher.succeed(&fences[0], &response, VERSION).await;
    assert!(matches!(again, Err(StoreError::FenceLost(_))), "{again:?}");
}
