-- Model versions and shadow runs. A model's version is the SHA-256 of its ONNX file (hex);
-- every job records the version of the model that produced its result. A worker with
-- `FOODSEG_SHADOW=CANDIDATE:SHARE` also runs a share of its jobs on a candidate model after
-- the real result is written, and keeps the candidate's answer here, beside the job: never
-- sent in a webhook, compared by `GET /shadow` and the console's Shadow page.

ALTER TABLE jobs ADD COLUMN model_version text;

CREATE TABLE shadow_results (
    job_id            uuid        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    -- The model that served the job, and its version.
    model_name        text        NOT NULL,
    model_version     text        NOT NULL,
    -- The candidate run beside it, and its version.
    candidate         text        NOT NULL,
    candidate_version text        NOT NULL,
    -- The candidate's items, in the v1 item form.
    items             jsonb       NOT NULL,
    -- Seconds each model took on the job's image (decode to items).
    model_seconds     float8      NOT NULL,
    candidate_seconds float8      NOT NULL,
    -- Per category name: {"model": n, "candidate": n, "matched": n}; matched items have
    -- the same category and a mask IoU of at least 0.5.
    classes           jsonb       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shadow_results_pair ON shadow_results (model_name, candidate, created_at);
