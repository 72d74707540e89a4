-- Priority lanes and batches: a job is `interactive` (a person waits for it) or `bulk` (a
-- backfill). Workers take interactive jobs first; bulk jobs go out to NATS a few at a
-- time per model, the API keys that own them taking turns, so a backfill of any size
-- never stands between a person and their result.

CREATE TYPE job_priority AS ENUM ('interactive', 'bulk');

-- A batch of jobs sent in one `POST /v2/jobs`.
CREATE TABLE batches (
    id           uuid         PRIMARY KEY,
    -- The API key that sent it (NULL: sent without a key, where keys are not required).
    owner_key_id uuid         REFERENCES api_keys (id),
    priority     job_priority NOT NULL,
    size         integer      NOT NULL CHECK (size > 0),
    created_at   timestamptz  NOT NULL DEFAULT now(),
    -- When the rest of the batch was cancelled, and by whom.
    cancelled_at timestamptz,
    cancelled_by text
);
CREATE INDEX batches_created ON batches (created_at, id);
CREATE INDEX batches_owner_created ON batches (owner_key_id, created_at, id);

-- Existing jobs were all sent by a person: interactive. Adding a column with a constant
-- default rewrites nothing.
ALTER TABLE jobs
    ADD COLUMN priority job_priority NOT NULL DEFAULT 'interactive',
    ADD COLUMN batch_id uuid REFERENCES batches (id);
CREATE INDEX jobs_batch ON jobs (batch_id, status) WHERE batch_id IS NOT NULL;
-- Queue depth and the oldest queued job per priority.
CREATE INDEX jobs_queued_priority ON jobs (priority, created_at) WHERE status = 'queued';

-- The NATS subject a job's dispatch messages go to: `<prefix>.jobs.segment.<model>` for
-- interactive jobs, `<prefix>.jobs.bulk.<model>` for bulk ones (one consumer each).
CREATE FUNCTION job_subject(prefix text, priority job_priority, model text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT prefix || '.jobs.'
               || CASE priority WHEN 'bulk' THEN 'bulk' ELSE 'segment' END
               || '.' || model
    $$;

-- A bulk job's first dispatch message is held in the outbox: the relay releases held
-- messages per subject only while fewer than `FOODSEG_BULK_WINDOW` wait on the stream,
-- taking them round-robin over their owners (`held_for`: the owning key's id, '' for
-- none). NULL for every message published as soon as it is written.
ALTER TABLE outbox ADD COLUMN held_for text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL AND held_for IS NULL;
CREATE INDEX outbox_held ON outbox (subject, held_for, id)
    WHERE published_at IS NULL AND held_for IS NOT NULL;
