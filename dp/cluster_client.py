"""The data plane's end of the cluster link: hello, apply, ACK/NACK, status; reconnect forever.

Reconnects use jittered exponential backoff (0.5 s doubling to 30 s, each wait drawn from its
upper half) so a restarted control plane is not hit by every data plane at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from dp.cache import ConfigCache
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


@dataclass
class LinkStatus:
    connected: bool = False
    connects: int = 0
    last_error: str | None = None
    rejection: str | None = None
    last_change: float = field(default_factory=time.time)
    acked_version: str = ""  # the last version this data plane ACKed, and when
    acked_at: float = 0.0


class ClusterClient:
    def __init__(
        self, target: str, tls: ClusterTLS, running: RunningConfig, node_id: str,
        labels: dict[str, str] | None = None,
        cache: ConfigCache | None = None,
        plugins: list[str] | None = None,
    ) -> None:
        self.target, self.tls, self.running, self.node_id = target, tls, running, node_id
        self.labels = labels or {}
        self.plugins = list(plugin_registry.available()) if plugins is None else plugins
        self.cache = cache
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
            self.status.connected, self.status.last_error = True, None
            self.status.connects += 1
            log.info("connected to control plane %s, holding %s", self.target,
                     self.running.version or "no config")
            heartbeat = asyncio.create_task(self._heartbeat(call))
            try:
                await self._receive(call)
            finally:
                heartbeat.cancel()

    async def _write(self, call: grpc.aio.StreamStreamCall, msg: pb.DataPlaneMessage) -> None:
        async with self._write_lock:
            await call.write(msg)

    async def _heartbeat(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            await self._write(call, pb.DataPlaneMessage(status=pb.Status(
                config_version=self.running.version, config_hash=self.running.hash)))

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
