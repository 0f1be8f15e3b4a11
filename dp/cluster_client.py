"""The data plane's end of the cluster link: hello, apply, ACK/NACK, status, the event uplink;
reconnect forever.

Reconnects use jittered exponential backoff (0.5 s doubling to 30 s, each wait drawn from its
upper half) so a restarted control plane is not hit by every data plane at once.

Event uplink: a task per session sends the event queue's unsent events as EventBatches (first
sequence number + consecutive events, as one JSON array: one encoding per batch, no per-event
work). An event raised after a quiet spell leaves at once (one loop turn of coalescing, so
events raised together travel together); after that, batches leave at most every LINGER
seconds, FLOOD_LINGER during a flood, so a flood of events costs a few messages and acks a
second, whatever its rate; at most IN_FLIGHT batches await their EventAck (the control plane
stores one batch per transaction: while it stores one, the next piles up). Batches grow with
the load (up to BATCH events, which leave without lingering); latency stays within LINGER
(FLOOD_LINGER in a flood) plus one round trip and one transaction.
A Status with the drop counter goes out right after the hello, so a control plane learns of
losses as soon as the data plane is back.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson

from dp.cache import ConfigCache
from dp.events import Event, EventQueue
from dp.running import ApplyError, RunningConfig, decode_snapshot
from shared import __version__
from shared import plugins as plugin_registry
from shared.proto_gen import cluster_pb2 as pb
from shared.tls import ClusterTLS, secure_channel

log = logging.getLogger("tidegate.dp")

METHOD = "/tidegate.cluster.v1.Cluster/Connect"
STATUS_EVERY = 10.0
# The CP answers every status with a heartbeat: three intervals of silence mean it is gone,
# even while its socket stays open (a frozen or partitioned host answers no keepalive either).
SILENCE_LIMIT = 30.0
# Keepalive above the CP's minimum ping interval (5 s): a dead CP is noticed within 30 s.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]
BATCH = 1000  # events per EventBatch at most (a few hundred bytes each: far below 16 MiB)
IN_FLIGHT = 2  # batches sent and not yet acknowledged: one being stored, the next one ready
# Batches leave at most every LINGER seconds (unless BATCH events wait): a flood then costs one
# gRPC write (~0.4 ms of the loop's time, whatever its size), one JSON encoding and one ack per
# LINGER instead of per event, while an event raised after a quiet spell leaves at once. Once a
# batch held FLOOD events (a flood: 4 000 events/s and more) the next waits FLOOD_LINGER, so a
# flood costs five writes a second up to 5 000 events/s (beyond, full batches of BATCH); each
# batch also costs the control plane ~0.6 ms and PostgreSQL a transaction, which at ten a
# second cost ~20 % more CPU per event. Ordinary traffic waits no more than LINGER to leave.
LINGER = 0.025
FLOOD = 100
FLOOD_LINGER = 0.2


@dataclass
class LinkStatus:
    connected: bool = False
    connects: int = 0
    last_error: str | None = None
    rejection: str | None = None
    last_change: float = field(default_factory=time.time)
    acked_version: str = ""  # the last version this data plane ACKed, and when
    acked_at: float = 0.0


# The stdlib encoder: for an event orjson refuses (an integer beyond 64 bits, a key that is not
# a string, a lone surrogate...), alone.
_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


def linger(size: int) -> float:
    """Seconds until the batch after one of `size` events may leave."""
    return FLOOD_LINGER if size >= FLOOD else LINGER


def _event_batch(boot_id: str, batch: list[Event]) -> pb.DataPlaneMessage:
    """The batch as one EventBatch with its events as one JSON array of [source, event, data,
    ts, seq] (an Event as a plain tuple): one orjson call, no Python code per event (~0.3 µs
    an event: a full batch holds up the loop for well under a millisecond)."""
    return pb.DataPlaneMessage(event_batch=pb.EventBatch(
        boot_id=boot_id, first_seq=batch[0].seq, count=len(batch), events_json=_encode(batch)))


def _encode(events: list[Event]) -> bytes:
    try:  # orjson takes no tuple subclass as a list: hence map(tuple)
        return orjson.dumps(list(map(tuple, events)), default=str)
    except TypeError:
        return b"[" + b",".join(_encode_one(e).encode() for e in events) + b"]"


def _encode_one(e: Event) -> str:
    """One event, by the stdlib encoder; data JSON cannot hold at all (a circular structure,
    a key that is not a string) travels as a note, so it cannot stop the uplink."""
    try:
        return _json(e)
    except (TypeError, ValueError, RecursionError) as exc:
        log.warning("event %s/%s seq %d has data JSON cannot hold (%s); sending a note instead",
                    e.source, e.event, e.seq, exc)
        return _json((e.source, e.event, {"unencodable": str(exc)}, e.at, e.seq))


class ClusterClient:
    def __init__(
        self, target: str, tls: ClusterTLS, running: RunningConfig, node_id: str,
        labels: dict[str, str] | None = None,
        cache: ConfigCache | None = None,
        plugins: list[str] | None = None,
        events: EventQueue | None = None,
    ) -> None:
        self.target, self.tls, self.running, self.node_id = target, tls, running, node_id
        self.labels = labels or {}
        self.plugins = list(plugin_registry.available()) if plugins is None else plugins
        self.cache = cache
        self.events = events
        self.status = LinkStatus()
        self._write_lock = asyncio.Lock()

    def hello(self) -> pb.DataPlaneMessage:
        return pb.DataPlaneMessage(hello=pb.Hello(
            node_id=self.node_id, hostname=socket.gethostname(), version=__version__,
            plugins=[pb.Plugin(name=n, version=p.version)
                     for n, p in plugin_registry.available().items() if n in self.plugins],
            labels=self.labels, config_version=self.running.version,
            config_hash=self.running.hash,
        ))

    async def run(self) -> None:
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                await self._session()
                reason = "stream ended"
            except grpc.aio.AioRpcError as exc:
                reason = f"{exc.code().name}: {exc.details()}"
            except (OSError, ApplyError) as exc:
                reason = str(exc)
            self.status.connected = False
            self.status.last_error = reason
            if time.monotonic() - started > 30:
                delay = 0.5  # it was a healthy session: start the backoff over
            wait = random.uniform(delay / 2, delay)
            log.warning("cluster link to %s down (%s); reconnecting in %.1f s",
                        self.target, reason, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)

    async def _session(self) -> None:
        async with secure_channel(self.target, self.tls, CHANNEL_OPTIONS) as channel:
            call = channel.stream_stream(
                METHOD, request_serializer=pb.DataPlaneMessage.SerializeToString,
                response_deserializer=pb.ControlPlaneMessage.FromString)()
            await self._write(call, self.hello())
            await self._write(call, self._status_message())  # the drop counter, at once
            self.status.connected, self.status.last_error = True, None
            self.status.connects += 1
            log.info("connected to control plane %s, holding %s", self.target,
                     self.running.version or "no config")
            tasks = [asyncio.create_task(self._heartbeat(call))]
            if self.events is not None:
                tasks.append(asyncio.create_task(self._uplink(call, self.events)))
            for task in tasks:  # a writer that fails ends the session: reconnect, resend
                task.add_done_callback(lambda t: t.cancelled() or not t.exception()
                                       or call.cancel())
            try:
                await self._receive(call)
            finally:
                for task in tasks:
                    task.cancel()
                # The uplink may be cut short mid-write; whatever it sent is resent next time.
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _write(self, call: grpc.aio.StreamStreamCall, msg: pb.DataPlaneMessage) -> None:
        async with self._write_lock:
            await call.write(msg)

    def _status_message(self) -> pb.DataPlaneMessage:
        events = self.events
        return pb.DataPlaneMessage(status=pb.Status(
            config_version=self.running.version, config_hash=self.running.hash,
            events_dropped=events.dropped if events is not None else 0,
            events_buffered=len(events) if events is not None else 0))

    async def _heartbeat(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            await self._write(call, self._status_message())

    async def _uplink(self, call: grpc.aio.StreamStreamCall, events: EventQueue) -> None:
        """Send queued events in batches until the session ends (see the module docstring)."""
        events.rewind()
        loop = asyncio.get_running_loop()
        next_at = 0.0  # when the next batch may leave
        while True:
            events.changed.clear()
            if not events.unsent or events.batches_in_flight >= IN_FLIGHT:
                await events.changed.wait()
                continue
            if events.unsent < BATCH:
                # After a quiet spell one loop turn (events raised together leave together),
                # else the rest of the linger (the events raised meanwhile leave with these).
                await asyncio.sleep(max(next_at - loop.time(), 0))
            batch = events.take(BATCH)
            if batch:
                next_at = loop.time() + linger(len(batch))
                await self._write(call, _event_batch(events.boot_id, batch))

    async def _messages(self, call: grpc.aio.StreamStreamCall) -> AsyncIterator[Any]:
        """The CP's messages until the stream ends or the CP falls silent."""
        while True:
            try:
                msg = await asyncio.wait_for(self._next(call), SILENCE_LIMIT)
            except TimeoutError:
                call.cancel()
                raise OSError(f"control plane silent for {SILENCE_LIMIT:.0f} s") from None
            if msg is grpc.aio.EOF:
                return
            yield msg

    @staticmethod
    async def _next(call: grpc.aio.StreamStreamCall) -> Any:
        return await call.read()

    async def _receive(self, call: grpc.aio.StreamStreamCall) -> None:
        chunks: list[bytes] = []
        async for msg in self._messages(call):
            kind = msg.WhichOneof("kind")
            if kind == "snapshot_chunk":
                chunk = msg.snapshot_chunk
                if chunk.index == 0:
                    chunks = []
                if chunk.index != len(chunks):
                    await self._nack(call, f"snapshot chunk {chunk.index} out of order")
                    chunks = []
                    continue
                chunks.append(chunk.data)
                if len(chunks) == chunk.total:
                    data, chunks = b"".join(chunks), []
                    await self._apply(call, functools.partial(
                        self._load_snapshot, chunk.version, chunk.hash, data), None)
            elif kind == "delta":
                d = msg.delta
                upserts = [(u.entity_type, u.id, u.json) for u in d.upserts]
                removals = [(r.entity_type, r.id) for r in d.removals]
                await self._apply(call, functools.partial(
                    self.running.apply_delta, d.from_version, d.to_version, d.expected_hash,
                    upserts, removals), (d, upserts, removals))
            elif kind == "event_ack":
                if self.events is not None:
                    self.events.ack(msg.event_ack.boot_id, msg.event_ack.up_to_seq)
            elif kind == "rejection":
                self.status.rejection = msg.rejection.reason
                log.warning("control plane sends no config (%s): %s",
                            msg.rejection.sync_status, msg.rejection.reason)

    def _load_snapshot(self, version: str, config_hash: str, data: bytes) -> None:
        self.running.load(version, decode_snapshot(data), "cluster-snapshot", config_hash)

    async def _apply(self, call: grpc.aio.StreamStreamCall, apply: Callable[[], None],
                     delta: tuple[pb.Delta, list[Any], list[Any]] | None) -> None:
        try:
            apply()
        except ApplyError as exc:
            await self._nack(call, str(exc))
            return
        self.status.rejection = None
        self._persist(delta)  # what we ACK must survive a restart
        await self._write(call, pb.DataPlaneMessage(ack=pb.Ack(
            version=self.running.version, hash=self.running.hash)))
        self.status.acked_version, self.status.acked_at = self.running.version, time.time()
        current = self.running.current
        if self.cache is not None and self.cache.needs_compaction and current is not None:
            self.cache.save(current.version, current.config)  # after the ACK: off its path

    def _persist(self, delta: tuple[pb.Delta, list[Any], list[Any]] | None) -> None:
        current = self.running.current
        if self.cache is None or current is None:
            return
        if delta is not None and self.cache.path.exists():
            d, upserts, removals = delta
            self.cache.append(d.from_version, d.to_version, d.expected_hash, upserts, removals)
        else:
            self.cache.save(current.version, current.config)

    async def _nack(self, call: grpc.aio.StreamStreamCall, reason: str) -> None:
        await self._write(call, pb.DataPlaneMessage(nack=pb.Nack(
            version=self.running.version, error_detail=reason)))
