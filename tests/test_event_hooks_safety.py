"""Outbound safety of webhook deliveries against real receivers: `ssl_verify` against a real TLS
receiver with a self-signed certificate, and the per-hook `config.timeout` against a receiver
that stalls."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from shared.certs import gen_cluster_cert
from tests.hook_fixtures import FAST
from tests.polling import eventually as until

pytest_plugins = ["tests.hook_fixtures"]  # hooked, receiver


class TlsReceiver:
    """An HTTPS receiver on 127.0.0.1 with a certificate for `localhost` signed by no CA
    anyone trusts; records the JSON body of every request it answers."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.Response(text="ok")

    def events(self) -> list[dict]:
        return [b for b in self.bodies if b.get("event") != "ping"]


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[TlsReceiver, str]]:
    cert, key = tmp_path / "rx.crt", tmp_path / "rx.key"
    gen_cluster_cert(cert, key, cn="localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    rx = TlsReceiver()
    app = web.Application()
    app.router.add_post("/hook", rx.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield rx, f"https://localhost:{port}/hook"
    await runner.cleanup()


async def _hook(hooked, username_event: str, config: dict, handler: str = "webhook") -> dict:
    status, hook = await hooked.post("/event-hooks", {
        "source": "crud", "event": username_event, "handler": handler, "config": config})
    assert status == 201, hook
    return hook


async def _first_delivery(hooked, hook: dict, done) -> dict:
    async def check():
        _, body = await hooked.get(f"/event-hooks/{hook['id']}/deliveries")
        events = [d for d in body["data"] if d["kind"] == "event"]
        return events and done(events[0]) and events[0]

    return await until(check, what="the delivery's attempt")


async def test_ssl_verify_false_delivers_to_a_self_signed_receiver(hooked, tls_receiver):
    rx, url = tls_receiver
    hook = await _hook(hooked, "consumers", {"url": url, "ssl_verify": False})
    await hooked.post("/consumers", {"username": "trusting"})
    (got,) = await until(rx.events, what="the delivery over TLS")
    assert got["entity"]["username"] == "trusting"
    delivery = await _first_delivery(hooked, hook, lambda d: d["status"] == "succeeded")
    assert [a["response_status"] for a in delivery["attempts"]] == [200]


async def test_ssl_verify_true_refuses_a_self_signed_receiver(hooked, tls_receiver):
    rx, url = tls_receiver
    hook = await _hook(hooked, "consumers", {"url": url, "ssl_verify": True})
    await hooked.post("/consumers", {"username": "careful"})
    delivery = await _first_delivery(hooked, hook, lambda d: d["attempts"])
    first = delivery["attempts"][0]
    assert first["response_status"] is None
    assert "certificate verify failed" in first["error"], first["error"]
    assert "self-signed certificate" in first["error"], first["error"]
    assert delivery["status"] == "pending"  # retried: the receiver may fix its certificate
    # The ping on creation was refused the same way: nothing ever reached the receiver.
    assert rx.bodies == []
    status, body = await hooked.post(f"/event-hooks/{hook['id']}/test", {"entity": {}})
    assert status == 200 and body["result"]["status"] is None
    assert "certificate verify failed" in body["result"]["body"]


async def test_the_hook_timeout_overrides_the_node_timeout(hooked, receiver):
    assert FAST.timeout == 2.0  # the node setting these hooks do not override / do
    own = await _hook(hooked, "consumers:create", {"url": receiver.url, "timeout": 0.3})
    node = await _hook(hooked, "consumers:create", {"url": receiver.url})
    custom = await _hook(hooked, "consumers:create", {
        "url": receiver.url, "method": "PUT", "body": "{{ entity.username }}", "timeout": 0.3},
        handler="webhook-custom")
    await until(lambda: len(receiver.pings()) == 2, what="the webhooks' pings")
    receiver.hold()  # the receiver takes requests and never answers while held
    try:
        await hooked.post("/consumers", {"username": "slowpoke"})
        attempts = {}
        for hook in (own, node, custom):
            delivery = await _first_delivery(hooked, hook, lambda d: d["attempts"])
            attempts[hook["id"]] = delivery["attempts"][0]
    finally:
        receiver.release()
    for hook in (own, custom):
        first = attempts[hook["id"]]
        assert first["error"] == "timed out after 0.3 s", first
        assert 250 <= first["latency_ms"] < 1500, first
    first = attempts[node["id"]]
    assert first["error"] == "timed out after 2 s", first
    assert first["latency_ms"] >= 1900, first


async def test_timeout_is_validated_and_shown(hooked, receiver):
    hook = await _hook(hooked, "consumers", {"url": receiver.url})
    assert hook["config"]["timeout"] is None  # the node's setting applies
    for bad, message in ((0, "value must be greater than 0"), (-1, "value should be between"),
                         (4000, "value should be between"), ("soon", "expected a number")):
        status, body = await hooked.post("/event-hooks", {
            "source": "crud", "handler": "webhook", "config": {"url": receiver.url,
                                                               "timeout": bad}})
        assert status == 400, body
        assert body["fields"]["config"]["timeout"].startswith(message), body
    r = await hooked.admin.post("/event-hooks", data={
        "source": "crud", "handler": "webhook", "config.url": receiver.url,
        "config.timeout": "2.5"})
    assert r.status == 201
    assert (await r.json())["config"]["timeout"] == 2.5
    status, body = await hooked.post("/event-hooks", {
        "source": "crud", "handler": "log", "config": {"timeout": 1}})
    assert status == 400 and body["fields"]["config"]["timeout"] == "unknown field"
