-- `jobs_by_object` (the expression body->>'object_id' over every job) was used by no plan: the
-- dead-letter look-ups by record use `jobs_dead_by_object`, and the dashboard's search by record
-- ORs it with fields no index covers, so it reads the table. It was the largest index on `jobs`
-- and every insert and every change of a job's state (not a HOT update: `state` is indexed)
-- read the job's body to add an entry to it.
DROP INDEX IF EXISTS jobs_by_object;
