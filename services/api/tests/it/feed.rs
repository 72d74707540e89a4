//! `GET /v2/jobs` (the reconciliation feed) and the operator reports
//! (`GET /reconciliations`, `GET /undelivered`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use foodseg_engine::Scope;
use foodseg_testkit::{
    TestApi, api_key, api_parts, finished_job, repo_models_dir, start_api_with, wait_until,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{json_of, setup};

const DEADLINE: Duration = Duration::from_secs(20);

fn new_job(n: usize) -> foodseg_engine::store::NewJob {
    foodseg_testkit::new_job(&format!("https://img.example.org/{n}.jpg"))
}

async fn get(
    api: &TestApi,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut req = foodseg_http::client()?.get(api.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    json_of(req.send().await?).await
}

fn since(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
        .replace('+', "%2B")
}

#[sqlx::test(migrations = "../../migrations")]
async fn paging_returns_each_job_once_while_new_jobs_arrive(pool: PgPool) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let start = since(Utc::now() - chrono::Duration::seconds(1));
    let mut seeded = Vec::new();
    for n in 0..1000 {
        seeded.push(api.store.enqueue(&new_job(n), "test").await?.id.to_string());
    }
    // Changes are listed once they have settled for a moment.
    wait_until(DEADLINE, || async {
        let (_, page) = get(
            &api,
            &format!("/v2/jobs?updated_since={start}&limit=1000"),
            None,
        )
        .await
        .ok()?;
        (page["jobs"].as_array().map_or(0, Vec::len) == 1000).then_some(())
    })
    .await?;

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v2/jobs?updated_since={start}&limit=100&after={c}"),
            None => format!("/v2/jobs?updated_since={start}&limit=100"),
        };
        let (status, page) = get(&api, &path, None).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
        let mut last = None;
        for doc in &jobs {
            let updated = doc["updated_at"].as_str().unwrap_or_default().to_string();
            if let Some(prev) = &last {
                assert!(&updated >= prev, "oldest change first");
            }
            last = Some(updated);
            *seen
                .entry(doc["job_id"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        // New jobs arrive between pages, through the api as a client would send them.
        let res = foodseg_http::client()?
            .post(api.url("/enqueue"))
            .json(&json!({"image_url": format!("https://img.example.org/new-{pages}.jpg")}))
            .send()
            .await?;
        assert_eq!(res.status(), StatusCode::OK);
        pages += 1;
        cursor = page["cursor"].as_str().map(str::to_string);
        if !page["has_more"].as_bool().unwrap_or(false) {
            break;
        }
        assert!(pages < 50, "the feed does not end");
    }
    for id in &seeded {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "job {id} seen {:?} times",
            seen.get(id)
        );
    }
    assert!(seen.values().all(|&n| n == 1), "no job twice");
    assert!(pages >= 10, "paged in {pages} pages");
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_feed_filters_by_status_and_checks_its_parameters(pool: PgPool) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let start = since(Utc::now() - chrono::Duration::seconds(1));
    let queued = api.store.enqueue(&new_job(1), "test").await?;
    let running = api.store.enqueue(&new_job(2), "test").await?;
    api.store
        .claim(running.id, "w", Duration::from_secs(60))
        .await?;
    wait_until(DEADLINE, || async {
        let (_, page) = get(&api, &format!("/v2/jobs?updated_since={start}"), None)
            .await
            .ok()?;
        (page["jobs"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await?;
    let (status, page) = get(
        &api,
        &format!("/v2/jobs?updated_since={start}&status=MFR.Job.QUEUED"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["job_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![queued.id.to_string()]);
    assert_eq!(page["jobs"][0]["status"], "MFR.Job.QUEUED");
    assert_eq!(page["has_more"], false);

    // A later updated_since leaves them out; the cursor of an empty page is the one given.
    let (_, later) = get(
        &api,
        &format!(
            "/v2/jobs?updated_since={}",
            since(Utc::now() + chrono::Duration::hours(1))
        ),
        None,
    )
    .await?;
    assert_eq!(later["jobs"], json!([]));
    assert_eq!(later["cursor"], Value::Null);

    for (query, param) in [
        ("updated_since=yesterday", "updated_since"),
        (
            &format!("updated_since={start}&status=succeeded") as &str,
            "status",
        ),
        (&format!("updated_since={start}&limit=0"), "limit"),
        (&format!("updated_since={start}&limit=1001"), "limit"),
        (&format!("updated_since={start}&after=garbage"), "after"),
    ] {
        let (status, err) = get(&api, &format!("/v2/jobs?{query}"), None).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert_eq!(err["error"]["code"], "invalid_parameter", "{query}");
        assert_eq!(err["error"]["field"], param, "{query}");
    }
    let (status, _) = get(&api, "/v2/jobs", None).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "updated_since is required");
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_feed_needs_a_submit_key_when_keys_are_required(pool: PgPool) -> anyhow::Result<()> {
    let (tb, open) = setup(&pool).await?;
    open.stop().await?;
    let mut parts = api_parts(
        pool.clone(),
        tb.subjects.clone(),
        &tb.url,
        &repo_models_dir(),
    )
    .await?;
    parts.access.require_keys = true;
    let api = start_api_with(parts).await?;
    let submit = api_key(&api.store, "mfr", &[Scope::Submit]).await?;
    let path = "/v2/jobs?updated_since=2026-01-01T00:00:00Z";
    assert_eq!(get(&api, path, None).await?.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&api, path, Some(&submit)).await?.0, StatusCode::OK);
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn operators_read_reconciliations_and_undelivered_webhooks(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let submit = api_key(&api.store, "mfr", &[Scope::Submit]).await?;

    let day = Utc::now().date_naive();
    api.store.reconcile(day).await?;
    api.store.reconcile(day.pred_opt().unwrap_or(day)).await?;
    assert_eq!(
        get(&api, "/reconciliations", None).await?.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&api, "/reconciliations", Some(&submit)).await?.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = get(&api, "/reconciliations", Some(&operator)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reports"][0]["day"], day.to_string(), "newest first");
    assert_eq!(body["reports"].as_array().map(Vec::len), Some(2));
    assert!(body["reports"][0]["report"]["jobs"].is_array(), "{body}");

    // A finished job's webhook is pending until the scheduler delivers it.
    let start = since(Utc::now() - chrono::Duration::seconds(1));
    let job = finished_job(&api.store).await?;
    let unfinished = api.store.enqueue(&new_job(2), "test").await?;
    let path = format!("/undelivered?since={start}");
    assert_eq!(
        get(&api, &path, Some(&submit)).await?.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = get(&api, &path, Some(&operator)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let webhooks = body["webhooks"].as_array().cloned().unwrap_or_default();
    assert_eq!(webhooks.len(), 1, "{body}");
    assert_eq!(webhooks[0]["job_id"], job.to_string());
    assert_eq!(webhooks[0]["status"], "pending");
    assert!(webhooks[0]["next_attempt_at"].is_string());
    assert_ne!(webhooks[0]["job_id"], unfinished.id.to_string());
    Ok(())
}
