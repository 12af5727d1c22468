-- `jobs_by_part` (part, id) was picked, under statistics taken while the queue was nearly
-- empty, for whole-index scans by a settle (`state = 'leased'` filtered over every entry, dead
-- ones included: 250-1,200 ms a batch in the soak) and by the timers. Jobs are found by id,
-- line, connector or due time; the rare look-up by partition (a partition taken over) reads
-- the table.
DROP INDEX IF EXISTS jobs_by_part;
