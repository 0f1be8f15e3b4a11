"""The config stream, message by message: what a data plane at a given version is sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from cp.cluster import messages
from cp.cluster.server import Cluster, start_cluster
from shared.certs import gen_cluster_cert
from shared.config_set import ConfigSet
from shared.entities import ENTITIES
from shared.tls import ClusterTLS
from tests.cluster_peer import Peer

SERVICES, ROUTES = ENTITIES["services"], ENTITIES["routes"]


@pytest.fixture
def tls(tmp_path) -> ClusterTLS:
    gen_cluster_cert(tmp_path / "c.crt", tmp_path / "c.key")
    return ClusterTLS.from_files("shared", tmp_path / "c.crt", tmp_path / "c.key")


@pytest.fixture
async def cluster(store, dsn, tls) -> AsyncIterator[Cluster]:
    c = await start_cluster(dsn, store.pool, tls, "127.0.0.1:0", "cp-test")
    yield c
    await c.stop(0)


@pytest.fixture
async def peer(cluster, tls) -> AsyncIterator[Peer]:
    p = Peer(f"127.0.0.1:{cluster.port}", tls)
    yield p
    await p.close()


async def wait_version(cluster: Cluster, version: int) -> None:
    await asyncio.wait_for(cluster.state.wait_past(version - 1), 10)


async def service(store, name="s"):
    return await store.insert(SERVICES, {"name": name, "host": "h.test"})


async def test_new_data_plane_gets_a_snapshot(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    await peer.connect()
    kind, (version, digest, lists, _) = await peer.recv_update()
    assert kind == "snapshot"
    assert version == cluster.state.version_string and digest == cluster.state.config.hash
    assert [s["name"] for s in lists["services"]] == ["s"]
    assert ConfigSet.from_lists(lists).hash == digest


async def test_current_data_plane_gets_nothing_then_only_the_change(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    state = cluster.state
    await peer.connect(state.version_string, state.config.hash)
    before = state.version_string
    route = await store.insert(ROUTES, {"name": "r", "paths": ["/"], "service": {"name": "s"}})
    kind, delta = await peer.recv_update()
    assert kind == "delta", "nothing was sent before the change: the first message is its delta"
    assert delta.from_version == before and delta.to_version == state.version_string
    assert [(u.entity_type, u.id) for u in delta.upserts] == [("routes", route["id"])]
    assert delta.expected_hash == state.config.hash


async def test_behind_data_plane_gets_a_merged_delta(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    old_version, old_hash = cluster.state.version_string, cluster.state.config.hash
    r = await store.insert(ROUTES, {"name": "r", "paths": ["/1"], "service": {"name": "s"}})
    for i in range(2, 6):
        await store.update(ROUTES, "r", {"paths": [f"/{i}"]})
    gone = await store.insert(ROUTES, {"name": "gone", "paths": ["/g"], "service": {"name": "s"}})
    await store.delete(ROUTES, "gone")
    await wait_version(cluster, await store.version())

    await peer.connect(old_version, old_hash)
    kind, delta = await peer.recv_update()
    assert kind == "delta" and delta.from_version == old_version
    assert delta.upserts[0].id == r["id"]
    assert len(delta.upserts) == 1, "five writes to one route are one upsert"
    assert '"/5"' in delta.upserts[0].json.decode()
    assert [(x.entity_type, x.id) for x in delta.removals] == [("routes", gone["id"])]


async def test_other_epoch_or_unknown_version_gets_a_snapshot(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    await peer.connect(f"{uuid.uuid4()}:1", "0" * 32)
    kind, _ = await peer.recv_update()
    assert kind == "snapshot"


async def test_wrong_hash_after_delta_is_answered_with_a_snapshot(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    await peer.connect(cluster.state.version_string, cluster.state.config.hash)
    await service(store, "t")
    kind, delta = await peer.recv_update()
    assert kind == "delta"
    await peer.nack(delta.from_version, "hash mismatch after delta")
    kind, snap = await peer.recv_update()
    assert kind == "snapshot" and snap[0] == delta.to_version


async def test_rejected_snapshot_is_not_resent_until_the_config_changes(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    await peer.connect()
    kind, (version, _, _, _) = await peer.recv_update()
    await peer.nack("", "cannot apply")
    await service(store, "t")
    kind, update = await peer.recv_update()
    assert kind == "snapshot" and update[0] != version, "the next update is the new version"


async def test_one_update_in_flight_and_later_changes_merged(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    await peer.connect(cluster.state.version_string, cluster.state.config.hash)
    await service(store, "a")
    kind, first = await peer.recv_update()
    for name in ("b", "c", "d"):
        await service(store, name)
    await wait_version(cluster, await store.version())
    with pytest.raises(TimeoutError):
        await peer.recv(timeout=0.3)  # not acknowledged yet: nothing more is sent
    await peer.ack(first.to_version, first.expected_hash)
    kind, second = await peer.recv_update()
    assert kind == "delta" and second.from_version == first.to_version
    assert sorted(u.id for u in second.upserts) == sorted(
        s["id"] for s in cluster.state.config.entities["services"].values()
        if s["name"] in ("b", "c", "d"))


async def test_snapshot_is_chunked_below_the_message_limit(store, cluster, peer, monkeypatch):
    monkeypatch.setattr(messages, "CHUNK", 512)
    await service(store)
    for i in range(30):
        await store.insert(ROUTES, {"name": f"r{i}", "paths": [f"/{i}"], "service": {"name": "s"}})
    await wait_version(cluster, await store.version())
    await peer.connect()
    kind, (_, digest, lists, chunks) = await peer.recv_update()
    assert kind == "snapshot" and chunks > 1 and len(lists["routes"]) == 30
    assert ConfigSet.from_lists(lists).hash == digest


async def test_missing_plugin_gets_a_rejection(store, cluster, peer):
    await store.insert(ENTITIES["plugins"], {"name": "key-auth"})
    await wait_version(cluster, await store.version())
    await peer.connect(plugins=["websocket-size-limit"])
    msg = await peer.recv()
    assert msg.WhichOneof("kind") == "rejection"
    assert msg.rejection.sync_status == "plugin_set_incompatible"
    assert "key-auth" in msg.rejection.reason


async def test_newer_data_plane_minor_is_incompatible(store, cluster, peer):
    await peer.connect(dp_version="0.99.0")
    msg = await peer.recv()
    assert msg.rejection.sync_status == "kong_version_incompatible"


async def test_burst_is_coalesced(store, cluster, peer):
    await service(store)
    await wait_version(cluster, await store.version())
    await peer.connect(cluster.state.version_string, cluster.state.config.hash)
    await asyncio.gather(*(service(store, f"burst{i}") for i in range(100)))
    final = await store.version()
    updates = 0
    while True:
        kind, delta = await peer.recv_update()
        assert kind == "delta"
        updates += 1
        await peer.ack(delta.to_version, delta.expected_hash)
        if delta.to_version.endswith(f":{final}"):
            break
    assert updates <= 10, f"100 writes arrived as {updates} updates"
