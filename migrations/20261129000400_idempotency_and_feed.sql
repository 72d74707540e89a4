-- Idempotency keys: a client's `Idempotency-Key` header on POST /enqueue or
-- POST /v2/uploads, bound to the job the first request created. Written in the enqueue's
-- transaction (before the job row, hence the deferred reference), so a key never exists
-- without its job nor a job without its key. Keys are scoped per API key; requests
-- without a key share one scope (api_key_id NULL, NULLS NOT DISTINCT: Postgres 15+).
CREATE TABLE idempotency_keys (
    api_key_id   uuid        REFERENCES api_keys (id) ON DELETE CASCADE,
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea       NOT NULL CHECK (octet_length(request_hash) = 32),
    job_id       uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE
                             DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_scope_key UNIQUE NULLS NOT DISTINCT (api_key_id, key)
);
-- The scheduler purges expired keys.
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- The reconciliation feed (GET /v2/jobs): jobs changed since a time, keyset-paged.
CREATE INDEX jobs_updated ON jobs (updated_at, id);

-- Finished jobs whose webhook is not delivered (GET /undelivered), keyset-paged.
CREATE INDEX deliveries_created ON deliveries (created_at, id);
