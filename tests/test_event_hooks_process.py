"""Event hooks with real `tidegate cp start` processes: a CP killed with SIGKILL while deliveries
are pending delivers them after restart, and two CPs on one database deliver each event once."""

from __future__ import annotations

import os

import pytest

from tests.procs import ControlPlane, wait_for

FAST_RETRIES = {"TIDEGATE_EVENT_HOOKS_RETRY_BASE": "0.1", "TIDEGATE_EVENT_HOOKS_TIMEOUT": "30"}

pytest_plugins = ["tests.hook_fixtures"]  # hooked, receiver


@pytest.fixture
def fast_retries(monkeypatch):
    for k, v in FAST_RETRIES.items():
        monkeypatch.setenv(k, v)
    assert os.environ["TIDEGATE_EVENT_HOOKS_RETRY_BASE"] == "0.1"


def usernames(received) -> list[str]:
    return sorted(r.json()["entity"]["username"] for r in received)


def test_sigkill_mid_delivery_redelivers_after_restart(tmp_path, dsn, certs, receiver,
                                                       fast_retries):
    cp = ControlPlane(tmp_path, dsn, certs, name="cp1")
    try:
        status, hook = cp.api("POST", "/event-hooks", {
            "source": "crud", "event": "consumers", "handler": "webhook",
            "config": {"url": receiver.url}})
        assert status == 201
        wait_for(receiver.pings, what="ping")
        receiver.hold()  # requests arrive and wait: the CP is mid-delivery
        for i in range(5):
            assert cp.api("POST", "/consumers", {"username": f"u{i}"})[0] == 201
        wait_for(lambda: _in_flight(cp, hook["id"]), what="deliveries in flight")
    finally:
        cp.kill()
    assert receiver.events() == []  # nothing answered yet
    receiver.release()
    cp2 = ControlPlane(tmp_path, dsn, certs, name="cp2")
    try:
        wait_for(lambda: len({r.headers["webhook-id"] for r in receiver.events()}) == 5,
                 timeout=30, what="5 distinct deliveries after restart")
        assert usernames({r.headers["webhook-id"]: r for r in receiver.events()}.values()) == [
            f"u{i}" for i in range(5)]
        status, body = cp2.api("GET", f"/event-hooks/{hook['id']}/deliveries")
        events = [d for d in body["data"] if d["kind"] == "event"]
        wait_for(lambda: all(d["status"] == "succeeded" for d in
                             cp2.api("GET", f"/event-hooks/{hook['id']}/deliveries")[1]["data"]))
        assert len(events) == 5
    finally:
        cp2.stop()


def _in_flight(cp: ControlPlane, hook_id: str) -> bool:
    """The deliveries exist (recorded before they are attempted) and none has finished."""
    body = cp.api("GET", f"/event-hooks/{hook_id}/deliveries")[1]
    events = [d for d in body["data"] if d["kind"] == "event"]
    return len(events) == 5 and all(d["status"] == "pending" for d in events)


def test_two_control_planes_on_one_database_deliver_each_event_once(tmp_path, dsn, certs,
                                                                    receiver):
    a = ControlPlane(tmp_path, dsn, certs, name="cpa")
    b = ControlPlane(tmp_path, dsn, certs, name="cpb")
    try:
        status, _ = a.api("POST", "/event-hooks", {
            "source": "crud", "event": "consumers", "handler": "webhook",
            "config": {"url": receiver.url}})
        assert status == 201
        for i in range(40):
            node = a if i % 2 else b
            assert node.api("POST", "/consumers", {"username": f"n{i}"})[0] == 201
        wait_for(lambda: len(receiver.events()) >= 40, what="40 events")
        wait_for(lambda: len(receiver.pings()) >= 1, what="ping")
        got = receiver.events()
        assert len(got) == 40 and len(receiver.pings()) == 1
        assert len({r.headers["webhook-id"] for r in got}) == 40
        assert usernames(got) == sorted(f"n{i}" for i in range(40))
    finally:
        a.stop()
        b.stop()
    assert len(receiver.events()) == 40  # and nothing more arrived while stopping
