//! Webhook endpoints under outages: a receiver down for two minutes is paused, probed
//! and then drained at its rate; two schedulers share one endpoint's rate and probes; a
//! healthy endpoint is served at full speed beside a paused one; pauses by hand; and
//! deliveries that wait too long fail.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use foodseg_engine::domain::EndpointState;
use foodseg_engine::store::EndpointSteer;
use foodseg_engine::{DeliveryStatus, JobId};
use foodseg_scheduler::webhook::schedule::RetrySchedule;
use sqlx::PgPool;

use crate::common::receiver::{Hit, Receiver};
use crate::common::{DEADLINE, Env, wait_until};

/// The most requests answered with `status` that arrived within any `window`.
fn peak(hits: &[Hit], status: u16, window: Duration) -> usize {
    let mut times: Vec<Instant> = hits
        .iter()
        .filter(|h| h.status == status)
        .map(|h| h.at)
        .collect();
    times.sort();
    let mut most = 0;
    let mut first = 0;
    for last in 0..times.len() {
        while times[last] - times[first] >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// `webhook-id`s answered 200, with how many times each was.
fn delivered(receiver: &Receiver) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for hit in receiver.hits().into_iter().filter(|h| h.status == 200) {
        *ids.entry(hit.webhook_id.unwrap_or_default()).or_default() += 1;
    }
    ids
}

/// Waits until every job's webhook was answered 200, then checks each was sent with one
/// `webhook-id` (its first) and answered 200 once.
async fn all_delivered_once(
    receiver: &Receiver,
    jobs: &[JobId],
    deadline: Duration,
) -> anyhow::Result<()> {
    let expected: HashSet<String> = jobs
        .iter()
        .map(|id| format!("msg_{}", id.simple()))
        .collect();
    wait_until(deadline, || async {
        let ids = delivered(receiver);
        expected.iter().all(|id| ids.contains_key(id))
    })
    .await
    .with_context(|| format!("all {} webhooks delivered", jobs.len()))?;
    let ids = delivered(receiver);
    for id in &expected {
        anyhow::ensure!(ids[id] == 1, "{id} answered 200 {} times", ids[id]);
    }
    for hit in receiver.hits() {
        let id = hit.webhook_id.unwrap_or_default();
        anyhow::ensure!(expected.contains(&id), "unexpected webhook-id {id}");
    }
    Ok(())
}

async fn finish_jobs(env: &Env, url: &str, n: usize) -> anyhow::Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(env.succeeded_job(url).await?.id);
    }
    Ok(ids)
}

async fn state_of(env: &Env, receiver: &Receiver) -> anyhow::Result<Option<EndpointState>> {
    let endpoint = format!("http://{}", receiver.addr);
    Ok(env
        .store
        .endpoints(100)
        .await?
        .into_iter()
        .find(|e| e.endpoint == endpoint)
        .map(|e| e.state))
}

async fn paused(env: &Env, receiver: &Receiver) -> anyhow::Result<()> {
    wait_until(DEADLINE, || async {
        anyhow::Ok(state_of(env, receiver).await? == Some(EndpointState::Paused))
    })
    .await
    .context("the endpoint to be paused")?;
    Ok(())
}

/// The scenario: MFR answers 503 for two minutes while 300 jobs finish.
#[sqlx::test(migrations = "../../migrations")]
async fn an_endpoint_down_for_two_minutes_gets_few_requests_then_drains_at_its_rate(
    pool: PgPool,
) -> anyhow::Result<()> {
    const DOWN_FOR: Duration = Duration::from_secs(120);
    const JOBS: usize = 300;
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    receiver.set_down(Some(503));
    let mut config = env.config_with(&[
        ("FOODSEG_WEBHOOK_ENDPOINT_RATE", "20/1s"),
        ("FOODSEG_WEBHOOK_PROBE_INTERVAL", "30s"),
        ("FOODSEG_WEBHOOK_PROBE_MAX_INTERVAL", "30s"),
    ]);
    config.retry_schedule = RetrySchedule::default();
    let scheduler = env.start(config).await?;
    let down_since = Instant::now();

    // The jobs finish in batches over the first 100 s of the outage.
    let url = receiver.url("ok");
    let mut jobs = Vec::new();
    let mut batches = tokio::time::interval(Duration::from_millis(3_333));
    for _ in 0..30 {
        batches.tick().await;
        jobs.extend(finish_jobs(&env, &url, JOBS / 30).await?);
    }
    tokio::time::sleep_until((down_since + DOWN_FOR).into()).await;
    let while_down = receiver.hits().len();
    receiver.set_down(None);
    let up_at = Instant::now();
    all_delivered_once(&receiver, &jobs, Duration::from_secs(60))
        .await
        .context("the backlog drained within 60 s of the receiver answering again")?;
    let drained_in = up_at.elapsed();

    let hits = receiver.hits();
    let peak = peak(&hits, 200, Duration::from_secs(1));
    println!(
        "{JOBS} jobs, receiver down {DOWN_FOR:?}: {while_down} requests while down; \
         drained {} s after it answered again; at most {peak} deliveries in any 1 s; \
         {} requests in all",
        drained_in.as_secs_f64(),
        hits.len()
    );
    assert!(
        while_down <= 20,
        "{while_down} requests reached the receiver while it was down"
    );
    assert!(peak <= 25, "{peak} deliveries within one second at 20/1s");
    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn two_schedulers_share_one_endpoints_rate_and_probe_it_once_per_interval(
    pool: PgPool,
) -> anyhow::Result<()> {
    const PROBE: Duration = Duration::from_secs(3);
    let env = Env::new(pool).await?;
    let receiver = Receiver::start(None).await;
    receiver.set_down(Some(503));
    let vars = [
        ("FOODSEG_WEBHOOK_ENDPOINT_RATE", "20/1s"),
        ("FOODSEG_WEBHOOK_PROBE_INTERVAL", "3s"),
        ("FOODSEG_WEBHOOK_PROBE_MAX_INTERVAL", "3s"),
    ];
    let mut schedulers = Vec::new();
    for _ in 0..2 {
        let mut config = env.config_with(&vars);
        config.retry_schedule = RetrySchedule::default();
        schedulers.push(env.start(config).await?);
    }
    let jobs = finish_jobs(&env, &receiver.url("ok"), 200).await?;
    paused(&env, &receiver).await?;
    // Once the attempts in flight at the pause are answered, only probes arrive.
    let before_probes = wait_until(DEADLINE, || async {
        let in_flight: i64 = env
            .store
            .endpoints(10)
            .await?
            .iter()
            .map(|e| e.in_flight)
            .sum();
        anyhow::Ok((in_flight == 0).then(|| receiver.hits().len()))
    })
    .await?;
    wait_until(DEADLINE, || async {
        receiver.hits().len() >= before_probes + 3
    })
    .await
    .context("three probes")?;
    let probes: Vec<Instant> = receiver.hits()[before_probes..]
        .iter()
        .map(|h| h.at)
        .collect();
    for pair in probes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= PROBE.mul_f64(0.9),
            "two probes {gap:?} apart with a {PROBE:?} probe interval: {probes:?}"
        );
    }

    receiver.set_down(None);
    all_delivered_once(&receiver, &jobs, DEADLINE).await?;
    let peak = peak(&receiver.hits(), 200, Duration::from_secs(1));
    assert!(peak <= 25, "{peak} deliveries within one second at 20/1s");
    for scheduler in schedulers {
        scheduler.stop().await?;
    }
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_endpoint_that_is_up_is_served_at_full_speed_beside_a_paused_one(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let (down, up) = (Receiver::start(None).await, Receiver::start(None).await);
    down.set_down(Some(502));
    let mut config = env.config();
    config.retry_schedule = RetrySchedule::default();
    let scheduler = env.start(config).await?;
    let stuck = finish_jobs(&env, &down.url("ok"), 100).await?;
    paused(&env, &down).await?;

    let started = Instant::now();
    let served = finish_jobs(&env, &up.url("ok"), 100).await?;
    all_delivered_once(&up, &served, DEADLINE).await?;
    let took = started.elapsed();
    for id in &served {
        let d = env.store.deliveries(*id).await?.remove(0);
        assert_eq!(d.attempts, 1, "{d:?}");
    }
    assert_eq!(state_of(&env, &down).await?, Some(EndpointState::Paused));
    let sent_down = down.hits().len();
    assert!(
        sent_down <= 5 + 8,
        "{sent_down} requests to the paused endpoint: its failures and the attempts in flight at the pause"
    );
    let pending = stuck.len();
    println!(
        "100 deliveries to a healthy endpoint in {took:?} while {pending} wait for a paused one"
    );
    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_endpoint_paused_by_hand_waits_for_a_hand_to_resume_it(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let (held, other) = (Receiver::start(None).await, Receiver::start(None).await);
    let scheduler = env.start(env.config()).await?;
    // The endpoint exists once a delivery was made for it.
    let first = finish_jobs(&env, &held.url("ok"), 1).await?;
    all_delivered_once(&held, &first, DEADLINE).await?;

    let url = held.url("ok?token=not-part-of-the-endpoint");
    let name = format!("http://{}", held.addr);
    assert_eq!(
        env.store.pause_endpoint(&url, "key:ops").await?,
        EndpointSteer::Changed(name.clone())
    );
    assert_eq!(
        env.store.pause_endpoint(&url, "key:ops").await?,
        EndpointSteer::Unchanged(name.clone())
    );
    assert_eq!(
        env.store
            .pause_endpoint("http://127.0.0.1:1/x", "key:ops")
            .await?,
        EndpointSteer::NotFound
    );
    let waiting = finish_jobs(&env, &held.url("ok"), 3).await?;
    // Another endpoint's delivery shows the scheduler claimed past the paused one.
    let shown = finish_jobs(&env, &other.url("ok"), 1).await?;
    all_delivered_once(&other, &shown, DEADLINE).await?;
    assert_eq!(
        held.hits().len(),
        1,
        "nothing sent to an endpoint paused by hand"
    );
    // The first delivery's outcome is recorded just after its request arrived: until
    // then it counts as waiting too.
    wait_until(DEADLINE, || async {
        let endpoint = env.store.endpoint(&name).await?;
        anyhow::Ok(endpoint.is_some_and(|e| e.waiting == 3))
    })
    .await
    .context("the three deliveries waiting for the paused endpoint")?;
    let endpoint = env
        .store
        .endpoint(&name)
        .await?
        .context("the paused endpoint")?;
    assert!(endpoint.manual && endpoint.waiting == 3, "{endpoint:?}");
    assert_eq!(endpoint.paused_by.as_deref(), Some("key:ops"));

    assert_eq!(
        env.store
            .resume_endpoint_by_hand(&held.url("ok"), "key:ops")
            .await?,
        EndpointSteer::Changed(name)
    );
    let mut all = first.clone();
    all.extend(&waiting);
    all_delivered_once(&held, &all, DEADLINE).await?;
    let events = env.store.endpoint_events(10).await?;
    let actions: Vec<_> = events
        .iter()
        .filter(|e| e.endpoint == endpoint.endpoint)
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(actions, [("resumed", "key:ops"), ("paused", "key:ops")]);
    scheduler.stop().await?;
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_delivery_pending_past_the_maximum_age_fails_and_shows_as_undelivered(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool.clone()).await?;
    let receiver = Receiver::start(None).await;
    receiver.set_down(Some(503));
    let mut config = env.config_with(&[("FOODSEG_WEBHOOK_MAX_AGE", "1h")]);
    config.retry_schedule = RetrySchedule::default();
    let job = env.succeeded_job(&receiver.url("ok")).await?;
    sqlx::query("UPDATE deliveries SET created_at = now() - interval '2 hours' WHERE job_id = $1")
        .bind(job.id.as_uuid())
        .execute(&pool)
        .await?;
    let scheduler = env.start(config).await?;
    let d = env.settled_delivery(job.id).await?;
    assert_eq!(d.status, DeliveryStatus::Failed, "{d:?}");
    let error = d.last_error.clone().unwrap_or_default();
    assert!(error.contains("not delivered within 1h"), "{error}");
    let undelivered = env
        .store
        .undelivered(chrono::Utc::now() - chrono::Duration::days(1), None, 10)
        .await?;
    assert!(
        undelivered.iter().any(|u| u.job_id == job.id),
        "{undelivered:?}"
    );
    scheduler.stop().await?;
    env.cleanup().await
}

/// The endpoint Postgres derives from a stored webhook URL is the one the `url` crate
/// reads from it: scheme, host and port (the scheme's default written out).
#[sqlx::test(migrations = "../../migrations")]
async fn endpoints_are_scheme_host_and_port_as_the_url_crate_reads_them(
    pool: PgPool,
) -> anyhow::Result<()> {
    let urls = [
        "http://127.0.0.1:8080/hook",
        "https://mfr.example/api/v1/segmentation?token=abc#top",
        "HTTPS://User:p%40ss@MFR.Example:8443/a",
        "http://user@host.example/",
        "http://[::1]:9000/x",
        "https://[2001:db8::1]/x",
        "http://host.example:80/x",
        "https://host.example:443",
        "http://host.example?x=1",
        "https://h.example#frag",
    ];
    for raw in urls {
        let url = url::Url::parse(raw)?;
        let expected = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().context("host")?,
            url.port_or_known_default().context("port")?
        );
        let derived: String = sqlx::query_scalar("SELECT webhook_endpoint($1)")
            .bind(raw)
            .fetch_one(&pool)
            .await?;
        assert_eq!(derived, expected, "{raw}");
    }
    Ok(())
}
