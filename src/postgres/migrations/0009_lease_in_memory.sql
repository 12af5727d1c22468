-- A lease of a job is kept by the instance that runs it, in memory, under its partition's
-- epoch: the lease writes nothing to the job's row (the update of every leased row was the
-- largest single cost of an order on PostgreSQL). Each instance publishes the ids it has in
-- flight with its heartbeat, for the dashboard's counts and the members' view.
-- (`jobs.leased_epoch` and the state 'leased' are no longer written; rows left so by an
-- earlier version are made ready again, in doubt, when their partition is taken.)
ALTER TABLE instances ADD COLUMN leased bigint[] NOT NULL DEFAULT '{}';
