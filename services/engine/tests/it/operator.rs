//! An operator's cancel and resubmit, and the worker registry, against a real Postgres.

use std::time::Duration;

use foodseg_engine::store::{Action, CANCELLED_BY_OPERATOR, ClaimOutcome, WorkerInfo};
use foodseg_engine::{Attempt, DeliveryStatus, JobId, JobStatus, Store, Subjects};
use foodseg_testkit::new_job;
use sqlx::PgPool;

const LEASE: Duration = Duration::from_secs(30);

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tops"))
}

/// Claims the job and fails it for good (one attempt).
async fn failed_job(store: &Store) -> JobId {
    let job = store
        .enqueue(&new_job("https://img.example.org/a.jpg"), "api")
        .await
        .unwrap();
    let ClaimOutcome::Claimed { fence, .. } = store.claim(job.id, "w1", LEASE).await.unwrap()
    else {
        panic!("not claimed");
    };
    store
        .fail(&fence, "image_url returned HTTP 404")
        .await
        .unwrap();
    job.id
}

async fn outbox_msg_ids(pool: &PgPool, id: JobId) -> Vec<(String, String)> {
    sqlx::query!(
        "SELECT subject, msg_id FROM outbox WHERE payload->>'job_id' = $1::text ORDER BY id",
        id as JobId
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.subject, r.msg_id))
    .collect()
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_cancelled_queued_job_fails_with_its_webhook_and_event(pool: PgPool) {
    let store = store(pool.clone());
    let job = store
        .enqueue(&new_job("https://img.example.org/a.jpg"), "api")
        .await
        .unwrap();
    let Action::Done(done) = store.cancel(job.id, "console:ops").await.unwrap() else {
        panic!("not cancelled");
    };
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.message, CANCELLED_BY_OPERATOR);
    assert!(done.finished_at.is_some());

    let events = store.events(job.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.from_status, last.to_status, last.actor.as_str()),
        (Some(JobStatus::Queued), JobStatus::Failed, "console:ops")
    );
    let deliveries = store.deliveries(job.id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].delivery.status, DeliveryStatus::Pending);
    assert_eq!(
        deliveries[0].delivery.webhook_id,
        format!("msg_{}", job.id.simple())
    );
    let msgs = outbox_msg_ids(&pool, job.id).await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[1].0, "tops.events.job.failed");

    // A worker that gets the dispatch message now finds nothing to claim.
    let claim = store.claim(job.id, "w1", LEASE).await.unwrap();
    assert!(!matches!(claim, ClaimOutcome::Claimed { .. }), "{claim:?}");
    // Cancelling again, or a running or finished job, is refused with the state.
    assert_eq!(
        store.cancel(job.id, "console:ops").await.unwrap(),
        Action::WrongState(JobStatus::Failed)
    );
    assert_eq!(
        store.cancel(JobId::new(), "console:ops").await.unwrap(),
        Action::NotFound
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_resubmitted_failed_job_runs_again_and_its_new_result_gets_a_new_webhook_id(
    pool: PgPool,
) {
    let store = store(pool.clone());
    let id = failed_job(&store).await;
    // Its first webhook is still pending: a resubmit now is refused.
    assert_eq!(
        store
            .resubmit(id, "console:ops", Attempt::new(3))
            .await
            .unwrap(),
        Action::DeliveryPending
    );
    sqlx::query!(
        "UPDATE deliveries SET status = 'delivered' WHERE job_id = $1",
        id as JobId
    )
    .execute(&pool)
    .await
    .unwrap();

    let Action::Done(job) = store
        .resubmit(id, "console:ops", Attempt::new(3))
        .await
        .unwrap()
    else {
        panic!("not resubmitted");
    };
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempt, Attempt::new(1));
    assert_eq!(job.max_attempts, Attempt::new(4));
    assert_eq!(job.response, None);
    assert_eq!(job.finished_at, None);
    let last = store.events(id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(JobStatus::Failed), JobStatus::Queued)
    );
    assert_eq!(last.detail.as_deref(), Some("resubmit: 3 more attempt(s)"));
    let msgs = outbox_msg_ids(&pool, id).await;
    let dispatches: Vec<_> = msgs
        .iter()
        .filter(|(s, _)| s.starts_with("tops.jobs."))
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(dispatches.len(), 2, "{msgs:?}");
    assert_ne!(dispatches[0], dispatches[1]);

    // It runs again within the new budget and finishes with a second, distinct webhook.
    let ClaimOutcome::Claimed { fence, .. } = store.claim(id, "w2", LEASE).await.unwrap() else {
        panic!("not claimed after resubmit");
    };
    assert_eq!(fence.attempt, Attempt::new(2));
    store
        .succeed(&fence, &serde_json::json!([]), "test-version")
        .await
        .unwrap();
    let deliveries = store.deliveries(id).await.unwrap();
    assert_eq!(deliveries.len(), 2);
    let ids: Vec<_> = deliveries
        .iter()
        .map(|d| d.delivery.webhook_id.clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert!(
        ids.iter()
            .all(|w| w.starts_with(&format!("msg_{}", id.simple()))),
        "{ids:?}"
    );
    let finished: Vec<_> = outbox_msg_ids(&pool, id)
        .await
        .into_iter()
        .filter(|(s, _)| s.starts_with("tops.events."))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(finished.len(), 2);
    assert_ne!(
        finished[0], finished[1],
        "JetStream would drop the second as a duplicate"
    );

    // Only failed jobs are resubmitted.
    assert_eq!(
        store
            .resubmit(id, "console:ops", Attempt::new(3))
            .await
            .unwrap(),
        Action::WrongState(JobStatus::Succeeded)
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn workers_register_beat_and_leave(pool: PgPool) {
    let store = store(pool.clone());
    let a = WorkerInfo {
        id: "w-a".into(),
        models: vec!["yolov5s-seg-coco".into()],
        concurrency: 2,
        version: "1.0.0".into(),
    };
    store.heartbeat(&a).await.unwrap();
    store.heartbeat(&a).await.unwrap();
    store
        .enqueue(&new_job("https://img.example.org/a.jpg"), "api")
        .await
        .unwrap();
    let mut other = new_job("https://img.example.org/b.jpg");
    other.model_name = "mask-rcnn".into();
    store.enqueue(&other, "api").await.unwrap();

    let workers = store.workers(Duration::from_secs(30)).await.unwrap();
    assert_eq!(workers.len(), 1);
    assert!(workers[0].live);
    let load = store.model_load(Duration::from_secs(30)).await.unwrap();
    let of = |m: &str| {
        load.iter()
            .find(|l| l.model == m)
            .map(|l| (l.queued, l.live_workers))
    };
    assert_eq!(of("yolov5s-seg-coco"), Some((1, 1)));
    assert_eq!(
        of("mask-rcnn"),
        Some((1, 0)),
        "a model with work and nobody to do it"
    );

    // A silent worker is not live, still listed, then purged.
    sqlx::query!("UPDATE workers SET heartbeat_at = now() - interval '2 days'")
        .execute(&pool)
        .await
        .unwrap();
    let workers = store.workers(Duration::from_secs(30)).await.unwrap();
    assert!(!workers[0].live);
    let load = store.model_load(Duration::from_secs(30)).await.unwrap();
    assert!(load.iter().all(|l| l.live_workers == 0), "{load:?}");
    assert_eq!(
        store
            .purge_workers(Duration::from_secs(86_400))
            .await
            .unwrap(),
        1
    );

    // A clean stop keeps the row, marked stopped and not live; a new beat revives it.
    store.heartbeat(&a).await.unwrap();
    store.worker_stopped("w-a").await.unwrap();
    let workers = store.workers(Duration::from_secs(30)).await.unwrap();
    assert!(
        !workers[0].live && workers[0].stopped_at.is_some(),
        "{workers:?}"
    );
    store.heartbeat(&a).await.unwrap();
    let workers = store.workers(Duration::from_secs(30)).await.unwrap();
    assert!(
        workers[0].live && workers[0].stopped_at.is_none(),
        "{workers:?}"
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn queued_jobs_of_a_model_nobody_served_for_the_max_wait_end_with_their_webhook(
    pool: PgPool,
) {
    let store = store(pool.clone());
    let hour = Duration::from_secs(3600);
    let mut ids = Vec::new();
    for model in [
        "nobody-serves-me",
        "scaled-to-zero",
        "yolov5s-seg-coco",
        "nobody-serves-me",
    ] {
        let mut job = new_job("https://img.example.org/a.jpg");
        job.model_name = model.into();
        ids.push(store.enqueue(&job, "api").await.unwrap().id);
    }
    let [unserved, stopped_recently, served, young] = ids[..] else {
        unreachable!()
    };
    // Every job but `young` has waited two hours.
    sqlx::query!(
        "UPDATE jobs SET updated_at = now() - interval '2 hours' WHERE id <> $1",
        young as JobId
    )
    .execute(&pool)
    .await
    .unwrap();
    for (id, model) in [("w-live", "yolov5s-seg-coco"), ("w-gone", "scaled-to-zero")] {
        let info = WorkerInfo {
            id: id.into(),
            models: vec![model.into()],
            concurrency: 1,
            version: "1".into(),
        };
        store.heartbeat(&info).await.unwrap();
    }
    // The scaled-to-zero model's worker last beat 3 hours ago but stopped 10 minutes ago.
    store.worker_stopped("w-gone").await.unwrap();
    sqlx::query!(
        "UPDATE workers SET heartbeat_at = now() - interval '3 hours',
                            stopped_at = now() - interval '10 minutes'
         WHERE id = 'w-gone'"
    )
    .execute(&pool)
    .await
    .unwrap();

    let ended = store.expire_unserved(hour, "sweeper", 100).await.unwrap();
    assert_eq!(ended.iter().map(|j| j.id).collect::<Vec<_>>(), [unserved]);
    let job = store.get(unserved).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.message, "no worker serves model nobody-serves-me");
    let last = store.events(unserved).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.to_status, last.actor.as_str(), last.detail.as_deref()),
        (
            JobStatus::Failed,
            "sweeper",
            Some("expire: no worker serves model nobody-serves-me")
        )
    );
    assert_eq!(store.deliveries(unserved).await.unwrap().len(), 1);
    for id in [stopped_recently, served, young] {
        assert_eq!(
            store.get(id).await.unwrap().unwrap().status,
            JobStatus::Queued
        );
    }
    // Once the stop is older than the wait too, that model's job ends as well.
    sqlx::query!("UPDATE workers SET stopped_at = now() - interval '2 hours' WHERE id = 'w-gone'")
        .execute(&pool)
        .await
        .unwrap();
    let ended = store.expire_unserved(hour, "sweeper", 100).await.unwrap();
    assert_eq!(
        ended.iter().map(|j| j.id).collect::<Vec<_>>(),
        [stopped_recently]
    );
    assert!(
        store
            .expire_unserved(hour, "sweeper", 100)
            .await
            .unwrap()
            .is_empty()
    );
}
