//! Group-committed webhook attempts against a real Postgres (one database per test).

use std::time::Duration;

use chrono::Utc;
use foodseg_engine::domain::{EndpointAction, EndpointLimits, EndpointState, Health, HealthPolicy};
use foodseg_engine::store::{AttemptRecord, ClaimOutcome, ClaimedDelivery, Recorded};
use foodseg_engine::{AttemptOutcome, GroupConfig, Recorder, Store, Subjects};
use foodseg_testkit::new_job;
use sqlx::PgPool;

const LEASE: Duration = Duration::from_secs(60);

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("trecord"))
}

fn config() -> GroupConfig {
    GroupConfig {
        writers: 2,
        max_batch: 4,
        queue: 8,
    }
}

/// A succeeded job for each webhook URL, and their deliveries claimed.
async fn claimed_deliveries(store: &Store, webhooks: &[String]) -> Vec<ClaimedDelivery> {
    for url in webhooks {
        let mut job = new_job("https://img.example.org/dish.jpg");
        job.webhook_url = Some(url.clone());
        store.enqueue(&job, "api").await.unwrap();
        let ClaimOutcome::Claimed { fence, .. } = store.claim(job.id, "w", LEASE).await.unwrap()
        else {
            panic!("job {} not claimed", job.id);
        };
        store
            .succeed(&fence, &serde_json::json!([]), "test-version")
            .await
            .unwrap();
    }
    store
        .claim_due_deliveries(100, LEASE, &EndpointLimits::default())
        .await
        .unwrap()
}

fn answered(code: u16, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        started_at: Utc::now(),
        latency: Duration::from_millis(7),
        status_code: Some(code),
        error: (outcome != AttemptOutcome::Delivered).then(|| format!("answered {code}")),
        outcome,
        next_attempt_at: None,
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn attempts_answered_together_are_each_recorded_once(pool: PgPool) {
    let store = store(pool);
    let hooks: Vec<String> = (0..12)
        .map(|i| format!("https://hook{i}.example.org/mfr"))
        .collect();
    let mut claims = claimed_deliveries(&store, &hooks).await;
    assert_eq!(claims.len(), 12);
    claims.sort_by_key(|c| c.delivery.endpoint.clone());
    // The fourth claim's lock went to another scheduler.
    let mut stale = claims[3].clone();
    stale.locked_until -= chrono::Duration::seconds(1);
    let recorder = Recorder::start(store.clone(), config());
    let policy = HealthPolicy::default();
    let records: Vec<(AttemptRecord, Health)> = (0..claims.len())
        .map(|i| match i {
            5 => (answered(410, AttemptOutcome::Gone), Health::Up),
            7 => (
                AttemptRecord {
                    status_code: None,
                    ..answered(0, AttemptOutcome::Failed)
                },
                Health::Unknown,
            ),
            _ => (answered(200, AttemptOutcome::Delivered), Health::Up),
        })
        .collect();
    let outcomes = futures::future::join_all(claims.iter().zip(&records).enumerate().map(
        |(i, (claim, (record, health)))| {
            let claim = if i == 3 { &stale } else { claim };
            recorder.record(claim, record, health, &policy, "sched-a")
        },
    ))
    .await;
    for (i, (claim, outcome)) in claims.iter().zip(outcomes).enumerate() {
        let outcome = outcome.unwrap();
        let view = store
            .deliveries(claim.delivery.job_id)
            .await
            .unwrap()
            .remove(0);
        if i == 3 {
            assert_eq!(outcome, None, "a stale claim writes nothing");
            assert_eq!((view.status.as_str(), view.attempts), ("pending", 0));
            assert!(view.attempt_log.is_empty());
            continue;
        }
        assert_eq!(outcome, Some(Recorded::default()), "delivery {i}");
        let status = match i {
            5 | 7 => "failed",
            _ => "delivered",
        };
        assert_eq!(
            (view.status.as_str(), view.attempts),
            (status, 1),
            "delivery {i}"
        );
        assert_eq!(view.attempt_log.len(), 1);
        let logged = &view.attempt_log[0];
        assert_eq!(logged.outcome, records[i].0.outcome);
        assert_eq!(logged.status_code, records[i].0.status_code.map(i32::from));
        assert_eq!(logged.error, records[i].0.error);
        assert!(view.finished_at.is_some());
    }
    // The same attempt again is refused, alone or together.
    let again = futures::future::join_all(
        claims[..3]
            .iter()
            .map(|c| recorder.record(c, &records[0].0, &Health::Up, &policy, "sched-a")),
    )
    .await;
    for outcome in again {
        assert_eq!(outcome.unwrap(), None);
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_answered_probe_resumes_its_endpoint_and_clears_its_failures(pool: PgPool) {
    let store = store(pool);
    let url = "https://paused.example.org/mfr".to_string();
    let claims = claimed_deliveries(&store, std::slice::from_ref(&url)).await;
    let recorder = Recorder::start(store.clone(), config());
    let policy = HealthPolicy {
        failures_to_pause: 1,
        probe_interval: Duration::ZERO,
        probe_max_interval: Duration::from_secs(1),
    };
    let down = AttemptRecord {
        next_attempt_at: Some(Utc::now()),
        ..answered(503, AttemptOutcome::Retry)
    };
    let paused = recorder
        .record(
            &claims[0],
            &down,
            &Health::Down { retry_after: None },
            &policy,
            "sched-a",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        paused.endpoint.map(|c| c.action),
        Some(EndpointAction::Paused)
    );
    let endpoint = claims[0].delivery.endpoint.clone();
    let view = store.endpoint(&endpoint).await.unwrap().unwrap();
    assert_eq!((view.state, view.failures), (EndpointState::Paused, 1));

    let probe = store
        .claim_due_deliveries(10, LEASE, &EndpointLimits::default())
        .await
        .unwrap();
    assert_eq!(probe.len(), 1);
    assert!(probe[0].probe, "a paused endpoint is sent its probe");
    let resumed = recorder
        .record(
            &probe[0],
            &answered(200, AttemptOutcome::Delivered),
            &Health::Up,
            &policy,
            "sched-a",
        )
        .await
        .unwrap()
        .unwrap();
    let change = resumed.endpoint.expect("the probe's answer resumes it");
    assert_eq!(
        (
            change.endpoint.as_str(),
            change.action,
            change.reason.as_str()
        ),
        (
            endpoint.as_str(),
            EndpointAction::Resumed,
            "a probe answered"
        )
    );
    let view = store.endpoint(&endpoint).await.unwrap().unwrap();
    assert_eq!((view.state, view.failures), (EndpointState::Active, 0));
    let delivered = store
        .deliveries(claims[0].delivery.job_id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (delivered.status.as_str(), delivered.attempts),
        ("delivered", 2)
    );
}
