//! The daily reconciliation: at `FOODSEG_RECONCILE_AT` (UTC) one scheduler — whichever
//! takes the advisory lock and the day first — reports the UTC day that just ended: the
//! jobs created that day by state, that day's recoveries and failed deliveries, and the
//! webhook and outbox backlogs; it logs them and exports them as gauges. Every count reads
//! only that day's rows (or the backlog), so the pass costs the same whatever the size of
//! the tables.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use foodseg_engine::error_chain;
use foodseg_engine::store::ReconciliationReport;
use foodseg_engine::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Published outbox rows deleted per statement by the daily prune.
const PRUNE_BATCH: i64 = 5000;

/// The first time at `at` (UTC) strictly after `now`.
pub fn next_run(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(at).and_utc();
    if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

/// The day a pass run at `run` reports: the UTC day before.
pub fn reported_day(run: DateTime<Utc>) -> Option<NaiveDate> {
    run.date_naive().pred_opt()
}

/// The day whose report was missed — the day reported by the latest pass whose time `at`
/// has come by `now` — when the report of an earlier day is the last one stored (no
/// scheduler was up at `at`). `None` when that day's report exists, or when none was ever
/// stored.
pub fn missed_day(now: DateTime<Utc>, at: NaiveTime, last: Option<NaiveDate>) -> Option<NaiveDate> {
    let today = now.date_naive();
    let run = if today.and_time(at).and_utc() <= now {
        today
    } else {
        today.pred_opt()?
    };
    let due = run.pred_opt()?;
    last.filter(|&last| last < due).map(|_| due)
}

/// Runs the pass every day at `at` until `shutdown`, first catching up a day whose pass
/// no scheduler was up to run.
pub async fn run(store: Store, at: NaiveTime, shutdown: CancellationToken) {
    // A restarted scheduler reports the last stored pass, so the freshness alert does
    // not wait a day to know.
    match store.reconciliations(1).await {
        Ok(rows) => {
            if let Some(last) = rows.first() {
                metrics::reconcile_succeeded(last.started_at);
            }
            if let Some(day) = missed_day(Utc::now(), at, rows.first().map(|r| r.day)) {
                tracing::info!(%day, "catching up a missed daily reconciliation");
                if let Err(e) = reconcile(&store, day).await {
                    tracing::error!(error = %error_chain(&e), "daily reconciliation failed");
                }
            }
        }
        Err(e) => tracing::debug!(error = %error_chain(&e), "cannot read the last reconciliation"),
    }
    loop {
        let now = Utc::now();
        let next = next_run(now, at);
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(day) = reported_day(next) else {
            continue;
        };
        if let Err(e) = reconcile(&store, day).await {
            tracing::error!(error = %error_chain(&e), "daily reconciliation failed");
        }
    }
}

/// How long published outbox rows are kept.
pub const OUTBOX_KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Runs the reconciliation of the UTC day `day` unless another scheduler did; logs and
/// exports it, then prunes the outbox.
pub async fn reconcile(
    store: &Store,
    day: NaiveDate,
) -> Result<Option<ReconciliationReport>, StoreError> {
    let Some(report) = store.reconcile(day).await? else {
        tracing::debug!(%day, "reconciliation already run by another scheduler");
        return Ok(None);
    };
    for c in &report.jobs {
        tracing::info!(%day, status = %c.status, count = c.count, "reconciliation: jobs created that day");
    }
    tracing::info!(
        %day,
        redriven_24h = report.redriven_24h,
        lost_failed_24h = report.lost_failed_24h,
        republished_24h = report.republished_24h,
        deliveries_failed_24h = report.deliveries_failed_24h,
        deliveries_pending = report.deliveries_pending,
        outbox_unpublished = report.outbox_unpublished,
        "daily reconciliation"
    );
    metrics::reconciled(&report);
    metrics::reconcile_succeeded(Utc::now());
    // Published dispatch messages are only kept for inspection; JetStream's duplicate
    // window is minutes, so a day is plenty and the outbox stays small.
    // In batches, each its own short statement.
    let mut pruned = 0;
    loop {
        let n = store.outbox_prune(OUTBOX_KEEP, PRUNE_BATCH).await?;
        pruned += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    tracing::info!(%day, pruned, "published outbox rows pruned");
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_missed_day_is_caught_up_once() {
        let three = NaiveTime::from_hms_opt(3, 0, 0).expect("time");
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 3, 5, 0).unwrap();
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
        assert_eq!(
            missed_day(now, three, Some(day(27))),
            Some(day(28)),
            "restart at 03:05: the 28th is reported"
        );
        assert_eq!(
            missed_day(now, three, Some(day(28))),
            None,
            "already reported"
        );
        assert_eq!(
            missed_day(now, three, None),
            None,
            "never run: nothing missed"
        );
        let before = Utc.with_ymd_and_hms(2026, 11, 29, 2, 0, 0).unwrap();
        assert_eq!(
            missed_day(before, three, Some(day(27))),
            None,
            "the 28th's report is still ahead"
        );
        assert_eq!(
            missed_day(before, three, Some(day(25))),
            Some(day(27)),
            "down for days"
        );
    }

    #[test]
    fn a_pass_reports_the_day_before() {
        let run = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
        assert_eq!(reported_day(run), NaiveDate::from_ymd_opt(2026, 11, 30));
    }

    #[test]
    fn next_run_is_today_or_tomorrow() {
        let three = NaiveTime::from_hms_opt(3, 0, 0).unwrap();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 28, h, m, 0).unwrap();
        assert_eq!(next_run(at(1, 0), three), at(3, 0));
        assert_eq!(
            next_run(at(3, 0), three),
            at(3, 0) + chrono::Duration::days(1)
        );
        assert_eq!(
            next_run(at(23, 59), three),
            at(3, 0) + chrono::Duration::days(1)
        );
    }
}
