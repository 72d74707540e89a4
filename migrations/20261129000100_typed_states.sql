-- States as Postgres enum types, the same sets as the Rust enums (`JobStatus`,
-- `DeliveryStatus`, `AttemptOutcome` in foodseg-engine). A misspelled or removed state in
-- a query now fails when the query is checked (`cargo sqlx prepare --check`), not in
-- production.
CREATE TYPE job_status AS ENUM ('queued', 'running', 'succeeded', 'failed');
CREATE TYPE delivery_status AS ENUM ('pending', 'delivered', 'failed');
CREATE TYPE attempt_outcome AS ENUM ('delivered', 'retry', 'gone', 'failed');

-- Constraints and partial indexes that compare the text columns go first; they are
-- recreated against the enums below.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check, DROP CONSTRAINT jobs_check;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
DROP INDEX jobs_running_lease, jobs_queued_updated, jobs_status_created,
           deliveries_due, deliveries_failed;

ALTER TABLE jobs ALTER COLUMN status TYPE job_status USING status::job_status;
ALTER TABLE job_events
    ALTER COLUMN from_status TYPE job_status USING from_status::job_status,
    ALTER COLUMN to_status TYPE job_status USING to_status::job_status;
ALTER TABLE deliveries ALTER COLUMN status TYPE delivery_status USING status::delivery_status;
ALTER TABLE delivery_attempts ALTER COLUMN outcome TYPE attempt_outcome USING outcome::attempt_outcome;

-- A running job holds a lease; no other state does.
ALTER TABLE jobs ADD CONSTRAINT jobs_lease_iff_running
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL));

-- The sweeps and the delivery loop read only their own state's rows.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_queued_updated ON jobs (updated_at) WHERE status = 'queued';
CREATE INDEX jobs_status_created ON jobs (status, created_at);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_failed ON deliveries (finished_at) WHERE status = 'failed';
