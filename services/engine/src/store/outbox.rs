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
    /// Held messages of jobs that are no longer queued: marked done unpublished.
    dropped: Vec<i64>,
    /// For a release of held messages: per subject, the owner served last.
    last_served: Vec<(String, String)>,
}

/// One bulk lane's share of a release: its subject, how many more messages the stream
/// may take (`FOODSEG_BULK_WINDOW` minus those waiting), the owner served last, and the
/// owners with held messages ([`Store::held_lanes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLane {
    pub subject: String,
    pub room: i64,
    pub after: String,
    pub owners: Vec<String>,
}

impl OutboxBatch {
    pub fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.dropped.is_empty()
    }

    /// For a release of held messages: per subject, the owner whose message was
    /// released last (the next release starts after it).
    pub fn last_served(&self) -> &[(String, String)] {
        &self.last_served
    }

    /// Held messages left unpublished because their job is no longer queued.
    pub fn dropped(&self) -> usize {
        self.dropped.len()
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
        if !self.dropped.is_empty() {
            sqlx::query!(
                r#"UPDATE outbox SET published_at = now(), last_error = 'job no longer queued'
                   WHERE id = ANY($1)"#,
                &self.dropped,
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
             FROM outbox WHERE published_at IS NULL AND held_for IS NULL
               AND (not_before IS NULL OR not_before <= now())
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"#,
            limit
        )
        .fetch_all(&mut *tx)
        .await?;
        Ok(OutboxBatch {
            tx,
            rows,
            dropped: Vec::new(),
            last_served: Vec::new(),
        })
    }

    /// The subjects and owners (`held_for`) that have held bulk dispatch messages, in
    /// order: one index probe per pair, however many messages are held.
    pub async fn held_lanes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query!(
            r#"-- periodic: held lanes
               WITH RECURSIVE o AS (
                 (SELECT subject, held_for FROM outbox
                  WHERE published_at IS NULL AND held_for IS NOT NULL
                  ORDER BY subject, held_for LIMIT 1)
                 UNION ALL
                 SELECT n.subject, n.held_for FROM o CROSS JOIN LATERAL (
                   SELECT subject, held_for FROM outbox
                   WHERE published_at IS NULL AND held_for IS NOT NULL
                     AND (subject, held_for) > (o.subject, o.held_for)
                   ORDER BY subject, held_for LIMIT 1) n)
               SELECT subject AS "subject!", held_for AS "held_for!" FROM o"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.subject, r.held_for)).collect())
    }

    /// Locks held bulk dispatch messages to release: for each lane of `lanes`, up to
    /// `room` messages, oldest first per owner and its owners taking turns, starting with
    /// the first owner after `after` (the last one served). Messages whose
    /// job is no longer queued (cancelled) come in [`OutboxBatch::dropped`]: finishing the
    /// batch marks them done without publishing them. `None` when another relay is
    /// releasing right now (one at a time, so the window holds).
    pub async fn held_batch(&self, lanes: &[HeldLane]) -> Result<Option<OutboxBatch>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let locked = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_xact_lock(hashtext('foodseg: release held dispatch')) AS "locked!""#
        )
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok(None);
        }
        let subjects: Vec<&str> = lanes.iter().map(|l| l.subject.as_str()).collect();
        let rooms: Vec<i64> = lanes.iter().map(|l| l.room).collect();
        let afters: Vec<&str> = lanes.iter().map(|l| l.after.as_str()).collect();
        let (owner_subjects, owners): (Vec<&str>, Vec<&str>) = lanes
            .iter()
            .flat_map(|l| l.owners.iter().map(|o| (l.subject.as_str(), o.as_str())))
            .unzip();
        let rows = sqlx::query!(
            r#"-- periodic: held batch
               WITH l AS (SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[])
                            AS l(subject, room, after)),
               o AS (SELECT * FROM UNNEST($4::text[], $5::text[]) AS o(subject, held_for)),
               c AS (SELECT x.id, o.subject, o.held_for,
                            row_number() OVER (PARTITION BY o.subject, o.held_for ORDER BY x.id) AS rk
                     FROM o JOIN l USING (subject) CROSS JOIN LATERAL (
                       SELECT id FROM outbox
                       WHERE subject = o.subject AND held_for = o.held_for AND published_at IS NULL
                       ORDER BY id LIMIT l.room) x),
               p AS (SELECT c.id, c.n FROM (
                       SELECT c.*, row_number() OVER (
                         PARTITION BY c.subject
                         ORDER BY c.rk, c.held_for <= l.after, c.held_for) AS n
                       FROM c JOIN l USING (subject)) c JOIN l USING (subject)
                     WHERE c.n <= l.room)
               SELECT b.id, b.subject, b.msg_id, b.payload, b.headers, b.created_at,
                      b.published_at, b.attempts, b.last_error, b.held_for AS "held_for!",
                      p.n AS "n!",
                      EXISTS (SELECT 1 FROM jobs j WHERE j.id = b.job_id AND j.status = 'queued')
                        AS "queued!"
               FROM outbox b JOIN p ON p.id = b.id
               ORDER BY b.subject, b.id FOR UPDATE OF b SKIP LOCKED"#,
            &subjects as &[&str],
            &rooms,
            &afters as &[&str],
            &owner_subjects as &[&str],
            &owners as &[&str],
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut batch = OutboxBatch {
            tx,
            rows: Vec::with_capacity(rows.len()),
            dropped: Vec::new(),
            last_served: Vec::new(),
        };
        let mut last: std::collections::BTreeMap<String, (i64, String)> = Default::default();
        for r in rows {
            let later = last.get(&r.subject).is_none_or(|(n, _)| r.n > *n);
            if later {
                last.insert(r.subject.clone(), (r.n, r.held_for));
            }
            if !r.queued {
                batch.dropped.push(r.id);
                continue;
            }
            batch.rows.push(OutboxRow {
                id: r.id,
                subject: r.subject,
                msg_id: r.msg_id,
                payload: r.payload,
                headers: r.headers,
                created_at: r.created_at,
                published_at: r.published_at,
                attempts: r.attempts,
                last_error: r.last_error,
            });
        }
        batch.last_served = last.into_iter().map(|(s, (_, o))| (s, o)).collect();
        Ok(Some(batch))
    }

    /// How many rows are due and wait to be published (not those parked for a backoff).
    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar!(
            r#"-- periodic: outbox pending
               SELECT count(*) AS "n!" FROM outbox WHERE published_at IS NULL AND held_for IS NULL
                 AND (not_before IS NULL OR not_before <= now())"#
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
