-- Every periodic query of the scheduler reads through an index, so its cost follows the
-- rows it handles, not the size of the tables.

-- Retention: finished jobs, oldest first (the states are literals in the query, so its
-- plan can prove the predicate).
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'failed');

-- Deleting a job cascades to its idempotency key; without this index every deleted job
-- would scan the table.
CREATE INDEX idempotency_keys_job ON idempotency_keys (job_id);

-- Uploads purge: uploads created before the retention cutoff (the only ones whose job can
-- have finished before it), beside `uploads_expires` for the hard maximum age.
CREATE INDEX uploads_created ON uploads (created_at);

-- Outbox prune: published rows, oldest first.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Daily reconciliation: the recovery events of one day (re-drives, jobs failed after
-- losing their worker, republished dispatch messages). The details are those the sweeps
-- write (`REDRIVE_DETAIL`, `LOST_FAIL_DETAIL`, `REPUBLISH_DETAIL`), also literals in the
-- reconciliation's query. Jobs created on the day use `jobs_created`, failed deliveries
-- of the day `deliveries_failed`.
CREATE INDEX job_events_recoveries ON job_events (at)
    WHERE detail IN ('redrive: lease expired (worker lost)',
                     'fail: lease expired with no attempt left',
                     'republish: dispatch message may have been lost');
