-- The instances alive now: each renews its row every lease round, so every instance knows how
-- many share the partitions (a newcomer counts before it owns any, and gets its share).
CREATE TABLE instances (
    name        text        PRIMARY KEY,
    seen_until  timestamptz NOT NULL
);

-- A leased job remembers the epoch of its partition's lease: when the partition moves, the new
-- owner runs what the old one had leased again (in doubt, under the same idempotency key).
ALTER TABLE jobs ADD COLUMN leased_epoch bigint;
CREATE INDEX jobs_by_key ON jobs (order_key, id);

-- The transaction that stored each event: the router reads events in (xid, id) order and only
-- below the oldest transaction still running, so an event whose transaction commits late is
-- never skipped.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_by_xid ON events (xid, id);
