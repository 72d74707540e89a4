//! `foodseg submit-dir --base-url`: a directory whose images are already served over HTTP
//! goes to the api as bulk batches (`POST /v2/jobs`), is followed to the end and printed
//! as today; sending it again replays the same jobs; jobs the api refuses are named.

use std::process::Output;

use foodseg_api::local::{LocalApi, api_key, start_api};
use foodseg_engine::Scope;
use foodseg_testkit::{FileServer, TestBus};
use sqlx::PgPool;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::against_stack::{fixture, scratch_dir, text, worker_config};

/// Runs `foodseg` against `api` with `key`.
async fn foodseg(api: &LocalApi, key: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_foodseg"))
        .arg("--api")
        .arg(&api.base_url)
        .args(args)
        .env("FOODSEG_API_KEY", key)
        .kill_on_drop(true)
        .output()
        .await?)
}

/// The JSON lines of `--json`, by file.
fn lines(out: &Output) -> anyhow::Result<Vec<serde_json::Value>> {
    text(&out.stdout)
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_served_directory_goes_in_bulk_batches_and_a_rerun_replays_it(
    pool: PgPool,
) -> anyhow::Result<()> {
    let bus = TestBus::new().await?;
    let api = start_api(pool.clone(), bus.subjects.clone(), &bus.url).await?;
    let key = api_key(&api.store, "backfill", &[Scope::Submit]).await?;
    let dir = scratch_dir();
    for name in ["fruits.jpg", "coffee.png"] {
        std::fs::copy(fixture(name), dir.join(name))?;
    }
    let images = FileServer::serve_dir(&dir).await?;
    let base = format!("{}/", images.base_url);
    let dir_arg = dir.to_str().unwrap_or_default();

    // A model the api does not know: every job is refused by name, nothing is written.
    let out = foodseg(
        &api,
        &key,
        &[
            "submit-dir",
            dir_arg,
            "--base-url",
            &base,
            "--model",
            "no-such-model",
            "--json",
        ],
    )
    .await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let refused = lines(&out)?;
    assert_eq!(refused.len(), 2, "{}", text(&out.stdout));
    for line in &refused {
        assert_eq!(line["status"], "error");
        let message = line["message"].as_str().unwrap_or_default();
        assert!(message.contains("(unknown_model)"), "{message}");
    }
    assert!(
        text(&out.stderr).contains("2 of 2 images failed"),
        "{}",
        text(&out.stderr)
    );
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(jobs, 0);

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(foodseg_worker::run(
        worker_config(&pool, &bus)?,
        shutdown.clone(),
    ));
    let args = [
        "submit-dir",
        dir_arg,
        "--base-url",
        &base,
        "--timeout",
        "300",
        "--json",
    ];
    let out = foodseg(&api, &key, &args).await?;
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let first = lines(&out)?;
    let files: Vec<&str> = first.iter().filter_map(|l| l["file"].as_str()).collect();
    assert!(
        files[0].ends_with("coffee.png") && files[1].ends_with("fruits.jpg"),
        "{files:?}"
    );
    for line in &first {
        assert_eq!(line["status"], "success", "{line}");
        assert!(
            line["items"].as_array().is_some_and(|i| !i.is_empty()),
            "{line}"
        );
    }

    // One bulk batch of the key, each job on its file's URL.
    let rows: Vec<(String, String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT image_url, priority::text, batch_id FROM jobs ORDER BY image_url")
            .fetch_all(&pool)
            .await?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, format!("{base}coffee.png"));
    assert_eq!(rows[1].0, format!("{base}fruits.jpg"));
    assert!(rows.iter().all(|r| r.1 == "bulk"), "{rows:?}");
    assert!(rows[0].2.is_some() && rows[0].2 == rows[1].2, "{rows:?}");

    // Again: the keys replay the jobs, nothing new is queued.
    let out = foodseg(&api, &key, &args).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = lines(&out)?;
    let ids = |lines: &[serde_json::Value]| -> Vec<String> {
        lines.iter().map(|l| l["job_id"].to_string()).collect()
    };
    assert_eq!(ids(&again), ids(&first));
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(jobs, 2);

    shutdown.cancel();
    worker.await??;
    api.stop().await?;
    bus.cleanup().await;
    drop(images);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
