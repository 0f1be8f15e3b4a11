"""A scripted data plane for protocol tests and benchmarks: real gRPC over real mTLS, but the
test decides what to send (hellos, ACKs with wrong hashes, NACKs) and reads every message."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import grpc

from dp.cluster_client import CHANNEL_OPTIONS, METHOD
from shared import __version__
from shared.proto_gen import cluster_pb2 as pb
from shared.tls import ClusterTLS, secure_channel


class Peer:
    def __init__(self, target: str, tls: ClusterTLS, node_id: str = "peer") -> None:
        self.target, self.tls, self.node_id = target, tls, node_id
        self.received_bytes = 0

    async def connect(self, version: str = "", config_hash: str = "",
                      plugins: list[str] | None = None, dp_version: str = __version__) -> Peer:
        self.channel = secure_channel(self.target, self.tls, CHANNEL_OPTIONS)
        self.call = self.channel.stream_stream(
            METHOD, request_serializer=pb.DataPlaneMessage.SerializeToString,
            response_deserializer=self._deserialize)()
        names = ["key-auth", "websocket-size-limit"] if plugins is None else plugins
        await self.call.write(pb.DataPlaneMessage(hello=pb.Hello(
            node_id=self.node_id, hostname="peer", version=dp_version,
            plugins=[pb.Plugin(name=n, version="0.1.0") for n in names],
            config_version=version, config_hash=config_hash)))
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        """Read in the background: a timed-out recv() must not cancel the call's read."""
        try:
            async for msg in self.call:
                self.inbox.put_nowait(msg)
        except grpc.aio.AioRpcError as exc:
            self.inbox.put_nowait(exc)
        self.inbox.put_nowait(None)

    def _deserialize(self, raw: bytes) -> pb.ControlPlaneMessage:
        self.received_bytes += len(raw)
        return pb.ControlPlaneMessage.FromString(raw)

    async def close(self) -> None:
        self.reader.cancel()
        self.call.cancel()
        await self.channel.close()

    async def recv(self, timeout: float = 10) -> pb.ControlPlaneMessage:
        msg = await asyncio.wait_for(self.inbox.get(), timeout)
        if isinstance(msg, Exception):
            raise msg
        assert msg is not None, "stream ended"
        return msg

    async def recv_update(self, timeout: float = 10) -> tuple[str, Any]:
        """The next update: ("delta", Delta) or ("snapshot", (version, hash, lists, chunks))."""
        msg = await self.recv(timeout)
        kind = msg.WhichOneof("kind")
        if kind != "snapshot_chunk":
            return kind, getattr(msg, kind)
        chunks = [msg.snapshot_chunk]
        while len(chunks) < chunks[0].total:
            chunks.append((await self.recv(timeout)).snapshot_chunk)
        data = zlib.decompress(b"".join(c.data for c in chunks))
        return "snapshot", (chunks[0].version, chunks[0].hash, json.loads(data), len(chunks))

    async def ack(self, version: str, config_hash: str) -> None:
        await self.call.write(pb.DataPlaneMessage(ack=pb.Ack(version=version, hash=config_hash)))

    async def nack(self, version: str, reason: str) -> None:
        await self.call.write(pb.DataPlaneMessage(nack=pb.Nack(version=version,
                                                               error_detail=reason)))
