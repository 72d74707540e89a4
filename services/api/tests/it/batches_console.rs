//! The console's Batches page: who may see it, a batch's progress and priority, the queue
//! per priority on the overview, and the CSRF-checked form that cancels what is left of
//! a batch.

use std::time::Duration;

use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::store::{BatchWrite, CANCELLED_WITH_BATCH, ClaimOutcome, NewBatch};
use foodseg_engine::{BatchId, JobId, JobStatus, Priority, Scope};
use foodseg_testkit::new_job;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use sqlx::PgPool;

use crate::common::setup;
use crate::console::{csrf_of, page, post_form, session};

/// A bulk batch of `n` jobs sent by the key `owner`; its id and its jobs' ids.
async fn bulk_batch(
    api: &LocalApi,
    owner: &str,
    n: usize,
) -> anyhow::Result<(BatchId, Vec<JobId>)> {
    let owner = api.store.live_api_key_id(owner).await?;
    let id = BatchId::new();
    let items = (0..n)
        .map(|i| {
            let mut job = new_job(&format!("https://img.example.org/meals/{i}.jpg"));
            job.owner = owner;
            job.priority = Priority::Bulk;
            job.batch_id = Some(id);
            (job, None)
        })
        .collect();
    let batch = NewBatch {
        id,
        owner,
        priority: Priority::Bulk,
        items,
    };
    match api.store.enqueue_batch(&batch, "test").await? {
        BatchWrite::Written { batch_id, items } => {
            Ok((batch_id, items.into_iter().map(|i| i.job.id).collect()))
        }
        other => anyhow::bail!("batch not written: {other:?}"),
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_batches_page_needs_an_operator_session(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let client = foodseg_http::client_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = client.get(api.url("/console/batches")).send().await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/login");
    let cancel = api.url(&format!("/console/batches/{}/cancel", BatchId::new()));
    let res = post_form(&cancel, None, &[("csrf", "whatever")]).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_is_listed_with_its_progress_and_cancelled_in_the_console(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    api_key(&api.store, "backfill", &[Scope::Submit]).await?;
    let cookie = session(&api, &operator).await?;

    let (status, html) = page(&api, &cookie, "/console/batches").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No batch yet"), "{html}");

    let (batch, jobs) = bulk_batch(&api, "backfill", 3).await?;
    // One job is running: a cancel leaves it to finish.
    let ClaimOutcome::Claimed { .. } = api
        .store
        .claim(jobs[0], "w", Duration::from_secs(60))
        .await?
    else {
        anyhow::bail!("job {} not claimed", jobs[0]);
    };

    let (_, overview) = page(&api, &cookie, "/console").await?;
    assert!(
        overview.contains("href=\"/console/batches\""),
        "linked from the nav"
    );
    let bulk = overview
        .split("id=\"queue-bulk\"")
        .nth(1)
        .expect("the bulk lane on the overview");
    assert!(
        bulk.contains("class=\"big\">2<"),
        "two bulk jobs wait: {bulk}"
    );
    assert!(overview.contains("id=\"queue-interactive\""), "{overview}");

    let (_, html) = page(&api, &cookie, "/console/batches").await?;
    let row = html
        .split(&format!("data-batch=\"{batch}\""))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("the batch is listed");
    for shown in [
        ">backfill<",
        ">bulk<",
        "<progress value=\"0\" max=\"3\">",
        "1 running",
        "2 queued",
        "0 succeeded",
        "in progress",
        "class=\"cancel danger\"",
    ] {
        assert!(row.contains(shown), "{shown} in {row}");
    }

    // The job page names its priority and links its batch.
    let (_, job_page) = page(&api, &cookie, &format!("/console/jobs/{}", jobs[1])).await?;
    assert!(job_page.contains("id=\"job-priority\">bulk<"), "{job_page}");
    let link = format!("/console/batches?batch={batch}");
    assert!(job_page.contains(&link), "{job_page}");
    let (status, only) = page(&api, &cookie, &link).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(only.contains(&format!("data-batch=\"{batch}\"")), "{only}");
    for missing in [
        format!("/console/batches?batch={}", BatchId::new()),
        "/console/batches?batch=not-a-batch".into(),
    ] {
        assert_eq!(
            page(&api, &cookie, &missing).await?.0,
            StatusCode::NOT_FOUND
        );
    }

    // The form needs the session's CSRF token.
    let cancel = api.url(&format!("/console/batches/{batch}/cancel"));
    for fields in [&[("csrf", "forged")][..], &[][..]] {
        let res = post_form(&cancel, Some(&cookie), fields).await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{fields:?}");
    }
    assert_eq!(
        api.store.get(jobs[1]).await?.unwrap().status,
        JobStatus::Queued
    );
    let csrf = csrf_of(&html);
    let res = post_form(&cancel, Some(&cookie), &[("csrf", &csrf)]).await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/batches?done=cancelled");

    // The queued jobs ended failed, recorded with the operator; the running one runs on.
    for id in &jobs[1..] {
        let job = api.store.get(*id).await?.unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.message, CANCELLED_WITH_BATCH);
        let events = api.store.events(*id).await?;
        assert_eq!(events.last().unwrap().actor, "console:ops");
    }
    assert_eq!(
        api.store.get(jobs[0]).await?.unwrap().status,
        JobStatus::Running
    );
    let progress = api.store.batch(batch, None).await?.unwrap();
    assert_eq!(progress.cancelled_by.as_deref(), Some("console:ops"));
    assert_eq!((progress.failed, progress.running), (2, 1));

    let (_, html) = page(&api, &cookie, "/console/batches?done=cancelled").await?;
    assert!(
        html.contains("id=\"notice\"") && html.contains("Batch cancelled"),
        "{html}"
    );
    let row = html
        .split(&format!("data-batch=\"{batch}\""))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_default();
    assert!(
        row.contains(">cancelled<") && row.contains("by console:ops"),
        "{row}"
    );
    assert!(row.contains("<progress value=\"2\" max=\"3\">"), "{row}");
    assert!(
        !row.contains("class=\"cancel danger\""),
        "nothing left to cancel"
    );

    // Again: nothing changes, and the page says so; an unknown batch is a 404.
    let res = post_form(&cancel, Some(&cookie), &[("csrf", &csrf)]).await?;
    assert_eq!(res.headers()[LOCATION], "/console/batches?done=unchanged");
    let unknown = api.url(&format!("/console/batches/{}/cancel", BatchId::new()));
    let res = post_form(&unknown, Some(&cookie), &[("csrf", &csrf)]).await?;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
