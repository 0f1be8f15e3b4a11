"""The data plane's outgoing event queue: bounded, in memory, with a drop counter.

Balancer health transitions (and later rate-limit events) land here; the uplink that ships them
to the control plane is another issue and will drain this queue. When the queue is full the
oldest event is dropped and counted, so a disconnected data plane never grows without bound.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    source: str  # "balancer"
    event: str  # "health"
    data: dict[str, Any]
    at: float  # unix time


class EventQueue:
    """A bounded FIFO of events; `dropped` counts what overflow pushed out."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._items: deque[Event] = deque(maxlen=maxlen)
        self.dropped = 0
        self.total = 0

    def put(self, source: str, event: str, data: dict[str, Any]) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(Event(source, event, data, time.time()))
        self.total += 1

    def drain(self, limit: int | None = None) -> list[Event]:
        """Take up to `limit` events, oldest first."""
        out: list[Event] = []
        while self._items and (limit is None or len(out) < limit):
            out.append(self._items.popleft())
        return out

    def peek(self) -> list[Event]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)
