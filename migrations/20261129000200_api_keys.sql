-- API keys. A key is a random token shown once when it is created; only its SHA-256
-- is stored. Scopes say what a key may do: `operator` (event logs, deliveries,
-- redelivery and every other operator route) and `submit` (the /v2 routes when keys are
-- required). A revoked key keeps its row (for the audit trail) and its name may be
-- reused by a new key.
CREATE TYPE api_key_scope AS ENUM ('operator', 'submit');

CREATE TABLE api_keys (
    id           uuid            PRIMARY KEY,
    name         text            NOT NULL CHECK (name <> ''),
    scopes       api_key_scope[] NOT NULL CHECK (cardinality(scopes) > 0),
    token_hash   bytea           NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz     NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- One live key per name.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
