//! The outbox: messages written in the same transaction as the state they announce,
//! waiting for the relay to publish them to JetStream.
//!
//! A relay takes a batch with `FOR UPDATE SKIP LOCKED` inside a transaction, publishes
//! it, and marks the rows published (or records the failure) before committing. Several
//! relays therefore never take the same row at once; the `Nats-Msg-Id` of each row lets
//! JetStream drop the rare duplicate (a relay that published but died before committing).
//!
//! A row may carry a `not_before`: a retry's dispatch message waits here, not on the NATS
//! server, until its backoff is over. A published row keeps the stream sequence JetStream
//! stored it at, so the sweeper can ask whether the stream still holds it.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::{Store, StoreError};

/// A row of `outbox`: one message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub subject: String,
    pub msg_id: String,
    pub payload: serde_json::Value,
    /// A JSON object of header name → string value (e.g. `traceparent`).
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// When the relay published it; `None` while it waits.
    pub published_at: Option<DateTime<Utc>>,
    /// Failed publish attempts so far.
    pub attempts: i32,
    pub last_error: Option<String>,
}

impl OutboxRow {
    /// The headers as name/value pairs; non-string values are skipped.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The payload as the bytes sent on NATS.
    pub fn payload_bytes(&self) -> Vec<u8> {
        // Serialising a `serde_json::Value` cannot fail.
        serde_json::to_vec(&self.payload).unwrap_or_default()
    }
}

/// Rows locked for publishing by this relay until [`OutboxBatch::finish`] commits.
/// Dropping the batch without finishing rolls back: the rows become available again.
#[derive(Debug)]
pub struct OutboxBatch {
    tx: Transaction<'static, Postgres>,
    rows: Vec<OutboxRow>,
}

impl OutboxBatch {
    pub fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Marks `published` rows (row id, stream sequence) as published and records an error
    /// on `failed` rows, then commits and releases the locks.
    pub async fn finish(
        mut self,
        published: &[(i64, u64)],
        failed: &[(i64, String)],
    ) -> Result<(), StoreError> {
        if !published.is_empty() {
            let (ids, seqs): (Vec<i64>, Vec<i64>) = published
                .iter()
                .map(|&(id, seq)| (id, i64::try_from(seq).unwrap_or(i64::MAX)))
                .unzip();
            sqlx::query!(
                r#"UPDATE outbox SET published_at = now(), stream_seq = p.seq
                 FROM UNNEST($1::bigint[], $2::bigint[]) AS p(id, seq) WHERE outbox.id = p.id"#,
                &ids,
                &seqs,
            )
            .execute(&mut *self.tx)
            .await?;
        }
        if !failed.is_empty() {
            let (ids, errors): (Vec<i64>, Vec<String>) = failed.iter().cloned().unzip();
            sqlx::query!(
                r#"UPDATE outbox SET attempts = attempts + 1, last_error = f.error
                 FROM UNNEST($1::bigint[], $2::text[]) AS f(id, error) WHERE outbox.id = f.id"#,
                &ids,
                &errors,
            )
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Locks up to `limit` unpublished rows that are due, oldest first, skipping rows
    /// another relay holds.
    pub async fn outbox_batch(&self, limit: i64) -> Result<OutboxBatch, StoreError> {
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query_as!(
            OutboxRow,
            r#"-- periodic: relay batch
               SELECT id, subject, msg_id, payload, headers, created_at, published_at, attempts,
                    last_error
             FROM outbox WHERE published_at IS NULL AND (not_before IS NULL OR not_before <= now())
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"#,
            limit
        )
        .fetch_all(&mut *tx)
        .await?;
        Ok(OutboxBatch { tx, rows })
    }

    /// How many rows are due and wait to be published (not those parked for a backoff).
    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar!(
            r#"-- periodic: outbox pending
               SELECT count(*) AS "n!" FROM outbox WHERE published_at IS NULL AND (not_before IS NULL OR not_before <= now())"#
        )
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    /// Deletes up to `limit` rows published more than `older_than` ago, oldest first;
    /// returns how many. A full batch means more may be left.
    pub async fn outbox_prune(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // The index `outbox_published` serves the range; the ids go through an array so
        // the delete probes the primary key whatever the plan's estimate of the batch.
        let done = sqlx::query!(
            r#"-- periodic: outbox prune
               DELETE FROM outbox WHERE id = ANY(ARRAY(
               SELECT id FROM outbox WHERE published_at IS NOT NULL
                 AND published_at < now() - make_interval(secs => $1)
               ORDER BY published_at LIMIT $2))"#,
            older_than.as_secs_f64(),
            limit,
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
