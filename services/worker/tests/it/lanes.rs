//! The two lanes of a model on the real worker: with jobs waiting in both, a worker takes
//! interactive jobs first and one claim in `FOODSEG_BULK_SHARE` from the bulk lane.

use std::time::Duration;

use crate::common::Env;
use crate::common::server::ImageServer;
use foodseg_engine::{JobStatus, Priority};
use foodseg_testkit::wait_until;
use sqlx::PgPool;

const FINISH: Duration = Duration::from_secs(180);

#[sqlx::test(migrations = "../../migrations")]
async fn a_worker_takes_interactive_jobs_first_and_bulk_ones_in_their_share(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let url = server.url("/img/fruits.jpg");
    let mut bulk = Vec::new();
    for _ in 0..6 {
        bulk.push(env.enqueue_in(&url, 3, Priority::Bulk).await?);
    }
    let mut interactive = Vec::new();
    for _ in 0..6 {
        interactive.push(env.enqueue_in(&url, 3, Priority::Interactive).await?);
    }
    // Every message is on the stream, in both lanes, before the worker starts.
    let stream = env.bus.jobs_stream().await?;
    let bulk_subject = env
        .subjects
        .dispatch(Priority::Bulk, crate::common::MODEL_NAME);
    wait_until(Duration::from_secs(20), || async {
        let waiting = stream.bulk_waiting(&env.subjects).await.ok()?;
        let pending = env.store.outbox_pending().await.ok()?;
        (waiting.get(&bulk_subject) == Some(&6) && pending == 0).then_some(())
    })
    .await?;

    let mut config = env.config("w-lanes", 15.0);
    config.concurrency = 1;
    config.batch.parallel_runs = 1;
    config.bulk_share = 3;
    let worker = env.start_worker(config);
    let mut claims = Vec::new();
    for job in bulk.iter().chain(&interactive) {
        let done = env.wait_finished(job.id, FINISH).await?;
        assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
        claims.push((done.started_at, done.priority));
    }
    worker.stop().await?;
    claims.sort_by_key(|(at, _)| *at);
    let lanes: String = claims
        .iter()
        .map(|(_, p)| match p {
            Priority::Interactive => 'i',
            Priority::Bulk => 'b',
        })
        .collect();
    // One claim in three is bulk while both lanes have jobs; then the rest of bulk.
    assert_eq!(lanes, "iibiibiibbbb", "claim order by lane");
    Ok(())
}
