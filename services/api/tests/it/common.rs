//! Helpers shared by the api's integration tests.

use std::path::{Path, PathBuf};

use foodseg_api::Parts;
use foodseg_api::local::{LocalApi, api_key, api_parts, start_api, start_api_with};
use foodseg_engine::Scope;
use foodseg_testkit::{TestBus, repo_models_dir};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

/// Streams of their own for the test, and the api on them and the test's database, with
/// the settings that ship (no security variable set).
pub async fn setup(pool: &PgPool) -> anyhow::Result<(TestBus, LocalApi)> {
    let tb = TestBus::new().await?;
    let api = start_api(pool.clone(), tb.subjects.clone(), &tb.url).await?;
    Ok((tb, api))
}

/// Like [`setup`], with the parts changed by `change` first.
pub async fn setup_with(
    pool: &PgPool,
    change: impl FnOnce(&mut Parts),
) -> anyhow::Result<(TestBus, LocalApi)> {
    let tb = TestBus::new().await?;
    let api = start_on(pool, &tb, change).await?;
    Ok((tb, api))
}

/// An api on the test's database and `tb`'s streams (another one beside, or after, the
/// first), with the parts changed by `change`.
pub async fn start_on(
    pool: &PgPool,
    tb: &TestBus,
    change: impl FnOnce(&mut Parts),
) -> anyhow::Result<LocalApi> {
    let mut parts = api_parts(
        pool.clone(),
        tb.subjects.clone(),
        &tb.url,
        &repo_models_dir(),
    )
    .await?;
    change(&mut parts);
    Ok(start_api_with(parts).await?)
}

/// The answer's status and JSON body; every answer of these endpoints is JSON.
pub async fn json_of(res: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    Ok((status, res.json().await?))
}

/// `GET path` with the API key `key`, if any: the answer's status and JSON body.
pub async fn get_json(
    api: &LocalApi,
    path: &str,
    key: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = foodseg_http::client()?.get(api.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    json_of(request.send().await?).await
}

/// `POST path` with a JSON `body` and the API key `key`, if any: the answer's status and
/// JSON body.
pub async fn post_json(
    api: &LocalApi,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = foodseg_http::client()?
        .post(api.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    json_of(request.send().await?).await
}

/// A photo of the pipeline's test fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures")
        .join(name)
}

/// A new API key with `scopes` on the api's database (a unique name each call); returns
/// its token.
pub async fn new_key(api: &LocalApi, scopes: &[Scope]) -> anyhow::Result<String> {
    let name = format!("test-{}", uuid::Uuid::new_v4().simple());
    Ok(api_key(&api.store, &name, scopes).await?)
}
