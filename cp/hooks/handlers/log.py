"""The `log` handler: the event and its payload in this control plane's log.

One structured line on the `tidegate.hooks` logger, in the shape both planes share
(shared.logs.log_hook_event; data planes log their own sources' events the same way).
"""

from __future__ import annotations

import logging
from typing import Any

from cp.hooks.outcome import Outcome
from shared.logs import log_hook_event

log = logging.getLogger("tidegate.hooks")


def run(hook: dict[str, Any], payload: dict[str, Any]) -> Outcome:
    log_hook_event(log, "cp", hook.get("id"), payload)
    return Outcome(ok=True, status=200)
