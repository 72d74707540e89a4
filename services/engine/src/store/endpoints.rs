//! Webhook endpoints as operators see and steer them: the list with each endpoint's
//! state and backlog, pausing and resuming by hand, the events of each, the counts the
//! scheduler's metrics export, and failing deliveries that waited longer than allowed.
//!
//! Resuming (by a probe's answer or by hand) makes the endpoint's waiting deliveries due
//! at once, oldest first (their due time becomes their creation time), so the backlog
//! drains at the endpoint's rate rather than on each delivery's retry schedule.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};
use crate::domain::{DeliveryStatus, EndpointAction, EndpointState};

/// One endpoint for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointView {
    /// `scheme://host:port`.
    pub endpoint: String,
    pub state: EndpointState,
    /// Paused by hand: only a hand resumes it, and no probe is sent.
    pub manual: bool,
    pub paused_at: Option<DateTime<Utc>>,
    pub paused_by: Option<String>,
    /// When the next probe is due, while paused by failures.
    pub next_probe_at: Option<DateTime<Utc>>,
    /// Failed attempts since the endpoint last answered.
    pub failures: i32,
    pub last_error: Option<String>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Pending deliveries.
    pub waiting: i64,
    /// Attempts in flight now.
    pub in_flight: i64,
    /// The rate and concurrency the schedulers apply (`50/1s, 8 at once`), once one
    /// sent to it.
    pub limits: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A pause or resume of an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointEvent {
    pub endpoint: String,
    pub at: DateTime<Utc>,
    pub action: EndpointAction,
    pub actor: String,
    pub detail: Option<String>,
}

/// Endpoint health for the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointHealthCounts {
    pub paused: i64,
    /// Seconds since the longest-paused endpoint was paused (0 when none is).
    pub longest_pause_secs: i64,
    /// Pending deliveries of active endpoints.
    pub waiting_active: i64,
    /// Pending deliveries of paused endpoints.
    pub waiting_paused: i64,
}

/// What an operator's pause or resume did, naming the endpoint (`scheme://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSteer {
    Changed(String),
    /// The endpoint already was in that state.
    Unchanged(String),
    /// No delivery was ever made to that endpoint.
    NotFound,
}

impl Store {
    /// Every endpoint that is paused or has pending deliveries, then the others seen most
    /// recently, up to `limit`.
    pub async fn endpoints(&self, limit: i64) -> Result<Vec<EndpointView>, StoreError> {
        self.endpoint_views(None, limit).await
    }

    /// One endpoint (`scheme://host:port`).
    pub async fn endpoint(&self, endpoint: &str) -> Result<Option<EndpointView>, StoreError> {
        Ok(self.endpoint_views(Some(endpoint), 1).await?.pop())
    }

    async fn endpoint_views(
        &self,
        only: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EndpointView>, StoreError> {
        let rows = sqlx::query_as!(
            EndpointView,
            r#"SELECT e.endpoint, e.state AS "state: EndpointState", e.manual, e.paused_at,
                      e.paused_by, e.next_probe_at, e.failures, e.last_error,
                      e.last_failure_at, w.waiting AS "waiting!", w.in_flight AS "in_flight!",
                      e.limits, e.updated_at
               FROM webhook_endpoints e
               CROSS JOIN LATERAL (
                 SELECT count(*) AS waiting,
                        count(*) FILTER (WHERE d.locked_until > now()) AS in_flight
                 FROM deliveries d
                 WHERE d.endpoint = e.endpoint AND d.status = 'pending') w
               WHERE $2::text IS NULL OR e.endpoint = $2
               ORDER BY e.state = 'paused' DESC, w.waiting > 0 DESC, e.updated_at DESC,
                        e.endpoint
               LIMIT $1"#,
            limit,
            only,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The latest pauses and resumes, newest first.
    pub async fn endpoint_events(&self, limit: i64) -> Result<Vec<EndpointEvent>, StoreError> {
        let rows = sqlx::query_as!(
            EndpointEvent,
            r#"SELECT endpoint, at, action AS "action: EndpointAction", actor, detail
               FROM webhook_endpoint_events ORDER BY id DESC LIMIT $1"#,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Pauses the endpoint of `endpoint_or_url` by hand: nothing is sent to it, not even
    /// probes, until it is resumed by hand.
    pub async fn pause_endpoint(
        &self,
        endpoint_or_url: &str,
        actor: &str,
    ) -> Result<EndpointSteer, StoreError> {
        let row = sqlx::query!(
            r#"WITH old AS (
                 SELECT endpoint, state = 'paused' AND manual AS already
                 FROM webhook_endpoints WHERE endpoint = webhook_endpoint($1) FOR UPDATE),
               e AS (
                 UPDATE webhook_endpoints e
                 SET state = 'paused', manual = true, paused_at = coalesce(e.paused_at, now()),
                     paused_by = $2, next_probe_at = NULL, probe_interval_ms = NULL,
                     updated_at = now()
                 FROM old WHERE e.endpoint = old.endpoint AND NOT old.already
                 RETURNING e.endpoint),
               v AS (
                 INSERT INTO webhook_endpoint_events (endpoint, action, actor, detail)
                 SELECT endpoint, $3, $2, 'paused by hand' FROM e)
               SELECT old.endpoint, old.already AS "already!" FROM old"#,
            endpoint_or_url,
            actor,
            EndpointAction::Paused as EndpointAction,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => EndpointSteer::NotFound,
            Some(r) if r.already => EndpointSteer::Unchanged(r.endpoint),
            Some(r) => EndpointSteer::Changed(r.endpoint),
        })
    }

    /// Resumes the endpoint of `endpoint_or_url` by hand, whatever paused it.
    pub async fn resume_endpoint_by_hand(
        &self,
        endpoint_or_url: &str,
        actor: &str,
    ) -> Result<EndpointSteer, StoreError> {
        let known = sqlx::query_scalar!(
            r#"SELECT endpoint AS "endpoint!" FROM webhook_endpoints
               WHERE endpoint = webhook_endpoint($1)"#,
            endpoint_or_url
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(endpoint) = known else {
            return Ok(EndpointSteer::NotFound);
        };
        Ok(
            if self
                .resume_endpoint(&endpoint, actor, "resumed by hand", true)
                .await?
            {
                EndpointSteer::Changed(endpoint)
            } else {
                EndpointSteer::Unchanged(endpoint)
            },
        )
    }

    /// Resumes a paused endpoint (one paused by hand only when `by_hand`) and makes its
    /// waiting deliveries due at once, oldest first. `false` when it was not paused.
    pub(crate) async fn resume_endpoint(
        &self,
        endpoint: &str,
        actor: &str,
        detail: &str,
        by_hand: bool,
    ) -> Result<bool, StoreError> {
        let resumed = sqlx::query_scalar!(
            r#"WITH e AS (
                 UPDATE webhook_endpoints
                 SET state = 'active', failures = 0, manual = false, paused_at = NULL,
                     paused_by = NULL, probe_interval_ms = NULL, next_probe_at = NULL,
                     probe_until = NULL, updated_at = now()
                 WHERE endpoint = $1 AND state = 'paused' AND (NOT manual OR $4)
                 RETURNING endpoint),
               d AS (
                 UPDATE deliveries d SET next_attempt_at = d.created_at, updated_at = now()
                 FROM e
                 WHERE d.endpoint = e.endpoint AND d.status = 'pending'
                   AND d.next_attempt_at > now()),
               v AS (
                 INSERT INTO webhook_endpoint_events (endpoint, action, actor, detail)
                 SELECT endpoint, $5, $2, $3 FROM e)
               SELECT count(*) AS "n!" FROM e"#,
            endpoint,
            actor,
            detail,
            by_hand,
            EndpointAction::Resumed as EndpointAction,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(resumed > 0)
    }

    /// Endpoint health now, for the metrics.
    pub async fn endpoint_health_counts(&self) -> Result<EndpointHealthCounts, StoreError> {
        let row = sqlx::query_as!(
            EndpointHealthCounts,
            r#"-- periodic: endpoint health
               SELECT
                 (SELECT count(*) FROM webhook_endpoints WHERE state = 'paused') AS "paused!",
                 (SELECT coalesce(extract(epoch FROM now() - min(paused_at)), 0)::int8
                  FROM webhook_endpoints WHERE state = 'paused') AS "longest_pause_secs!",
                 (SELECT count(*) FROM deliveries d JOIN webhook_endpoints e USING (endpoint)
                  WHERE d.status = 'pending' AND e.state = 'active') AS "waiting_active!",
                 (SELECT count(*) FROM deliveries d JOIN webhook_endpoints e USING (endpoint)
                  WHERE d.status = 'pending' AND e.state = 'paused') AS "waiting_paused!""#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Fails up to `limit` deliveries pending for longer than `max_age` (not while an
    /// attempt is in flight), oldest first; they then show among the undelivered. Returns
    /// how many failed.
    pub async fn fail_expired_deliveries(
        &self,
        max_age: Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let reason = format!(
            "not delivered within {} (FOODSEG_WEBHOOK_MAX_AGE)",
            humantime::format_duration(max_age)
        );
        let failed = sqlx::query!(
            r#"-- periodic: expired deliveries
               WITH x AS (
                 SELECT id FROM deliveries
                 WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
                   AND (locked_until IS NULL OR locked_until <= now())
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE deliveries d
               SET status = $3, finished_at = now(), updated_at = now(), locked_until = NULL,
                   last_error = coalesce(d.last_error || '; ', '') || $4
               FROM x WHERE d.id = x.id"#,
            max_age.as_secs_f64(),
            limit,
            DeliveryStatus::Failed as DeliveryStatus,
            reason,
        )
        .execute(&self.pool)
        .await?;
        Ok(failed.rows_affected())
    }
}
