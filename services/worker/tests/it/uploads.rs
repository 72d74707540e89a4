//! Uploaded images end to end: `POST /v2/uploads` on the real api, the worker reading the
//! bytes from Postgres (no HTTP fetch), and `GET /status/:job_id`; and a job whose upload
//! was purged failing at once with a clear message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Env, MODEL_ID, MODEL_NAME};
use bytes::Bytes;
use chrono::Utc;
use foodseg_engine::store::{NewJob, NewUpload, upload_image_url};
use foodseg_engine::{Attempt, JobId, JobStatus};
use foodseg_testkit::wait_until;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures")
        .join(name)
}

/// Some item is `name` with score ≥ `min_score`.
fn has(items: &[Value], name: &str, min_score: f64) -> bool {
    items
        .iter()
        .any(|it| it["category_name"] == name && it["score"].as_f64() >= Some(min_score))
}

async fn wait_done(http: &reqwest::Client, status_url: &str) -> anyhow::Result<Value> {
    wait_until(Duration::from_secs(120), || async {
        let doc: Value = http.get(status_url).send().await.ok()?.json().await.ok()?;
        let done = doc["status"] == "MFR.Job.SUCCESS" || doc["status"] == "MFR.Job.ERROR";
        done.then_some(doc)
    })
    .await
}

#[sqlx::test(migrations = "../../migrations")]
async fn uploaded_photos_are_segmented_from_the_stored_bytes(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::without_relay(pool.clone()).await?;
    let api = foodseg_api::local::start_api(
        pool.clone(),
        env.subjects.clone(),
        &foodseg_testkit::nats_url(),
    )
    .await?;
    let worker = env.start_worker(env.config("w-upload", 15.0));
    let http = foodseg_http::client()?;
    let key = foodseg_api::local::api_key(&api.store, "uploader", &[foodseg_engine::Scope::Submit])
        .await?;

    // Raw body, as the foodseg CLI sends it.
    let queued: Value = http
        .post(api.url("/v2/uploads?filename=fruits.jpg&model_id=124096"))
        .bearer_auth(&key)
        .header("content-type", "image/jpeg")
        .body(std::fs::read(fixture("fruits.jpg"))?)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(queued["status"], "MFR.Job.QUEUED");
    let job_id = queued["job_id"].as_str().expect("job_id").to_string();
    let doc = wait_done(&http, &api.url(&format!("/status/{job_id}"))).await?;
    assert_eq!(doc["status"], "MFR.Job.SUCCESS", "{doc:#}");
    assert_eq!(doc["model_identifier"], "124096");
    let items = doc["response"].as_array().expect("items");
    assert!(has(items, "orange", 0.8), "no orange ≥ 0.8 in {items:#?}");
    assert!(
        items.iter().all(|it| it["image_id"] == "fruits.jpg"),
        "{items:#?}"
    );

    // Multipart, with a file name that needs encoding in the image_url: image_id keeps it.
    let form = Form::new().part(
        "file",
        Part::bytes(std::fs::read(fixture("coffee.png"))?).file_name("coffee cup.png"),
    );
    let queued: Value = http
        .post(api.url("/v2/uploads"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let job_id = queued["job_id"].as_str().expect("job_id").to_string();
    let doc = wait_done(&http, &api.url(&format!("/status/{job_id}"))).await?;
    assert_eq!(doc["status"], "MFR.Job.SUCCESS", "{doc:#}");
    assert_eq!(
        doc["request"]["image_url"],
        format!("upload://{job_id}/coffee%20cup.png")
    );
    let items = doc["response"].as_array().expect("items");
    assert!(has(items, "cup", 0.7), "no cup ≥ 0.7 in {items:#?}");
    assert!(
        items.iter().all(|it| it["image_id"] == "coffee cup.png"),
        "{items:#?}"
    );

    worker.stop().await?;
    api.stop().await?;
    env.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_purged_upload_fails_the_job_at_once(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool.clone()).await?;
    let id = JobId::new();
    let job = NewJob {
        id,
        model_id: MODEL_ID.into(),
        model_name: MODEL_NAME.into(),
        image_url: upload_image_url(id, "fruits.jpg"),
        webhook_url: None,
        max_attempts: Attempt::new(3),
        trace_id: None,
        traceparent: None,
        owner: None,
        priority: Default::default(),
        batch_id: None,
    };
    let upload = NewUpload {
        id: Uuid::now_v7(),
        content_type: "image/jpeg".into(),
        filename: "fruits.jpg".into(),
        bytes: Bytes::from(std::fs::read(fixture("fruits.jpg"))?),
        expires_at: Utc::now() + chrono::Duration::seconds(1),
    };
    env.store.enqueue_upload(&job, &upload, "test").await?;
    // Past its hard maximum age before any worker ran it.
    let later = Utc::now() + chrono::Duration::minutes(1);
    let purged = env
        .store
        .purge_expired_uploads(later, Duration::from_secs(3600), 100)
        .await?;
    assert_eq!(purged, 1);

    let worker = env.start_worker(env.config("w-purged", 15.0));
    let done = env.wait_finished(id, Duration::from_secs(60)).await?;
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.message, "uploaded image is no longer stored");
    // Permanent: one attempt, no retry.
    assert_eq!(done.attempt.get(), 1);
    assert_eq!(env.events_to(id, JobStatus::Queued).await?, 1);

    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}
