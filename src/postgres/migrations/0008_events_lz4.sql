-- An order's envelope (its webhook body, ~2 KB for ten lines) makes the row long enough for
-- PostgreSQL to compress it, with pglz by default: ~4% of PostgreSQL's CPU in the orders bench
-- (perf), on insert, and again on each read (the router's, the lease's). lz4 compresses about
-- as small at a fraction of the CPU. The parent and each partition there now are altered (the
-- parent's setting does not reach them); partitions made later take the parent's. A server
-- built without lz4 keeps pglz.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT 'events'::regclass
                UNION ALL SELECT inhrelid::regclass FROM pg_inherits
                          WHERE inhparent = 'events'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN envelope SET COMPRESSION lz4', part);
    END LOOP;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not built into this server: events stay compressed with pglz';
END
$$;
