"""snooze and on_change, with their state in PostgreSQL (shared by CP nodes, kept on restart).

- snooze S: after a hook fires for a source/event, further events for it are dropped (not
  delayed) for S seconds.
- on_change: fire only when the event's digest differs from the last one seen for that
  hook/source/event. The digest covers the source's `unique` fields when it defines them
  (rate-limiting-advanced: consumer, ip, service), else the whole payload.
- both: the snooze window is per distinct digest: one digest fires at most once per S seconds.

Each decision is one atomic upsert, so concurrent dispatchers agree.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared.events import digest

_DECIDE = """
INSERT INTO event_hook_throttle AS t (hook_id, source, event, slot, last_digest, fired_at)
VALUES (%(hook)s, %(source)s, %(event)s, %(slot)s, %(digest)s, clock_timestamp())
ON CONFLICT (hook_id, source, event, slot) DO UPDATE
   SET last_digest = EXCLUDED.last_digest, fired_at = EXCLUDED.fired_at
 WHERE (%(snooze)s::float8 IS NULL
        OR t.fired_at <= EXCLUDED.fired_at - make_interval(secs => %(snooze)s::float8))
   AND (NOT %(compare)s OR t.last_digest IS DISTINCT FROM EXCLUDED.last_digest)
RETURNING 1
"""


def throttled(hook: dict[str, Any]) -> bool:
    return bool(hook.get("snooze")) or bool(hook.get("on_change"))


async def should_fire(conn: psycopg.AsyncConnection[Any], hook: dict[str, Any], source: str,
                      event: str, data: dict[str, Any]) -> bool:
    """Record and decide; False means the event is dropped for this hook."""
    if not throttled(hook):
        return True
    snooze = float(hook["snooze"]) if hook.get("snooze") else None
    on_change = bool(hook.get("on_change"))
    value = digest(source, event, data) if on_change else None
    slot = value if (on_change and snooze) else ""
    cur = await conn.execute(_DECIDE, {
        "hook": hook["id"], "source": source, "event": event, "slot": slot or "",
        "digest": value, "snooze": snooze, "compare": on_change and not snooze,
    })
    return await cur.fetchone() is not None
