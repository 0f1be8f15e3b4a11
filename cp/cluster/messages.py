"""Building the CP→DP messages, each serialised once however many data planes receive it."""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from typing import Any

from cp.cluster.state import ClusterState
from shared.proto_gen import cluster_pb2 as pb

CHUNK = 1024 * 1024  # well under gRPC's 4 MiB default message limit, whatever the config size


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(message: pb.ControlPlaneMessage) -> bytes:
    return message.SerializeToString()


def snapshot_chunks(state: ClusterState) -> list[bytes]:
    """The whole config as zlib-compressed JSON, cut into chunks."""
    data = zlib.compress(_dumps(state.config.to_lists()), 1)
    total = max(1, -(-len(data) // CHUNK))
    version, digest = state.version_string, state.config.hash
    return [
        encode(pb.ControlPlaneMessage(snapshot_chunk=pb.SnapshotChunk(
            version=version, hash=digest, index=i, total=total,
            data=data[i * CHUNK:(i + 1) * CHUNK])))
        for i in range(total)
    ]


def delta_message(
    state: ClusterState, from_version: str,
    changes: dict[tuple[str, str], dict[str, Any] | None],
) -> bytes:
    delta = pb.Delta(from_version=from_version, to_version=state.version_string,
                     expected_hash=state.config.hash)
    for (entity_type, entity_id), entity in changes.items():
        if entity is None:
            delta.removals.add(entity_type=entity_type, id=entity_id)
        else:
            delta.upserts.add(entity_type=entity_type, id=entity_id, json=_dumps(entity))
    return encode(pb.ControlPlaneMessage(delta=delta))


def heartbeat(version: str) -> bytes:
    return encode(pb.ControlPlaneMessage(heartbeat=pb.Heartbeat(config_version=version)))


def event_ack(boot_id: str, up_to_seq: int) -> bytes:
    """The data plane's events of `boot_id` up to `up_to_seq` are stored: it may forget them."""
    return encode(pb.ControlPlaneMessage(event_ack=pb.EventAck(boot_id=boot_id,
                                                               up_to_seq=up_to_seq)))


def rejection(reason: str, sync_status: str) -> bytes:
    return encode(pb.ControlPlaneMessage(rejection=pb.Rejection(
        reason=reason, sync_status=sync_status)))


class UpdateCache:
    """Serialised updates by (from, to): DPs at the same version share one encoding."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[tuple[str, str], list[bytes]] = OrderedDict()
        self._size = size

    def get(self, key: tuple[str, str]) -> list[bytes] | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: tuple[str, str], value: list[bytes]) -> list[bytes]:
        self._items[key] = value
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return value
