-- Data-plane events are stored a batch to a row: the checked events as one JSON array in a
-- text column, as the control plane encoded them. Per event, a row cost PostgreSQL ~14 µs of
-- CPU (the jsonb parse, a heap tuple and three index entries, their WAL); a batch of 500 in
-- one row costs ~0.6 µs an event, and a twentieth of the disk. PostgreSQL never parses it
-- on the way in; the Admin API reads it back in the control plane.
CREATE TABLE clustering_dp_event_batches (
    n           bigserial PRIMARY KEY,                    -- arrival order, the paging cursor
    dp_id       text NOT NULL,                            -- the data plane's node id
    boot_id     text NOT NULL,                            -- its process start
    first_seq   bigint NOT NULL,                          -- the first and last event stored,
    last_seq    bigint NOT NULL,                          -- 1, 2, ... within boot_id
    count       integer NOT NULL,                         -- events in the row
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    events      text NOT NULL                             -- [[source, event, data, at, seq], ...]
);
-- A resent event is dropped by the high-water mark of its (dp_id, boot_id): a data plane
-- sends each boot's events in sequence order and every session stores its batches in order.
CREATE INDEX clustering_dp_event_batches_mark_idx
    ON clustering_dp_event_batches (dp_id, boot_id, last_seq);
CREATE INDEX clustering_dp_event_batches_dp_idx ON clustering_dp_event_batches (dp_id, n);
CREATE INDEX clustering_dp_event_batches_received_idx
    ON clustering_dp_event_batches (received_at);

-- lz4 where this PostgreSQL has it (faster than the default pglz, for what gets compressed).
DO $$
BEGIN
    ALTER TABLE clustering_dp_event_batches ALTER COLUMN events SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;

-- Events stored so far: one row each, in their order.
INSERT INTO clustering_dp_event_batches
       (dp_id, boot_id, first_seq, last_seq, count, received_at, events)
SELECT dp_id, boot_id, seq, seq, 1, received_at,
       jsonb_build_array(jsonb_build_array(source, event, data, extract(epoch FROM at), seq))::text
  FROM clustering_dp_events ORDER BY n;
DROP TABLE clustering_dp_events;

-- One row per event, for reading by hand (psql) and in tests.
CREATE VIEW clustering_dp_events AS
SELECT b.n AS batch, b.dp_id, b.boot_id, (e.r->>4)::bigint AS seq, e.r->>0 AS source,
       e.r->>1 AS event, e.r->2 AS data, to_timestamp((e.r->>3)::float8) AS at, b.received_at
  FROM clustering_dp_event_batches b,
       jsonb_array_elements(b.events::jsonb) WITH ORDINALITY AS e(r, i);
