"""Hybrid mode with real processes: a CP on real PostgreSQL, data planes over real mTLS gRPC."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from psycopg.types.json import Jsonb

from shared.certs import gen_cluster_cert, gen_signed
from tests.procs import ControlPlane, DataPlane, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def procs() -> Iterator[list]:
    started: list = []
    yield started
    for p in started:
        p.kill()


def add(procs: list, proc):
    procs.append(proc)
    return proc


def route_paths(dp: DataPlane, name: str) -> list[str] | None:
    route = dp.routes().get(name)
    return route["paths"] if route else None


async def test_changes_reach_every_data_plane(tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    dps = [add(procs, DataPlane(tmp_path, f"dp{i}", cp.cluster, certs)) for i in range(2)]

    assert cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})[0] == 201
    assert cp.api("POST", "/services/s/routes", {"name": "r", "paths": ["/a"]})[0] == 201
    for dp in dps:
        wait_for(lambda dp=dp: route_paths(dp, "r") == ["/a"], what="route on data plane")

    cp.api("PATCH", "/routes/r", {"paths": ["/b"]})
    for dp in dps:
        wait_for(lambda dp=dp: route_paths(dp, "r") == ["/b"], what="update on data plane")

    cp.api("DELETE", "/routes/r")
    for dp in dps:
        wait_for(lambda dp=dp: "r" not in dp.routes(), what="delete on data plane")

    def all_current():
        planes = cp.data_planes()
        return len(planes) == 2 and all(
            p["sync_status"] == "normal" and p["config_version"] == p["cp_config_version"]
            and p["connected"] for p in planes.values())

    wait_for(all_current, what="both data planes acknowledged the newest version")
    planes = cp.data_planes()
    assert set(planes) == {dp.node_id for dp in dps}
    one = planes[dps[0].node_id]
    assert one["ip"] == "127.0.0.1" and one["version"] == "0.1.0"
    assert one["cert_details"]["expiry_timestamp"] > 0
    assert one["config_hash"] == dps[0].status()["config_hash"]
    status = cp.api("GET", "/clustering/status")[1]
    assert set(status) == set(planes)


async def test_restart_without_cp_serves_cache(tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    cp.api("POST", "/services/s/routes", {"name": "cached", "paths": ["/c"]})
    wait_for(lambda: route_paths(dp, "cached") == ["/c"], what="route on data plane")

    cp.stop()
    dp.kill()
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    assert route_paths(dp, "cached") == ["/c"]
    status = dp.status()
    assert status["config_source"] == "cache" and status["control_plane"]["connected"] is False
    assert dp.get("/status/ready")[0] == 200, "stays ready while the CP is away"


async def test_offline_data_plane_catches_up_by_deltas(tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    wait_for(lambda: dp.status()["entities"]["services"] == 1, what="service on data plane")
    dp.stop()

    for i in range(50):
        assert cp.api("POST", "/services/s/routes", {"name": f"r{i}", "paths": [f"/{i}"]})[0] \
            == 201
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    wait_for(lambda: len(dp.routes()) == 50, what="50 routes on data plane")
    sync = dp.status()["sync"]
    assert sync["applied_deltas"] >= 1 and sync["applied_snapshots"] == 0, sync
    assert dp.status()["config_source"] == "cluster-delta"


async def test_corrupt_cache_is_detected_and_ignored(tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    wait_for(lambda: dp.status()["entities"]["services"] == 1, what="service on data plane")
    cp.stop()
    dp.stop()
    cache = dp.prefix / "config.cache"
    raw = bytearray(cache.read_bytes())
    raw[-10] ^= 0xFF
    cache.write_bytes(bytes(raw))

    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs, wait_ready=False))
    wait_for(lambda: "corrupt" in dp.output(), what="corruption logged")
    assert dp.get("/status/ready") == (503, {"message": "no configuration loaded"})


async def test_rejected_config_shows_on_cp_and_old_config_keeps_serving(
        tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs))
    cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    _, route = cp.api("POST", "/services/s/routes", {"name": "r", "paths": ["/ok"]})
    wait_for(lambda: route_paths(dp, "r") == ["/ok"], what="route on data plane")

    # A write this data plane cannot validate, as another CP node with a different schema might
    # make it: a route path without its leading slash.
    bad = {**route, "paths": ["no-slash"]}
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tidegate_change_log'))")
        await conn.execute("UPDATE routes SET entity = %s WHERE id = %s",
                           (Jsonb(bad), route["id"]))
        await conn.execute(
            "INSERT INTO change_log (id, op, entity_type, entity_id, old_entity, new_entity) "
            "VALUES (nextval('change_log_id_seq'), 'update', 'routes', %s, %s, %s)",
            (route["id"], Jsonb(route), Jsonb(bad)))
        await conn.execute("NOTIFY tidegate_changes")

    def nacked():
        plane = cp.data_planes()[dp.node_id]
        return plane if plane["last_nack"] and plane["sync_status"] == "config_rejected" else None

    plane = wait_for(nacked, what="NACK visible on the control plane")
    assert "should start with: /" in plane["last_nack"]
    assert plane["config_version"] != plane["cp_config_version"]
    assert route_paths(dp, "r") == ["/ok"], "the old config keeps serving"
    assert dp.status()["sync"]["rejected"] >= 1

    cp.api("PATCH", "/routes/r", {"paths": ["/fixed"]})
    wait_for(lambda: route_paths(dp, "r") == ["/fixed"], what="recovery after a good write")
    wait_for(lambda: cp.data_planes()[dp.node_id]["sync_status"] == "normal", what="normal")


async def test_missing_plugin_blocks_sync(tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    cp.api("POST", "/plugins", {"name": "key-auth"})
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, certs, "--plugins",
                              "websocket-size-limit", wait_ready=False))

    def refused():
        plane = cp.data_planes().get(dp.node_id)
        return plane if plane and plane["sync_status"] == "plugin_set_incompatible" else None

    plane = wait_for(refused, what="plugin_set_incompatible")
    assert "key-auth" in plane["last_nack"]
    assert dp.get("/status/ready")[0] == 503, "that data plane gets no config"
    assert "key-auth" in dp.status()["control_plane"]["rejection"]


async def test_unknown_certificate_is_refused_and_logged(tmp_path, dsn, certs, procs):
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    other = {"cert": tmp_path / "other.crt", "key": tmp_path / "other.key"}
    gen_cluster_cert(other["cert"], other["key"])
    # This data plane trusts the CP but presents a certificate that is not the cluster's.
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, other, "--cluster-mtls", "pki",
                              "--cluster-ca-cert", str(certs["cert"]), wait_ready=False))
    wait_for(lambda: "refused a cluster connection" in cp.output(), what="refusal in CP log")
    wait_for(lambda: dp.status()["control_plane"]["last_error"], what="DP saw the refusal")
    assert dp.get("/status/ready")[0] == 503
    assert cp.data_planes() == {}

    with grpc.insecure_channel(cp.cluster) as channel, pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=2)  # plain text
    wait_for(lambda: "did not speak TLS" in cp.output(), what="plaintext refusal in CP log")

    # A data plane that does not trust the CP refuses it, and says why in its own log.
    shy = add(procs, DataPlane(tmp_path, "shy", cp.cluster, other, wait_ready=False))
    wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in (
        shy.status()["control_plane"]["last_error"] or ""), what="DP refusal reason")


async def test_pki_mode(tmp_path, dsn, procs):
    """CA-signed certificates: the CP checks the chain and the DP's name, the DP the CP's name."""
    import subprocess
    import sys

    pki = tmp_path / "pki"
    subprocess.run([sys.executable, "-m", "shared.cli", "certs", "gen", "--ca", "--out-dir",
                    str(pki), "--server-name", "cp.internal", "--dp-name", "edge-1"], check=True,
                   capture_output=True)
    cp = add(procs, ControlPlane(
        tmp_path, dsn, {"cert": pki / "cp.crt", "key": pki / "cp.key"},
        extra=["--cluster-mtls", "pki", "--cluster-ca-cert", str(pki / "ca.crt"),
               "--cluster-allowed-names", "edge-1"]))
    pki_flags = ["--cluster-mtls", "pki", "--cluster-ca-cert", str(pki / "ca.crt"),
                 "--cluster-server-name", "cp.internal"]
    dp = add(procs, DataPlane(tmp_path, "dp", cp.cluster, {"cert": pki / "dp.crt",
                                                            "key": pki / "dp.key"}, *pki_flags))
    cp.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    wait_for(lambda: dp.status()["entities"]["services"] == 1, what="config over pki mTLS")

    wrong_name = add(procs, DataPlane(
        tmp_path, "dp2", cp.cluster, {"cert": pki / "dp.crt", "key": pki / "dp.key"},
        "--cluster-mtls", "pki", "--cluster-ca-cert", str(pki / "ca.crt"),
        "--cluster-server-name", "not-the-cp", wait_ready=False))
    wait_for(lambda: wrong_name.status()["control_plane"]["last_error"],
             what="DP refuses a CP whose certificate has another name")
    assert wrong_name.get("/status/ready")[0] == 503

    gen_signed(pki / "ca.crt", pki / "ca.key", pki / "other.crt", pki / "other.key", "edge-2",
               ["edge-2"])
    not_allowed = add(procs, DataPlane(tmp_path, "dp3", cp.cluster, {
        "cert": pki / "other.crt", "key": pki / "other.key"}, *pki_flags, wait_ready=False))
    wait_for(lambda: "edge-2" in cp.output() and "refused" in cp.output(),
             what="CP refuses a CA-signed DP whose name is not allowed")
    assert not_allowed.get("/status/ready")[0] == 503
    assert set(cp.data_planes()) == {dp.node_id}


async def test_write_on_one_cp_node_reaches_dp_on_another(tmp_path, dsn, certs, procs):
    cp_a = add(procs, ControlPlane(tmp_path, dsn, certs, name="cp-a"))
    cp_b = add(procs, ControlPlane(tmp_path, dsn, certs, name="cp-b"))
    dp = add(procs, DataPlane(tmp_path, "dp", cp_b.cluster, certs))
    cp_a.api("POST", "/services", {"name": "s", "url": "http://up.test"})
    cp_a.api("POST", "/services/s/routes", {"name": "via-a", "paths": ["/a"]})
    wait_for(lambda: route_paths(dp, "via-a") == ["/a"], what="write on A reaches DP on B")
    assert dp.node_id in cp_a.data_planes(), "every CP node sees every data plane"


async def test_standalone_declarative_data_plane(tmp_path, procs):
    kong_yml = tmp_path / "kong.yml"
    kong_yml.write_text("""
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:9000
    routes:
      - name: echo
        paths: [/echo]
""")
    dp = add(procs, DataPlane(tmp_path, "dp", None, None, "--declarative-config", str(kong_yml)))
    assert route_paths(dp, "echo") == ["/echo"]
    assert dp.status()["mode"] == "standalone"

    kong_yml.write_text(kong_yml.read_text().replace("/echo]", "/echo, /v2]"))
    dp.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: route_paths(dp, "echo") == ["/echo", "/v2"], what="SIGHUP reload")

    kong_yml.write_text(kong_yml.read_text().replace("/v2]", "v3]"))
    dp.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: "not loaded" in dp.output(), what="bad file reported")
    assert route_paths(dp, "echo") == ["/echo", "/v2"], "a bad file leaves the config serving"

    from tests.procs import http
    status, body = http("POST", dp.status_url + "/config", {
        "_format_version": "3.0",
        "services": [{"name": "api", "url": "http://127.0.0.1:9001",
                      "routes": [{"name": "api", "paths": ["/api"]}]}]})
    assert status == 201, body
    assert set(dp.routes()) == {"api"}
    status, body = http("POST", dp.status_url + "/config", {"_format_version": "3.0",
                                                             "routes": [{"paths": ["x"]}]})
    assert status == 400 and body["code"] == 14
    assert set(dp.routes()) == {"api"}


async def test_not_ready_without_cache_or_cp(tmp_path, certs, procs):
    dp = add(procs, DataPlane(tmp_path, "dp", "127.0.0.1:1", certs, wait_ready=False))
    assert dp.get("/status/ready") == (503, {"message": "no configuration loaded"})
    assert dp.get("/health") == (200, "OK")


async def test_dead_peers_are_noticed_within_45_seconds(tmp_path, dsn, certs, procs):
    """A frozen process keeps its TCP connection open but answers no HTTP/2 ping: keepalive,
    not the socket, has to notice it."""
    cp = add(procs, ControlPlane(tmp_path, dsn, certs))
    frozen = add(procs, DataPlane(tmp_path, "frozen", cp.cluster, certs))
    other = add(procs, DataPlane(tmp_path, "other", cp.cluster, certs))
    wait_for(lambda: len(cp.data_planes()) == 2, what="both connected")

    frozen.popen.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: cp.data_planes()[frozen.node_id]["connected"] is False, 45,
                 "CP notices the frozen data plane")
    finally:
        frozen.popen.send_signal(signal.SIGCONT)

    cp.popen.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: other.status()["control_plane"]["connected"] is False, 45,
                 "data plane notices the frozen control plane")
        assert other.get("/status/ready")[0] == 200, "it keeps serving"
    finally:
        cp.popen.send_signal(signal.SIGCONT)
    wait_for(lambda: other.status()["control_plane"]["connected"], 45, "reconnected")
