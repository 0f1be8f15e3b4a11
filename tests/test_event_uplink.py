"""The event uplink (DP → CP) and per-plane event logs, with real processes and real upstreams.

Balancer `health` events come from a real upstream whose real listener is stopped and started
again under an active TCP health check; they travel over the real mTLS gRPC stream, are stored in
real PostgreSQL, shown by the Admin API and delivered to a real webhook receiver. The protocol
tests speak to an in-process cluster server as a scripted data plane (tests/cluster_peer.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import psycopg
import pytest

from cp.cluster.dp_events import DataPlaneEvents, decode
from cp.cluster.server import Cluster, start_cluster
from dp.cluster_client import FLOOD, FLOOD_LINGER, ClusterClient, _event_batch, linger
from dp.events import Event, EventQueue
from dp.hook_log import HookLog
from dp.running import RunningConfig, Snapshot
from shared.certs import gen_cluster_cert
from shared.config_set import ConfigSet
from shared.entities import ENTITIES
from shared.proto_gen import cluster_pb2 as pb
from shared.tls import ClusterTLS
from tests.cluster_peer import Peer
from tests.dp_fixtures import Upstream
from tests.polling import eventually
from tests.procs import TIDEGATE, ControlPlane, DataPlane, http

pytest_plugins = ["tests.hook_fixtures"]  # receiver

TCP_CHECKS = {"active": {"type": "tcp", "timeout": 1,
                         "healthy": {"interval": 0.1, "successes": 1},
                         "unhealthy": {"interval": 0.1, "tcp_failures": 1}}}


@pytest.fixture
def procs() -> Iterator[list]:
    started: list = []
    yield started
    for p in started:
        p.kill()


def add(procs: list, proc: Any) -> Any:
    procs.append(proc)
    return proc


@pytest.fixture
async def target() -> AsyncIterator[Upstream]:
    up = await Upstream("t").start()
    yield up
    await up.stop()


def watch(cp: ControlPlane, target: Upstream) -> str:
    """An upstream actively checking `target`; returns the upstream's id."""
    status, upstream = cp.api("POST", "/upstreams", {"name": "pool", "healthchecks": TCP_CHECKS})
    assert status == 201, upstream
    status, body = cp.api("POST", "/upstreams/pool/targets", {"target": target.target})
    assert status == 201, body
    return upstream["id"]


def health(dp: DataPlane) -> str | None:
    status, body = dp.get("/upstreams/pool/health")
    return body["data"][0]["health"] if status == 200 and body["data"] else None


async def flip(dps: list[DataPlane], target: Upstream) -> None:
    """Stop the target until every data plane saw it down, start it until they saw it up:
    one `unhealthy` and one `healthy` event per data plane."""
    port = target.port
    await target.stop()
    for dp in dps:
        await eventually(lambda dp=dp: health(dp) == "UNHEALTHY", 20, "target seen down")
    await target.start(port)
    for dp in dps:
        await eventually(lambda dp=dp: health(dp) == "HEALTHY", 20, "target seen up")


def events(cp: ControlPlane, dp_id: str, query: str = "") -> list[dict[str, Any]]:
    status, body = cp.api("GET", f"/clustering/data-planes/{dp_id}/events{query}")
    assert status == 200, body
    return body["data"]


def json_lines(proc: Any) -> list[dict[str, Any]]:
    out = []
    for line in proc.output().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def hook_lines(proc: Any, hook_id: str) -> list[dict[str, Any]]:
    return [r for r in json_lines(proc) if r.get("hook_id") == hook_id]


# ---- through real processes ------------------------------------------------------------------


async def test_health_events_reach_the_cp_api_and_a_webhook(tmp_path, dsn, certs, procs,
                                                            target, receiver):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    status, hook = cp.api("POST", "/event-hooks", {
        "source": "balancer", "event": "health", "handler": "webhook",
        "config": {"url": receiver.url, "secret": "s3cret"}})
    assert status == 201, hook
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    upstream_id = watch(cp, target)
    await eventually(lambda: health(dp) == "HEALTHY", 20, "target checked on the data plane")
    await flip([dp], target)

    got = await eventually(lambda: len(events(cp, dp.node_id)) >= 2 and events(cp, dp.node_id),
                           20, "both events on the control plane")
    boot_id = dp.status()["events"]["boot_id"]
    assert [e["data"]["health"] for e in got] == ["healthy", "unhealthy"], "newest first"
    newest = got[0]
    assert newest["source"] == "balancer" and newest["event"] == "health"
    assert newest["data"] == {"upstream_id": upstream_id, "ip": "127.0.0.1",
                              "port": target.port, "hostname": "127.0.0.1", "health": "healthy"}
    assert newest["boot_id"] == boot_id and [e["seq"] for e in got] == [2, 1]
    assert newest["at"] <= newest["received_at"] and newest["at"] > got[1]["at"]
    assert set(newest) == {"id", "source", "event", "data", "at", "received_at", "boot_id", "seq"}

    page = cp.api("GET", f"/clustering/data-planes/{dp.node_id}/events?size=1")[1]
    assert [e["seq"] for e in page["data"]] == [2] and page["next"]
    rest = http("GET", cp.admin + page["next"])[1]
    assert [e["seq"] for e in rest["data"]] == [1] and rest["next"] is None
    assert events(cp, dp.node_id, "?source=rate-limiting-advanced") == []

    def webhooks() -> list[dict[str, Any]]:
        return [r.json() for r in receiver.events()]

    await eventually(lambda: len(webhooks()) == 2, 20, "two webhook deliveries")
    assert sorted(w["health"] for w in webhooks()) == ["healthy", "unhealthy"]
    assert all(w["source"] == "balancer" and w["event"] == "health"
               and w["upstream_id"] == upstream_id for w in webhooks())
    await eventually(lambda: dp.status()["events"]["queued"] == 0, 10, "acknowledged")
    assert dp.status()["events"]["acked"] == 2
    assert "s3cret" not in json.dumps(dp.get("/config")[1]), "webhook hooks stay on the CP"
    assert dp.get("/config")[1]["config"]["event_hooks"] == []

    assert cp.api("GET", "/clustering/data-planes/no-such-dp/events")[0] == 404
    for bad in ("?size=0", "?size=x", "?offset=abc", "?offset=99999999999999999999"):
        status, body = cp.api("GET", f"/clustering/data-planes/{dp.node_id}/events{bad}")
        assert status == 400 and body["message"], (bad, body)


async def test_cp_killed_buffered_events_arrive_once_and_overflow_is_counted(
        tmp_path, dsn, certs, procs, target, monkeypatch):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs, name="cp1"))
    roomy = add(procs, DataPlane(tmp_path, "roomy", cp.cluster, certs))
    monkeypatch.setenv("TIDEGATE_EVENT_QUEUE_SIZE", "3")
    tight = add(procs, DataPlane(tmp_path, "tight", cp.cluster, certs))
    monkeypatch.delenv("TIDEGATE_EVENT_QUEUE_SIZE")
    watch(cp, target)
    for dp in (roomy, tight):
        await eventually(lambda dp=dp: health(dp) == "HEALTHY", 20, "target checked")
    assert tight.status()["events"]["capacity"] == 3

    # Frozen, the CP reads nothing: the first two events are sent and never acknowledged ...
    cp.popen.send_signal(signal.SIGSTOP)
    await flip([roomy, tight], target)
    for dp in (roomy, tight):
        await eventually(lambda dp=dp: dp.status()["events"]["unacked"] == 2, 10,
                         "two events sent, not acknowledged")
    cp.kill()  # ... and die with it: only a resend after the reconnect can save them.
    for dp in (roomy, tight):
        await eventually(lambda dp=dp: not dp.status()["control_plane"]["connected"], 30,
                         "the data plane notices the CP is gone")
    for _ in range(2):
        await flip([roomy, tight], target)  # 4 more each while the CP is away
    for dp, expected in ((roomy, (6, 6, 0)), (tight, (3, 6, 3))):
        queue = dp.status()["events"]
        assert (queue["queued"], queue["total"], queue["dropped"]) == expected, queue

    cp2 = add(procs, ControlPlane(tmp_path, dsn, certs, name="cp2",
                                  ports=(cp.admin_port, cp.cluster_port)))
    for dp, count in ((roomy, 6), (tight, 3)):
        await eventually(lambda dp=dp, count=count: len(events(cp2, dp.node_id)) == count
                         and dp.status()["events"]["queued"] == 0, 60,
                         "buffered events stored and acknowledged after the restart")
    stored = events(cp2, roomy.node_id)
    boot = roomy.status()["events"]["boot_id"]
    assert sorted(e["seq"] for e in stored) == [1, 2, 3, 4, 5, 6], "none lost, none twice"
    assert {e["boot_id"] for e in stored} == {boot}
    assert [e["data"]["health"] for e in sorted(stored, key=lambda e: e["seq"])] == \
        ["unhealthy", "healthy"] * 3
    assert sorted(e["seq"] for e in events(cp2, tight.node_id)) == [4, 5, 6], \
        "the oldest were dropped"

    planes = await eventually(
        lambda: (p := cp2.data_planes()) and p.get(tight.node_id, {}).get("events", {})
        .get("dropped") == 3 and p, 20, "the drop counter reported to the CP")
    assert planes[roomy.node_id]["events"]["dropped"] == 0


async def test_log_hook_on_balancer_logs_on_the_dp_and_crud_on_the_cp(tmp_path, dsn, certs,
                                                                      procs, target):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs, extra=["--log-format", "json"]))
    _, balancer_hook = cp.api("POST", "/event-hooks", {
        "source": "balancer", "event": "health", "handler": "log"})
    _, crud_hook = cp.api("POST", "/event-hooks", {
        "source": "crud", "event": "consumers", "handler": "log"})
    # With proxy workers too: the events are matched in the main process, logged once.
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs, "--log-format", "json",
                              "--workers", "2"))
    upstream_id = watch(cp, target)
    await eventually(lambda: health(dp) == "HEALTHY", 20, "target checked on the data plane")
    streamed = dp.get("/config")[1]["config"]["event_hooks"]
    assert [h["id"] for h in streamed] == [balancer_hook["id"]], "only DP-side log hooks"

    await flip([dp], target)
    lines = await eventually(lambda: len(hook_lines(dp, balancer_hook["id"])) == 2
                             and hook_lines(dp, balancer_hook["id"]), 20, "two DP log lines")
    first = lines[0]
    assert first["plane"] == "dp" and first["node_id"] == dp.node_id
    assert (first["source"], first["event"], first["handler"]) == ("balancer", "health", "log")
    assert first["payload"] == {"upstream_id": upstream_id, "ip": "127.0.0.1",
                                "port": target.port, "hostname": "127.0.0.1",
                                "health": "unhealthy", "source": "balancer", "event": "health"}
    assert [ln["payload"]["health"] for ln in lines] == ["unhealthy", "healthy"]

    assert cp.api("POST", "/consumers", {"username": "ada"})[0] == 201
    crud = await eventually(lambda: hook_lines(cp, crud_hook["id"]), 20, "CP log line")
    assert crud[0]["plane"] == "cp" and crud[0]["source"] == "crud"
    assert crud[0]["event"] == "consumers" and crud[0]["payload"]["entity"]["username"] == "ada"
    # The balancer events reached the CP too (stored), yet its log has no balancer line ...
    await eventually(lambda: len(events(cp, dp.node_id)) == 2, 20, "events stored on the CP")
    assert hook_lines(cp, balancer_hook["id"]) == []
    assert not [r for r in json_lines(cp) if r.get("source") == "balancer"]
    # ... and the DP's log has no crud line, and each balancer event was logged once.
    assert hook_lines(dp, crud_hook["id"]) == []
    assert len(hook_lines(dp, balancer_hook["id"])) == 2


def test_bad_queue_and_retention_settings_are_refused(tmp_path, dsn, certs):
    kong_yml = tmp_path / "kong.yml"
    kong_yml.write_text('_format_version: "3.0"\n')
    for args, env, message in (
        (["dp", "start", "--declarative-config", str(kong_yml), "--prefix", str(tmp_path / "dp"),
          "--status-listen", "127.0.0.1:0", "--proxy-listen", "off", "--proxy-ssl-listen", "off"],
         {"TIDEGATE_EVENT_QUEUE_SIZE": "0"}, "event_queue_size must be at least 1"),
        (["cp", "start", "--pg-dsn", dsn, "--prefix", str(tmp_path / "cp"),
          "--admin-listen", "127.0.0.1:0", "--cluster-listen", "127.0.0.1:0",
          "--cluster-cert", str(certs["cert"]), "--cluster-key", str(certs["key"])],
         {"TIDEGATE_DP_EVENTS_RETENTION": "0"}, "dp_events_retention must be a positive"),
    ):
        done = subprocess.run([*TIDEGATE, *args], env={**os.environ, **env}, timeout=60,
                              capture_output=True, text=True)
        assert done.returncode == 1, done.stderr
        assert message in done.stderr


# ---- the protocol, message by message --------------------------------------------------------


@pytest.fixture
def tls(tmp_path) -> ClusterTLS:
    gen_cluster_cert(tmp_path / "c.crt", tmp_path / "c.key")
    return ClusterTLS.from_files("shared", tmp_path / "c.crt", tmp_path / "c.key")


@pytest.fixture
async def clusters(store, dsn, tls) -> AsyncIterator[list[Cluster]]:
    """Two CP nodes' cluster servers on one database."""
    nodes = [await start_cluster(dsn, store.pool, tls, "127.0.0.1:0", f"cp-{i}")
             for i in range(2)]
    yield nodes
    for node in nodes:
        await node.stop(0)


def batch(boot_id: str, first_seq: int, count: int) -> pb.DataPlaneMessage:
    return pb.DataPlaneMessage(event_batch=pb.EventBatch(
        boot_id=boot_id, first_seq=first_seq, events=[
            pb.Event(source="balancer", event="health", ts=1_700_000_000.0 + seq,
                     payload=json.dumps({"upstream_id": "u", "ip": "10.0.0.1", "port": seq,
                                         "hostname": "h", "health": "unhealthy"}).encode())
            for seq in range(first_seq, first_seq + count)]))


async def next_ack(peer: Peer) -> pb.EventAck:
    while True:
        msg = await peer.recv()
        if msg.WhichOneof("kind") == "event_ack":
            return msg.event_ack


async def stored(dsn: str, dp_id: str) -> list[tuple[str, int]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute(
            "SELECT boot_id, seq FROM clustering_dp_events WHERE dp_id = %s ORDER BY boot_id, "
            "seq", (dp_id,))).fetchall()
    return [(b, s) for b, s in rows]


async def deliveries(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM event_hook_deliveries WHERE kind = 'event'")).fetchone()
    return int(row[0]) if row else 0


def address(cluster: Cluster) -> str:
    return f"127.0.0.1:{cluster.port}"


async def test_resent_batches_are_stored_and_hooked_once(store, dsn, tls, clusters):
    await store.insert(ENTITIES["event_hooks"], {
        "source": "balancer", "handler": "webhook", "config": {"url": "http://127.0.0.1:9/"}})
    dp_id, boot = f"dp-{uuid.uuid4()}", str(uuid.uuid4())
    first = await Peer(address(clusters[0]), tls, dp_id).connect()
    try:
        await first.call.write(batch(boot, 1, 3))
        ack = await next_ack(first)
        assert (ack.boot_id, ack.up_to_seq) == (boot, 3)
        await first.call.write(batch(boot, 1, 3))  # as if that ack had been lost
        await first.call.write(batch(boot, 2, 4))  # overlapping: 2..5
        assert [(await next_ack(first)).up_to_seq for _ in range(2)] == [3, 5]
    finally:
        await first.close()
    # The data plane reconnects to the other CP node and resends everything.
    second = await Peer(address(clusters[1]), tls, dp_id).connect()
    try:
        await second.call.write(batch(boot, 1, 5))
        assert (await next_ack(second)).up_to_seq == 5
    finally:
        await second.close()
    assert await stored(dsn, dp_id) == [(boot, i) for i in range(1, 6)]
    assert await deliveries(dsn) == 5, "each stored event fans out once"

    # The same batch to both CP nodes at once: one of them stores it.
    boot2 = str(uuid.uuid4())
    peers = [await Peer(address(c), tls, dp_id).connect() for c in clusters]
    try:
        await asyncio.gather(*(p.call.write(batch(boot2, 1, 50)) for p in peers))
        acks = [await next_ack(p) for p in peers]
        assert [a.up_to_seq for a in acks] == [50, 50]
    finally:
        for p in peers:
            await p.close()
    assert len(await stored(dsn, dp_id)) == 55
    assert await deliveries(dsn) == 55


async def test_a_batch_that_cannot_be_stored_is_not_acknowledged(store, dsn, tls, clusters):
    dp_id, boot = f"dp-{uuid.uuid4()}", str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("ALTER TABLE clustering_dp_event_batches RENAME TO away")
        peer = await Peer(address(clusters[0]), tls, dp_id).connect()
        try:
            await peer.call.write(batch(boot, 1, 2))
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await next_ack(peer)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "could not store events" in (ended.value.details() or "")
        finally:
            await peer.close()
            await conn.execute("ALTER TABLE away RENAME TO clustering_dp_event_batches")
    peer = await Peer(address(clusters[0]), tls, dp_id).connect()
    try:
        await peer.call.write(batch(boot, 1, 2))  # what a data plane resends on reconnecting
        assert (await next_ack(peer)).up_to_seq == 2
    finally:
        await peer.close()
    assert await stored(dsn, dp_id) == [(boot, 1), (boot, 2)]


async def test_retention_prunes_events_received_long_ago(store, dsn):
    dp_events = DataPlaneEvents(store.pool, retention=3600)
    boot = str(uuid.uuid4())
    assert await dp_events.store("dp-r", batch(boot, 1, 2).event_batch) == 2
    assert await dp_events.store("dp-r", batch(boot, 3, 2).event_batch) == 4
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE clustering_dp_event_batches SET received_at = now() - "
                           "interval '2 hours' WHERE last_seq <= 2")
    assert await dp_events.prune() == 2
    page, more = await dp_events.page("dp-r", 10, None)
    assert [e["seq"] for e in page] == [4, 3] and more is None
    assert page[0]["at"] == 1_700_000_004.0


async def test_json_batches_skip_what_no_data_plane_sends_and_still_cover_it(store):
    """The events_json form: readable rows stored (NUL characters removed, NaN as null, a bad
    timestamp replaced by the time of receipt), unreadable ones skipped, and the acknowledgement
    covers the whole batch so the data plane is never stuck resending it."""
    dp_events, boot = DataPlaneEvents(store.pool), str(uuid.uuid4())
    rows = [
        ["balancer", "health", {"n": 1}, 1_700_000_001.5, 11],
        ["balancer", "health", {"n": 2}, 1_700_000_002.0, 99],  # not its place: seq 12
        ["balancer", "health", ["not", "an", "object"], 1_700_000_003.0, 13],
        ["", "health", {"n": 4}, 1_700_000_004.0, 14],  # no source
        ["balancer", "health", {"n": 5, "bad": "a\u0000b"}, "yesterday", 15],
        ["balancer", "health", {"n": 6}, 1e300, 16],
    ]
    text = json.dumps(rows).replace('"bad": "a\\\\u0000b"', '"bad": "a\\u0000b"')
    text = text.replace('{"n": 6}', '{"n": 6, "x": NaN}')  # what the stdlib writes for nan
    before = time.time()
    assert await dp_events.store("dp-j", pb.EventBatch(
        boot_id=boot, first_seq=11, count=6, events_json=text.encode())) == 16
    page, _ = await dp_events.page("dp-j", 10, None)
    got = {e["seq"]: e for e in page}
    assert sorted(got) == [11, 15, 16]
    assert got[11]["data"] == {"n": 1} and got[11]["at"] == 1_700_000_001.5
    assert got[15]["data"] == {"n": 5, "bad": "ab"}, "NUL removed"
    assert got[15]["at"] >= round(before, 3) - 0.001, "a bad timestamp becomes the receipt time"
    assert got[16]["data"] == {"n": 6, "x": None} and got[16]["at"] >= round(before, 3) - 0.001

    # Unreadable as a whole: nothing stored, the batch still acknowledged by its count.
    assert await dp_events.store("dp-j", pb.EventBatch(
        boot_id=boot, first_seq=17, count=3, events_json=b"[not json")) == 19
    assert await dp_events.store("dp-j", pb.EventBatch(
        boot_id=boot, first_seq=20, count=1, events_json=b'{"a": 1}')) == 20
    assert len((await dp_events.page("dp-j", 10, None))[0]) == 3


async def test_batches_as_data_planes_send_them_are_stored_once_with_their_hooks(store, dsn):
    """The events_json a data plane's uplink encodes: stored and shown as sent, a resend that
    overlaps what is stored adds only the new events, and each event's hook delivery carries
    its data (payloads stay JSON text until a hook wants them, even an integer beyond 64
    bits)."""
    await store.insert(ENTITIES["event_hooks"], {
        "source": "rate-limiting-advanced", "handler": "webhook",
        "config": {"url": "http://127.0.0.1:9/"}})
    dp_events, boot = DataPlaneEvents(store.pool), str(uuid.uuid4())
    events = [Event("rate-limiting-advanced", "rate-limit-exceeded", {
        "consumer": {}, "ip": f"10.0.0.{seq}", "service": {"id": "s"}, "rate": 11,
        "limit": 10 if seq != 5 else 2**70 + 1, "window": "second"}, 1_700_000_000.25 + seq, seq)
        for seq in range(1, 6)]
    first = _event_batch(boot, events[:3]).event_batch
    resent = _event_batch(boot, events[1:]).event_batch  # 2..5, after a lost ack
    assert first.events_json.startswith(b'[["rate-limiting-advanced"'), "the DP's encoding"
    assert await dp_events.store("dp-a", first) == 3
    assert await dp_events.store("dp-a", resent) == 5
    page, _ = await dp_events.page("dp-a", 10, None)
    assert [(e["seq"], e["data"]["ip"], e["at"]) for e in page] == [
        (seq, f"10.0.0.{seq}", 1_700_000_000.25 + seq) for seq in range(5, 0, -1)]
    assert page[0]["data"]["limit"] == 2**70 + 1, "exact, not a float"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute(
            "SELECT payload FROM event_hook_deliveries WHERE source = "
            "'rate-limiting-advanced' ORDER BY seq")).fetchall()
    assert [r[0]["ip"] for r in rows] == [f"10.0.0.{seq}" for seq in range(1, 6)]
    assert rows[4][0]["limit"] == 2**70 + 1 and rows[0][0]["service"] == {"id": "s"}


async def test_text_jsonb_cannot_hold_is_mended_and_stays_readable(store, dsn):
    """A lone surrogate (the stdlib parser reads one from "\\ud800") beside a NUL character:
    stored mended, shown by the Admin API's page and readable through the SQL view."""
    dp_events, boot = DataPlaneEvents(store.pool), str(uuid.uuid4())
    text = ('[["balancer","health",{"host":"a\\ud800b"},1700000001.0,1],'
            '["balancer","health",{"host":"c\\u0000d"},1700000002.0,2]]')
    assert await dp_events.store("dp-s", pb.EventBatch(
        boot_id=boot, first_seq=1, count=2, events_json=text.encode())) == 2
    page, _ = await dp_events.page("dp-s", 10, None)
    assert [e["data"] for e in page] == [{"host": "cd"}, {"host": "a?b"}]
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute(
            "SELECT seq, data FROM clustering_dp_events WHERE dp_id = 'dp-s' ORDER BY seq"
        )).fetchall()
    assert rows == [(1, {"host": "a?b"}), (2, {"host": "cd"})]


async def test_pages_run_across_stored_batches_with_filters(store):
    """Events stored a batch to a row are paged one by one, newest first, each once, with the
    cursor of the page before, filtered or not; ids stay the same from page to page."""
    dp_events, boot = DataPlaneEvents(store.pool), str(uuid.uuid4())
    kinds = itertools.cycle([("balancer", "health"),
                             ("rate-limiting-advanced", "rate-limit-exceeded")])
    seq = 0
    for size in (3, 1, 5, 2):  # four batches, four rows
        rows = []
        for _ in range(size):
            seq += 1
            source, event = next(kinds)
            rows.append([source, event, {"n": seq}, 1_700_000_000.0 + seq, seq])
        assert await dp_events.store("dp-p", pb.EventBatch(
            boot_id=boot, first_seq=seq - size + 1, count=size,
            events_json=json.dumps(rows).encode())) == seq

    async def walk(size: int, **filters: str) -> list[tuple[int, str]]:
        got, cursor = [], None
        while True:
            page, cursor = await dp_events.page("dp-p", size, cursor, **filters)
            assert len(page) <= size
            got += [(e["seq"], e["id"]) for e in page]
            if cursor is None:
                return got

    everything = await walk(100)
    assert [s for s, _ in everything] == list(range(11, 0, -1))
    assert len({i for _, i in everything}) == 11
    for size in (1, 2, 4):
        assert await walk(size) == everything
        assert [s for s, _ in await walk(size, source="balancer")] == [11, 9, 7, 5, 3, 1]
        assert [s for s, _ in await walk(size, event="rate-limit-exceeded")] == [
            10, 8, 6, 4, 2]
    assert await walk(3, source="balancer", event="rate-limit-exceeded") == []


def test_an_event_json_cannot_hold_travels_as_a_note_and_the_rest_intact():
    """The data plane's encoding of a batch, read back by the control plane's decoder."""
    q = EventQueue()
    circular: dict[str, Any] = {"a": 1}
    circular["self"] = circular
    q.put("rate-limiting-advanced", "rate-limit-exceeded", {"ip": "10.0.0.1", "rate": 11})
    q.put("balancer", "health", circular)
    q.put("balancer", "health", {"big": 2**70, "nan": float("nan"), "id": uuid.UUID(int=7)})
    q.put("balancer", "health", {"port": 80})
    batch = _event_batch(q.boot_id, q.take(10)).event_batch
    assert (batch.first_seq, batch.count, len(batch.events)) == (1, 4, 0)
    rows, covered = decode(batch, time.time())
    assert covered == 4 and [r[4] for r in rows] == [1, 2, 3, 4]
    assert rows[0][:3] == ["rate-limiting-advanced", "rate-limit-exceeded",
                           {"ip": "10.0.0.1", "rate": 11}]
    assert rows[1][2] == {"unencodable": "Circular reference detected"}
    assert rows[2][2]["big"] == 2**70 and rows[2][2]["id"] == str(uuid.UUID(int=7))
    assert rows[3][2] == {"port": 80} and rows[3][3] == q.peek()[3].at


class RecordingQueue(EventQueue):
    """The real queue, noting when each batch was taken and how many events it held."""

    def __init__(self) -> None:
        super().__init__(100_000)
        self.takes: list[tuple[float, int]] = []

    def take(self, limit: int) -> list[Event]:
        batch = super().take(limit)
        self.takes.append((asyncio.get_running_loop().time(), len(batch)))
        return batch


async def test_the_uplink_coalesces_a_flood_and_sends_a_lone_event_at_once(dsn, tls,
                                                                            clusters):
    q = RecordingQueue()
    client = ClusterClient(address(clusters[0]), tls, RunningConfig(), f"dp-{uuid.uuid4()}",
                           events=q)
    running = asyncio.create_task(client.run())
    try:
        await eventually(lambda: client.status.connected, 20, "connected")
        start, put = time.monotonic(), 0
        while put < 3000:  # 5 000 events/s, in 10 ms steps as requests would raise them
            due = min(3000, int((time.monotonic() - start) * 5000) + 50)
            while put < due:
                q.put("rate-limiting-advanced", "rate-limit-exceeded", {"n": put})
                put += 1
            await asyncio.sleep(0.01)
        await eventually(lambda: q.acked == 3000, 30, "the flood acknowledged")
        # A batch leaves no sooner than its predecessor's linger after it: a flood costs a
        # handful of batches, not one per step.
        takes = q.takes
        assert sum(n for _, n in takes) == 3000
        for (t0, n0), (t1, _) in itertools.pairwise(takes):
            assert t1 - t0 >= linger(n0) - 0.001, (n0, t1 - t0)
        assert max(n for _, n in takes) >= FLOOD, "the flood travelled in large batches"
        assert len(takes) <= 3000 / FLOOD + 3, takes
        assert len(await stored(dsn, client.node_id)) == 3000

        # After a quiet spell an event leaves at once: within a few loop turns, no linger.
        await asyncio.sleep(FLOOD_LINGER)
        taken = len(q.takes)
        q.put("balancer", "health", {"lone": True})
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(q.takes) == taken + 1 and q.takes[-1][1] == 1
        await eventually(lambda: q.acked == 3001, 10, "the lone event acknowledged")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


# ---- the data plane's side, in process -------------------------------------------------------


def test_queue_keeps_unacknowledged_events_resends_after_rewind_and_drops_oldest():
    q = EventQueue(maxlen=4)
    for i in range(3):
        q.put("balancer", "health", {"n": i})
    assert [e.seq for e in q.take(2)] == [1, 2] and q.unacked == 2 and q.unsent == 1
    assert q.ack("another-boot", 2) == 0, "an ack for another process start is ignored"
    assert q.ack(q.boot_id, 1) == 1 and q.unacked == 1
    q.rewind()  # reconnected: seq 2 was sent, never acknowledged
    assert [e.seq for e in q.take(10)] == [2, 3]
    for i in range(3, 6):
        q.put("balancer", "health", {"n": i})  # seq 4..6; the bound (4) drops seq 2
    assert [e.seq for e in q.peek()] == [3, 4, 5, 6] and q.dropped == 1
    assert q.unacked == 1 and [e.seq for e in q.take(10)] == [4, 5, 6]
    assert q.stats() | {"boot_id": None} == {
        "queued": 4, "total": 6, "dropped": 1, "unacked": 4, "acked": 1, "capacity": 4,
        "boot_id": None, "last_seq": 6}


def _snapshot(*hooks: dict[str, Any]) -> Snapshot:
    return Snapshot("v", ConfigSet.from_lists({"event_hooks": list(hooks)}), "file")


def _hook(**fields: Any) -> dict[str, Any]:
    return ENTITIES["event_hooks"].process({"source": "rate-limiting-advanced",
                                            "handler": "log", **fields})


def test_dp_log_hooks_apply_snooze_and_on_change(caplog):
    now = [1000.0]
    hooks = HookLog(clock=lambda: now[0])
    snoozed, changed = _hook(snooze=10), _hook(on_change=True)
    hooks.apply(_snapshot(snoozed, changed, _hook(source="crud", event="consumers")))
    q = EventQueue()
    q.listeners.append(hooks)

    def exceeded(ip: str) -> None:
        q.put("rate-limiting-advanced", "rate-limit-exceeded",
              {"consumer": {}, "ip": ip, "service": {}, "rate": 2, "limit": 1,
               "window": "second"})

    def fired(hook: dict[str, Any]) -> list[str]:
        return [r.fields["payload"]["ip"] for r in caplog.records
                if r.name == "tidegate.dp.hooks" and r.fields["hook_id"] == hook["id"]]

    with caplog.at_level(logging.INFO, logger="tidegate.dp.hooks"):
        exceeded("1.1.1.1")
        exceeded("1.1.1.1")
        exceeded("2.2.2.2")
        now[0] += 11
        exceeded("2.2.2.2")
    assert fired(snoozed) == ["1.1.1.1", "2.2.2.2"], "one line per 10 s"
    assert fired(changed) == ["1.1.1.1", "2.2.2.2"], "a line when the unique keys change"
    record = next(r for r in caplog.records if r.name == "tidegate.dp.hooks")
    assert record.fields["plane"] == "dp" and record.fields["source"] == "rate-limiting-advanced"
    assert record.fields["event"] == "rate-limit-exceeded"
    assert "log callback: event=rate-limit-exceeded" in record.getMessage()
