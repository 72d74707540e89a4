//! Idempotent enqueues: a client's `Idempotency-Key` bound to the job its first request
//! created, so that a retried request answers that job instead of creating another.
//!
//! The key row is written first, in the enqueue's own transaction (its reference to the
//! job is checked at commit), so a key never exists without its job nor a job without
//! its key. Two requests racing with one key meet on the key's unique constraint: the
//! second waits for the first to commit, then finds its key and answers its job.

use std::time::Duration;

use super::jobs::NewJob;
use super::row::Job;
use super::uploads::NewUpload;
use super::{Store, StoreError};
use crate::domain::{ApiKeyId, JobId};

/// Whose keys a key is among: two callers never see each other's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyScope {
    /// Requests made with this API key.
    Key(ApiKeyId),
    /// Requests made without an API key from this client address (as trusted proxies
    /// reveal it).
    Address(String),
}

/// A client's idempotency key and the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key it is.
    pub scope: IdempotencyScope,
    /// The header's value (1–255 printable characters, checked by the caller).
    pub key: String,
    /// SHA-256 of the request's canonical form: the same key with another request is
    /// refused.
    pub request_hash: [u8; 32],
    /// How long the key is kept (at least).
    pub keep: Duration,
}

/// What an idempotent enqueue did.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per request; boxing would only add noise
pub enum Idempotent {
    /// The key was new: this request created the job.
    Created(Job),
    /// The key was known with the same request: the job it created, as it is now.
    Replayed(Job),
    /// The key was known with a different request.
    KeyReused { job_id: JobId },
}

impl IdempotencyScope {
    /// The scope's `(api_key_id, client_addr)` columns.
    pub(super) fn columns(&self) -> (Option<ApiKeyId>, Option<&str>) {
        match self {
            IdempotencyScope::Key(id) => (Some(*id), None),
            IdempotencyScope::Address(addr) => (None, Some(addr.as_str())),
        }
    }
}

impl Store {
    /// Enqueues `job` (and `upload`, when the image was uploaded) unless `key` is already
    /// bound to a job, in one transaction with the key.
    pub async fn enqueue_idempotent(
        &self,
        job: &NewJob,
        upload: Option<&NewUpload>,
        key: &IdempotencyKey,
        actor: &str,
    ) -> Result<Idempotent, StoreError> {
        loop {
            if let Some(created) = self.bind_key_and_enqueue(job, upload, key, actor).await? {
                return Ok(Idempotent::Created(created));
            }
            // The key is bound to another job; unless that binding vanished since (purged
            // after its expiry, or its job deleted), answer with that job.
            let Some((job_id, request_hash)) = self.idempotency_key(key).await? else {
                continue;
            };
            if request_hash != key.request_hash[..] {
                return Ok(Idempotent::KeyReused { job_id });
            }
            if let Some(job) = self.get(job_id).await? {
                return Ok(Idempotent::Replayed(job));
            }
        }
    }

    /// Binds the key to `job` and enqueues it, in one transaction; `None` (and nothing
    /// written) when the key is bound to a job already.
    async fn bind_key_and_enqueue(
        &self,
        job: &NewJob,
        upload: Option<&NewUpload>,
        key: &IdempotencyKey,
        actor: &str,
    ) -> Result<Option<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A key past its expiry that the purge has not deleted yet is taken over.
        let (api_key, client_addr) = key.scope.columns();
        let bound = sqlx::query_scalar!(
            r#"INSERT INTO idempotency_keys (api_key_id, client_addr, key, request_hash, job_id,
                                            expires_at)
               VALUES ($1, $6, $2, $3, $4, now() + make_interval(secs => $5))
               ON CONFLICT ON CONSTRAINT idempotency_keys_scope_key DO UPDATE
                 SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id,
                     created_at = now(), expires_at = EXCLUDED.expires_at
                 WHERE idempotency_keys.expires_at <= now()
               RETURNING job_id AS "job_id: JobId""#,
            api_key as Option<ApiKeyId>,
            &key.key,
            &key.request_hash[..],
            job.id as JobId,
            key.keep.as_secs_f64(),
            client_addr,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if bound.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let created = match upload {
            Some(upload) => self.enqueue_upload_on(&mut tx, job, upload, actor).await?,
            None => self.enqueue_on(&mut *tx, job, actor).await?,
        };
        tx.commit().await?;
        Ok(Some(created))
    }

    /// The job and request hash a live key is bound to, if it is.
    async fn idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<(JobId, Vec<u8>)>, StoreError> {
        // One statement per scope: `=` never matches NULL, and `IS NOT DISTINCT FROM`
        // cannot use the unique index.
        let row = match &key.scope {
            IdempotencyScope::Key(api_key) => sqlx::query!(
                r#"SELECT job_id AS "job_id: JobId", request_hash FROM idempotency_keys
                   WHERE api_key_id = $1 AND client_addr IS NULL AND key = $2
                     AND expires_at > now()"#,
                *api_key as ApiKeyId,
                &key.key
            )
            .fetch_optional(&self.pool)
            .await?
            .map(|r| (r.job_id, r.request_hash)),
            IdempotencyScope::Address(addr) => sqlx::query!(
                r#"SELECT job_id AS "job_id: JobId", request_hash FROM idempotency_keys
                   WHERE api_key_id IS NULL AND client_addr = $1 AND key = $2
                     AND expires_at > now()"#,
                addr,
                &key.key
            )
            .fetch_optional(&self.pool)
            .await?
            .map(|r| (r.job_id, r.request_hash)),
        };
        Ok(row)
    }

    /// Deletes up to `limit` idempotency keys past their expiry; returns how many.
    pub async fn purge_expired_idempotency_keys(&self, limit: i64) -> Result<u64, StoreError> {
        // `idempotency_keys_expires` serves the range; the row addresses go through an
        // array so the delete fetches them directly (no join over the whole table).
        let deleted = sqlx::query!(
            r#"-- periodic: idempotency purge
               WITH x AS (SELECT ctid FROM idempotency_keys WHERE expires_at <= now()
                        ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM x))"#,
            limit
        )
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}
