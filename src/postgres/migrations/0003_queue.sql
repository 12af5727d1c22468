-- The whole queue on PostgreSQL (the `Queue` trait): a job row carries what its columns do not
-- (`body`, the job as JSON without its payload); settled jobs leave `jobs` for `finished`,
-- append-only and partitioned by day like `events` and `job_log`, so history goes by dropping
-- partitions and `jobs` holds only open jobs and dead letters.
ALTER TABLE jobs ADD COLUMN body jsonb NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN waits_for jsonb;
CREATE INDEX jobs_parked ON jobs (waits_for) WHERE state = 'parked';
CREATE INDEX jobs_by_object ON jobs ((body->>'object_id'));
CREATE INDEX jobs_due ON jobs (due_at) WHERE due_at IS NOT NULL;
-- The lease query: the jobs still in their record's line (a later job waits while an earlier
-- one is here), and the runnable ones in id order.
CREATE INDEX jobs_in_line ON jobs (order_key, id) WHERE state IN ('ready', 'leased', 'retrying');
CREATE INDEX jobs_runnable ON jobs (connector, id) WHERE state IN ('ready', 'retrying');
CREATE INDEX jobs_dead_by_object ON jobs (flow, (body->>'object_id')) WHERE state = 'dead';

CREATE TABLE finished (
    id          bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    job         jsonb       NOT NULL
) PARTITION BY RANGE (at);
CREATE TABLE finished_default PARTITION OF finished DEFAULT;
CREATE INDEX finished_by_id ON finished (id);
CREATE INDEX finished_by_key ON finished ((job->>'order_key'));
CREATE INDEX finished_by_object ON finished ((job->>'object_id'));

CREATE INDEX job_log_by_job ON job_log (job);

-- How many milestones a status poller emitted per order (its events' ids count them).
CREATE TABLE poll_emitted (
    connector   text        NOT NULL,
    order_ref   text        NOT NULL,
    emitted     bigint      NOT NULL,
    PRIMARY KEY (connector, order_ref)
);

-- Reconciliation runs, as sync::reconcile keeps them.
CREATE TABLE reconcile_runs (
    id          bigint      PRIMARY KEY,
    run         jsonb       NOT NULL
);
