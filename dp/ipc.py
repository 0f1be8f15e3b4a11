"""Messages between the data plane's main process and its proxy worker processes.

One unix socket pair per worker carries length-prefixed frames: a 5-byte head (payload length,
message kind) and the payload. Control messages are small JSON objects; a config is sent as a
JSON header line (version, source) and the zlib-compressed JSON entity lists, the cache's body
format, encoded once per snapshot and written to every worker.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from typing import Any

from dp.running import Snapshot, decode_snapshot

_HEAD = struct.Struct(">IB")

# main -> worker
HELLO = 1  # {index, node_id, proxy_listen, proxy_ssl_listen, plugins}
CONFIG = 2  # encode_snapshot()
HEALTH = 3  # {"targets": [[upstream_id, target name, healthy], ...]}
START = 4  # open the listeners (sent after the first config, if any)
STATS = 5  # {} -> the worker answers STATS
STOP = 6  # {"drain": seconds}
METRICS = 7  # {} -> the worker answers METRICS with dp.metrics.COUNTS.snapshot()
# worker -> main
READY = 10  # {"listeners": {scheme: port}, "pid": pid}
APPLIED = 11  # {"version": version}
EVENT = 12  # {"source", "event", "data"}: an event for the main process's queue
# STATS (5) is also the worker's answer: {"connections", "requests", "version"}


class Channel:
    """Frame reading and writing over one stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def from_socket(cls, sock: Any) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    def send(self, kind: int, payload: bytes) -> None:
        """Queue one frame (never blocks; the transport buffers)."""
        if not self.writer.is_closing():
            self.writer.write(_HEAD.pack(len(payload), kind) + payload)

    def send_json(self, kind: int, body: dict[str, Any]) -> None:
        self.send(kind, json.dumps(body, separators=(",", ":")).encode())

    async def receive(self) -> tuple[int, bytes]:
        """The next frame; raises asyncio.IncompleteReadError when the peer is gone."""
        length, kind = _HEAD.unpack(await self.reader.readexactly(_HEAD.size))
        return kind, await self.reader.readexactly(length)

    async def flush(self) -> None:
        if not self.writer.is_closing():
            await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


def encode_snapshot(snapshot: Snapshot) -> bytes:
    header = json.dumps({"version": snapshot.version, "source": snapshot.source}).encode()
    lists = json.dumps(snapshot.config.to_lists(), separators=(",", ":")).encode()
    return header + b"\n" + zlib.compress(lists, 1)


def decode_snapshot_frame(payload: bytes) -> Snapshot:
    header, _, body = payload.partition(b"\n")
    meta = json.loads(header)
    return Snapshot(meta["version"], decode_snapshot(body), meta["source"])
