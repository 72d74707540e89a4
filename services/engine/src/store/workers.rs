//! The worker registry: each worker process keeps a row with the models it serves and a
//! heartbeat, so operators (and the alerts) can see which models have a live worker, and
//! the sweeper can end the queued jobs of a model no worker has served for too long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{JobId, Transition};

/// A worker counts as live while its heartbeat is younger than this (three of its
/// heartbeats).
pub const WORKER_LIVE_WITHIN: Duration = Duration::from_secs(30);

/// What a worker says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    /// Registry names of the models it serves.
    pub models: Vec<String>,
    /// Jobs it runs at once.
    pub concurrency: i32,
    /// The worker's version (the crate version).
    pub version: String,
}

/// A row of `workers`, with whether its heartbeat is recent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub models: Vec<String>,
    pub concurrency: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// When it stopped cleanly (it keeps its row a day, for the record).
    pub stopped_at: Option<DateTime<Utc>>,
    /// Not stopped, and the heartbeat is younger than the liveness window asked for.
    pub live: bool,
}

/// Queued jobs and live workers of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelLoad {
    pub model: String,
    pub queued: i64,
    pub live_workers: i64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Registers the worker or refreshes its heartbeat (and what it serves). Called on
    /// start and then periodically, so a worker that lost Postgres for a while is back in
    /// the registry with its first heartbeat after.
    pub async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        sqlx::query!(
            r#"INSERT INTO workers (id, models, concurrency, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET models = EXCLUDED.models,
                 concurrency = EXCLUDED.concurrency, version = EXCLUDED.version,
                 heartbeat_at = now(), stopped_at = NULL"#,
            &worker.id,
            &worker.models,
            worker.concurrency,
            &worker.version,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a worker that stops cleanly as stopped (no longer live, still on record).
    pub async fn worker_stopped(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query!(r#"UPDATE workers SET stopped_at = now() WHERE id = $1"#, id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every registered worker, live ones (heartbeat within `live_within`) first.
    pub async fn workers(&self, live_within: Duration) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query_as!(
            WorkerRow,
            r#"SELECT id, models, concurrency, version, started_at, heartbeat_at, stopped_at,
                      stopped_at IS NULL
                        AND heartbeat_at > now() - make_interval(secs => $1) AS "live!"
               FROM workers ORDER BY 8 DESC, id"#,
            secs(live_within),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Per model: jobs queued now and workers live (heartbeat within `live_within`) that
    /// serve it; every model with queued jobs or a registered worker, live or not.
    pub async fn model_load(&self, live_within: Duration) -> Result<Vec<ModelLoad>, StoreError> {
        let rows = sqlx::query_as!(
            ModelLoad,
            // The literal 'queued' picks the partial index `jobs_queued_updated`.
            r#"-- periodic: model load
               WITH q AS (SELECT model_name AS model, count(*) AS n FROM jobs
                          WHERE status = 'queued' GROUP BY model_name),
                    w AS (SELECT m AS model,
                                 count(*) FILTER (WHERE stopped_at IS NULL
                                   AND heartbeat_at > now() - make_interval(secs => $1)) AS n
                          FROM workers, unnest(models) AS m GROUP BY m)
               SELECT coalesce(q.model, w.model) AS "model!",
                      coalesce(q.n, 0) AS "queued!", coalesce(w.n, 0) AS "live_workers!"
               FROM q FULL JOIN w ON q.model = w.model ORDER BY 1"#,
            secs(live_within),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Deletes the rows of workers silent for longer than `older_than` (they died).
    pub async fn purge_workers(&self, older_than: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query!(
            r#"-- periodic: workers purge
               DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1)"#,
            secs(older_than),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The message of a job the sweeper gave up on; `{model}` is its model.
pub fn unserved_message(model: &str) -> String {
    format!("no worker serves model {model}")
}

impl Store {
    /// Ends, as failed with [`unserved_message`] and with their webhooks, up to `limit`
    /// jobs queued (untouched) for longer than `max_wait` whose model no worker has
    /// served in that time: no registered worker of the model beat or stopped within
    /// `max_wait`. Workers that scale to zero on purpose count until they stopped.
    pub async fn expire_unserved(
        &self,
        max_wait: Duration,
        actor: &str,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The literal 'queued' picks the partial index `jobs_queued_updated`.
        let candidates = sqlx::query!(
            r#"-- periodic: unserved select
               SELECT j.id AS "id: JobId", j.model_name FROM jobs j
               WHERE j.status = 'queued' AND j.updated_at < now() - make_interval(secs => $1)
                 AND NOT EXISTS (
                   SELECT 1 FROM workers w
                   WHERE j.model_name = ANY(w.models)
                     AND coalesce(w.stopped_at, w.heartbeat_at) > now() - make_interval(secs => $1))
               ORDER BY j.updated_at LIMIT $2
               FOR UPDATE OF j SKIP LOCKED"#,
            secs(max_wait),
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut ended = Vec::with_capacity(candidates.len());
        let mut by_model: Vec<(String, Vec<JobId>)> = Vec::new();
        for c in candidates {
            match by_model.iter_mut().find(|(m, _)| *m == c.model_name) {
                Some((_, ids)) => ids.push(c.id),
                None => by_model.push((c.model_name, vec![c.id])),
            }
        }
        for (model, ids) in by_model {
            let message = unserved_message(&model);
            let jobs = self
                .fail_queued(&mut *tx, &ids, Transition::Expire, &message, actor)
                .await?;
            ended.extend(jobs);
        }
        tx.commit().await?;
        Ok(ended)
    }
}
