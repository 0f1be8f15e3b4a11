"""The `log` handler: the event and its payload in this control plane's log.

One structured line on the `tidegate.hooks` logger; with `--log-format json` its `fields`
(plane, source, event, hook id, payload) become keys of the JSON line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cp.hooks.outcome import Outcome

log = logging.getLogger("tidegate.hooks")


def run(hook: dict[str, Any], payload: dict[str, Any]) -> Outcome:
    source, event = payload.get("source"), payload.get("event")
    log.info("log callback: event=%s source=%s hook=%s payload=%s", event, source,
             hook.get("id"), json.dumps(payload, sort_keys=True, default=str),
             extra={"fields": {"plane": "cp", "source": source, "event": event,
                               "hook_id": hook.get("id"), "handler": "log",
                               "payload": payload}})
    return Outcome(ok=True, status=200)
