-- A job is found by id through `jobs_pkey` and nothing else. With `id` a key column of
-- `jobs_by_key` (order_key, id), a planner whose statistics said the queue was empty (as a
-- vacuum that finds it empty leaves them) costed `id = …` as a scan of all of `jobs_by_key`
-- (a condition on its second column) as low as the probe of `jobs_pkey`, and a settle could
-- read the whole index for each job. `id` stays in the index, as a column it carries (the
-- line check reads it there) but not one it is searched by.
DROP INDEX IF EXISTS jobs_by_key;
CREATE INDEX jobs_by_key ON jobs (order_key) INCLUDE (id);
