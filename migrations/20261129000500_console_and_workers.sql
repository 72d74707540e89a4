-- Workers register themselves: one row per worker process with the models it serves,
-- refreshed by a heartbeat. A worker is live while its heartbeat is recent; a worker that
-- stops cleanly deletes its row, one that dies leaves a row that goes stale and is purged.
CREATE TABLE workers (
    id           text        PRIMARY KEY,
    models       text[]      NOT NULL,
    concurrency  integer     NOT NULL CHECK (concurrency > 0),
    version      text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);

-- Operator console sessions. The cookie carries a random token; only its SHA-256 is
-- stored, with the key that logged in (revoking the key ends its sessions) and the
-- session's CSRF token, which every form of the console must send back.
CREATE TABLE console_sessions (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    api_key_id uuid        NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- The console's job list: newest first, keyset-paged on (created_at, id), optionally by
-- status (the status index gains the id, so a page boundary is an index condition); and
-- the search by exact image URL (a hash index: URLs can be longer than a btree entry).
CREATE INDEX jobs_created ON jobs (created_at, id);
DROP INDEX jobs_status_created;
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX jobs_image_url ON jobs USING hash (image_url);
