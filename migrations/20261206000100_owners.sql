-- Every job belongs to the API key that created it, or to no one (a keyless MFR v1 call,
-- unless FOODSEG_V1_OWNER names the key that owns those). A key's reconciliation feed
-- (GET /v2/jobs) lists only the jobs it owns; an operator key's lists every job.
ALTER TABLE jobs ADD COLUMN owner_key_id uuid REFERENCES api_keys (id);

-- One owner's feed, all statuses or a few: the feed reads each status's range in
-- (updated_at, id) order and merges them. Keyless jobs are not in it.
CREATE INDEX jobs_owner_status_updated ON jobs (owner_key_id, status, updated_at, id)
    WHERE owner_key_id IS NOT NULL;

-- The operator's feed filtered by status, read the same way.
CREATE INDEX jobs_status_updated ON jobs (status, updated_at, id);

-- Keyless Idempotency-Keys are scoped to the client's address (behind trusted proxies,
-- the address X-Forwarded-For names), so that one client can neither replay nor squat
-- another's keys; keyed requests stay scoped per API key (client_addr NULL). Keys written
-- before this migration keep the shared keyless scope until they expire.
ALTER TABLE idempotency_keys ADD COLUMN client_addr text;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_scope_key;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_scope_key
    UNIQUE NULLS NOT DISTINCT (api_key_id, client_addr, key);
