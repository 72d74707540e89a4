-- A worker that stops cleanly keeps its registry row, marked stopped, until it is
-- forgotten a day later: the scheduler needs to know how long a model has had no worker
-- (FOODSEG_MAX_QUEUE_WAIT) even when its workers scaled to zero on purpose.
ALTER TABLE workers ADD COLUMN stopped_at timestamptz;
