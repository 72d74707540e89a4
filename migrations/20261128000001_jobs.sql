-- Jobs: the source of truth for every segmentation request.
-- status is the internal state; the API maps it to the MFR.Job.* strings.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    status           text        NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    model_id         text        NOT NULL,          -- model identifier the job runs with (MFR's model_id)
    model_name       text        NOT NULL,          -- registry name of that model (subject suffix)
    image_url        text        NOT NULL,
    webhook_url      text,
    message          text        NOT NULL,
    response         jsonb,
    attempt          integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer     NOT NULL CHECK (max_attempts > 0),
    lease_owner      text,
    lease_expires_at timestamptz,
    not_before       timestamptz,                   -- earliest time a queued job may be claimed (retry backoff)
    last_error       text,
    trace_id         text,
    traceparent      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    processing_time  double precision,
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL))
);

-- Sweeps look only at unfinished jobs.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_queued_updated ON jobs (updated_at) WHERE status = 'queued';
CREATE INDEX jobs_status_created ON jobs (status, created_at);

-- Every transition of every job, in order.
CREATE TABLE job_events (
    id          bigserial   PRIMARY KEY,
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    from_status text,
    to_status   text        NOT NULL,
    attempt     integer     NOT NULL,
    actor       text        NOT NULL,
    detail      text
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Messages written in the same transaction as the state they announce,
-- published to JetStream by the relay.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    subject      text        NOT NULL,
    msg_id       text        NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- One webhook delivery per finished job (and per operator redelivery).
CREATE TABLE deliveries (
    id              uuid        PRIMARY KEY,
    job_id          uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    webhook_id      text        NOT NULL,           -- Standard Webhooks id, stable across attempts
    url             text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,                    -- a scheduler is sending the next attempt
    last_error      text,
    traceparent     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_job ON deliveries (job_id, created_at);

-- Every delivery attempt, whatever its outcome.
CREATE TABLE delivery_attempts (
    id            bigserial   PRIMARY KEY,
    delivery_id   uuid        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       integer     NOT NULL,
    started_at    timestamptz NOT NULL,
    latency_ms    double precision NOT NULL,
    status_code   integer,
    error         text,
    outcome       text        NOT NULL CHECK (outcome IN ('delivered', 'retry', 'gone', 'failed')),
    UNIQUE (delivery_id, attempt)
);
