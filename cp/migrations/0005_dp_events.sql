-- Events sent up by data planes (balancer health, rate-limit exceeded), for
-- GET /clustering/data-planes/{id}/events and the event hooks. A batch is stored in one
-- transaction before the data plane gets its EventAck; the unique key drops the copies a data
-- plane resends after a reconnect, whichever control-plane node receives them.
CREATE TABLE clustering_dp_events (
    n           bigserial PRIMARY KEY,                    -- arrival order, the paging cursor
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    dp_id       text NOT NULL,                            -- the data plane's node id
    boot_id     text NOT NULL,                            -- its process start
    seq         bigint NOT NULL,                          -- 1, 2, ... within boot_id
    source      text NOT NULL,
    event       text NOT NULL,
    data        jsonb NOT NULL,
    at          timestamptz NOT NULL,                     -- when it happened (data plane clock)
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (dp_id, boot_id, seq)
);
CREATE INDEX clustering_dp_events_dp_idx ON clustering_dp_events (dp_id, n);
CREATE INDEX clustering_dp_events_received_idx ON clustering_dp_events (received_at);

-- What each data plane last reported about its event queue.
ALTER TABLE clustering_data_planes
    ADD COLUMN events_dropped  bigint NOT NULL DEFAULT 0,  -- lost to the queue bound (this boot)
    ADD COLUMN events_buffered bigint NOT NULL DEFAULT 0;  -- not yet acknowledged
