//! `POST /v2/jobs` and a batch's progress and cancel over HTTP: who may call them, what
//! bad batches get (every bad job named, nothing written), idempotent retries, and that
//! the reconciliation feed still answers beside the new route.

use foodseg_api::local::LocalApi;
use foodseg_engine::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{get_json, new_key, post_json, setup};

async fn post(
    api: &LocalApi,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> anyhow::Result<(StatusCode, Value)> {
    post_json(api, path, key, &body.to_string()).await
}

fn jobs(n: usize, keyed: bool) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut job = json!({
                "image_url": format!("https://img.example.org/{i}.jpg"),
                "webhook_url": "https://mfr.example.org/hook",
            });
            if keyed {
                job["idempotency_key"] = json!(format!("photo-{i}"));
            }
            job
        })
        .collect()
}

async fn job_count(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM jobs"#)
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_is_queued_in_order_and_its_owner_follows_it(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let body = json!({ "jobs": jobs(3, true), "priority": "bulk" });
    let (status, _) = post(&api, "/v2/jobs", None, &body).await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "keys are required by default"
    );

    let owner = new_key(&api, &[Scope::Submit]).await?;
    let (status, batch) = post(&api, "/v2/jobs", Some(&owner), &body).await?;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["priority"], "bulk");
    let docs = batch["jobs"].as_array().expect("jobs");
    assert_eq!(docs.len(), 3);
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(doc["status"], "MFR.Job.QUEUED");
        assert_eq!(
            doc["request"]["image_url"],
            format!("https://img.example.org/{i}.jpg")
        );
    }
    let id = batch["batch_id"].as_str().expect("batch id").to_string();
    let path = format!("/v2/batches/{id}");
    let (status, progress) = get_json(&api, &path, Some(&owner)).await?;
    assert_eq!(status, StatusCode::OK, "{progress}");
    assert_eq!(progress["size"], 3);
    assert_eq!(progress["counts"]["MFR.Job.QUEUED"], 3);
    assert_eq!(progress["eta_seconds"], Value::Null);

    // Another submitter does not see it; an operator does; no key is refused.
    let other = new_key(&api, &[Scope::Submit]).await?;
    assert_eq!(
        get_json(&api, &path, Some(&other)).await?.0,
        StatusCode::NOT_FOUND
    );
    let operator = new_key(&api, &[Scope::Operator]).await?;
    assert_eq!(
        get_json(&api, &path, Some(&operator)).await?.0,
        StatusCode::OK
    );
    assert_eq!(
        get_json(&api, &path, None).await?.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, e) = get_json(&api, "/v2/batches/not-a-uuid", Some(&owner)).await?;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("batch_not_found"))
    );

    // Listed for its owner and operators, not for another key.
    let (status, list) = get_json(&api, "/v2/batches", Some(&owner)).await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["batches"][0]["batch_id"], batch["batch_id"]);
    let (_, list) = get_json(&api, "/v2/batches?limit=5", Some(&other)).await?;
    assert_eq!(list["batches"].as_array().map(Vec::len), Some(0), "{list}");
    let (_, list) = get_json(&api, "/v2/batches", Some(&operator)).await?;
    assert_eq!(list["batches"].as_array().map(Vec::len), Some(1), "{list}");
    let (status, _) = get_json(&api, "/v2/batches?limit=0", Some(&owner)).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The same batch again answers the same batch and jobs, writing nothing.
    let before = job_count(&pool).await?;
    let (status, again) = post(&api, "/v2/jobs", Some(&owner), &body).await?;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["batch_id"], batch["batch_id"]);
    assert_eq!(again["jobs"], batch["jobs"]);
    assert_eq!(job_count(&pool).await?, before);

    // Cancel: another key cannot; the owner can, and again changes nothing.
    let cancel = format!("{path}/cancel");
    assert_eq!(
        post(&api, &cancel, Some(&other), &json!({})).await?.0,
        StatusCode::NOT_FOUND
    );
    let (status, cancelled) = post(&api, &cancel, Some(&owner), &json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["counts"]["MFR.Job.ERROR"], 3);
    assert_eq!(cancelled["eta_seconds"], 0.0);
    assert!(cancelled["cancelled_at"].is_string());
    let (status, again) = post(&api, &cancel, Some(&operator), &json!({})).await?;
    assert_eq!(
        (status, &again["counts"]),
        (StatusCode::OK, &cancelled["counts"])
    );

    // The reconciliation feed still answers on GET /v2/jobs.
    let (status, feed) = get_json(
        &api,
        "/v2/jobs?updated_since=2026-01-01T00:00:00Z",
        Some(&owner),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{feed}");
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_bad_batch_names_every_bad_job_and_writes_nothing(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let key = new_key(&api, &[Scope::Submit]).await?;
    let mut bad = jobs(5, true);
    bad[1]["image_url"] = json!("ftp://img.example.org/1.jpg");
    bad[3]["model_id"] = json!("no-such-model");
    bad[4]["idempotency_key"] = json!("photo-0");
    let (status, e) = post(&api, "/v2/jobs", Some(&key), &json!({ "jobs": bad })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "invalid_items");
    let items: Vec<(u64, &str)> = e["error"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap_or(99),
                i["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(items, vec![(1, "image_url"), (4, "idempotency_key")]);
    // Once the fields are right, the unknown model is named.
    let mut bad = jobs(5, false);
    bad[3]["model_id"] = json!("no-such-model");
    let (status, e) = post(&api, "/v2/jobs", Some(&key), &json!({ "jobs": bad })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["items"][0]["index"], 3);
    assert_eq!(e["error"]["items"][0]["code"], "unknown_model");
    for (body, code) in [
        (json!({ "jobs": [] }), "invalid_field"),
        (
            json!({ "jobs": jobs(1, false), "priority": "now" }),
            "invalid_field",
        ),
        (json!({ "jobs": "all" }), "invalid_type"),
        (json!({}), "missing_field"),
    ] {
        let (status, e) = post(&api, "/v2/jobs", Some(&key), &body).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}");
    }
    // A key used before for another job refuses the batch.
    let (status, _) = post(
        &api,
        "/v2/jobs",
        Some(&key),
        &json!({ "jobs": jobs(1, true) }),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let before = job_count(&pool).await?;
    let mut reused = jobs(2, false);
    reused[1]["idempotency_key"] = json!("photo-0");
    let (status, e) = post(&api, "/v2/jobs", Some(&key), &json!({ "jobs": reused })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["items"][0]["index"], 1);
    assert_eq!(e["error"]["items"][0]["code"], "idempotency_key_reused");
    assert_eq!(job_count(&pool).await?, before, "nothing written");
    tb.cleanup().await;
    Ok(())
}
