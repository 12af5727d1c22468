-- The instances alive now: each renews its row every lease round, so every instance knows how
-- many share the partitions (a newcomer counts before it owns any, and gets its share).
CREATE TABLE instances (
    name        text        PRIMARY KEY,
    seen_until  timestamptz NOT NULL
);
