-- The lease's check that a job is first in its record's line uses `jobs_by_key`. The partial
-- index on the same columns let the planner pick it for a look-up by id alone (a scan of the
-- whole index on every settle) when the table's statistics were stale, as they are in a queue.
DROP INDEX IF EXISTS jobs_in_line;
-- Statistics follow the table's churn sooner than the default 10%.
ALTER TABLE jobs SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
-- Likewise an index on (state, connector) was picked for a settle's `id = $1 AND state =
-- 'leased'` (every leased job scanned); the states an operator lists by are indexed alone.
DROP INDEX IF EXISTS jobs_by_state;
CREATE INDEX jobs_stuck ON jobs (state, id) WHERE state IN ('dead', 'parked', 'held');
