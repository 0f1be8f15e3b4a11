"""The data plane's outgoing event queue: bounded, in memory, numbered, with a drop counter.

Balancer health transitions and rate-limit events are `put` here (a tuple appended to a deque:
the proxy path never waits on the uplink, and encodes nothing). Each event gets the next
sequence number of this process's `boot_id`; the uplink (dp/cluster_client.py) takes unsent
events in order, and an event stays queued until the control plane's EventAck says it is
stored. A new session `rewind`s, so what was sent but not acknowledged goes out again (the
control plane drops duplicates by boot id and sequence). The bound covers everything not yet
acknowledged: when it is full the oldest event is dropped and counted, so a data plane cut off
from its control plane never grows without bound. Listeners (the data plane's `log` event
hooks) see every event as it is put.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any, NamedTuple

log = logging.getLogger("tidegate.dp.events")

DEFAULT_SIZE = 10_000


class Event(NamedTuple):  # a tuple: the cheapest immutable record to build on the proxy path
    source: str  # "balancer"
    event: str  # "health"
    data: dict[str, Any]
    at: float  # unix time
    seq: int = 0  # 1, 2, ... within the queue's boot_id


_new = tuple.__new__  # builds an Event without the Python-level __new__ NamedTuple generates


class EventQueue:
    """Events not yet acknowledged by the control plane, oldest first; `dropped` counts what
    overflow pushed out."""

    def __init__(self, maxlen: int = DEFAULT_SIZE) -> None:
        if maxlen < 1:
            raise ValueError(f"event_queue_size must be at least 1, not {maxlen}")
        self.maxlen = maxlen
        self.boot_id = str(uuid.uuid4())
        self._items: deque[Event] = deque()
        self._sent = 0  # how many of the oldest items went out in the current session
        self._batches: deque[int] = deque()  # last seq of each batch sent, not yet acknowledged
        self._next_seq = 1
        self.dropped = 0
        self.total = 0
        self.acked = 0
        self.changed = asyncio.Event()  # set on every put and ack: the uplink's wake-up
        self.listeners: list[Callable[[Event], None]] = []

    def put(self, source: str, event: str, data: dict[str, Any], at: float | None = None) -> None:
        """Queue one event: a tuple appended, nothing encoded (that is the uplink's job, once
        per batch), so a flood of events costs the proxy path well under a microsecond each."""
        items = self._items
        if len(items) >= self.maxlen:
            items.popleft()
            self.dropped += 1
            if self._sent:
                self._sent -= 1
        seq = self._next_seq
        self._next_seq = seq + 1
        item = _new(Event, (source, event, data, time.time() if at is None else at, seq))
        items.append(item)
        self.total += 1
        self.changed.set()  # a no-op while it is set: the uplink clears it when it looks
        if self.listeners:
            self._tell(item)

    def _tell(self, item: Event) -> None:
        for listener in self.listeners:
            try:
                listener(item)
            except Exception:  # a log hook must never fail the code that raised the event
                log.exception("event listener failed on %s/%s", item.source, item.event)

    # ---- the uplink's side -------------------------------------------------------------------

    @property
    def unsent(self) -> int:
        return len(self._items) - self._sent

    @property
    def unacked(self) -> int:
        """Sent in this session, not yet acknowledged."""
        return self._sent

    @property
    def batches_in_flight(self) -> int:
        return len(self._batches)

    def take(self, limit: int) -> list[Event]:
        """The next `limit` unsent events, in order; they count as sent until `rewind`."""
        start = self._sent
        batch = list(islice(self._items, start, start + limit))
        self._sent = start + len(batch)
        if batch:
            self._batches.append(batch[-1].seq)
        return batch

    def ack(self, boot_id: str, up_to_seq: int) -> int:
        """Forget the events the control plane stored (all of `boot_id` up to `up_to_seq`)."""
        if boot_id != self.boot_id:
            return 0
        forgotten = 0
        while self._items and self._items[0].seq <= up_to_seq:
            self._items.popleft()
            forgotten += 1
        self._sent = max(0, self._sent - forgotten)
        self.acked += forgotten
        while self._batches and self._batches[0] <= up_to_seq:
            self._batches.popleft()
        self.changed.set()
        return forgotten

    def rewind(self) -> None:
        """A new session: everything unacknowledged is to be sent again."""
        self._sent = 0
        self._batches.clear()

    # ---- inspection --------------------------------------------------------------------------

    def peek(self) -> list[Event]:
        return list(self._items)

    def drain(self, limit: int | None = None) -> list[Event]:
        """Take (and forget) up to `limit` events, oldest first; for a node without uplink."""
        out: list[Event] = []
        while self._items and (limit is None or len(out) < limit):
            out.append(self._items.popleft())
        self._sent = max(0, self._sent - len(out))
        return out

    def stats(self) -> dict[str, Any]:
        """What /status shows under `events`."""
        return {"queued": len(self._items), "total": self.total, "dropped": self.dropped,
                "unacked": self._sent, "acked": self.acked, "capacity": self.maxlen,
                "boot_id": self.boot_id, "last_seq": self._next_seq - 1}

    def __len__(self) -> int:
        return len(self._items)
