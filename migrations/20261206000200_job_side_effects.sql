-- One home for two expressions every job transition used to repeat.

-- The headers of a job's NATS messages: its W3C trace context, when it has one.
CREATE FUNCTION job_trace_headers(traceparent text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN traceparent IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object('traceparent', traceparent) END
    $$;

-- The `webhook-id` of a job's next webhook delivery. The first is `msg_<job id>`; a later
-- one (an operator's redelivery, the result of a resubmitted job) is a new message, so it
-- gets a new id, `msg_<job id>_<8 random hex digits>`: receivers that deduplicate on the
-- id must not drop it.
CREATE FUNCTION job_webhook_id(job uuid) RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
        SELECT CASE WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = job)
                    THEN 'msg_' || replace(job::text, '-', '') || '_'
                         || left(replace(gen_random_uuid()::text, '-', ''), 8)
                    ELSE 'msg_' || replace(job::text, '-', '') END
    $$;
