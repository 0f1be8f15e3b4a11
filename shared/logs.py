"""Logging set-up shared by both planes: every line names its plane and node; and the one line
shape of the `log` event-hook handler, which runs on the CP (crud, dao:crud) or on the DP
(balancer, rate-limiting-advanced)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class _JsonFormatter(logging.Formatter):
    def __init__(self, plane: str, node_id: str) -> None:
        super().__init__()
        self.plane, self.node_id = plane, node_id

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "plane": self.plane,
            "node_id": self.node_id,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(extra)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_hook_event(logger: logging.Logger, plane: str, hook_id: Any,
                   payload: dict[str, Any]) -> None:
    """The `log` handler's line: event, source, hook id and payload; with `--log-format json`
    they (and the plane) are keys of the JSON line, next to the formatter's node_id."""
    source, event = payload.get("source"), payload.get("event")
    logger.info("log callback: event=%s source=%s hook=%s payload=%s", event, source, hook_id,
                json.dumps(payload, sort_keys=True, default=str),
                extra={"fields": {"plane": plane, "source": source, "event": event,
                                  "hook_id": hook_id, "handler": "log", "payload": payload}})


def setup_logging(plane: str, node_id: str, fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(plane, node_id))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s [{plane} {node_id[:8]}] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
