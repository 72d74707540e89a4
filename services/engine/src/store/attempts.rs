//! Webhook attempts: claiming due deliveries within their endpoints' limits, and
//! recording each attempt with the delivery's next state and what it says about the
//! endpoint.
//!
//! A claim locks the due endpoints' rows (other schedulers skip them until it commits),
//! asks [`crate::domain::take`] how many deliveries each may send, locks that many of
//! each endpoint's oldest due deliveries by setting `locked_until` (the claimed value is
//! the claim's fencing token), and moves each endpoint's next free send time on. Every
//! delivery taken gets a send time one rate interval after the one before, so schedulers
//! together never send an endpoint more than its rate. A paused endpoint gives at most
//! one delivery, its probe.
//!
//! Recording an attempt only succeeds while the delivery is still pending, still at the
//! expected attempt number and still locked with that token, so two schedulers can never
//! both record (or both send) the same attempt. An answer that shows the endpoint up
//! clears its failures in the same statement and resumes it if it was paused; a failure
//! is counted under the endpoint's row lock, and may pause it.
//!
//! The literal `'pending'` in the `WHERE` clauses makes the planner use the partial
//! indexes on pending deliveries.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::deliveries::{AttemptRecord, AttemptRow, ClaimedDelivery, DeliveryRow};
use super::{Store, StoreError};
use crate::domain::{
    AttemptOutcome, DeliveryId, DeliveryStatus, DueEndpoint, EndpointAction, EndpointHealth,
    EndpointLimits, EndpointState, Health, HealthPolicy, JobId, Take, after_failure, take,
};

/// What recording an attempt changed about its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointChange {
    pub endpoint: String,
    pub action: EndpointAction,
    pub reason: String,
}

/// The record of one attempt: `None` from [`Store::record_attempt`] when the claim was no
/// longer current and nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    /// The endpoint was paused or resumed by this attempt.
    pub endpoint: Option<EndpointChange>,
}

struct DueRow {
    endpoint: String,
    state: EndpointState,
    manual: bool,
    next_send_at: DateTime<Utc>,
    next_probe_at: Option<DateTime<Utc>>,
    probe_until: Option<DateTime<Utc>>,
    in_flight: i64,
    now: DateTime<Utc>,
}

impl Store {
    /// Locks up to `limit` due deliveries for `lease`, as many of each endpoint's as its
    /// limits allow, and reads their jobs. Competing schedulers skip each other's
    /// endpoints and rows.
    pub async fn claim_due_deliveries(
        &self,
        limit: u32,
        lease: Duration,
        limits: &EndpointLimits,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let due = sqlx::query_as!(
            DueRow,
            r#"-- periodic: due endpoints
               SELECT e.endpoint, e.state AS "state: EndpointState", e.manual, e.next_send_at,
                      e.next_probe_at, e.probe_until,
                      (SELECT count(*) FROM deliveries d
                       WHERE d.endpoint = e.endpoint AND d.status = 'pending'
                         AND d.locked_until > now()) AS "in_flight!",
                      now() AS "now!"
               FROM webhook_endpoints e
               WHERE EXISTS (SELECT 1 FROM deliveries d
                             WHERE d.endpoint = e.endpoint AND d.status = 'pending'
                               AND d.next_attempt_at <= now()
                               AND (d.locked_until IS NULL OR d.locked_until <= now()))
               ORDER BY e.next_send_at
               FOR UPDATE OF e SKIP LOCKED"#
        )
        .fetch_all(&mut *tx)
        .await?;
        let Some(now) = due.first().map(|d| d.now) else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let mut room = limit;
        let mut takes = Vec::new();
        for row in due {
            let endpoint = DueEndpoint {
                endpoint: row.endpoint,
                state: row.state,
                manual: row.manual,
                next_send_at: row.next_send_at,
                next_probe_at: row.next_probe_at,
                probe_until: row.probe_until,
                in_flight: row.in_flight,
            };
            if let Some(t) = take(&endpoint, limits, room, now) {
                room -= t.count;
                takes.push(t);
            }
        }
        if takes.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut deliveries = lock_deliveries(&mut tx, &takes, lease).await?;
        deliveries.sort_by_key(|d| (d.next_attempt_at, d.created_at));
        let mut sent: HashMap<&str, u32> = HashMap::new();
        let mut claimed = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            let Some(t) = takes.iter().find(|t| t.endpoint == delivery.endpoint) else {
                continue;
            };
            let i = sent.entry(t.endpoint.as_str()).or_default();
            let send_after = (t.send_at(*i, limits) - now).to_std().unwrap_or_default();
            *i += 1;
            claimed.push((delivery.clone(), send_after, t.probe));
        }
        let (mut names, mut next, mut probes) = (Vec::new(), Vec::new(), Vec::new());
        for t in &takes {
            if let Some(&n) = sent.get(t.endpoint.as_str()) {
                names.push(t.endpoint.clone());
                next.push(t.send_at(n, limits));
                probes.push(t.probe);
            }
        }
        sqlx::query!(
            r#"UPDATE webhook_endpoints e
               SET next_send_at = u.next_send_at,
                   probe_until = CASE WHEN u.probe THEN now() + make_interval(secs => $4)
                                      ELSE e.probe_until END,
                   limits = $5, updated_at = now()
               FROM unnest($1::text[], $2::timestamptz[], $3::bool[]) AS u(endpoint, next_send_at, probe)
               WHERE e.endpoint = u.endpoint"#,
            &names,
            &next,
            &probes,
            lease.as_secs_f64(),
            limits.describe(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        let job_ids: Vec<Uuid> = claimed.iter().map(|(d, ..)| d.job_id.as_uuid()).collect();
        let jobs = query_job!(r#"SELECT "#, r#" FROM jobs WHERE id = ANY($1)"#, &job_ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(claimed
            .into_iter()
            .filter_map(|(delivery, send_after, probe)| {
                let job = jobs.iter().find(|j| j.id == delivery.job_id)?.clone();
                let locked_until = delivery.locked_until?;
                Some(ClaimedDelivery {
                    delivery,
                    locked_until,
                    job,
                    send_after,
                    probe,
                })
            })
            .collect())
    }

    /// Records attempt `claim.attempt()`, moves the delivery to its next state, and
    /// applies what the answer (`health`) says about the endpoint: up clears its
    /// failures and resumes it if it was paused (not by hand); down counts a failure and
    /// may pause it (`policy`). `actor` names the scheduler in the endpoint's events.
    /// Returns `None` (and writes nothing) when the claim is no longer current.
    pub async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        record: &AttemptRecord,
        health: &Health,
        policy: &HealthPolicy,
        actor: &str,
    ) -> Result<Option<Recorded>, StoreError> {
        let endpoint = claim.delivery.endpoint.as_str();
        let Health::Down { retry_after } = health else {
            let up = *health == Health::Up;
            let row = AttemptRow::new(claim, record, up);
            let mut conn = self.pool.acquire().await?;
            let Some(paused) = record_rows(&mut conn, std::slice::from_ref(&row))
                .await?
                .remove(0)
            else {
                return Ok(None);
            };
            return self.after_answer(&row, paused, actor).await.map(Some);
        };
        let mut tx = self.pool.begin().await?;
        let health = lock_health(&mut tx, endpoint).await?;
        let row = AttemptRow::new(claim, record, false);
        if record_rows(&mut tx, std::slice::from_ref(&row))
            .await?
            .remove(0)
            .is_none()
        {
            // Roll back now, not when the dropped transaction's connection is next used:
            // until then the endpoint's row stays locked, and claims skip the endpoint.
            tx.rollback().await?;
            return Ok(None);
        }
        let Some(health) = health else {
            tx.commit().await?;
            return Ok(Some(Recorded::default()));
        };
        let after = after_failure(&health, claim.probe, *retry_after, policy, Utc::now());
        let next = &after.health;
        sqlx::query!(
            r#"UPDATE webhook_endpoints
               SET state = $2, failures = $3, last_error = $4, last_failure_at = now(),
                   paused_at = CASE WHEN $5 THEN now() ELSE paused_at END,
                   paused_by = CASE WHEN $5 THEN $6 ELSE paused_by END,
                   probe_interval_ms = $7, next_probe_at = $8,
                   probe_until = CASE WHEN $9 THEN NULL ELSE probe_until END,
                   updated_at = now()
               WHERE endpoint = $1"#,
            endpoint,
            next.state as EndpointState,
            next.failures,
            record.error.as_deref(),
            after.paused.is_some(),
            actor,
            next.probe_interval.map(|d| d.as_millis() as i64),
            next.next_probe_at,
            claim.probe,
        )
        .execute(&mut *tx)
        .await?;
        if let Some(reason) = &after.paused {
            let detail = format!(
                "{reason}; last error: {}",
                record.error.as_deref().unwrap_or("none")
            );
            sqlx::query!(
                r#"INSERT INTO webhook_endpoint_events (endpoint, action, actor, detail)
                   VALUES ($1, $2, $3, $4)"#,
                endpoint,
                EndpointAction::Paused as EndpointAction,
                actor,
                detail,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(Recorded {
            endpoint: after.paused.map(|reason| EndpointChange {
                endpoint: endpoint.to_string(),
                action: EndpointAction::Paused,
                reason,
            }),
        }))
    }

    /// Records several attempts whose answers did not show their endpoints down, in one
    /// statement and one commit, each fenced as [`Store::record_attempt`] fences one.
    /// Each row's outcome at its position: whether its endpoint is paused (other than by
    /// hand), or `None` when its claim is no longer current and nothing was written of it.
    pub(crate) async fn record_attempts(
        &self,
        rows: &[AttemptRow],
    ) -> Result<Vec<Option<bool>>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        record_rows(&mut conn, rows).await
    }

    /// What an answered attempt changes about its endpoint once recorded: an answer that
    /// shows a paused endpoint (`paused`, not by hand) up resumes it.
    pub(crate) async fn after_answer(
        &self,
        row: &AttemptRow,
        paused: bool,
        actor: &str,
    ) -> Result<Recorded, StoreError> {
        if !(row.up && paused) {
            return Ok(Recorded::default());
        }
        let reason = format!(
            "{} answered",
            if row.probe { "a probe" } else { "an attempt" }
        );
        let endpoint = row.endpoint.as_str();
        let resumed = self
            .resume_endpoint(endpoint, actor, &reason, false)
            .await?;
        Ok(Recorded {
            endpoint: resumed.then(|| EndpointChange {
                endpoint: endpoint.to_string(),
                action: EndpointAction::Resumed,
                reason,
            }),
        })
    }
}

/// Locks up to each take's count of its endpoint's oldest due deliveries for `lease`.
async fn lock_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    takes: &[Take],
    lease: Duration,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let endpoints: Vec<String> = takes.iter().map(|t| t.endpoint.clone()).collect();
    let counts: Vec<i64> = takes.iter().map(|t| i64::from(t.count)).collect();
    let rows = query_delivery!(
        r#"WITH picked AS (
             SELECT p.id
             FROM unnest($1::text[], $2::int8[]) AS w(endpoint, n)
             CROSS JOIN LATERAL (
               SELECT d.id FROM deliveries d
               WHERE d.endpoint = w.endpoint AND d.status = 'pending'
                 AND d.next_attempt_at <= now()
                 AND (d.locked_until IS NULL OR d.locked_until <= now())
               ORDER BY d.next_attempt_at LIMIT w.n
               FOR UPDATE SKIP LOCKED) p),
           c AS (
             UPDATE deliveries d SET locked_until = now() + make_interval(secs => $3),
                    updated_at = now()
             FROM picked WHERE d.id = picked.id RETURNING d.*)
           SELECT "#,
        r#" FROM c"#,
        &endpoints,
        &counts,
        lease.as_secs_f64(),
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows)
}

/// The endpoint's health, its row locked until the transaction ends (`None` when the
/// endpoint has no row).
async fn lock_health(
    tx: &mut Transaction<'_, Postgres>,
    endpoint: &str,
) -> Result<Option<EndpointHealth>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT state AS "state: EndpointState", failures, manual, probe_interval_ms,
                  next_probe_at
           FROM webhook_endpoints WHERE endpoint = $1 FOR UPDATE"#,
        endpoint
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| EndpointHealth {
        state: r.state,
        failures: r.failures,
        manual: r.manual,
        probe_interval: r
            .probe_interval_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis),
        next_probe_at: r.next_probe_at,
    }))
}

/// The attempts of `rows` and their deliveries' next states, in one statement, each
/// fenced on its attempt number and its claim; a row whose answer showed its endpoint up
/// also clears the endpoint's failures, and a probe's frees the endpoint for the next
/// probe. Each row's outcome at its position: whether its endpoint is paused (other than
/// by hand), or `None` when its claim is no longer current.
async fn record_rows(
    conn: &mut PgConnection,
    rows: &[AttemptRow],
) -> Result<Vec<Option<bool>>, StoreError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.delivery_id.as_uuid()).collect();
    let attempts: Vec<i32> = rows.iter().map(|r| r.attempt).collect();
    let locked: Vec<DateTime<Utc>> = rows.iter().map(|r| r.locked_until).collect();
    let statuses: Vec<DeliveryStatus> = rows
        .iter()
        .map(|r| r.record.outcome.delivery_status())
        .collect();
    let next: Vec<Option<DateTime<Utc>>> = rows
        .iter()
        .map(|r| match r.record.outcome {
            AttemptOutcome::Retry => r.record.next_attempt_at,
            _ => None,
        })
        .collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|r| r.record.error.as_deref()).collect();
    let started: Vec<DateTime<Utc>> = rows.iter().map(|r| r.record.started_at).collect();
    let latencies: Vec<f64> = rows
        .iter()
        .map(|r| r.record.latency.as_secs_f64() * 1000.0)
        .collect();
    let codes: Vec<Option<i32>> = rows
        .iter()
        .map(|r| r.record.status_code.map(i32::from))
        .collect();
    let outcomes: Vec<AttemptOutcome> = rows.iter().map(|r| r.record.outcome).collect();
    let ups: Vec<bool> = rows.iter().map(|r| r.up).collect();
    let probes: Vec<bool> = rows.iter().map(|r| r.probe).collect();
    let written = sqlx::query!(
        r#"WITH r AS (
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::delivery_status[],
                                  $4::timestamptz[], $5::text[], $6::timestamptz[],
                                  $7::timestamptz[], $8::float8[], $9::int4[],
                                  $10::attempt_outcome[], $11::bool[], $12::bool[])
               AS r(id, attempt, status, next_attempt_at, error, locked_until, started_at,
                    latency_ms, status_code, outcome, up, probe)),
           u AS (
             UPDATE deliveries d SET status = r.status, attempts = r.attempt,
                    next_attempt_at = COALESCE(r.next_attempt_at, d.next_attempt_at),
                    locked_until = NULL, last_error = r.error, updated_at = now(),
                    finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE now() END
             FROM r
             WHERE d.id = r.id AND d.status = 'pending' AND d.attempts = r.attempt - 1
               AND d.locked_until = r.locked_until
             RETURNING d.id, d.endpoint, r.up, r.probe),
           a AS (
             INSERT INTO delivery_attempts
                    (delivery_id, attempt, started_at, latency_ms, status_code, error, outcome)
             SELECT r.id, r.attempt, r.started_at, r.latency_ms, r.status_code, r.error,
                    r.outcome
             FROM r JOIN u USING (id)),
           h AS (
             UPDATE webhook_endpoints e
             SET failures = CASE WHEN x.up THEN 0 ELSE e.failures END,
                 probe_until = CASE WHEN x.probe THEN NULL ELSE e.probe_until END,
                 updated_at = now()
             FROM (SELECT endpoint, bool_or(up) AS up, bool_or(probe) AS probe
                   FROM u GROUP BY endpoint) x
             WHERE e.endpoint = x.endpoint
               AND ((x.up AND e.failures > 0) OR (x.probe AND e.probe_until IS NOT NULL)))
           SELECT u.id AS "id!", EXISTS (SELECT 1 FROM webhook_endpoints e
                                  WHERE e.endpoint = u.endpoint AND e.state = 'paused'
                                    AND NOT e.manual) AS "paused!"
           FROM u"#,
        &ids,
        &attempts,
        &statuses as &[DeliveryStatus],
        &next as &[Option<DateTime<Utc>>],
        &errors as &[Option<&str>],
        &locked,
        &started,
        &latencies,
        &codes as &[Option<i32>],
        &outcomes as &[AttemptOutcome],
        &ups,
        &probes,
    )
    .fetch_all(&mut *conn)
    .await?;
    let paused: HashMap<Uuid, bool> = written.into_iter().map(|w| (w.id, w.paused)).collect();
    Ok(ids.iter().map(|id| paused.get(id).copied()).collect())
}
