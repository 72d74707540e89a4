//! `GET /v2/jobs` (the reconciliation feed) and the operator reports
//! (`GET /reconciliations`, `GET /undelivered`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::Scope;
use foodseg_testkit::{finished_job, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{json_of, setup, setup_with, start_on};

const DEADLINE: Duration = Duration::from_secs(20);

fn new_job(n: usize) -> foodseg_engine::store::NewJob {
    foodseg_testkit::new_job(&format!("https://img.example.org/{n}.jpg"))
}

async fn get(
    api: &LocalApi,
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
    // Pages are read back to back here: no feed rate limit.
    let (_tb, api) = setup_with(&pool, |parts| parts.limits.feed = None).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
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
            Some(&operator),
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
        let (status, page) = get(&api, &path, Some(&operator)).await?;
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
    let (_tb, api) = setup_with(&pool, |parts| parts.limits.feed = None).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let op = Some(operator.as_str());
    let start = since(Utc::now() - chrono::Duration::seconds(1));
    let queued = api.store.enqueue(&new_job(1), "test").await?;
    let running = api.store.enqueue(&new_job(2), "test").await?;
    api.store
        .claim(running.id, "w", Duration::from_secs(60))
        .await?;
    wait_until(DEADLINE, || async {
        let (_, page) = get(&api, &format!("/v2/jobs?updated_since={start}"), op)
            .await
            .ok()?;
        (page["jobs"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await?;
    let (status, page) = get(
        &api,
        &format!("/v2/jobs?updated_since={start}&status=MFR.Job.QUEUED"),
        op,
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
        op,
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
        let (status, err) = get(&api, &format!("/v2/jobs?{query}"), op).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert_eq!(err["error"]["code"], "invalid_parameter", "{query}");
        assert_eq!(err["error"]["field"], param, "{query}");
    }
    let (status, _) = get(&api, "/v2/jobs", op).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "updated_since is required");
    Ok(())
}

/// POSTs an upload of the fixture photo with `token`; the job's id.
async fn upload(api: &LocalApi, token: &str) -> anyhow::Result<String> {
    let res = foodseg_http::client()?
        .post(api.url("/v2/uploads?filename=fruits.jpg"))
        .bearer_auth(token)
        .body(std::fs::read(crate::common::fixture("fruits.jpg"))?)
        .send()
        .await?;
    let (status, doc) = json_of(res).await?;
    anyhow::ensure!(status == StatusCode::OK, "upload: {status} {doc}");
    Ok(doc["job_id"].as_str().unwrap_or_default().to_string())
}

/// POSTs a keyless v1 enqueue; the job's id.
async fn enqueue_v1(api: &LocalApi, image: &str) -> anyhow::Result<String> {
    let res = foodseg_http::client()?
        .post(api.url("/enqueue"))
        .json(&json!({ "image_url": image }))
        .send()
        .await?;
    let (status, doc) = json_of(res).await?;
    anyhow::ensure!(status == StatusCode::OK, "enqueue: {status} {doc}");
    Ok(doc["job_id"].as_str().unwrap_or_default().to_string())
}

/// The job ids of `token`'s feed since `start`, once it lists `expected` of them.
async fn feed_ids(
    api: &LocalApi,
    start: &str,
    token: &str,
    expected: usize,
) -> anyhow::Result<Vec<String>> {
    wait_until(DEADLINE, || async {
        let (status, page) = get(api, &format!("/v2/jobs?updated_since={start}"), Some(token))
            .await
            .ok()?;
        let ids: Vec<String> = page["jobs"]
            .as_array()?
            .iter()
            .filter_map(|d| d["job_id"].as_str().map(str::to_string))
            .collect();
        (status == StatusCode::OK && ids.len() >= expected).then_some(ids)
    })
    .await
}

#[sqlx::test(migrations = "../../migrations")]
async fn with_no_security_setting_a_key_reads_only_the_jobs_it_owns(
    pool: PgPool,
) -> anyhow::Result<()> {
    // The settings that ship: nothing configured.
    let (tb, api) = setup(&pool).await?;
    let start = since(Utc::now() - chrono::Duration::seconds(1));
    let path = format!("/v2/jobs?updated_since={start}");
    let (status, body) = get(&api, &path, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let anonymous_upload = foodseg_http::client()?
        .post(api.url("/v2/uploads"))
        .body(std::fs::read(crate::common::fixture("fruits.jpg"))?)
        .send()
        .await?;
    assert_eq!(anonymous_upload.status(), StatusCode::UNAUTHORIZED);

    let key_a = api_key(&api.store, "client-a", &[Scope::Submit]).await?;
    let key_b = api_key(&api.store, "client-b", &[Scope::Submit]).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let job_a = upload(&api, &key_a).await?;
    let job_b = upload(&api, &key_b).await?;
    let job_v1 = enqueue_v1(&api, "https://img.example.org/v1.jpg").await?;

    let all = feed_ids(&api, &start, &operator, 3).await?;
    assert_eq!(all.len(), 3, "the operator's feed lists every job: {all:?}");
    for id in [&job_a, &job_b, &job_v1] {
        assert!(all.contains(id), "{id} in the operator's feed {all:?}");
    }
    assert_eq!(
        feed_ids(&api, &start, &key_a, 1).await?,
        vec![job_a.clone()]
    );
    assert_eq!(
        feed_ids(&api, &start, &key_b, 1).await?,
        vec![job_b.clone()]
    );
    // Filtered by status, still only the key's own.
    let (status, page) = get(
        &api,
        &format!("{path}&status=MFR.Job.QUEUED,MFR.Job.SUCCESS"),
        Some(&key_a),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["jobs"][0]["job_id"], job_a.as_str());
    // The keyless v1 contract is unchanged: any client reads a job by its id.
    let status_doc = foodseg_http::client()?
        .get(api.url(&format!("/status/{job_a}")))
        .send()
        .await?;
    assert_eq!(status_doc.status(), StatusCode::OK);
    api.stop().await?;

    // FOODSEG_V1_OWNER=client-a: the keyless v1 jobs are A's.
    let api = start_on(&pool, &tb, |parts| {
        parts.access.v1_owner = Some("client-a".into());
    })
    .await?;
    let owned_v1 = enqueue_v1(&api, "https://img.example.org/mfr.jpg").await?;
    let mine = feed_ids(&api, &start, &key_a, 2).await?;
    assert_eq!(
        mine,
        vec![job_a.clone(), owned_v1.clone()],
        "oldest change first"
    );
    let theirs = feed_ids(&api, &start, &key_b, 1).await?;
    assert_eq!(theirs, vec![job_b]);
    api.stop().await?;
    tb.cleanup().await;
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

#[sqlx::test(migrations = "../../migrations")]
async fn the_feed_names_the_model_version_of_a_result_and_v1_does_not(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (_tb, api) = setup_with(&pool, |parts| parts.limits.feed = None).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let start = since(Utc::now() - chrono::Duration::seconds(1));
    let done = finished_job(&api.store).await?;
    let queued = api.store.enqueue(&new_job(1), "test").await?;
    let page = wait_until(DEADLINE, || async {
        let (_, page) = get(
            &api,
            &format!("/v2/jobs?updated_since={start}"),
            Some(&operator),
        )
        .await
        .ok()?;
        (page["jobs"].as_array().map_or(0, Vec::len) == 2).then_some(page)
    })
    .await?;
    let version_of = |id: String| {
        page["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|d| d["job_id"] == id.as_str()))
            .map(|d| d["model_version"].clone())
    };
    assert_eq!(version_of(done.to_string()), Some(json!("test-version")));
    assert_eq!(version_of(queued.id.to_string()), Some(Value::Null));
    let (status, v1) = get(&api, &format!("/status/{done}"), None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        v1.get("model_version").is_none(),
        "the v1 document is unchanged: {v1}"
    );
    Ok(())
}
