"""rate-limiting-advanced's machinery, apart from the plugin's PDK glue (dp/plugins/).

- `windows` — window arithmetic as pure functions of `now` (fixed and sliding, reset, names);
- `clock` — the time the limiter reads, replaceable in tests;
- `local` — counters in this process (the `local` strategy and the Redis fallback);
- `redis_store` — counters shared through Redis, with `sync_rate` and the local fallback;
- `limiter` — a `Policy`: count a hit on every window, judge it, take back what must not count;
- `registry` — counters by namespace for the life of the process (plugin instances are not);
- `headers` — the RateLimit-* / X-RateLimit-* / Retry-After headers of a verdict;
- `exceeded` — the rate-limit-exceeded event payload, once per key and window.
"""
