-- Scheduler bookkeeping.
--
-- A QUEUED job whose dispatch message JetStream may have lost is republished by the
-- sweeper; these columns remember when and how often, so a long queue is not flooded
-- with copies (the wait before the next republish doubles each time).
ALTER TABLE jobs
    ADD COLUMN redispatched_at timestamptz,
    ADD COLUMN redispatches    integer NOT NULL DEFAULT 0;

-- One row per day the reconciliation pass ran: the first scheduler to insert the day
-- runs it, the others skip.
CREATE TABLE reconciliations (
    day         date        PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    report      jsonb       NOT NULL
);

-- Reconciliation counts failed deliveries of the last day.
CREATE INDEX deliveries_failed ON deliveries (finished_at) WHERE status = 'failed';
