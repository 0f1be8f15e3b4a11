"""Event hooks through the Admin API, as the seeds (001 examples, 002 reference) run them:
real PostgreSQL, a real Admin API with a running engine, a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import logging

from aiohttp import FormData

from tests.polling import eventually as until

CRUD_FIELDS = ["operation", "entity", "old_entity", "schema"]
SLACK = ("Admin account `{{ entity.username }}` {{ operation}}d; "
         "email address set to `{{ entity.email }}`")
LAMBDA = ('return function (data, event, source, pid) local user = data.entity.username '
          'error("Event hook on consumer " .. user .. "")end')

pytest_plugins = ["tests.hook_fixtures"]  # hooked, receiver


async def form_post(hooked, path: str, fields: list[tuple[str, str]], multipart: bool = False):
    data = FormData(fields)
    if multipart:
        data = FormData()
        for k, v in fields:
            data.add_field(k, v)
        data._is_multipart = True
    r = await hooked.admin.post(path, data=data)
    return r.status, await r.json()


async def test_sources_in_the_seed_shape(hooked):
    status, body = await hooked.get("/event-hooks/sources")
    assert status == 200
    data = body["data"]
    assert data["balancer"]["health"] == {
        "fields": ["upstream_id", "ip", "port", "hostname", "health"]}
    assert data["crud"]["consumers"] == {"fields": CRUD_FIELDS}
    assert data["crud"]["consumers:create"] == {"fields": CRUD_FIELDS}
    assert data["rate-limiting-advanced"]["rate-limit-exceeded"] == {
        "description": "Run an event when a rate limit has been exceeded",
        "fields": ["consumer", "ip", "service", "rate", "limit", "window"],
        "unique": ["consumer", "ip", "service"],
    }
    status, body = await hooked.get("/event-hooks/sources/dao:crud")
    assert status == 200
    assert body == {"data": {op: {"fields": CRUD_FIELDS} for op in ("create", "delete", "update")}}
    status, body = await hooked.get("/event-hooks/sources/nope")
    assert (status, body) == (404, {"message": "Not found"})


async def test_unknown_source_or_event_is_a_400_naming_the_valid_ones(hooked):
    status, body = await hooked.post("/event-hooks", {"source": "nope", "handler": "log"})
    assert status == 400
    assert "crud" in body["fields"]["source"] and "balancer" in body["fields"]["source"]
    status, body = await hooked.post("/event-hooks", {"source": "dao:crud", "event": "x",
                                                      "handler": "log"})
    assert status == 400
    assert body["fields"]["event"].startswith("source 'dao:crud' has no 'x' event")
    status, body = await hooked.post("/event-hooks", {"source": "crud", "handler": "webhook",
                                                      "config": {}})
    assert status == 400 and "url" in body["fields"]["config"]


async def test_webhook_seed_ping_then_consumer_payload(hooked, receiver):
    status, hook = await form_post(hooked, "/event-hooks", [
        ("source", "crud"), ("event", "consumers"), ("handler", "webhook"),
        ("config.url", receiver.url)])
    assert status == 201
    assert hook["config"]["secret"] is None and hook["config"]["ssl_verify"] is False
    assert hook["on_change"] is None and hook["snooze"] is None
    (ping,) = await until(receiver.pings, what="ping on creation")
    assert ping.method == "POST"
    assert ping.json() == {"source": "kong:event_hooks", "event": "ping", "event_hooks": hook}
    status, consumer = await form_post(hooked, "/consumers", [("username", "Ada Lovelace")])
    assert status == 201
    (got,) = await until(receiver.events, what="consumer event")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"source": "crud", "entity": consumer, "event": "consumers",
                          "operation": "create", "schema": "consumers"}
    assert got.headers["webhook-id"]


async def test_webhook_signature_headers_update_and_delete(hooked, receiver):
    status, _ = await hooked.post("/event-hooks", {
        "source": "crud", "event": "consumers", "handler": "webhook",
        "config": {"url": receiver.url, "secret": "shh", "headers": {"X-Custom": "yes"}}})
    assert status == 201
    await until(receiver.pings, what="ping")
    _, c = await hooked.post("/consumers", {"username": "a"})
    r = await hooked.admin.patch(f"/consumers/{c['id']}", json={"custom_id": "x"})
    assert r.status == 200
    await hooked.admin.delete(f"/consumers/{c['id']}")
    events = await until(lambda: len(receiver.events()) == 3 and receiver.events())
    assert [e.json()["operation"] for e in events] == ["create", "update", "delete"]
    for e in events:
        expected = hmac.new(b"shh", e.body, hashlib.sha1).hexdigest()
        assert e.headers["x-kong-signature"] == f"sha1={expected}"
        assert e.headers["x-custom"] == "yes"
        assert e.headers["webhook-signature"].startswith("v1,")
    update = events[1].json()
    assert update["old_entity"]["custom_id"] is None and update["entity"]["custom_id"] == "x"
    assert "old_entity" not in events[0].json()
    assert events[2].json()["entity"]["id"] == c["id"]
    # the ping about the hook itself never carries its secret
    assert receiver.pings()[0].json()["event_hooks"]["config"]["secret"] == "<redacted>"


async def test_operation_event_and_dao_crud_matching(hooked, receiver):
    await hooked.post("/event-hooks", {"source": "crud", "event": "consumers:update",
                                       "handler": "webhook", "config": {"url": receiver.url}})
    await hooked.post("/event-hooks", {"source": "dao:crud", "event": "delete",
                                       "handler": "webhook", "config": {"url": receiver.url}})
    await until(lambda: len(receiver.pings()) == 2)
    _, c = await hooked.post("/consumers", {"username": "b"})
    await hooked.admin.patch(f"/consumers/{c['id']}", json={"custom_id": "y"})
    await hooked.post("/services", {"host": "example.com"})
    await hooked.admin.delete(f"/consumers/{c['id']}")
    events = await until(lambda: len(receiver.events()) == 2 and receiver.events())
    # One event per hook; two hooks are served side by side, so either may arrive first.
    crud, dao = sorted((e.json() for e in events), key=lambda e: e["source"])
    assert (crud["source"], crud["event"], crud["operation"]) == (
        "crud", "consumers:update", "update")
    assert (dao["source"], dao["event"], dao["schema"]) == ("dao:crud", "delete", "consumers")


async def test_ping_on_update_and_delete_of_a_webhook_hook(hooked, receiver):
    _, hook = await hooked.post("/event-hooks", {"source": "crud", "handler": "webhook",
                                                 "config": {"url": receiver.url}})
    await hooked.admin.patch(f"/event-hooks/{hook['id']}", json={"event": "services"})
    await hooked.admin.delete(f"/event-hooks/{hook['id']}")
    pings = await until(lambda: len(receiver.pings()) == 3 and receiver.pings())
    assert [p.json()["event_hooks"].get("event") for p in pings] == [None, "services",
                                                                      "services"]


async def test_webhook_custom_slack_seed_renders_exactly(hooked, receiver):
    status, hook = await form_post(hooked, "/event-hooks", [
        ("source", "crud"), ("event", "admins"), ("handler", "webhook-custom"),
        ("config.method", "POST"), ("config.url", receiver.url),
        ("config.headers.content-type", "application/json"),
        ("config.payload.text", SLACK)])
    assert status == 201
    assert hook["config"] == {
        "body": None, "body_format": True, "headers": {"content-type": "application/json"},
        "headers_format": False, "method": "POST", "payload": {"text": SLACK},
        "payload_format": True, "secret": None, "ssl_verify": False, "timeout": None,
        "url": receiver.url}
    status, _ = await form_post(hooked, "/admins", [
        ("username", "Arya Stark"), ("email", "arya@gameofthrones.com")])
    assert status == 201
    (got,) = await until(receiver.events, what="slack message")
    assert got.method == "POST" and got.headers["content-type"] == "application/json"
    assert got.json() == {"text": "Admin account `Arya Stark` created; "
                                  "email address set to `arya@gameofthrones.com`"}
    assert receiver.pings() == []  # only `webhook` hooks ping


async def test_webhook_custom_form_body_headers_and_missing_fields(hooked, receiver):
    await hooked.post("/event-hooks", {"source": "crud", "event": "consumers",
                                       "handler": "webhook-custom", "config": {
        "method": "PUT", "url": receiver.url + "?q=1", "secret": "k",
        "payload": {"who": "{{ entity.username }}", "nothing": "{{ entity.no.such }}x"}}})
    await hooked.post("/event-hooks", {"source": "crud", "event": "consumers",
                                       "handler": "webhook-custom", "config": {
        "method": "POST", "url": receiver.url, "headers_format": True,
        "headers": {"x-op": "{{ operation }}-{{ source }}", "content-type": "text/plain"},
        "body": "{{ event }}: {{ entity.username }} {{ old_entity.username }}."}})
    await hooked.post("/consumers", {"username": "Jane"})
    got = await until(lambda: len(receiver.events()) == 2 and receiver.events())
    form = next(r for r in got if r.method == "PUT")
    assert form.path == "/hook?q=1"
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form.body == b"who=Jane&nothing=x"
    assert form.headers["x-kong-signature"] == (
        "sha1=" + hmac.new(b"k", form.body, hashlib.sha1).hexdigest())
    raw = next(r for r in got if r.method == "POST")
    assert raw.body == b"consumers: Jane ."
    assert raw.headers["x-op"] == "create-crud"


async def test_log_handler_seed_writes_the_event_to_the_cp_log(hooked, caplog):
    caplog.set_level(logging.INFO, logger="tidegate.hooks")
    status, hook = await form_post(hooked, "/event-hooks", [
        ("source", "crud"), ("event", "consumers"), ("handler", "log")])
    assert status == 201 and hook["config"] == {}
    _, consumer = await form_post(hooked, "/consumers", [("username", "Elizabeth Bennet")])

    def logged():
        return [r for r in caplog.records if r.name == "tidegate.hooks"
                and getattr(r, "fields", {}).get("hook_id") == hook["id"]]

    (record,) = await until(logged, what="log line")
    assert "Elizabeth Bennet" in record.getMessage() and "log callback" in record.getMessage()
    assert record.fields["plane"] == "cp"
    assert (record.fields["source"], record.fields["event"]) == ("crud", "consumers")
    assert record.fields["payload"]["entity"] == consumer


async def test_lambda_seed_error_is_logged(hooked, caplog):
    caplog.set_level(logging.INFO, logger="tidegate.hooks")
    status, hook = await form_post(hooked, "/event-hooks", [
        ("source", "crud"), ("event", "consumers"), ("handler", "lambda"),
        ("config.functions", LAMBDA)], multipart=True)
    assert status == 201, hook
    assert hook["config"] == {"functions": [LAMBDA]}
    await form_post(hooked, "/consumers", [("username", "Lois Lane")])

    def errors():
        return [r for r in caplog.records if r.name == "tidegate.hooks"
                and r.levelno == logging.ERROR]

    (record,) = await until(errors, what="lambda error in the log")
    assert record.getMessage() == (
        '[string "return function (data, event, source, pid) lo..."]:1: '
        "Event hook on consumer Lois Lane")
    assert record.fields["hook_id"] == hook["id"]

    async def finished():  # the error is logged before the attempt is recorded
        _, body = await hooked.get(f"/event-hooks/{hook['id']}/deliveries")
        return body["data"] if body["data"] and body["data"][0]["status"] != "pending" else None

    (delivery,) = await until(finished, what="the delivery's outcome recorded")
    assert delivery["status"] == "failed" and "Lois Lane" in delivery["last_error"]
    assert len(delivery["attempts"]) == 1  # a Lua error is not retried


async def test_test_endpoint_answers_data_and_result(hooked, receiver):
    _, hook = await hooked.post("/event-hooks", {"source": "crud", "event": "consumers",
                                                 "handler": "webhook",
                                                 "config": {"url": receiver.url}})
    await until(receiver.pings)
    status, body = await hooked.post(f"/event-hooks/{hook['id']}/test",
                                     {"consumer": {"username": "Jane Austen"}})
    assert status == 200
    assert body["data"] == {"consumer": {"username": "Jane Austen"}, "event": "consumers",
                            "source": "crud"}
    assert body["result"]["status"] == 200 and body["result"]["body"] == "ok"
    assert "Content-Type" in body["result"]["headers"]
    (got,) = receiver.events()  # delivered synchronously, before the answer
    assert got.json() == body["data"]
    status, body = await hooked.post("/event-hooks/00000000-0000-0000-0000-000000000000/test",
                                     {})
    assert status == 404


async def test_ping_endpoint(hooked, receiver):
    _, hook = await hooked.post("/event-hooks", {"source": "crud", "event": "consumers",
                                                 "handler": "webhook",
                                                 "config": {"url": receiver.url}})
    await until(receiver.pings)
    status, body = await hooked.get(f"/event-hooks/{hook['id']}/ping")
    assert status == 200
    assert body == {"source": "kong:event_hooks", "event": "ping", "event_hooks": hook}
    assert len(receiver.pings()) == 2
    _, log_hook = await hooked.post("/event-hooks", {"source": "crud", "handler": "log"})
    status, body = await hooked.get(f"/event-hooks/{log_hook['id']}/ping")
    assert (status, body) == (400, {"message": "handler 'log' does not support 'ping'"})
