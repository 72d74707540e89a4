//! Finding QUEUED jobs whose dispatch message may be lost, and writing them a new one.
//!
//! A queued job that nobody claimed for a while is usually just waiting in a long queue,
//! or its message is still in the outbox because NATS is down. Neither needs a second
//! message. The store reports where each stale job's latest dispatch message stands
//! ([`DispatchState`]); the scheduler asks JetStream whether a published one is still in
//! the stream and republishes only those that are gone.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::{JobId, JobStatus};
use crate::message::republish_msg_id;

/// Event detail of a republished dispatch message.
pub const REPUBLISH_DETAIL: &str = "republish: dispatch message may have been lost";

/// Where a queued job's latest dispatch message stands, as Postgres knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchState {
    /// In the outbox, not published yet: the relay will publish it.
    Unpublished,
    /// Published less than the stale threshold ago: give the consumers time.
    Recent,
    /// Published at the given stream sequence: lost only if the stream no longer holds it.
    InStream(u64),
    /// Published long ago with no sequence on record, or no outbox row left: only a new
    /// message can tell.
    Unknown,
}

impl DispatchState {
    /// From the latest dispatch row's publish time and sequence (`None` when the job has
    /// no outbox row left) and the stale threshold, relative to `now`.
    pub fn of(
        row: Option<(Option<DateTime<Utc>>, Option<i64>)>,
        stale_after: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        let Some((published_at, sequence)) = row else {
            return DispatchState::Unknown;
        };
        let Some(published_at) = published_at else {
            return DispatchState::Unpublished;
        };
        let threshold = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        if now - published_at < threshold {
            return DispatchState::Recent;
        }
        match sequence.and_then(|s| u64::try_from(s).ok()) {
            Some(seq) => DispatchState::InStream(seq),
            None => DispatchState::Unknown,
        }
    }
}

/// A QUEUED job that is due, saw no change for the stale threshold and was not
/// republished within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleQueued {
    pub id: JobId,
    pub model_name: String,
    pub dispatch: DispatchState,
    /// Keyset position, for the next page.
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Up to `limit` stale QUEUED jobs after `after` (keyset on `(updated_at, id)`), oldest
    /// first, with where their latest dispatch message stands. Reads only: nothing is
    /// locked, [`Store::republish`] checks again.
    pub async fn stale_queued(
        &self,
        stale_after: Duration,
        after: Option<(DateTime<Utc>, JobId)>,
        limit: i64,
    ) -> Result<Vec<StaleQueued>, StoreError> {
        let (after_at, after_id) = after.unzip();
        let rows = sqlx::query!(
            r#"-- periodic: stale queued with their latest dispatch
               SELECT j.id AS "id!: JobId", j.model_name, j.updated_at, now() AS "now!",
                      o.id AS "outbox_id?", o.published_at, o.stream_seq
               FROM jobs j
               LEFT JOIN LATERAL (
                 SELECT id, published_at, stream_seq FROM outbox
                 WHERE outbox.job_id = j.id AND outbox.subject = job_subject($3, j.priority, j.model_name)
                 ORDER BY id DESC LIMIT 1) o ON true
               WHERE j.status = 'queued' AND j.updated_at < now() - make_interval(secs => $2)
                 AND (j.not_before IS NULL OR j.not_before < now() - make_interval(secs => $2))
                 AND (j.redispatched_at IS NULL OR j.redispatched_at
                      < now() - make_interval(secs => $2 * power(2, LEAST(j.redispatches, 6))))
                 AND ($4::timestamptz IS NULL OR (j.updated_at, j.id) > ($4, $5::uuid))
               ORDER BY j.updated_at, j.id LIMIT $1"#,
            limit,
            stale_after.as_secs_f64(),
            &self.subjects.prefix,
            after_at,
            after_id.map(|id| id.as_uuid()),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let row = r.outbox_id.map(|_| (r.published_at, r.stream_seq));
                StaleQueued {
                    id: r.id,
                    model_name: r.model_name,
                    dispatch: DispatchState::of(row, stale_after, r.now),
                    updated_at: r.updated_at,
                }
            })
            .collect())
    }

    /// Writes a new dispatch message (unique `Nats-Msg-Id`) for each of `ids` that is still
    /// a stale QUEUED job (checked again under lock), with its event; returns those
    /// republished. The wait before the same job's next republish doubles each time (up to
    /// 64× the threshold).
    pub async fn republish(
        &self,
        ids: &[JobId],
        actor: &str,
        stale_after: Duration,
    ) -> Result<Vec<JobId>, StoreError> {
        let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        let msg_ids: Vec<String> = ids.iter().map(|&id| republish_msg_id(id)).collect();
        let ids = sqlx::query_scalar!(
            r#"-- periodic: republish
               WITH x AS (
                 SELECT id FROM jobs
                 WHERE id = ANY($1) AND status = 'queued'
                   AND updated_at < now() - make_interval(secs => $2)
                   AND (not_before IS NULL OR not_before < now() - make_interval(secs => $2))
                   AND (redispatched_at IS NULL OR redispatched_at < now()
                        - make_interval(secs => $2 * power(2, LEAST(redispatches, 6))))
                 FOR UPDATE SKIP LOCKED),
               r AS (
                 UPDATE jobs j SET redispatched_at = now(), redispatches = j.redispatches + 1
                 FROM x WHERE j.id = x.id AND j.status = $6
                 RETURNING j.id, j.status, j.attempt, j.priority, j.model_name, j.traceparent,
                           j.redispatches),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail)
                     SELECT id, status, status, attempt, $3, $4 FROM r),
               o AS (INSERT INTO outbox (subject, msg_id, payload, headers)
                     SELECT job_subject($5, r.priority, r.model_name), m.msg_id, jsonb_build_object('job_id', r.id),
                            job_trace_headers(r.traceparent)
                     FROM r JOIN UNNEST($1::uuid[], $7::text[]) AS m(id, msg_id) USING (id))
               SELECT id AS "id!: JobId" FROM r"#,
            &uuids,
            stale_after.as_secs_f64(),
            actor,
            REPUBLISH_DETAIL,
            &self.subjects.prefix,
            JobStatus::Queued as JobStatus,
            &msg_ids,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(60);

    fn at(secs_ago: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(now - chrono::Duration::seconds(secs_ago))
    }

    #[test]
    fn only_a_message_published_long_ago_may_be_lost() {
        let now = Utc::now();
        assert_eq!(DispatchState::of(None, T, now), DispatchState::Unknown);
        assert_eq!(
            DispatchState::of(Some((None, None)), T, now),
            DispatchState::Unpublished
        );
        assert_eq!(
            DispatchState::of(Some((at(10, now), Some(7))), T, now),
            DispatchState::Recent
        );
        assert_eq!(
            DispatchState::of(Some((at(61, now), Some(7))), T, now),
            DispatchState::InStream(7)
        );
        assert_eq!(
            DispatchState::of(Some((at(61, now), None)), T, now),
            DispatchState::Unknown
        );
    }
}
