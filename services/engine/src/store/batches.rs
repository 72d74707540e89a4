//! Batches: up to a thousand jobs sent in one request (`POST /v2/jobs`), written in one
//! transaction with one statement per table, each job with its own idempotency key if the
//! client gave one; their progress; cancelling what is left of one.

use chrono::{DateTime, Utc};

use super::idempotency::IdempotencyKey;
use super::jobs::NewJob;
use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{ApiKeyId, BatchId, JobId, JobStatus, Priority, Transition};

/// Event detail and job message of a job cancelled with the rest of its batch.
pub const CANCELLED_WITH_BATCH: &str = "Job cancelled with the rest of its batch";

/// A batch to write: its jobs in the order sent, each with its idempotency key if any.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: BatchId,
    pub owner: Option<ApiKeyId>,
    pub priority: Priority,
    pub items: Vec<(NewJob, Option<IdempotencyKey>)>,
}

/// One item of a written batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub job: Job,
    /// The item's idempotency key was bound already: this is the job it created then.
    pub replayed: bool,
}

/// What writing a batch did.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchWrite {
    /// Written (or, item by item, replayed): the batch the items are in, and the items
    /// in the order sent. A request whose every item replays one earlier batch (a retry
    /// of it) answers that batch.
    Written {
        batch_id: BatchId,
        items: Vec<BatchItem>,
    },
    /// The item at `index` reuses an idempotency key bound to another request's job;
    /// nothing was written.
    KeyReused { index: usize, job_id: JobId },
}

/// A batch and where its jobs stand.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchProgress {
    pub id: BatchId,
    pub owner_key_id: Option<ApiKeyId>,
    /// The owning key's name, when it has one.
    pub owner_name: Option<String>,
    pub priority: Priority,
    pub size: i32,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Jobs of the batch that finished in the last five minutes (or since the batch was
    /// created, when that is shorter): the rate the estimate uses.
    pub finished_recently: i64,
    /// Seconds that window spans.
    pub window_seconds: f64,
    /// When its last job finished, once every job has.
    pub finished_at: Option<DateTime<Utc>>,
}

impl BatchProgress {
    /// Jobs not finished yet.
    pub fn remaining(&self) -> i64 {
        self.queued + self.running
    }

    /// Seconds until the last job finishes at the batch's recent rate; `None` before any
    /// job finished in the window (no rate to go by), `Some(0)` once done.
    pub fn eta_seconds(&self) -> Option<f64> {
        if self.remaining() == 0 {
            return Some(0.0);
        }
        if self.finished_recently == 0 || self.window_seconds <= 0.0 {
            return None;
        }
        let rate = self.finished_recently as f64 / self.window_seconds;
        Some(self.remaining() as f64 / rate)
    }
}

/// What cancelling a batch did.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchCancel {
    /// These queued jobs ended (with their webhooks); running ones finish on their own.
    Cancelled(Vec<Job>),
    NotFound,
}

impl Store {
    /// Writes a batch in one transaction: the batch row, the idempotency keys (one
    /// statement), the jobs with their events and dispatch messages (one statement).
    /// Items whose key is bound to the same request already answer that job; an item
    /// whose key is bound to another request refuses the whole batch.
    pub async fn enqueue_batch(
        &self,
        batch: &NewBatch,
        actor: &str,
    ) -> Result<BatchWrite, StoreError> {
        loop {
            if let Some(written) = self.try_enqueue_batch(batch, actor).await? {
                return Ok(written);
            }
        }
    }

    /// One try of [`Store::enqueue_batch`]; `None` (nothing written) when a key was bound
    /// by a transaction that committed while this one waited for it: the next try sees it.
    async fn try_enqueue_batch(
        &self,
        batch: &NewBatch,
        actor: &str,
    ) -> Result<Option<BatchWrite>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let size = i32::try_from(batch.items.len()).unwrap_or(i32::MAX);
        sqlx::query!(
            r#"INSERT INTO batches (id, owner_key_id, priority, size) VALUES ($1, $2, $3, $4)"#,
            batch.id as BatchId,
            batch.owner as Option<ApiKeyId>,
            batch.priority as Priority,
            size,
        )
        .execute(&mut *tx)
        .await?;
        // Keys: bind the new ones to their items' jobs; a key already bound (and not
        // expired) keeps its job.
        let keyed: Vec<(usize, &NewJob, &IdempotencyKey)> = batch
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, (job, key))| key.as_ref().map(|k| (i, job, k)))
            .collect();
        let mut replays: Vec<(usize, JobId)> = Vec::new();
        if !keyed.is_empty() {
            let (api_keys, addrs): (Vec<Option<uuid::Uuid>>, Vec<Option<&str>>) = keyed
                .iter()
                .map(|(_, _, k)| {
                    let (id, addr) = k.scope.columns();
                    (id.map(|id| id.as_uuid()), addr)
                })
                .unzip();
            let keys: Vec<&str> = keyed.iter().map(|(_, _, k)| k.key.as_str()).collect();
            let hashes: Vec<Vec<u8>> = keyed
                .iter()
                .map(|(_, _, k)| k.request_hash.to_vec())
                .collect();
            let job_ids: Vec<uuid::Uuid> = keyed.iter().map(|(_, j, _)| j.id.as_uuid()).collect();
            let keeps: Vec<f64> = keyed.iter().map(|(_, _, k)| k.keep.as_secs_f64()).collect();
            // Every key, with the job and request it is bound to after this statement.
            let rows = sqlx::query!(
                r#"WITH k AS (SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[],
                                                  $4::bytea[], $5::uuid[], $6::float8[])
                              WITH ORDINALITY AS k(api_key_id, client_addr, key, request_hash,
                                                   job_id, keep, n)),
                   b AS (INSERT INTO idempotency_keys (api_key_id, client_addr, key, request_hash,
                                                      job_id, expires_at)
                         SELECT api_key_id, client_addr, key, request_hash, job_id,
                                now() + make_interval(secs => keep)
                         FROM k ORDER BY n
                         ON CONFLICT ON CONSTRAINT idempotency_keys_scope_key DO UPDATE
                           SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id,
                               created_at = now(), expires_at = EXCLUDED.expires_at
                           WHERE idempotency_keys.expires_at <= now()
                         RETURNING api_key_id, client_addr, key)
                   SELECT k.n AS "n!", (b.key IS NOT NULL) AS "bound!",
                          i.job_id AS "bound_job?: JobId", i.request_hash AS "bound_hash?"
                   FROM k LEFT JOIN b ON b.key = k.key
                          AND b.api_key_id IS NOT DISTINCT FROM k.api_key_id
                          AND b.client_addr IS NOT DISTINCT FROM k.client_addr
                   LEFT JOIN idempotency_keys i ON b.key IS NULL AND i.key = k.key
                          AND i.api_key_id IS NOT DISTINCT FROM k.api_key_id
                          AND i.client_addr IS NOT DISTINCT FROM k.client_addr
                   ORDER BY k.n"#,
                &api_keys as &[Option<uuid::Uuid>],
                &addrs as &[Option<&str>],
                &keys as &[&str],
                &hashes,
                &job_ids,
                &keeps,
            )
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                let Some(&(index, _, key)) =
                    usize::try_from(r.n - 1).ok().and_then(|n| keyed.get(n))
                else {
                    continue;
                };
                if r.bound {
                    continue;
                }
                match (r.bound_job, r.bound_hash) {
                    (Some(job_id), Some(hash)) if hash == key.request_hash[..] => {
                        replays.push((index, job_id));
                    }
                    (Some(job_id), Some(_)) => {
                        tx.rollback().await?;
                        return Ok(Some(BatchWrite::KeyReused { index, job_id }));
                    }
                    _ => {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                }
            }
        }
        // The jobs earlier requests created for the replayed items.
        let mut earlier: std::collections::HashMap<usize, Job> = Default::default();
        for &(index, job_id) in &replays {
            let job = self
                .get(job_id)
                .await?
                .ok_or(StoreError::Query(sqlx::Error::RowNotFound))?;
            earlier.insert(index, job);
        }
        let new_jobs: Vec<NewJob> = batch
            .items
            .iter()
            .enumerate()
            .filter(|(i, _)| !earlier.contains_key(i))
            .map(|(_, (job, _))| job.clone())
            .collect();
        // A retry of one earlier batch (every item replays a job of it) answers that
        // batch and writes none.
        let first = earlier.get(&0).and_then(|j| j.batch_id);
        let retry_of = first
            .filter(|b| new_jobs.is_empty() && earlier.values().all(|j| j.batch_id == Some(*b)));
        let (batch_id, written) = match retry_of {
            Some(earlier_batch) => {
                tx.rollback().await?;
                (earlier_batch, Vec::new())
            }
            None => {
                let actors = vec![actor; new_jobs.len()];
                let written = if new_jobs.is_empty() {
                    Vec::new()
                } else {
                    self.enqueue_many_on(&mut *tx, &new_jobs, &actors).await?
                };
                tx.commit().await?;
                (batch.id, written)
            }
        };
        let mut by_id: std::collections::HashMap<JobId, Job> =
            written.into_iter().map(|j| (j.id, j)).collect();
        let mut items = Vec::with_capacity(batch.items.len());
        for (i, (job, _)) in batch.items.iter().enumerate() {
            let item = match earlier.remove(&i) {
                Some(job) => BatchItem {
                    job,
                    replayed: true,
                },
                None => BatchItem {
                    job: by_id
                        .remove(&job.id)
                        .ok_or(StoreError::Query(sqlx::Error::RowNotFound))?,
                    replayed: false,
                },
            };
            items.push(item);
        }
        Ok(Some(BatchWrite::Written { batch_id, items }))
    }

    /// A batch and the counts of its jobs per state; `None` when there is no such batch
    /// or (with `owner`) it is not that key's.
    pub async fn batch(
        &self,
        id: BatchId,
        owner: Option<ApiKeyId>,
    ) -> Result<Option<BatchProgress>, StoreError> {
        Ok(self.batch_rows(Some(id), owner, 1).await?.pop())
    }

    /// The newest `limit` batches (of `owner` when given), newest first, with progress.
    pub async fn batches(
        &self,
        owner: Option<ApiKeyId>,
        limit: i64,
    ) -> Result<Vec<BatchProgress>, StoreError> {
        self.batch_rows(None, owner, limit).await
    }

    /// Batches (the one with `id`, when given; of `owner`, when given), newest first, at
    /// most `limit`, each with the counts of its jobs per state (`jobs_batch`).
    async fn batch_rows(
        &self,
        id: Option<BatchId>,
        owner: Option<ApiKeyId>,
        limit: i64,
    ) -> Result<Vec<BatchProgress>, StoreError> {
        let rows = sqlx::query_as!(
            BatchProgress,
            r#"SELECT b.id AS "id!: BatchId", b.owner_key_id AS "owner_key_id: ApiKeyId",
                      k.name AS "owner_name?", b.priority AS "priority!: Priority",
                      b.size AS "size!", b.created_at AS "created_at!", b.cancelled_at,
                      b.cancelled_by,
                      c.queued AS "queued!", c.running AS "running!", c.succeeded AS "succeeded!",
                      c.failed AS "failed!", c.recent AS "finished_recently!",
                      LEAST(300, EXTRACT(EPOCH FROM now() - b.created_at))::float8 AS "window_seconds!",
                      CASE WHEN c.queued + c.running = 0 THEN c.last END AS "finished_at?"
               FROM (SELECT * FROM batches
                     WHERE ($1::uuid IS NULL OR id = $1) AND ($2::uuid IS NULL OR owner_key_id = $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3) b
               LEFT JOIN api_keys k ON k.id = b.owner_key_id
               CROSS JOIN LATERAL (
                 SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                        count(*) FILTER (WHERE status = 'running') AS running,
                        count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                        count(*) FILTER (WHERE status = 'failed') AS failed,
                        count(*) FILTER (WHERE finished_at > now() - interval '5 minutes') AS recent,
                        max(finished_at) AS last
                 FROM jobs WHERE batch_id = b.id) c
               ORDER BY b.created_at DESC, b.id DESC"#,
            id as Option<BatchId>,
            owner as Option<ApiKeyId>,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Cancels what is left of a batch (of `owner` when given): every job still queued
    /// ends failed with [`CANCELLED_WITH_BATCH`] and its webhook, in one finish
    /// statement; running jobs finish on their own. The batch records who cancelled it.
    pub async fn cancel_batch(
        &self,
        id: BatchId,
        owner: Option<ApiKeyId>,
        actor: &str,
    ) -> Result<BatchCancel, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query_scalar!(
            r#"UPDATE batches SET cancelled_at = coalesce(cancelled_at, now()),
                      cancelled_by = coalesce(cancelled_by, $3)
               WHERE id = $1 AND ($2::uuid IS NULL OR owner_key_id = $2)
               RETURNING id AS "id: BatchId""#,
            id as BatchId,
            owner as Option<ApiKeyId>,
            actor,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(BatchCancel::NotFound);
        }
        let queued = sqlx::query_scalar!(
            r#"SELECT id AS "id: JobId" FROM jobs WHERE batch_id = $1 AND status = $2
               ORDER BY id FOR UPDATE SKIP LOCKED"#,
            id as BatchId,
            JobStatus::Queued as JobStatus,
        )
        .fetch_all(&mut *tx)
        .await?;
        let ended = self
            .fail_queued(
                &mut *tx,
                &queued,
                Transition::Cancel,
                CANCELLED_WITH_BATCH,
                actor,
            )
            .await?;
        tx.commit().await?;
        Ok(BatchCancel::Cancelled(ended))
    }
}
