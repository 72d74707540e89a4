//! The v1 contract over HTTP.

use std::time::Duration;

use crate::common::{json_of, setup};

use foodseg_api::local::{LocalApi, api_parts, start_api, start_api_with};
use foodseg_engine::{Bus, JobId, JobStatus, Store, StoreConfig};
use foodseg_testkit::{NatsServer, TestBus, free_port, repo_models_dir, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const DEADLINE: Duration = Duration::from_secs(15);
const FORM: &str = "application/x-www-form-urlencoded";

async fn post(
    api: &LocalApi,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<(StatusCode, Value)> {
    let res = foodseg_http::client()?
        .post(api.url("/enqueue"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    json_of(res).await
}

async fn get(url: &str) -> anyhow::Result<(StatusCode, Value)> {
    let res = foodseg_http::client()?.get(url).send().await?;
    let status = res.status();
    Ok((status, res.json().await?))
}

/// (jobs, job_events, outbox) row counts.
async fn counts(pool: &PgPool) -> anyhow::Result<(i64, i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM jobs) AS "jobs!",
                  (SELECT count(*) FROM job_events) AS "events!",
                  (SELECT count(*) FROM outbox) AS "outbox!""#
    )
    .fetch_one(pool)
    .await?;
    Ok((r.jobs, r.events, r.outbox))
}

fn body(image_url: &str) -> String {
    json!({"image_url": image_url, "model_id": "124096", "webhook_url": "https://mfr.example.org/hook"})
        .to_string()
}

#[sqlx::test(migrations = "../../migrations")]
async fn enqueue_writes_job_event_and_outbox_and_publishes_the_job_id(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let (status, doc) = post(
        &api,
        "application/json",
        body("https://img.example.org/dish.jpeg"),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], "MFR.Job.QUEUED");
    assert_eq!(doc["message"], "Job queued");
    assert_eq!(doc["model_identifier"], "124096");
    assert_eq!(doc["api_version"], "v1.0");
    assert_eq!(doc["response"], Value::Null);
    assert_eq!(doc["processing_time"], Value::Null);
    assert_eq!(
        doc["request"]["image_url"],
        "https://img.example.org/dish.jpeg"
    );
    assert_eq!(
        doc["request"]["webhook_url"],
        "https://mfr.example.org/hook"
    );
    let job_id = doc["job_id"].as_str().expect("job_id").to_string();

    assert_eq!(counts(&pool).await?, (1, 1, 1));
    let row = sqlx::query!(
        r#"SELECT model_name, status AS "status: JobStatus" FROM jobs WHERE id = $1"#,
        job_id.parse::<JobId>()? as JobId
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (row.model_name.as_str(), row.status),
        ("yolov5s-seg-coco", JobStatus::Queued)
    );
    let msg_id = sqlx::query_scalar!("SELECT msg_id FROM outbox")
        .fetch_one(&pool)
        .await?;
    assert_eq!(msg_id, job_id);

    let subject = tb.subjects.job("yolov5s-seg-coco");
    let msg = wait_until(DEADLINE, || async {
        tb.last_message(&subject).await.ok().flatten()
    })
    .await?;
    let payload: Value = serde_json::from_slice(&msg.payload)?;
    assert_eq!(payload["job_id"], job_id.as_str());
    wait_until(DEADLINE, || async {
        api.store.outbox_pending().await.ok() == Some(0)
    })
    .await?;

    // Publishing the same msg id again is dropped by the stream.
    let again = tb
        .bus
        .publish(&subject, &job_id, &[], payload.to_string().into())
        .await?;
    assert!(again.duplicate);
    assert_eq!(tb.jobs_stream_len().await?, 1);

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn form_urlencoded_body_is_parsed_as_json(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    // What MFR's HTTParty sends: a JSON string body with the form content type, model null.
    let raw = r#"{"image_url":"https://img.example.org/a.jpg","model_id":null,"webhook_url":null}"#;
    let (status, doc) = post(&api, FORM, raw).await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["model_identifier"], "124096",
        "default model's primary id"
    );
    assert_eq!(doc["request"]["webhook_url"], Value::Null);
    // No content type at all.
    let res = foodseg_http::client()?
        .post(api.url("/enqueue"))
        .body(raw)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(counts(&pool).await?.0, 2);
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn status_round_trip_and_unknown_ids(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let (_, doc) = post(&api, FORM, body("https://img.example.org/b.jpg")).await?;
    let id = doc["job_id"].as_str().expect("job_id");
    let (status, read) = get(&api.url(&format!("/status/{id}"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, doc);

    for bad in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_string()] {
        let (status, err) = get(&api.url(&format!("/status/{bad}"))).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(err["error"]["code"], "job_not_found");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(&bad)
        );
    }
    let (status, err) = get(&api.url("/no/such/route")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_rejection_is_a_json_error_and_writes_nothing(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let long_url = format!("https://img.example.org/{}", "a".repeat(2100));
    let cases: Vec<(String, StatusCode, &str, Option<&str>)> = vec![
        ("{not json".into(), StatusCode::BAD_REQUEST, "invalid_json", None),
        ("".into(), StatusCode::BAD_REQUEST, "invalid_json", None),
        ("[]".into(), StatusCode::BAD_REQUEST, "invalid_json", None),
        (json!({"model_id": "124096"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "missing_field", Some("image_url")),
        (json!({"image_url": ""}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "empty_field", Some("image_url")),
        (json!({"image_url": 42}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", Some("image_url")),
        (json!({"image_url": "https://img.example.org/a.jpg", "model_id": 124096}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", Some("model_id")),
        (json!({"image_url": "https://img.example.org/a.jpg", "webhook_url": ["x"]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_type", Some("webhook_url")),
        (json!({"image_url": "ftp://img.example.org/a.jpg"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", Some("image_url")),
        (json!({"image_url": "not a url"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", Some("image_url")),
        (json!({"image_url": long_url}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", Some("image_url")),
        (json!({"image_url": "https://img.example.org/a.jpg", "webhook_url": "javascript:alert(1)"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", Some("webhook_url")),
        (json!({"image_url": "https://img.example.org/a.jpg", "model_id": "999999"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "unknown_model", Some("model_id")),
        (format!(r#"{{"image_url":"https://img.example.org/a.jpg","pad":"{}"}}"#, "x".repeat(64 * 1024)), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
    ];
    for (raw, want_status, want_code, want_field) in cases {
        let shown: String = raw.chars().take(80).collect();
        let (status, err) = post(&api, FORM, raw).await?;
        assert_eq!(status, want_status, "{shown}: {err}");
        assert_eq!(err["error"]["code"], want_code, "{shown}: {err}");
        assert_eq!(err["error"]["field"].as_str(), want_field, "{shown}: {err}");
        assert!(!err["error"]["message"].as_str().unwrap_or("").is_empty());
        if want_code == "unknown_model" {
            let known: Vec<&str> = err["error"]["known_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(
                known.contains(&"124096") && known.contains(&"yolov5s-seg-coco"),
                "{err}"
            );
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("124096")
            );
        }
    }
    assert_eq!(counts(&pool).await?, (0, 0, 0));
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn enqueue_during_a_nats_outage_is_published_when_nats_returns(
    pool: PgPool,
) -> anyhow::Result<()> {
    let mut nats = NatsServer::new()?; // not started: nothing listens on its port
    let subjects = foodseg_testkit::unique_subjects();
    let api = start_api(pool.clone(), subjects.clone(), &nats.url()).await?;

    let (status, doc) = post(&api, FORM, body("https://img.example.org/c.jpg")).await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let (status, ready) = get(&api.url("/health/ready")).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["postgres"], "ok");
    assert_ne!(ready["nats"], "ok");
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nats")
    );
    assert_eq!(api.store.outbox_pending().await?, 1);

    nats.start().await?;
    let observer = Bus::connect(&nats.url(), subjects.clone()).await?;
    let subject = subjects.job("yolov5s-seg-coco");
    let msg = wait_until(DEADLINE, || async {
        let stream = observer
            .jetstream()
            .get_stream(&subjects.jobs_stream)
            .await
            .ok()?;
        stream.get_last_raw_message_by_subject(&subject).await.ok()
    })
    .await?;
    let payload: Value = serde_json::from_slice(&msg.payload)?;
    assert_eq!(payload["job_id"], doc["job_id"]);
    wait_until(DEADLINE, || async {
        api.store.outbox_pending().await.ok() == Some(0)
    })
    .await?;
    let (status, _) = get(&api.url("/health/ready")).await?;
    assert_eq!(status, StatusCode::OK);
    api.stop().await?;
    Ok(())
}

#[tokio::test]
async fn unreachable_postgres_answers_503_json_in_bounded_time() -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let url = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port()?);
    let mut config = StoreConfig::new(url);
    config.acquire_timeout = Duration::from_secs(1);
    // Any pool works for the parts; the store is replaced by the unreachable one.
    let lazy = sqlx::postgres::PgPoolOptions::new().connect_lazy(&config.database_url)?;
    let mut parts = api_parts(lazy, tb.subjects.clone(), &tb.url, &repo_models_dir()).await?;
    parts.store = Store::connect_lazy(&config, tb.subjects.clone())?;
    let api = start_api_with(parts).await?;

    let bounded = Duration::from_secs(20);
    let (status, err) = tokio::time::timeout(
        bounded,
        post(&api, FORM, body("https://img.example.org/d.jpg")),
    )
    .await??;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "database_unavailable");
    let id = JobId::new();
    let (status, err) =
        tokio::time::timeout(bounded, get(&api.url(&format!("/status/{id}")))).await??;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["error"]["code"], "database_unavailable");
    let (status, ready) = tokio::time::timeout(bounded, get(&api.url("/health/ready"))).await??;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(ready["postgres"], "ok");
    assert_eq!(ready["nats"], "ok");
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn health_openapi_and_docs(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let (status, live) = get(&api.url("/health/live")).await?;
    assert_eq!(
        (status, live["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, ready) = get(&api.url("/health/ready")).await?;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(
        (ready["postgres"].as_str(), ready["nats"].as_str()),
        (Some("ok"), Some("ok"))
    );

    let (status, doc) = get(&api.url("/openapi.json")).await?;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/enqueue",
        "/status/{job_id}",
        "/health/live",
        "/health/ready",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    assert!(doc["paths"]["/enqueue"]["post"]["responses"]["422"].is_object());
    let props = doc["components"]["schemas"]["JobDocument"]["properties"]
        .as_object()
        .expect("JobDocument schema");
    assert_eq!(props.len(), 10);

    let res = foodseg_http::client()?
        .get(api.url("/docs/"))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await?.to_lowercase().contains("swagger"));
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
