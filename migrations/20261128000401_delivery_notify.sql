-- Wakes schedulers (LISTEN foodseg_deliveries) as soon as a webhook delivery is
-- committed, so a finished job's webhook does not wait for the next poll. One
-- notification per statement; Postgres folds identical ones within a transaction.
CREATE FUNCTION foodseg_notify_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('foodseg_deliveries', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_notify
    AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION foodseg_notify_deliveries();
