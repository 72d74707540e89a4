//! End to end on the real Postgres, NATS, ONNX Runtime and model: jobs enqueued as the api
//! does, images served from 127.0.0.1, results read back from the store.

use std::time::Duration;

use crate::common::Env;
use crate::common::server::ImageServer;
use foodseg_engine::{JobDocument, JobStatus};
use sqlx::PgPool;

const FINISH: Duration = Duration::from_secs(120);

fn items(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["response"]
        .as_array()
        .expect("SUCCESS response is a list")
}

#[sqlx::test(migrations = "../../migrations")]
async fn fruits_photo_succeeds_with_an_orange(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let worker = env.start_worker(env.config("w-fruits", 15.0));
    let job = env.enqueue(&server.url("/img/fruits.jpg"), 3).await?;

    let done = env.wait_finished(job.id, FINISH).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
    let doc = serde_json::to_value(JobDocument::from(&done))?;
    assert_eq!(doc["status"], "MFR.Job.SUCCESS");
    assert_eq!(doc["model_identifier"], "124096");
    assert!(doc["processing_time"].as_f64().is_some_and(|t| t > 0.0));
    let items = items(&doc);
    assert!(!items.is_empty());
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["id"], i);
        assert_eq!(item["image_id"], "fruits.jpg");
        assert_eq!(item["iscrowd"], 0);
        for key in [
            "category_id",
            "category_name",
            "score",
            "bbox",
            "area",
            "polygons",
            "size",
        ] {
            assert!(!item[key].is_null(), "item {i} lacks {key}");
        }
    }
    let orange = items
        .iter()
        .filter(|it| it["category_name"] == "orange" && it["score"].as_f64() >= Some(0.8))
        .find(|it| {
            let b: Vec<f64> = serde_json::from_value(it["bbox"].clone()).unwrap_or_default();
            b.len() == 4
                && near(b[0], 317.0)
                && near(b[1], 246.0)
                && near(b[0] + b[2], 511.0)
                && near(b[1] + b[3], 476.0)
        });
    assert!(
        orange.is_some(),
        "no orange ≥ 0.8 near (317,246)-(511,476) in {items:#?}"
    );
    let orange = orange.expect("checked");
    assert_eq!(orange["category_id"], 55, "COCO id of orange");
    let size: Vec<f64> = serde_json::from_value(orange["size"].clone())?;
    let polys: Vec<Vec<[f64; 2]>> = serde_json::from_value(orange["polygons"].clone())?;
    assert!(!polys.is_empty());
    for poly in &polys {
        assert!(poly.len() >= 3);
        for [x, y] in poly {
            assert!((0.0..=size[0]).contains(x) && (0.0..=size[1]).contains(y));
        }
    }
    assert_eq!(env.events_to(job.id, JobStatus::Succeeded).await?, 1);

    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// A burst of jobs, more than there are runs at once, through each way a model's runs
/// are scheduled — parallel single-threaded lanes, then micro-batches — each job on its
/// only attempt: every job succeeds with its own orange.
#[sqlx::test(migrations = "../../migrations")]
async fn bursts_run_through_parallel_lanes_and_batches(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    for (name, batch_max, parallel_runs) in [("w-lanes", 1, 2), ("w-batches", 3, 1)] {
        let mut config = env.config(name, 15.0);
        config.concurrency = 4;
        config.batch.max = batch_max;
        config.batch.parallel_runs = parallel_runs;
        let worker = env.start_worker(config);
        let mut jobs = Vec::new();
        for _ in 0..8 {
            jobs.push(env.enqueue(&server.url("/img/fruits.jpg"), 1).await?);
        }
        for job in jobs {
            let done = env.wait_finished(job.id, FINISH).await?;
            assert_eq!(
                done.status,
                JobStatus::Succeeded,
                "{name}: {}",
                done.message
            );
            let doc = serde_json::to_value(JobDocument::from(&done))?;
            assert!(
                items(&doc)
                    .iter()
                    .any(|it| it["category_name"] == "orange" && it["score"].as_f64() >= Some(0.8)),
                "{name}: {doc}"
            );
        }
        worker.stop().await?;
    }
    env.cleanup().await;
    Ok(())
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 12.0
}

/// Permanent failures: ERROR at once (one attempt), with a message that says what was wrong.
#[sqlx::test(migrations = "../../migrations")]
async fn bad_images_fail_at_once_with_their_reason(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let worker = env.start_worker(env.config("w-bad", 15.0));
    let cases = [
        ("/missing.jpg", "image_url returned HTTP 404"),
        ("/page.html", "content is text/html, not an image"),
        ("/truncated.jpg", "image data is truncated"),
        ("/huge.png", "image is 40000x40000 px, over the 50 MP limit"),
        ("/redirect-private", "10.0.0.1"),
        ("/redirect-metadata", "169.254.169.254"),
    ];
    let mut jobs = Vec::new();
    for (path, _) in cases {
        jobs.push(env.enqueue(&server.url(path), 3).await?);
    }
    for (job, (path, expected)) in jobs.iter().zip(cases) {
        let done = env.wait_finished(job.id, FINISH).await?;
        assert_eq!(done.status, JobStatus::Failed, "{path}: {}", done.message);
        assert!(
            done.message.contains(expected),
            "{path}: message {:?} lacks {expected:?}",
            done.message
        );
        assert_eq!(
            done.attempt.get(),
            1,
            "{path}: a permanent failure is not retried"
        );
        let doc = serde_json::to_value(JobDocument::from(&done))?;
        assert_eq!(doc["status"], "MFR.Job.ERROR");
        assert_eq!(doc["response"], serde_json::json!({}));
    }
    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// A host answering 503 twice: retried with backoff, SUCCESS on the third attempt.
#[sqlx::test(migrations = "../../migrations")]
async fn transient_host_errors_are_retried(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(2).await;
    let worker = env.start_worker(env.config("w-flaky", 15.0));
    let job = env.enqueue(&server.url("/flaky/fruits.jpg"), 3).await?;

    let done = env.wait_finished(job.id, FINISH).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
    assert_eq!(done.attempt.get(), 3);
    assert_eq!(
        server.flaky_hits.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    let events = env.store.events(job.id).await?;
    let retries: Vec<_> = events
        .iter()
        .filter(|e| e.detail.as_deref().is_some_and(|d| d.starts_with("retry")))
        .collect();
    assert_eq!(retries.len(), 2, "{events:#?}");
    assert!(
        retries[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("503")),
        "{:?}",
        retries[0].detail
    );
    assert_eq!(env.events_to(job.id, JobStatus::Succeeded).await?, 1);
    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// Transient failures on every attempt: ERROR with the last reason once attempts run out.
#[sqlx::test(migrations = "../../migrations")]
async fn retries_are_bounded(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(usize::MAX).await;
    let worker = env.start_worker(env.config("w-bounded", 15.0));
    let job = env.enqueue(&server.url("/flaky/fruits.jpg"), 2).await?;

    let done = env.wait_finished(job.id, FINISH).await?;
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.attempt.get(), 2);
    assert!(
        done.message.contains("503") && done.message.contains("gave up after 2 attempts"),
        "{}",
        done.message
    );
    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}
