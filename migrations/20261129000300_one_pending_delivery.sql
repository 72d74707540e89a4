-- At most one pending webhook delivery per job: an operator's redelivery waits until
-- the job's current delivery has ended (so a flood of redelivery requests cannot queue a
-- flood of webhooks to the receiver).
CREATE UNIQUE INDEX deliveries_one_pending ON deliveries (job_id) WHERE status = 'pending';
