-- Event-hook deliveries: less WAL per delivery, an index-only claim, and pruning.
--
-- Every byte the delivery engine logs must be flushed before the next Admin API commit
-- completes (one WAL stream), so bookkeeping per delivery is kept small: one row written
-- when the delivery is recorded and updated once per attempt, with its attempts inside it.

-- The attempts of a delivery move into its row: one UPDATE per attempt instead of an UPDATE,
-- an INSERT and a foreign-key check. Each element: {n, at, response_status, latency_ms, error,
-- node_id}, in attempt order.
ALTER TABLE event_hook_deliveries ADD COLUMN tries jsonb NOT NULL DEFAULT '[]';
UPDATE event_hook_deliveries d
   SET tries = (SELECT jsonb_agg(jsonb_build_object(
                    'n', a.n, 'at', round(extract(epoch FROM a.started_at)::numeric, 6),
                    'response_status', a.response_status,
                    'latency_ms', round(a.latency_ms::numeric, 3), 'error', a.error,
                    'node_id', a.node_id) ORDER BY a.n)
                  FROM event_hook_attempts a WHERE a.delivery_id = d.id)
 WHERE EXISTS (SELECT 1 FROM event_hook_attempts a WHERE a.delivery_id = d.id);
DROP TABLE event_hook_attempts;

-- Room on each page for the row's next version: an attempt's UPDATE then stays on the same
-- page and logs only the bytes that changed (status and after), not the payload again.
ALTER TABLE event_hook_deliveries SET (fillfactor = 50);

-- The claim takes due deliveries in (next_attempt_at, seq) order, LIMIT n: with both columns
-- in the index it reads only the rows it returns, instead of every pending row and a sort.
CREATE INDEX event_hook_deliveries_queue_idx ON event_hook_deliveries (next_attempt_at, seq)
    WHERE status = 'pending';
DROP INDEX event_hook_deliveries_due_idx;

-- Delivery ids are now time-ordered (UUIDv7 layout: milliseconds first, see
-- cp/hooks/fanout.py), so new rows land at the right edge of the primary key and pruning
-- finds old deliveries by a range of it: no index on created_at to maintain, and the unique
-- index on seq goes too (seq comes from a sequence; listings page by (hook_id, seq)).
ALTER TABLE event_hook_deliveries DROP CONSTRAINT event_hook_deliveries_seq_key;
