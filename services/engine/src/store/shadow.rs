//! Shadow runs: a worker with `FOODSEG_SHADOW=CANDIDATE:SHARE` also runs a share of its
//! jobs on a candidate model, after the job's real result is written, and keeps the
//! candidate's answer here (`shadow_results`, one row per job), never in the job's
//! document or webhook. Operators compare a model with a candidate over a time window
//! (`GET /shadow`, the console's Shadow page): per class, the items each found and the
//! items both found (same category, mask IoU ≥ 0.5), and the time each took.
//!
//! Every read goes through the index `shadow_results_pair (model_name, candidate,
//! created_at)`: a comparison is one range of it, and the list of pairs walks its
//! distinct `(model_name, candidate)` prefixes (a loose index scan) before counting each
//! pair's range.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::domain::JobId;

/// What one category name counted in one job's comparison (the `classes` column holds a
/// map of these by category name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Items of the model that served the job.
    pub model: i64,
    /// Items of the candidate.
    pub candidate: i64,
    /// Pairs of one model item and one candidate item of this category whose masks
    /// overlap with an IoU of at least 0.5 (one-to-one).
    pub matched: i64,
}

/// One job's shadow run, as the worker records it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewShadowResult {
    pub job_id: JobId,
    /// The registry name of the model that served the job, and its version.
    pub model_name: String,
    pub model_version: String,
    /// The registry name of the candidate, and its version.
    pub candidate: String,
    pub candidate_version: String,
    /// The candidate's v1 items.
    pub items: serde_json::Value,
    /// Seconds each model took on the job's image, decode to items.
    pub model_seconds: f64,
    pub candidate_seconds: f64,
    /// Per category name that either model found.
    pub classes: BTreeMap<String, ClassCounts>,
}

/// The middle and the 95th percentile of a set of durations, in seconds (none without
/// jobs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

/// Item counts of a comparison and how well the two models agree on them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub model_items: i64,
    pub candidate_items: i64,
    pub matched: i64,
    /// `2 · matched / (model_items + candidate_items)`: the F1 score of the candidate's
    /// items measured against the model's (the Dice coefficient of the two sets of
    /// items). 1 when both found the same items, 0 when none of them match; none when
    /// neither found any.
    pub agreement: Option<f64>,
}

/// One category's row of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAgreement {
    /// The category name (`orange`).
    pub class: String,
    #[serde(flatten)]
    pub counts: Agreement,
}

/// The versions a comparison saw: each pair of versions, with its jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionPair {
    pub model_version: String,
    pub candidate_version: String,
    pub jobs: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// A model and a candidate compared over the shadow runs since a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowComparison {
    pub model: String,
    pub candidate: String,
    pub since: DateTime<Utc>,
    /// Jobs run on both.
    pub jobs: i64,
    /// The pairs of versions seen, most recent first.
    pub versions: Vec<VersionPair>,
    /// Every category either found, most items first.
    pub classes: Vec<ClassAgreement>,
    /// All categories together.
    pub overall: Agreement,
    /// Seconds from decode to items on the jobs' images.
    pub model_seconds: Percentiles,
    pub candidate_seconds: Percentiles,
}

/// A model and a candidate that have shadow runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowPair {
    pub model: String,
    pub candidate: String,
    /// Shadow runs since the time asked for.
    pub jobs: i64,
    /// The pair's latest shadow run, whenever it was.
    pub last_at: DateTime<Utc>,
}

/// `2 · matched / (model + candidate)`, none when both are 0.
pub fn agreement(model_items: i64, candidate_items: i64, matched: i64) -> Option<f64> {
    let both = model_items + candidate_items;
    (both > 0).then(|| 2.0 * matched as f64 / both as f64)
}

impl Store {
    /// Records a job's shadow run. A job has one: a redelivered job's second run is
    /// dropped (`false`).
    pub async fn insert_shadow_result(&self, r: &NewShadowResult) -> Result<bool, StoreError> {
        let classes = serde_json::to_value(&r.classes).unwrap_or_default();
        let done = sqlx::query!(
            r#"INSERT INTO shadow_results (job_id, model_name, model_version, candidate,
                   candidate_version, items, model_seconds, candidate_seconds, classes)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (job_id) DO NOTHING"#,
            r.job_id as JobId,
            &r.model_name,
            &r.model_version,
            &r.candidate,
            &r.candidate_version,
            &r.items,
            r.model_seconds,
            r.candidate_seconds,
            &classes,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `model` (the registry name of the model that served the jobs) compared with
    /// `candidate` over their shadow runs at or after `since`: jobs, per category the
    /// items each found and those both found with their agreement, the versions seen and
    /// the time percentiles. Three reads of one range of `shadow_results_pair`, in one
    /// snapshot.
    pub async fn shadow_comparison(
        &self,
        model: &str,
        candidate: &str,
        since: DateTime<Utc>,
    ) -> Result<ShadowComparison, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(r#"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"#)
            .execute(&mut *tx)
            .await?;
        let totals = sqlx::query!(
            r#"SELECT count(*) AS "jobs!",
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY model_seconds) AS model_p50,
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY model_seconds) AS model_p95,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY candidate_seconds)
                        AS candidate_p50,
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY candidate_seconds)
                        AS candidate_p95
               FROM shadow_results
               WHERE model_name = $1 AND candidate = $2 AND created_at >= $3"#,
            model,
            candidate,
            since,
        )
        .fetch_one(&mut *tx)
        .await?;
        let versions = sqlx::query_as!(
            VersionPair,
            r#"SELECT model_version, candidate_version, count(*) AS "jobs!",
                      min(created_at) AS "first_at!", max(created_at) AS "last_at!"
               FROM shadow_results
               WHERE model_name = $1 AND candidate = $2 AND created_at >= $3
               GROUP BY model_version, candidate_version
               ORDER BY 5 DESC, 1, 2"#,
            model,
            candidate,
            since,
        )
        .fetch_all(&mut *tx)
        .await?;
        let classes = sqlx::query!(
            r#"SELECT class AS "class!", model_items AS "model_items!",
                      candidate_items AS "candidate_items!", matched AS "matched!",
                      CASE WHEN model_items + candidate_items > 0
                           THEN 2.0 * matched / (model_items + candidate_items) END::float8
                        AS agreement
               FROM (SELECT c.key AS class,
                            sum((c.value ->> 'model')::bigint)::bigint AS model_items,
                            sum((c.value ->> 'candidate')::bigint)::bigint AS candidate_items,
                            sum((c.value ->> 'matched')::bigint)::bigint AS matched
                     FROM shadow_results s, jsonb_each(s.classes) AS c
                     WHERE s.model_name = $1 AND s.candidate = $2 AND s.created_at >= $3
                     GROUP BY c.key) per_class
               ORDER BY model_items + candidate_items DESC, class"#,
            model,
            candidate,
            since,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let classes: Vec<ClassAgreement> = classes
            .into_iter()
            .map(|c| ClassAgreement {
                class: c.class,
                counts: Agreement {
                    model_items: c.model_items,
                    candidate_items: c.candidate_items,
                    matched: c.matched,
                    agreement: c.agreement,
                },
            })
            .collect();
        let (m, c, matched) = classes.iter().fold((0, 0, 0), |(m, c, x), row| {
            (
                m + row.counts.model_items,
                c + row.counts.candidate_items,
                x + row.counts.matched,
            )
        });
        Ok(ShadowComparison {
            model: model.to_string(),
            candidate: candidate.to_string(),
            since,
            jobs: totals.jobs,
            versions,
            classes,
            overall: Agreement {
                model_items: m,
                candidate_items: c,
                matched,
                agreement: agreement(m, c, matched),
            },
            model_seconds: Percentiles {
                p50: totals.model_p50,
                p95: totals.model_p95,
            },
            candidate_seconds: Percentiles {
                p50: totals.candidate_p50,
                p95: totals.candidate_p95,
            },
        })
    }

    /// Every (model, candidate) pair with shadow runs, the most recently run first, with
    /// its runs since `since` (0 when it ran only before) and its latest run. The pairs
    /// are found by walking the distinct prefixes of `shadow_results_pair` (one index
    /// probe per pair), and each pair's runs are one range of it.
    pub async fn shadow_pairs(&self, since: DateTime<Utc>) -> Result<Vec<ShadowPair>, StoreError> {
        let rows = sqlx::query_as!(
            ShadowPair,
            r#"WITH RECURSIVE pairs (model_name, candidate) AS (
                   (SELECT model_name, candidate FROM shadow_results
                    ORDER BY model_name, candidate LIMIT 1)
                   UNION ALL
                   SELECT next.model_name, next.candidate
                   FROM pairs p, LATERAL (
                       SELECT s.model_name, s.candidate FROM shadow_results s
                       WHERE (s.model_name, s.candidate) > (p.model_name, p.candidate)
                       ORDER BY s.model_name, s.candidate LIMIT 1) next
               )
               SELECT p.model_name AS "model!", p.candidate AS "candidate!",
                      runs.jobs AS "jobs!", latest.at AS "last_at!"
               FROM pairs p,
                    LATERAL (SELECT count(*) AS jobs FROM shadow_results s
                             WHERE s.model_name = p.model_name AND s.candidate = p.candidate
                               AND s.created_at >= $1) runs,
                    LATERAL (SELECT s.created_at AS at FROM shadow_results s
                             WHERE s.model_name = p.model_name AND s.candidate = p.candidate
                             ORDER BY s.created_at DESC LIMIT 1) latest
               ORDER BY 4 DESC, 1, 2"#,
            since,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_the_f1_of_the_two_sets() {
        assert_eq!(agreement(0, 0, 0), None);
        assert_eq!(agreement(4, 4, 4), Some(1.0));
        assert_eq!(agreement(3, 1, 1), Some(0.5));
        assert_eq!(agreement(2, 0, 0), Some(0.0));
    }

    #[test]
    fn class_counts_are_stored_by_name() {
        let classes = BTreeMap::from([(
            "orange".to_string(),
            ClassCounts {
                model: 2,
                candidate: 1,
                matched: 1,
            },
        )]);
        assert_eq!(
            serde_json::to_value(&classes).unwrap(),
            serde_json::json!({"orange": {"model": 2, "candidate": 1, "matched": 1}})
        );
    }
}
