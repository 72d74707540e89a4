//! The operator endpoints on the api: a job's event log, its deliveries with their
//! attempts, and redelivery — against a running api and scheduler.

use crate::common::receiver::Receiver;
use crate::common::{DEADLINE, Env, wait_until};
use anyhow::Context;
use foodseg_engine::{DeliveryStatus, Scope};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

/// An operator's GET, with the key `token`.
async fn get(url: &str, token: &str) -> anyhow::Result<(StatusCode, Value)> {
    let res = foodseg_http::client()?
        .get(url)
        .bearer_auth(token)
        .send()
        .await?;
    Ok((res.status(), res.json().await?))
}

/// An operator's POST, with the key `token`.
async fn post(url: &str, token: &str) -> anyhow::Result<(StatusCode, Value)> {
    let res = foodseg_http::client()?
        .post(url)
        .bearer_auth(token)
        .send()
        .await?;
    Ok((res.status(), res.json().await?))
}

#[sqlx::test(migrations = "../../migrations")]
async fn operators_see_events_and_attempts_and_can_redeliver(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool.clone()).await?;
    let api =
        foodseg_api::local::start_api(pool, env.subjects.clone(), &foodseg_testkit::nats_url())
            .await?;
    let receiver = Receiver::start(None).await;
    let scheduler = env.start(env.config()).await?;
    let token = foodseg_api::local::api_key(&env.store, "ops", &[Scope::Operator]).await?;

    let job = env.succeeded_job(&receiver.url("fail/1")).await?;
    let first = env.settled_delivery(job.id).await?;
    assert_eq!(first.status, DeliveryStatus::Delivered);

    let (status, events) = get(&api.url(&format!("/jobs/{}/events", job.id)), &token).await?;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["status"], "MFR.Job.SUCCESS");
    assert_eq!(events["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        events["trace_url"]
            .as_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let steps: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from_status"].clone(),
                e["to_status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (Value::Null, "queued".to_string()),
            (Value::from("queued"), "running".to_string()),
            (Value::from("running"), "succeeded".to_string()),
        ]
    );

    let (status, body) = get(&api.url(&format!("/jobs/{}/deliveries", job.id)), &token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = &body["deliveries"][0];
    assert_eq!(d["webhook_id"], first.webhook_id);
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempts"], 2);
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log[0]["status_code"], 500);
    assert_eq!(log[0]["outcome"], "retry");
    assert!(log[0]["error"].as_str().unwrap().contains("HTTP 500"));
    assert_eq!(log[1]["status_code"], 200);
    assert_eq!(log[1]["outcome"], "delivered");
    assert!(log[1]["latency_ms"].as_f64().unwrap() >= 0.0);

    let (status, created) = post(&api.url(&format!("/jobs/{}/redeliver", job.id)), &token).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "pending");
    let new_id = created["webhook_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, first.webhook_id);
    wait_until(DEADLINE, || async {
        (receiver.hits_for(&new_id).iter().any(|h| h.status == 200)).then_some(())
    })
    .await
    .context("the redelivery to arrive")?;
    let (_, body) = get(&api.url(&format!("/jobs/{}/deliveries", job.id)), &token).await?;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 2);

    // Refusals, each with the JSON error body.
    let queued = env.enqueue(Some(&receiver.url("ok")), 3).await?;
    let (status, err) = post(&api.url(&format!("/jobs/{}/redeliver", queued.id)), &token).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "job_not_finished");
    let silent = env.enqueue(None, 3).await?;
    let (_, fence) = env.claim(silent.id).await?;
    env.store.fail(&fence, "bad image").await?;
    let (status, err) = post(&api.url(&format!("/jobs/{}/redeliver", silent.id)), &token).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "no_webhook");
    for path in [
        format!("/jobs/{}/events", uuid::Uuid::now_v7()),
        "/jobs/not-a-uuid/deliveries".to_string(),
    ] {
        let (status, err) = get(&api.url(&path), &token).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(err["error"]["code"], "job_not_found");
    }
    let (status, err) = post(
        &api.url(&format!("/jobs/{}/redeliver", uuid::Uuid::now_v7())),
        &token,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "job_not_found");

    let (_, openapi) = get(&api.url("/openapi.json"), &token).await?;
    for path in [
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/deliveries",
        "/jobs/{job_id}/redeliver",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(openapi["paths"]["/jobs/{job_id}/redeliver"]["post"]["responses"]["409"].is_object());

    scheduler.stop().await?;
    api.stop().await?;
    env.cleanup().await
}
