-- Images uploaded through POST /v2/uploads: the bytes are kept here, beside their job,
-- until the worker has read them. The scheduler purges an upload once its job finished
-- and the retention period passed, and any upload past `expires_at` (a hard maximum age,
-- whatever the job's state).
CREATE TABLE uploads (
    id           uuid        PRIMARY KEY,
    job_id       uuid        NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    content_type text        NOT NULL,                -- sniffed from the bytes, not the client's header
    filename     text        NOT NULL,                -- the job's image_id
    bytes        bytea       NOT NULL,
    size         bigint      NOT NULL CHECK (size = octet_length(bytes)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

-- JPEG, PNG and WebP are compressed already: store them out of line without trying again.
ALTER TABLE uploads ALTER COLUMN bytes SET STORAGE EXTERNAL;

CREATE INDEX uploads_expires ON uploads (expires_at);
