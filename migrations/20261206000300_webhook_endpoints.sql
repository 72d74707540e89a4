-- Webhook endpoints: a webhook URL's scheme, host and port. Their health is shared by
-- every scheduler: after a run of failed attempts an endpoint is paused (nothing is sent
-- to it but one probe per interval), and every endpoint is sent at most a given rate and
-- number of deliveries at once. Deliveries of a paused endpoint wait without spending
-- attempts.

-- The endpoint of a webhook URL: `scheme://host:port`, lower-cased, without user info,
-- path, query or fragment, with the scheme's default port written out. Webhook URLs are
-- validated (as http or https URLs with a host) before they are stored; a text that is not
-- a URL is its own endpoint.
CREATE FUNCTION webhook_endpoint(url text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT coalesce((SELECT lower(p[1]) || '://' || lower(p[2]) || ':'
               || coalesce(nullif(p[3], ''),
                           CASE lower(p[1]) WHEN 'https' THEN '443' WHEN 'http' THEN '80' ELSE '' END)
        FROM (SELECT regexp_match(
                  url,
                  '^([A-Za-z][A-Za-z0-9+.-]*)://(?:[^/?#]*@)?(\[[^]/?#]*\]|[^:/?#]*)(?::([0-9]*))?')
              ) AS m(p)), url)
    $$;

CREATE TYPE endpoint_state AS ENUM ('active', 'paused');

CREATE TABLE webhook_endpoints (
    endpoint          text           PRIMARY KEY,
    state             endpoint_state NOT NULL DEFAULT 'active',
    -- Failed attempts since the last answer that showed the endpoint up.
    failures          integer        NOT NULL DEFAULT 0,
    last_error        text,
    last_failure_at   timestamptz,
    -- While paused: since when, by whom (a scheduler, or the operator's key), and whether
    -- by hand (then only a hand resumes it, and no probe is sent).
    paused_at         timestamptz,
    paused_by         text,
    manual            boolean        NOT NULL DEFAULT false,
    -- While paused by failures: the wait before the next probe (doubling while probes
    -- fail), when it is due, and until when one is in flight.
    probe_interval_ms bigint,
    next_probe_at     timestamptz,
    probe_until       timestamptz,
    -- The rate limit: the earliest time the next delivery may be sent.
    next_send_at      timestamptz    NOT NULL DEFAULT 'epoch',
    -- The limits the schedulers last applied (`50/1s, 8 at once`), for operators.
    limits            text,
    created_at        timestamptz    NOT NULL DEFAULT now(),
    updated_at        timestamptz    NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_paused ON webhook_endpoints (paused_at) WHERE state = 'paused';

-- Pauses and resumes, automatic or by hand.
CREATE TYPE endpoint_action AS ENUM ('paused', 'resumed');
CREATE TABLE webhook_endpoint_events (
    id        bigserial       PRIMARY KEY,
    endpoint  text            NOT NULL REFERENCES webhook_endpoints (endpoint) ON DELETE CASCADE,
    at        timestamptz     NOT NULL DEFAULT now(),
    action    endpoint_action NOT NULL,
    actor     text            NOT NULL,
    detail    text
);
CREATE INDEX webhook_endpoint_events_endpoint ON webhook_endpoint_events (endpoint, at);

ALTER TABLE deliveries ADD COLUMN endpoint text GENERATED ALWAYS AS (webhook_endpoint(url)) STORED;
-- A delivery claim finds its endpoint's due deliveries, oldest first; the operator's view
-- counts each endpoint's waiting ones.
CREATE INDEX deliveries_endpoint_due ON deliveries (endpoint, next_attempt_at) WHERE status = 'pending';
-- Claims count each endpoint's attempts in flight.
CREATE INDEX deliveries_in_flight ON deliveries (endpoint)
    WHERE status = 'pending' AND locked_until IS NOT NULL;
-- Deliveries pending longer than FOODSEG_WEBHOOK_MAX_AGE fail, oldest first.
CREATE INDEX deliveries_pending_created ON deliveries (created_at) WHERE status = 'pending';

-- Every endpoint a delivery is made for has its row.
INSERT INTO webhook_endpoints (endpoint)
    SELECT DISTINCT endpoint FROM deliveries WHERE status = 'pending'
    ON CONFLICT DO NOTHING;

CREATE FUNCTION foodseg_delivery_endpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_endpoints (endpoint)
        SELECT DISTINCT n.endpoint FROM new_deliveries n
        WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.endpoint = n.endpoint)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_endpoints
    AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION foodseg_delivery_endpoints();
