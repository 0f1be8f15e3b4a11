-- Event hooks: durable dispatch of change-log events and emitted events into deliveries.

-- The dispatcher's position in the change log: the last change turned into deliveries. It is
-- advanced in the same transaction that inserts those deliveries, under this row's lock, so every
-- committed change is dispatched exactly once even with several control-plane nodes.
CREATE TABLE event_hook_cursor (
    id          integer PRIMARY KEY CHECK (id = 1),
    last_change bigint NOT NULL
);
INSERT INTO event_hook_cursor (id, last_change)
    SELECT 1, coalesce(max(id), 0) FROM change_log;

-- One row per (hook, event) to deliver; recorded before the first attempt.
CREATE TABLE event_hook_deliveries (
    id              uuid PRIMARY KEY,
    seq             bigserial UNIQUE,            -- creation order, for ordering and paging
    hook_id         uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('event', 'ping')),
    source          text NOT NULL,
    event           text NOT NULL,
    payload         jsonb NOT NULL,              -- exactly what the handler receives
    hook            jsonb,                       -- snapshot, for pings about a deleted hook
    change_id       bigint,                      -- the change-log row it came from, if any
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    last_error      text,
    last_status     integer
);
CREATE INDEX event_hook_deliveries_due_idx ON event_hook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX event_hook_deliveries_hook_idx ON event_hook_deliveries (hook_id, seq);

-- Every attempt of a delivery, for GET /event-hooks/{id}/deliveries.
CREATE TABLE event_hook_attempts (
    delivery_id     uuid NOT NULL REFERENCES event_hook_deliveries (id) ON DELETE CASCADE,
    n               integer NOT NULL,
    started_at      timestamptz NOT NULL,
    latency_ms      double precision NOT NULL,
    response_status integer,
    error           text,
    node_id         text NOT NULL,
    PRIMARY KEY (delivery_id, n)
);

-- snooze / on_change state, shared by every control-plane node and kept across restarts.
-- slot is '' (one window per hook/source/event) or the digest (snooze with on_change).
CREATE TABLE event_hook_throttle (
    hook_id     uuid NOT NULL,
    source      text NOT NULL,
    event       text NOT NULL,
    slot        text NOT NULL,
    last_digest text,
    fired_at    timestamptz NOT NULL,
    PRIMARY KEY (hook_id, source, event, slot)
);

-- Hooks whose receiver answered 410 Gone: skipped until the hook is changed.
CREATE TABLE event_hook_disabled (
    hook_id     uuid PRIMARY KEY,
    reason      text NOT NULL,
    disabled_at timestamptz NOT NULL DEFAULT now()
);
