//! `foodseg reconcile`: finished jobs whose webhook has not been delivered, read from the
//! operator route with an operator key.

use std::process::Output;

use foodseg_api::local::{LocalApi, api_key, start_api};
use foodseg_engine::Scope;
use foodseg_testkit::{TestBus, finished_job};
use sqlx::PgPool;
use tokio::process::Command;

async fn reconcile(api: &LocalApi, key: Option<&str>) -> anyhow::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_foodseg"));
    cmd.arg("--api").arg(&api.base_url);
    cmd.env_remove("FOODSEG_API_KEY");
    if let Some(key) = key {
        cmd.env("FOODSEG_API_KEY", key);
    }
    Ok(cmd
        .args(["reconcile", "--since", "1h"])
        .kill_on_drop(true)
        .output()
        .await?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test(migrations = "../../migrations")]
async fn reconcile_lists_finished_jobs_whose_webhook_is_pending(
    pool: PgPool,
) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let api = start_api(pool.clone(), tb.subjects.clone(), &tb.url).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;

    let out = reconcile(&api, Some(&operator)).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("was delivered"),
        "{}",
        text(&out.stdout)
    );

    let job = finished_job(&api.store).await?;

    let out = reconcile(&api, Some(&operator)).await?;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(&job.to_string()), "{stdout}");
    assert!(stdout.contains("pending"), "{stdout}");
    assert!(stdout.contains("1 undelivered"), "{stdout}");

    // Without an operator key the command says why and fails.
    let out = reconcile(&api, None).await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
