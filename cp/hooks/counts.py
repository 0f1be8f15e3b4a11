"""Event-hook delivery attempts by outcome, counted where they are recorded, for `/metrics`.

The delivery engine usually runs in a child process (cp/hooks/worker_main.py), while `/metrics`
is served by the control plane. Counting there costs one dict update per committed batch; the
child writes its running totals as a JSON line to a pipe whenever they changed (`report`), and
the control plane adds what each line brings to its own `DeliveryCounts` (`follow`). Totals of a
worker that dies are kept; attempts it committed after its last line are lost to the counter
(never to the database). With `event_hooks_worker = inline` the engine counts straight into the
context the Admin API reads.

Outcomes: `success` (2xx), `retry` (failed, another attempt is scheduled), `failed` (failed for
good: not retryable, 410 Gone, or the retry period is over), `cancelled` (the hook was deleted or
disabled before the attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterable

OUTCOMES = ("success", "retry", "failed", "cancelled")
# a delivery's status after an attempt -> the attempt's outcome
_BY_STATUS = {"succeeded": "success", "pending": "retry", "failed": "failed",
              "cancelled": "cancelled"}


class DeliveryCounts:
    def __init__(self) -> None:
        self.by_outcome = dict.fromkeys(OUTCOMES, 0)
        self.changed = asyncio.Event()

    def record(self, statuses: Iterable[str]) -> None:
        """Count a committed batch, given each delivery's status after its attempt."""
        for status in statuses:
            outcome = _BY_STATUS[status]
            self.by_outcome[outcome] += 1
        self.changed.set()

    def add(self, totals: dict[str, int], before: dict[str, int]) -> None:
        """Add what a reporter's `totals` bring over its `before`."""
        for outcome in OUTCOMES:
            self.by_outcome[outcome] += max(0, int(totals.get(outcome, 0))
                                            - before.get(outcome, 0))


async def report(counts: DeliveryCounts, fd: int) -> None:
    """Child side: write the totals to `fd` whenever they change, until cancelled. (A full
    pipe skips a line; the next one carries the totals anyway.)"""
    os.set_blocking(fd, False)
    try:
        while True:
            await counts.changed.wait()
            counts.changed.clear()
            with contextlib.suppress(BlockingIOError):
                os.write(fd, json.dumps(counts.by_outcome).encode() + b"\n")
    finally:
        os.close(fd)


async def follow(fd: int, counts: DeliveryCounts) -> None:
    """Parent side: read one child's lines from `fd` until it closes its end."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    before: dict[str, int] = {}
    try:
        while line := await reader.readline():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                totals = json.loads(line)
                counts.add(totals, before)
                before = {k: int(totals.get(k, 0)) for k in OUTCOMES}
    finally:
        transport.close()
