//! API keys over HTTP: operator routes need a key with scope `operator`, `/v2` needs
//! scope `submit` when keys are required, the v1 routes stay open but can be limited to
//! client addresses, and `foodseg-api keys` manages keys from the command line.

use std::time::Duration;

use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::{JobId, Scope};
use foodseg_testkit::{TestBus, finished_job, wait_until};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{json_of, setup};

const DEADLINE: Duration = Duration::from_secs(30);

/// The operator routes of job `id`: (method, path).
fn operator_routes(id: JobId) -> [(reqwest::Method, String); 3] {
    [
        (reqwest::Method::GET, format!("/jobs/{id}/events")),
        (reqwest::Method::GET, format!("/jobs/{id}/deliveries")),
        (reqwest::Method::POST, format!("/jobs/{id}/redeliver")),
    ]
}

async fn call(
    api: &LocalApi,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Option<String>, Value)> {
    let mut request = foodseg_http::client()?.request(method, api.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let res = request.send().await?;
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, body) = json_of(res).await?;
    Ok((status, challenge, body))
}

#[sqlx::test(migrations = "../../migrations")]
async fn operator_routes_answer_401_without_a_key_403_to_submit_keys_and_work_for_operators(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let job = finished_job(&api.store).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let submitter = api_key(&api.store, "mfr", &[Scope::Submit]).await?;

    for (method, path) in operator_routes(job) {
        let (status, challenge, body) = call(&api, method.clone(), &path, None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="foodseg""#));

        let (status, challenge, body) =
            call(&api, method.clone(), &path, Some("fsk_made-up")).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert!(challenge.unwrap_or_default().contains("invalid_token"));

        let (status, _, body) = call(&api, method.clone(), &path, Some(&submitter)).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // With the operator key: what the routes answer to operators.
    let [events, deliveries, redeliver] = operator_routes(job);
    let (status, _, body) = call(&api, events.0, &events.1, Some(&operator)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(3));
    let (status, _, body) = call(&api, deliveries.0, &deliveries.1, Some(&operator)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The job's first delivery is still pending (no scheduler runs here): a redelivery
    // waits for it.
    let (status, _, body) = call(&api, redeliver.0.clone(), &redeliver.1, Some(&operator)).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "delivery_pending");
    sqlx::query!(
        "UPDATE deliveries SET status = 'delivered', finished_at = now() WHERE job_id = $1",
        job as JobId
    )
    .execute(&pool)
    .await?;
    let (status, _, body) = call(&api, redeliver.0, &redeliver.1, Some(&operator)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let events = api.store.events(job).await?;
    assert_eq!(
        events.last().map(|e| e.actor.as_str()),
        Some("key:ops"),
        "the redelivery names the key that asked for it"
    );

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn ten_thousand_unauthenticated_redeliveries_create_no_delivery(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let job = finished_job(&api.store).await?;
    sqlx::query!(
        "UPDATE deliveries SET status = 'delivered', finished_at = now() WHERE job_id = $1",
        job as JobId
    )
    .execute(&pool)
    .await?;
    let before = api.store.deliveries(job).await?;

    let client = foodseg_http::client()?;
    let url = api.url(&format!("/jobs/{job}/redeliver"));
    let statuses: Vec<StatusCode> = futures::stream::iter(0..10_000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move { client.post(url).send().await.map(|r| r.status()) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "every unauthenticated redelivery is refused"
    );
    assert_eq!(api.store.deliveries(job).await?, before);

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

/// An api on `pool` with `access` settings.
async fn api_with(
    pool: &PgPool,
    access: foodseg_api::auth::AccessConfig,
) -> anyhow::Result<(TestBus, LocalApi)> {
    crate::common::setup_with(pool, |parts| parts.access = access).await
}

async fn upload(api: &LocalApi, token: Option<&str>) -> anyhow::Result<(StatusCode, Value)> {
    let jpeg = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipeline/tests/fixtures/fruits.jpg"),
    )?;
    let mut request = foodseg_http::client()?
        .post(api.url("/v2/uploads?filename=fruits.jpg"))
        .body(jpeg);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    json_of(request.send().await?).await
}

#[sqlx::test(migrations = "../../migrations")]
async fn uploads_need_a_submit_key_unless_keys_are_not_required(
    pool: PgPool,
) -> anyhow::Result<()> {
    // As shipped: keys required.
    let (tb, api) = setup(&pool).await?;
    let submitter = api_key(&api.store, "mfr", &[Scope::Submit]).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let (status, body) = upload(&api, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = upload(&api, Some(&operator)).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = upload(&api, Some(&submitter)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The v1 routes stay open: MFR sends no credentials.
    let (status, body) = json_of(
        foodseg_http::client()?
            .post(api.url("/enqueue"))
            .body(r#"{"image_url":"https://img.example.org/a.jpg"}"#)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.stop().await?;
    tb.cleanup().await;

    // FOODSEG_REQUIRE_KEYS=false: open, and a presented key must still be valid.
    let access = foodseg_api::auth::AccessConfig {
        require_keys: false,
        ..Default::default()
    };
    let (tb, api) = api_with(&pool, access).await?;
    let (status, body) = upload(&api, None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = upload(&api, Some("fsk_made-up")).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn v1_routes_can_be_limited_to_client_addresses_behind_a_trusted_proxy(
    pool: PgPool,
) -> anyhow::Result<()> {
    let access = foodseg_api::auth::AccessConfig {
        v1_allow: vec!["10.0.0.0/8".parse()?],
        trusted_proxies: vec!["127.0.0.1/32".parse()?],
        ..Default::default()
    };
    let (tb, api) = api_with(&pool, access).await?;
    let http = foodseg_http::client()?;
    let enqueue = |forwarded: Option<&'static str>| {
        let mut request = http
            .post(api.url("/enqueue"))
            .body(r#"{"image_url":"https://img.example.org/a.jpg"}"#);
        if let Some(f) = forwarded {
            request = request.header("x-forwarded-for", f);
        }
        async move { json_of(request.send().await?).await }
    };
    // From the proxy itself (127.0.0.1) without a forwarded client: not allowed.
    let (status, body) = enqueue(None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    // A client the proxy forwards from inside the allowed range.
    let (status, body) = enqueue(Some("10.1.2.3")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A forged hop before the real one does not help.
    let (status, body) = enqueue(Some("10.9.9.9, 203.0.113.5")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Health and docs stay open to everyone.
    let res = foodseg_http::client()?
        .get(api.url("/health/live"))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

/// `foodseg-api keys …` against the test's database.
async fn keys_command(pool: &PgPool, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let url = foodseg_testkit::database_url_of(pool)?;
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_foodseg-api"))
            .arg("keys")
            .args(args)
            .env("DATABASE_URL", &url)
            .kill_on_drop(true)
            .output()
            .await?,
    )
}

#[sqlx::test(migrations = "../../migrations")]
async fn keys_are_created_listed_and_revoked_from_the_command_line(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let job = finished_job(&api.store).await?;

    let created = keys_command(&pool, &["create", "--name", "sre", "--scope", "operator"]).await?;
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8(created.stdout)?;
    let token = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout:?}"
    );
    assert!(
        token.starts_with(foodseg_api::auth::TOKEN_PREFIX),
        "{token}"
    );
    let stored: Vec<Vec<u8>> = sqlx::query_scalar!("SELECT token_hash FROM api_keys")
        .fetch_all(&pool)
        .await?;
    assert!(
        stored.iter().all(|h| h.as_slice() != token.as_bytes()),
        "the token itself is not stored"
    );

    let events = format!("/jobs/{job}/events");
    let (status, _, body) = call(&api, reqwest::Method::GET, &events, Some(token)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    // One live key per name.
    let again = keys_command(&pool, &["create", "--name", "sre", "--scope", "submit"]).await?;
    assert!(!again.status.success());
    let bad_scope = keys_command(&pool, &["create", "--name", "x", "--scope", "admin"]).await?;
    assert!(!bad_scope.status.success());

    let listed = keys_command(&pool, &["list"]).await?;
    assert!(listed.status.success(), "{listed:?}");
    let list = String::from_utf8(listed.stdout)?;
    assert!(list.contains("sre") && list.contains("operator"), "{list}");
    assert!(!list.contains(token), "list never shows tokens");

    let revoked = keys_command(&pool, &["revoke", "sre"]).await?;
    assert!(revoked.status.success(), "{revoked:?}");
    // Revocation takes effect within the key cache's lifetime.
    wait_until(DEADLINE, || async {
        call(&api, reqwest::Method::GET, &events, Some(token))
            .await
            .map(|(status, _, _)| status == StatusCode::UNAUTHORIZED)
    })
    .await?;
    let missing = keys_command(&pool, &["revoke", "sre"]).await?;
    assert!(!missing.status.success());

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
