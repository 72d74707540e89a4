//! The operator console in a real headless Chromium, against the api, worker and
//! scheduler as processes: `scripts/console_browser.py` (Playwright driving the system
//! Chromium; both prepared by `scripts/browser-venv.sh`) logs in with a key after a wrong
//! one is refused, sees the seeded jobs, finds one SVG polygon group per item of a real
//! fruits.jpg result over the photo, redelivers its webhook, cancels a queued job and
//! the rest of a bulk batch.
//! Screenshots of the overview and the job page land in
//! `target/tmp/console-screenshots/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use foodseg_api::local::api_key;
use foodseg_engine::store::{CANCELLED_BY_OPERATOR, ClassCounts, NewBatch, NewShadowResult};
use foodseg_engine::{BatchId, DeliveryStatus, JobId, JobStatus, Priority, Scope, Store};
use foodseg_testkit::{new_job, wait_until};
use sqlx::PgPool;

use crate::common::stack::{DEADLINE, Hooks, Stack, workspace_root};

/// The python that drives the browser, installing Chromium and Playwright when missing.
async fn browser_python() -> anyhow::Result<PathBuf> {
    let out = tokio::process::Command::new("bash")
        .arg(workspace_root().join("scripts/browser-venv.sh"))
        .output()
        .await
        .context("running scripts/browser-venv.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/browser-venv.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_operator_works_the_console_in_a_browser(pool: PgPool) -> anyhow::Result<()> {
    let python = browser_python().await?;
    let hooks = Hooks::start().await?;
    let stack = Stack::start(&pool, None).await?;
    let store = Store::from_pool(pool.clone(), stack.subjects.clone());
    let key = api_key(&store, "ops", &[Scope::Operator]).await?;

    // A real result: fruits.jpg through the worker, its webhook delivered.
    let finished = JobId::from_uuid(stack.enqueue(&hooks.url("/hook")).await?);
    let job = wait_until(DEADLINE, || async {
        let deliveries = store.deliveries(finished).await.ok()?;
        let delivered = deliveries
            .iter()
            .any(|d| d.delivery.status == DeliveryStatus::Delivered);
        if delivered {
            store.get(finished).await.ok().flatten()
        } else {
            None
        }
    })
    .await
    .context("the fruits.jpg job never had its webhook delivered")?;
    ensure!(job.status == JobStatus::Succeeded, "{job:?}");
    let items = job
        .response
        .as_ref()
        .and_then(|r| r.as_array())
        .map_or(0, Vec::len);
    ensure!(items > 0, "no items in {:?}", job.response);

    // A shadow run of the finished job, as a worker with FOODSEG_SHADOW records it (the
    // worker's own tests run real ones): the candidate found the same items.
    let mut classes: BTreeMap<String, ClassCounts> = BTreeMap::new();
    for item in job
        .response
        .as_ref()
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let class = classes
            .entry(
                item["category_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default();
        class.model += 1;
        class.candidate += 1;
        class.matched += 1;
    }
    let shadow_class = classes.keys().next().cloned().context("a class")?;
    store
        .insert_shadow_result(&NewShadowResult {
            job_id: finished,
            model_name: job.model_name.clone(),
            model_version: job.model_version.clone().unwrap_or_default(),
            candidate: format!("{}-candidate", job.model_name),
            candidate_version: "0123456789abcdef".into(),
            items: job.response.clone().unwrap_or_default(),
            model_seconds: job.processing_time.unwrap_or_default(),
            candidate_seconds: job.processing_time.unwrap_or_default(),
            classes,
        })
        .await?;

    // A job for a model no worker serves stays queued: the one to cancel.
    let mut waiting = new_job(&stack.image_url);
    waiting.model_name = "unserved-model".into();
    let queued = store.enqueue(&waiting, "test").await?.id;
    // A bulk batch for that model: the one to cancel on the Batches page.
    let batch = BatchId::new();
    let batch_jobs = (0..2)
        .map(|_| {
            let mut job = new_job(&stack.image_url);
            job.model_name = "unserved-model".into();
            job.priority = Priority::Bulk;
            job.batch_id = Some(batch);
            (job, None)
        })
        .collect();
    let new_batch = NewBatch {
        id: batch,
        owner: None,
        priority: Priority::Bulk,
        items: batch_jobs,
    };
    store.enqueue_batch(&new_batch, "test").await?;

    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    // Not std's Command: the image server and the webhook endpoint run on this test's
    // runtime, which must keep running while the browser works.
    let out = tokio::process::Command::new(&python)
        .arg(workspace_root().join("scripts/console_browser.py"))
        .args(["--base", &format!("http://{}", stack.api)])
        .args(["--key", &key])
        .args(["--finished", &finished.to_string()])
        .args(["--items", &items.to_string()])
        .args(["--queued", &queued.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--shadow-class", &shadow_class])
        .arg("--screenshots")
        .arg(&screenshots)
        .output()
        .await
        .context("running scripts/console_browser.py")?;
    if !out.status.success() {
        stack.dump_logs();
        bail!(
            "the browser run failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("summary: {}", String::from_utf8_lossy(&out.stdout)))?;
    assert_eq!(summary["wrong_key_refused"], true);
    assert_eq!(summary["shadow_agreement"], "1.00", "{summary}");
    assert_eq!(summary["photo_width"], 512, "{summary}");
    assert!(
        summary["polygons"].as_u64() >= Some(items as u64),
        "{summary}"
    );
    for shot in [
        "console-overview.png",
        "console-job.png",
        "console-batches.png",
        "console-shadow.png",
    ] {
        let size = std::fs::metadata(screenshots.join(shot))?.len();
        assert!(size > 10_000, "{shot} is {size} bytes");
    }

    // What the browser did is in the store.
    let cancelled = store.get(queued).await?.context("queued job")?;
    assert_eq!(cancelled.status, JobStatus::Failed);
    assert_eq!(cancelled.message, CANCELLED_BY_OPERATOR);
    assert_eq!(
        store.events(queued).await?.last().map(|e| e.actor.clone()),
        Some("console:ops".to_string())
    );
    let progress = store.batch(batch, None).await?.context("batch")?;
    assert_eq!(
        (progress.failed, progress.remaining()),
        (2, 0),
        "{progress:?}"
    );
    assert!(progress.cancelled_by.is_some_and(|by| by == "console:ops"));
    let deliveries = store.deliveries(finished).await?;
    assert_eq!(deliveries.len(), 2, "the redelivery is a second delivery");
    assert_ne!(
        deliveries[0].delivery.webhook_id,
        deliveries[1].delivery.webhook_id
    );

    stack.stop().await?;
    stack.cleanup().await;
    Ok(())
}
