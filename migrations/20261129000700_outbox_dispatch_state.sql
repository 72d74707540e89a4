-- What the sweeper needs to tell a lost dispatch message from one that simply waits:
-- which job a message is about, where JetStream stored it, and when it may be published.

-- Every outbox payload names its job; the column makes "the job's latest dispatch
-- message" an index lookup.
ALTER TABLE outbox
    ADD COLUMN job_id uuid GENERATED ALWAYS AS ((payload ->> 'job_id')::uuid) STORED,
    -- The stream sequence JetStream acknowledged the publish with.
    ADD COLUMN stream_seq bigint,
    -- A retry's dispatch message waits in Postgres, not on the NATS server, until its
    -- backoff is over: the relay publishes it from this time on.
    ADD COLUMN not_before timestamptz;

CREATE INDEX outbox_job ON outbox (job_id, id);

-- The sweeper pages through stale queued jobs by (updated_at, id).
DROP INDEX jobs_queued_updated;
CREATE INDEX jobs_queued_updated ON jobs (updated_at, id) WHERE status = 'queued';
