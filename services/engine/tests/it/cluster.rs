//! Dispatch on a 3-node JetStream cluster with replicated streams (FOODSEG_NATS_REPLICAS=3):
//! a node killed in the middle of a load loses no dispatch message.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use foodseg_engine::message::JobMessage;
use foodseg_engine::{Bus, JobId, Relay, RelayConfig, Store};
use foodseg_testkit::{NatsCluster, unique_subjects, wait_until};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::relay::new_job;

const JOBS: usize = 300;
const KILL_AFTER: usize = 100;

#[sqlx::test(migrations = "../../migrations")]
async fn r3_streams_lose_no_dispatch_message_when_a_node_is_killed(
    pool: PgPool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3, Duration::from_secs(30)).await?;
    let subjects = unique_subjects();
    let bus = Bus::connect(&cluster.url(), subjects.clone())
        .await?
        .with_replicas(3);
    wait_until(Duration::from_secs(10), || async { bus.is_connected() }).await?;
    bus.ensure_streams().await?;
    for name in [&subjects.jobs_stream, &subjects.events_stream] {
        let info = bus
            .jetstream()
            .get_stream(name)
            .await?
            .info()
            .await?
            .clone();
        assert_eq!(info.config.num_replicas, 3, "{name}");
        let peers = info.cluster.context("cluster info")?;
        assert_eq!(peers.replicas.len(), 2, "{name}: a leader and two replicas");
    }

    // A consumer that records every dispatch message it is given.
    let consumer = bus
        .job_consumer(
            "m1",
            foodseg_engine::Priority::Interactive,
            Duration::from_secs(2),
            1000,
        )
        .await?;
    let seen = Arc::new(Mutex::new(HashSet::<JobId>::new()));
    let shutdown = CancellationToken::new();
    let consume = {
        let (seen, shutdown) = (seen.clone(), shutdown.clone());
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                // The pull stream ends or fails while the cluster moves a leader: pull again.
                let Ok(mut messages) = consumer.messages().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return anyhow::Ok(()),
                        m = messages.next() => m,
                    };
                    match next {
                        Some(Ok(msg)) => {
                            let body: JobMessage = serde_json::from_slice(&msg.payload)?;
                            seen.lock().expect("seen").insert(body.job_id);
                            let _ = msg.ack().await;
                        }
                        Some(Err(_)) => continue,
                        None => break,
                    }
                }
            }
            anyhow::Ok(())
        })
    };

    let store = Store::from_pool(pool, subjects.clone());
    let relay = Relay::new(store.clone(), bus.clone(), RelayConfig::default());
    let waker = relay.waker();
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));

    let mut enqueued = HashSet::new();
    for i in 0..JOBS {
        if i == KILL_AFTER {
            // The jobs stream's leader: the node whose loss forces an election.
            let leader = bus
                .jetstream()
                .get_stream(&subjects.jobs_stream)
                .await?
                .info()
                .await?
                .cluster
                .clone()
                .and_then(|c| c.leader)
                .context("the jobs stream has a leader")?;
            assert!(cluster.names().contains(&leader), "{leader}");
            cluster.kill(&leader).await?;
        }
        enqueued.insert(store.enqueue(&new_job(), "test").await?.id);
        waker.wake();
    }

    wait_until(Duration::from_secs(60), || async {
        store.outbox_pending().await.ok() == Some(0)
    })
    .await
    .context("every outbox row published")?;
    let delivered = wait_until(Duration::from_secs(60), || async {
        let seen = seen.lock().expect("seen");
        enqueued.is_subset(&seen).then(|| seen.clone())
    })
    .await;
    let seen_now = seen.lock().expect("seen").clone();
    let missing = enqueued.difference(&seen_now).count();
    assert!(
        delivered.is_ok(),
        "{missing} of {JOBS} dispatch messages never reached the consumer"
    );
    assert_eq!(seen_now, enqueued, "only this test's jobs were dispatched");

    shutdown.cancel();
    relay_task.await?;
    consume.await??;
    eprintln!(
        "{JOBS} jobs dispatched through a node kill in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn streams_made_with_one_replica_are_raised_to_the_configured_count() -> anyhow::Result<()> {
    let cluster = NatsCluster::start(3, Duration::from_secs(30)).await?;
    let subjects = unique_subjects();
    let r1 = Bus::connect(&cluster.url(), subjects.clone()).await?;
    wait_until(Duration::from_secs(10), || async { r1.is_connected() }).await?;
    r1.ensure_streams().await?;
    let r3 = Bus::connect(&cluster.url(), subjects.clone())
        .await?
        .with_replicas(3);
    wait_until(Duration::from_secs(10), || async { r3.is_connected() }).await?;
    r3.ensure_streams().await?;
    for name in [&subjects.jobs_stream, &subjects.events_stream] {
        let info = r3.jetstream().get_stream(name).await?.info().await?.clone();
        assert_eq!(info.config.num_replicas, 3, "{name}");
        assert_eq!(
            info.config.subjects.len(),
            1,
            "{name}: the rest is unchanged"
        );
    }
    // Lowering the setting lowers the count again.
    r1.ensure_streams().await?;
    let info = r1
        .jetstream()
        .get_stream(&subjects.jobs_stream)
        .await?
        .info()
        .await?
        .clone();
    assert_eq!(info.config.num_replicas, 1);
    Ok(())
}
