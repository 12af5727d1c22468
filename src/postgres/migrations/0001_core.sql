-- handoff's tables in PostgreSQL (the scale-out backend; ../../../README.md "Several instances").
-- Bodies are written once (events), job rows are narrow, history is append-only and leaves by
-- partition, so vacuum keeps up.

-- Dedupe: one row per (source, event id), kept for the dedupe window. Not partitioned: a unique
-- key on a partitioned table must include the partition key.
CREATE TABLE seen (
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    first_id    bigint      NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- Accepted events, written once; partitions by day are dropped after the retention window.
CREATE TABLE events (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    envelope    bytea       NOT NULL,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Work distribution: records hash to a fixed number of partitions, each leased by one instance
-- with an epoch that fences a previous owner's writes.
CREATE TABLE parts (
    part        smallint    PRIMARY KEY,
    owner       text,
    epoch       bigint      NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);

-- Open jobs and dead letters only, narrow, no body (an edited payload is the exception).
-- `xid` lets pollers stop below the oldest transaction still running, so a lower id committed
-- late is never skipped.
CREATE TABLE jobs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event       bigint      NOT NULL,
    part        smallint    NOT NULL,
    order_key   text        NOT NULL,
    flow        text        NOT NULL,
    connector   text        NOT NULL,
    state       text        NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    due_at      timestamptz,
    in_doubt    boolean     NOT NULL DEFAULT false,
    reason      jsonb,
    payload     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id()
) WITH (autovacuum_vacuum_scale_factor = 0.01);
CREATE INDEX jobs_by_part ON jobs (part, id);
CREATE INDEX jobs_by_state ON jobs (state, connector);

-- Every attempt and state change, append-only, partitioned by day.
CREATE TABLE job_log (
    job         bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL,
    detail      jsonb       NOT NULL
) PARTITION BY RANGE (at);
CREATE TABLE job_log_default PARTITION OF job_log DEFAULT;

-- The small mutable indexes the embedded backend keeps in sled.
CREATE TABLE xrefs (
    system      text        NOT NULL,
    kind        text        NOT NULL,
    crm_id      text        NOT NULL,
    external_id text        NOT NULL,
    detail      jsonb       NOT NULL,
    PRIMARY KEY (system, kind, crm_id)
);
CREATE TABLE applied (
    flow        text        NOT NULL,
    record      text        NOT NULL,
    detail      jsonb       NOT NULL,
    PRIMARY KEY (flow, record)
);
CREATE TABLE order_status (
    order_ref   text        PRIMARY KEY,
    status      text        NOT NULL
);
CREATE TABLE echo (
    record      text        PRIMARY KEY,
    detail      jsonb       NOT NULL
);
-- An ERP poller's cursor, and which instance polls that ERP now (one at a time).
CREATE TABLE poll_cursors (
    connector   text        PRIMARY KEY,
    cursor      jsonb,
    owner       text,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);
