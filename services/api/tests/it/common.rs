//! Helpers shared by the api's integration tests.

use std::path::{Path, PathBuf};

use foodseg_testkit::{TestApi, TestBus, start_api};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

/// Streams of their own for the test, and the api on them and the test's database.
pub async fn setup(pool: &PgPool) -> anyhow::Result<(TestBus, TestApi)> {
    let tb = TestBus::new().await?;
    let api = start_api(pool.clone(), tb.subjects.clone(), &tb.url).await?;
    Ok((tb, api))
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

/// A photo of the pipeline's test fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures")
        .join(name)
}
