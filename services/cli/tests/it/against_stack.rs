//! The `foodseg` binary against the real stack: the api in-process, a worker on the real
//! model and ONNX Runtime, Postgres and NATS. Local files are sent to the api's upload
//! endpoint; behind an api without one (a front that hides it), they reach the worker
//! through the CLI's loopback file server instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use foodseg_api::local::{LocalApi, start_api};
use foodseg_testkit::TestBus;
use sqlx::PgPool;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures")
        .join(name)
}

pub(crate) fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foodseg-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `foodseg` against `api` with a key of scope `submit` of its own in
/// `FOODSEG_API_KEY` (uploads need one).
pub(crate) async fn foodseg(api: &LocalApi, args: &[&str]) -> anyhow::Result<Output> {
    let name = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let key =
        foodseg_api::local::api_key(&api.store, &name, &[foodseg_engine::Scope::Submit]).await?;
    Ok(Command::new(env!("CARGO_BIN_EXE_foodseg"))
        .arg("--api")
        .arg(&api.base_url)
        .args(args)
        .env("FOODSEG_API_KEY", key)
        .kill_on_drop(true)
        .output()
        .await?)
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A worker for this test's database and streams.
pub(crate) fn worker_config(
    pool: &PgPool,
    bus: &TestBus,
) -> anyhow::Result<foodseg_worker::Config> {
    let url = foodseg_testkit::database_url_of(pool)?;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", url.to_string()),
        ("NATS_URL", bus.url.clone()),
        ("FOODSEG_NATS_PREFIX", bus.subjects.prefix.clone()),
        ("FOODSEG_MODELS_DIR", models.display().to_string()),
        ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8".into()),
        ("FOODSEG_WORKER_ADDR", "off".into()),
        ("FOODSEG_WORKER_ID", "cli-test".into()),
        ("FOODSEG_WORKER_DRAIN_SECS", "5".into()),
    ]);
    Ok(foodseg_worker::Config::load(
        &foodseg_runtime::Env::from_pairs(vars),
    )?)
}

#[sqlx::test(migrations = "../../migrations")]
async fn submit_prints_the_items_and_draws_the_overlay(pool: PgPool) -> anyhow::Result<()> {
    let bus = TestBus::new().await?;
    let api = start_api(pool.clone(), bus.subjects.clone(), &bus.url).await?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(foodseg_worker::run(
        worker_config(&pool, &bus)?,
        shutdown.clone(),
    ));
    let dir = scratch_dir();
    let png = dir.join("fruits.png");

    let out = foodseg(
        &api,
        &[
            "submit",
            fixture("fruits.jpg").to_str().unwrap_or_default(),
            "--timeout",
            "180",
            "--webhook",
            "https://mfr.example.org/hook",
            "--overlay",
            png.to_str().unwrap_or_default(),
        ],
    )
    .await?;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains(" success "), "{stdout}");
    assert!(stdout.contains("model 124096"), "{stdout}");
    let orange_row = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("orange"));
    let orange_row = orange_row.unwrap_or_else(|| panic!("no orange row in:\n{stdout}"));
    // Row: rank, category, COCO id, score, box, area, polygon count.
    let cells: Vec<&str> = orange_row.split_whitespace().collect();
    assert_eq!(cells[2], "55", "{orange_row}");
    assert!(cells[3].parse::<f64>()? >= 0.5, "{orange_row}");

    let drawn = image::open(&png)?;
    let original = image::open(fixture("fruits.jpg"))?;
    assert_eq!(
        (drawn.width(), drawn.height()),
        (original.width(), original.height())
    );
    assert_ne!(
        drawn.to_rgb8(),
        original.to_rgb8(),
        "the overlay drew nothing"
    );

    // `status` reads the same job back.
    let job_id = stdout
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no job id in {stdout}"))?;
    let out = foodseg(&api, &["status", job_id, "--json"]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["status"], "MFR.Job.SUCCESS");
    assert_eq!(doc["job_id"], job_id);
    // The bytes went through POST /v2/uploads, not a URL, with the webhook.
    assert_eq!(
        doc["request"]["image_url"],
        format!("upload://{job_id}/fruits.jpg")
    );
    assert_eq!(
        doc["request"]["webhook_url"],
        "https://mfr.example.org/hook"
    );
    assert!(
        doc["response"]
            .as_array()
            .is_some_and(|items| items.iter().all(|it| it["image_id"] == "fruits.jpg")),
        "{doc:#}"
    );

    shutdown.cancel();
    worker.await??;
    api.stop().await?;
    bus.cleanup().await;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn without_an_upload_endpoint_files_are_served_locally(pool: PgPool) -> anyhow::Result<()> {
    let bus = TestBus::new().await?;
    let api = start_api(pool.clone(), bus.subjects.clone(), &bus.url).await?;
    // An api without POST /v2/uploads: neither documented nor routed.
    let front = crate::front::Front::without_uploads(&api.base_url).await?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(foodseg_worker::run(
        worker_config(&pool, &bus)?,
        shutdown.clone(),
    ));

    let out = Command::new(env!("CARGO_BIN_EXE_foodseg"))
        .arg("--api")
        .arg(&front.base_url)
        .args([
            "submit",
            fixture("coffee.png").to_str().unwrap_or_default(),
            "--timeout",
            "180",
        ])
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("cup")),
        "no cup row in:\n{stdout}"
    );
    assert_eq!(
        front.uploads_refused(),
        0,
        "the CLI sent bytes to a server without uploads"
    );
    // The job's image came from the CLI's loopback server, by URL.
    let urls = sqlx::query_scalar!("SELECT image_url FROM jobs")
        .fetch_all(&pool)
        .await?;
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert!(
        urls[0].starts_with("http://127.0.0.1:") && urls[0].ends_with("/coffee.png"),
        "{urls:?}"
    );

    shutdown.cancel();
    worker.await??;
    api.stop().await?;
    bus.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_input_fails_clearly_with_a_non_zero_exit(pool: PgPool) -> anyhow::Result<()> {
    let bus = TestBus::new().await?;
    let api = start_api(pool, bus.subjects.clone(), &bus.url).await?;
    let dir = scratch_dir();
    let bad = dir.join("notes.jpg");
    std::fs::write(&bad, "these are not pixels")?;

    let out = foodseg(&api, &["submit", bad.to_str().unwrap_or_default()]).await?;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("notes.jpg is not an image (expected JPEG, PNG or WebP)"),
        "{stderr}"
    );

    let out = foodseg(
        &api,
        &[
            "submit",
            dir.join("missing.png").to_str().unwrap_or_default(),
        ],
    )
    .await?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing.png: No such file"),
        "{}",
        text(&out.stderr)
    );

    // The api's error body is shown as its message.
    let out = foodseg(
        &api,
        &[
            "submit",
            "http://example.org/dish.jpg",
            "--model",
            "no-such-model",
        ],
    )
    .await?;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("API answered 4"), "{stderr}");
    assert!(stderr.contains("no-such-model"), "{stderr}");

    let out = foodseg(&api, &["status", "00000000-0000-0000-0000-000000000000"]).await?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("API answered 404"),
        "{}",
        text(&out.stderr)
    );

    api.stop().await?;
    bus.cleanup().await;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
