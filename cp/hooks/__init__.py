"""Event hooks: turn change-log rows and emitted events into durable deliveries, and deliver them.

`engine` dispatches (change log → deliveries, exactly once across CP nodes), `deliver` works the
deliveries (any node, one at a time each, retried with backoff), `handlers` do the work of each
handler (webhook, webhook-custom, log, lambda).
"""
