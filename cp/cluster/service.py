"""The `Cluster.Connect` stream: one session per data plane.

A session sends at most one update at a time and waits for its ACK or NACK; changes that arrive
meanwhile are merged into the next update. A data plane that is current gets nothing, one that is
behind gets a delta from its version, one the history cannot serve (or another epoch, or a hash
that did not match after a delta) gets a chunked snapshot.

Event batches are stored (cp/cluster/dp_events.py) in the order they arrive and each is
acknowledged only after its transaction committed. When one cannot be stored the stream is ended
(UNAVAILABLE) instead of acknowledging later batches past the gap: the data plane reconnects and
resends everything unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from cp.cluster import messages
from cp.cluster.dp_events import DataPlaneEvents, EventStoreError
from cp.cluster.registry import DataPlane, Registry
from cp.cluster.state import ClusterState, parse_version
from cp.metrics import sync_metrics
from shared import __version__
from shared.certs import cert_info_from_pem
from shared.proto_gen import cluster_pb2 as pb

log = logging.getLogger("tidegate.cluster")

HELLO_TIMEOUT = 10.0
# Data planes send a status every 10 s; three missed in a row means the peer is gone even if
# its socket is still open (a frozen or partitioned host answers no keepalive ping either).
SILENCE_LIMIT = 30.0
SERVICE = "tidegate.cluster.v1.Cluster"


def compatibility(dp: DataPlane, state: ClusterState) -> tuple[str, str] | None:
    """(sync_status, reason) when this data plane must not get the config, as in Kong."""
    try:
        dp_major, dp_minor = (int(x) for x in dp.version.split(".")[:2])
        cp_major, cp_minor = (int(x) for x in __version__.split(".")[:2])
    except ValueError:
        return "kong_version_incompatible", f"unreadable data plane version '{dp.version}'"
    if dp_major != cp_major or dp_minor > cp_minor:
        return ("kong_version_incompatible",
                f"data plane version {dp.version} is incompatible with control plane version "
                f"{__version__} (same major and a minor no newer than the control plane's)")
    missing = sorted(set(state.plugins_in_use()) - set(dp.plugins))
    if missing:
        return ("plugin_set_incompatible",
                "plugins configured on the control plane are missing on the data plane: "
                + ", ".join(missing))
    return None


class Session:
    def __init__(self, dp: DataPlane, state: ClusterState, registry: Registry,
                 cache: messages.UpdateCache) -> None:
        self.dp, self.state, self.registry, self.cache = dp, state, registry, cache
        self.in_flight: tuple[str, str, bool] | None = None  # (version, hash, was_snapshot)
        self.want_snapshot = False
        self.refused_version: str | None = None  # NACKed; not offered again
        self.rejected: str | None = None

    def _behind(self) -> bool:
        current = self.state.version_string
        if self.refused_version == current:
            return False
        return self.dp.config_version != current or self.dp.config_hash != self.state.config.hash

    def next_update(self) -> list[bytes] | None:
        if self.in_flight is not None or not self._behind():
            return None
        state = self.state
        target = (state.version_string, state.config.hash)
        have = parse_version(self.dp.config_version)
        if have and have[0] == state.epoch and not self.want_snapshot:
            key = (self.dp.config_version, target[0])
            cached = self.cache.get(key)
            if cached is None:
                changes = state.delta_since(have[1])
                if changes is not None:
                    cached = self.cache.put(
                        key, [messages.delta_message(state, self.dp.config_version, changes)])
            if cached is not None:
                self.in_flight = (*target, False)
                return cached
        key = ("snapshot", target[0])
        chunks = self.cache.get(key) or self.cache.put(key, messages.snapshot_chunks(state))
        self.in_flight = (*target, True)
        self.want_snapshot = False
        return chunks

    async def handle(self, msg: pb.DataPlaneMessage) -> None:
        kind = msg.WhichOneof("kind")
        dp = self.dp
        if kind == "ack":
            expected = self.in_flight
            self.in_flight = None
            sync_metrics(self.registry).acked(dp, msg.ack.version)  # before config_version moves
            dp.config_version, dp.config_hash = msg.ack.version, msg.ack.hash
            if expected and (msg.ack.version, msg.ack.hash) != expected[:2]:
                self.want_snapshot = True  # it applied something else: resynchronise
            dp.sync_status, dp.last_nack, self.refused_version = "normal", None, None
            await self.registry.save(dp)
        elif kind == "nack":
            expected = self.in_flight
            self.in_flight = None
            dp.last_nack = msg.nack.error_detail or "rejected without a reason"
            sync_metrics(self.registry).nacked(dp)
            log.warning("data plane %s (%s) rejected config %s: %s", dp.hostname, dp.node_id,
                        expected[0] if expected else "?", dp.last_nack)
            if expected and not expected[2]:
                self.want_snapshot = True  # a delta failed: a snapshot may still apply
            elif expected:
                self.refused_version = expected[0]
                dp.sync_status = "config_rejected"
            await self.registry.save(dp)
        elif kind == "status":
            dp.config_version = msg.status.config_version or dp.config_version
            dp.config_hash = msg.status.config_hash or dp.config_hash
            dropped = int(msg.status.events_dropped)
            news = dropped != dp.events_dropped  # losses are shown at once, not in 10 s
            dp.events_dropped, dp.events_buffered = dropped, int(msg.status.events_buffered)
            await self.registry.save(dp, force=news)


def _peer_ip(context: grpc.aio.ServicerContext) -> str:
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else peer


def _cert_expiry(context: grpc.aio.ServicerContext) -> int | None:
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    try:
        return int(cert_info_from_pem(pems[0]).expiry_timestamp)
    except Exception:
        return None


class ClusterService:
    def __init__(self, state: ClusterState, registry: Registry,
                 events: DataPlaneEvents | None = None) -> None:
        self.state, self.registry = state, registry
        self.events = events
        self.cache = messages.UpdateCache()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Connect": grpc.stream_stream_rpc_method_handler(
                self.connect,
                request_deserializer=pb.DataPlaneMessage.FromString,
                response_serializer=lambda b: b,  # messages arrive serialised, once for all
            ),
        })

    async def connect(
        self, requests: AsyncIterator[pb.DataPlaneMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        try:
            first = await asyncio.wait_for(anext(requests), HELLO_TIMEOUT)
        except (TimeoutError, StopAsyncIteration):
            return
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a hello first")
        hello = first.hello
        dp = DataPlane(
            node_id=hello.node_id, hostname=hello.hostname, ip=_peer_ip(context),
            version=hello.version, labels=dict(hello.labels),
            plugins={p.name: p.version for p in hello.plugins},
            cert_expiry=_cert_expiry(context),
            config_version=hello.config_version, config_hash=hello.config_hash,
        )
        session = Session(dp, self.state, self.registry, self.cache)
        self.registry.connected[dp.node_id] = dp
        log.info("data plane %s (%s, %s) connected holding %s", dp.hostname, dp.node_id, dp.ip,
                 dp.config_version or "no config")
        await self.registry.save(dp)
        inbox: asyncio.Queue[pb.DataPlaneMessage | None] = asyncio.Queue()
        reader = asyncio.create_task(_pump(requests, inbox))
        try:
            async for chunk in self._serve(session, inbox):
                yield chunk
        except EventStoreError as exc:
            log.warning("data plane %s (%s): %s; ending its stream so it resends", dp.hostname,
                        dp.node_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        finally:
            reader.cancel()
            self.registry.connected.pop(dp.node_id, None)
            log.info("data plane %s (%s) disconnected", dp.hostname, dp.node_id)
            # gRPC may be cancelling this handler: the record must still say so.
            await asyncio.shield(self.registry.save(dp, connected=False))

    async def _serve(
        self, session: Session, inbox: asyncio.Queue[pb.DataPlaneMessage | None]
    ) -> AsyncIterator[bytes]:
        dp = session.dp
        last_heard = time.monotonic()
        while True:
            refusal = compatibility(dp, self.state)
            if refusal is not None:
                if session.rejected != refusal[1]:
                    session.rejected = refusal[1]
                    dp.sync_status, dp.last_nack = refusal[0], refusal[1]
                    log.warning("data plane %s (%s) gets no config: %s", dp.hostname,
                                dp.node_id, refusal[1])
                    await self.registry.save(dp)
                    yield messages.rejection(refusal[1], refusal[0])
            else:
                session.rejected = None
                update = session.next_update()
                if update is not None:
                    started = time.monotonic()
                    for chunk in update:
                        yield chunk
                    log.debug("sent %s to %s in %.1f ms", session.in_flight, dp.node_id,
                              (time.monotonic() - started) * 1000)
            silence = SILENCE_LIMIT - (time.monotonic() - last_heard)
            msg = await self._next_event(inbox, max(silence, 0.0))
            if msg is False:
                continue  # the config moved on
            if msg is None:
                return  # the data plane closed its side
            if msg is _SILENT:
                log.warning("data plane %s (%s) silent for %.0f s: dropping its stream",
                            dp.hostname, dp.node_id, SILENCE_LIMIT)
                return
            last_heard = time.monotonic()
            await session.handle(msg)
            kind = msg.WhichOneof("kind")
            if kind == "status":
                yield messages.heartbeat(self.state.version_string)
            elif kind == "event_batch" and self.events is not None:
                batch = msg.event_batch
                up_to = await self.events.store(dp.node_id, batch)  # durable before the ack
                if up_to:
                    yield messages.event_ack(batch.boot_id, up_to)

    async def _next_event(self, inbox: asyncio.Queue[Any], timeout: float) -> Any:
        """The next message from the data plane, False when the config version moved, or
        _SILENT when nothing came for `timeout` seconds."""
        get = asyncio.ensure_future(inbox.get())
        moved = asyncio.ensure_future(self.state.wait_past(self.state.version))
        try:
            done, _ = await asyncio.wait({get, moved}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            moved.cancel()
        if not done and not get.done():
            get.cancel()
            try:
                return await get
            except asyncio.CancelledError:
                return _SILENT
        if get in done:
            return get.result()
        get.cancel()
        try:
            return await get  # it may have completed just before the cancel
        except asyncio.CancelledError:
            return False


_SILENT = object()


async def _pump(requests: AsyncIterator[pb.DataPlaneMessage], inbox: asyncio.Queue[Any]) -> None:
    try:
        async for msg in requests:
            await inbox.put(msg)
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        pass
    finally:
        inbox.put_nowait(None)
