"""Declarative config (kong.yml): the shared loader, `/config`, `tidegate config validate`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import yaml

from shared import declarative
from shared.errors import DeclarativeConfigError
from shared.schema.fields import is_uuid

FIXTURES = Path(__file__).parent / "fixtures"
REALISTIC = FIXTURES / "kong_realistic.yml"

NESTED = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "orders",
            "url": "http://orders.internal:8080/v1",
            "routes": [
                {"name": "orders-api", "paths": ["/orders"],
                 "plugins": [{"name": "key-auth", "config": {"key_names": ["k"]}}]},
                {"paths": ["~/api/v\\d+"], "methods": ["GET"]},
            ],
            "plugins": [{"name": "key-auth"}],
        },
        {"name": "chat", "protocol": "ws", "host": "chat.internal", "port": 9000},
    ],
    "consumers": [
        {"username": "alice", "plugins": [
            {"name": "websocket-size-limit", "config": {"client_max_payload": 10}}]},
    ],
    "upstreams": [
        {"name": "orders.internal", "targets": [{"target": "10.0.0.1"}, {"target": "10.0.0.2:81"}]},
    ],
}


def load_error(document: Any) -> DeclarativeConfigError:
    with pytest.raises(DeclarativeConfigError) as info:
        declarative.load(document)
    return info.value


def without_times(config: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The config without timestamps, each type sorted by id: what must survive a round trip."""
    return {k: sorted(({f: v for f, v in e.items() if f not in ("created_at", "updated_at")}
                       for e in es), key=lambda e: e["id"])
            for k, es in config.items()}


def by_name(entities: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {e[key]: e for e in entities if e.get(key)}


# ---- the loader -------------------------------------------------------------------------------


def test_nested_entities_are_flattened_with_their_parent_references() -> None:
    config = declarative.load(copy.deepcopy(NESTED))
    services = by_name(config["services"])
    assert set(services) == {"orders", "chat"}
    orders = services["orders"]
    assert (orders["host"], orders["port"], orders["path"]) == ("orders.internal", 8080, "/v1")
    assert len(config["routes"]) == 2
    assert all(r["service"] == {"id": orders["id"]} for r in config["routes"])
    route = by_name(config["routes"])["orders-api"]
    plugins = config["plugins"]
    assert len(plugins) == 3
    on_route = [p for p in plugins if p["route"] is not None]
    assert len(on_route) == 1
    # a plugin nested in a route (itself nested in a service) belongs to the route only
    assert on_route[0]["route"] == {"id": route["id"]} and on_route[0]["service"] is None
    assert on_route[0]["config"]["key_names"] == ["k"]
    on_service = [p for p in plugins if p["service"] is not None]
    assert on_service[0]["service"] == {"id": orders["id"]}
    alice = config["consumers"][0]
    on_consumer = [p for p in plugins if p["consumer"] is not None]
    assert on_consumer[0]["consumer"] == {"id": alice["id"]}
    upstream = config["upstreams"][0]
    assert sorted(t["target"] for t in config["targets"]) == ["10.0.0.1:8000", "10.0.0.2:81"]
    assert all(t["upstream"] == {"id": upstream["id"]} for t in config["targets"])
    # nested keys are not left on the parents
    assert "routes" not in orders and "plugins" not in orders and "targets" not in upstream
    assert config["event_hooks"] == [] and "admins" not in config


def test_references_by_name_or_id_in_every_form() -> None:
    sid = "6f1c6a2e-4b53-4d7b-9a53-7a2f2f0f0a01"
    doc = {
        "_format_version": "3.0",
        "services": [{"name": "a", "host": "a.internal"}, {"id": sid, "host": "b.internal"}],
        "routes": [
            {"name": "r1", "paths": ["/1"], "service": "a"},
            {"name": "r2", "paths": ["/2"], "service": {"name": "a"}},
            {"name": "r3", "paths": ["/3"], "service": {"id": sid}},
            {"name": "r4", "paths": ["/4"], "service": sid},
        ],
        "plugins": [{"name": "key-auth", "route": "r1"},
                    {"name": "key-auth", "route": {"name": "r2"}, "service": "a"}],
    }
    config = declarative.load(doc)
    a = by_name(config["services"])["a"]
    routes = by_name(config["routes"])
    assert routes["r1"]["service"] == routes["r2"]["service"] == {"id": a["id"]}
    assert routes["r3"]["service"] == routes["r4"]["service"] == {"id": sid}
    assert config["plugins"][0]["route"] == {"id": routes["r1"]["id"]}
    assert config["plugins"][1]["route"] == {"id": routes["r2"]["id"]}
    assert config["plugins"][1]["service"] == {"id": a["id"]}


def test_certificate_snis_as_names_or_records() -> None:
    text = REALISTIC.read_text()
    config = declarative.load_text(text)
    cert = config["certificates"][0]
    assert sorted(s["name"] for s in config["snis"]) == ["*.shop.example.com", "shop.example.com"]
    assert all(s["certificate"] == {"id": cert["id"]} for s in config["snis"])


def test_ids_are_deterministic_and_given_ids_are_kept() -> None:
    first = declarative.load(copy.deepcopy(NESTED))
    second = declarative.load(copy.deepcopy(NESTED))
    ids = {k: [e["id"] for e in v] for k, v in first.items()}
    assert ids == {k: [e["id"] for e in v] for k, v in second.items()}
    assert all(is_uuid(i) for v in ids.values() for i in v)
    assert len({i for v in ids.values() for i in v}) == sum(len(v) for v in ids.values())
    # entities with a name keep their id when the file is reordered
    reordered = copy.deepcopy(NESTED)
    reordered["services"].reverse()
    third = declarative.load(reordered)
    assert by_name(third["services"])["orders"]["id"] == by_name(first["services"])["orders"]["id"]
    assert {p["id"] for p in third["plugins"]} == {p["id"] for p in first["plugins"]}
    assert {t["id"] for t in third["targets"]} == {t["id"] for t in first["targets"]}
    # a given id wins
    given = copy.deepcopy(NESTED)
    given["services"][0]["id"] = "0e9a4d7c-1111-4a2b-8c3d-000000000001"
    loaded = by_name(declarative.load(given)["services"])
    assert loaded["orders"]["id"] == given["services"][0]["id"]


def test_all_errors_are_collected_and_mirror_the_input() -> None:
    doc = {
        "_format_version": "3.0",
        "services": [
            {"name": "ok", "host": "ok.internal", "routes": [
                {"paths": ["/fine"]},
                {"paths": ["no-slash"], "methods": ["get"]},
            ]},
            {"name": "bad", "host": "bad host", "port": 70000},
        ],
        "consumers": [{"username": "c", "plugins": [{"name": "no-such-plugin"}]}],
    }
    exc = load_error(doc)
    body = exc.to_json()
    assert body["code"] == 14 and body["name"] == "invalid declarative configuration"
    fields = body["fields"]
    assert fields["services"][0]["routes"][0] is None
    route_errors = fields["services"][0]["routes"][1]
    assert route_errors["paths"] == ["should start with: / (fixed path) or ~/ (regex path)"]
    assert route_errors["methods"] == ["invalid value: get"]
    assert set(fields["services"][1]) == {"host", "port"}
    assert "routes" not in (fields["services"][1] or {})
    assert "name" in fields["consumers"][0]["plugins"][0]
    flat = body["flattened_errors"]
    assert [(e["entity_type"], e["entity_path"]) for e in flat] == [
        ("route", "services.1.routes.2"), ("service", "services.2"),
        ("plugin", "consumers.1.plugins.1")]
    service = flat[1]
    assert service["entity_name"] == "bad"
    assert {(e["field"], e["type"]) for e in service["errors"]} == {
        ("host", "field"), ("port", "field")}
    assert "services.1.routes.2.paths.1: should start with" in body["message"]
    assert "services.2.port: value should be between 0 and 65535" in body["message"]
    json.dumps(body)  # serialisable as it is


def test_entity_level_errors_are_flagged_as_such() -> None:
    exc = load_error({"_format_version": "3.0", "routes": [{"name": "nothing-to-match"}]})
    (entry,) = exc.flattened
    assert entry["errors"][0]["type"] == "entity"
    assert "must set one of" in entry["errors"][0]["message"]


def test_unknown_top_level_keys_and_admins_are_rejected() -> None:
    exc = load_error({"_format_version": "3.0", "_comment": "fine", "_workspace": "default",
                      "_info": {}, "_transform": True, "servics": [],
                      "admins": [{"username": "x"}]})
    assert exc.fields["servics"] == "unknown field"
    assert "admins" in exc.fields
    assert set(exc.fields) == {"servics", "admins"}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, "expected a version string"),
        ("4.0", "unsupported version '4.0'"),
        ([], "expected a version string"),
    ],
)
def test_bad_format_version(version: Any, expected: str) -> None:
    doc: dict[str, Any] = {"services": [{"host": "x.internal"}]}
    if version is not None:
        doc["_format_version"] = version
    exc = load_error(doc)
    assert expected in exc.fields["_format_version"]
    assert expected in exc.message


def test_accepted_format_versions_and_legacy_regex_paths() -> None:
    for version in ("1.1", "2.1", "3.0", 3.0):
        declarative.load({"_format_version": version})
    doc = {"_format_version": "2.1", "services": [{"host": "x.internal", "routes": [
        {"paths": ["/plain", "/api/v\\d+", "~/already"]}]}]}
    (route,) = declarative.load(doc)["routes"]
    assert route["paths"] == ["/plain", "~/api/v\\d+", "~/already"]


def test_yaml_syntax_errors_are_reported_with_their_position() -> None:
    text = "_format_version: '3.0'\nservices:\n  - name: a\n    host: [unclosed\n"
    with pytest.raises(DeclarativeConfigError) as info:
        declarative.parse(text)
    message = info.value.message
    assert "failed parsing declarative configuration as YAML" in message
    assert "line " in message and "Traceback" not in message
    with pytest.raises(DeclarativeConfigError, match="duplicate key 'host'"):
        declarative.parse("_format_version: '3.0'\nservices:\n- host: a\n  host: b\n")
    with pytest.raises(DeclarativeConfigError, match="at the top level"):
        declarative.parse("- just\n- a list\n")
    with pytest.raises(DeclarativeConfigError, match="as JSON"):
        declarative.parse('{"_format_version": ', "json")
    with pytest.raises(DeclarativeConfigError, match="not UTF-8"):
        declarative.parse(b"\xff\xfe\x00")


def test_yaml_quirks_do_not_change_values() -> None:
    doc = declarative.parse(
        "_format_version: '3.0'\n"
        "base: &base\n  host: a.internal\n"
        "services:\n- name: a\n  tags: [2024-01-01]\n  host: a.internal\n"
    )
    assert doc["services"][0]["tags"] == ["2024-01-01"]  # not a date object
    assert declarative.parse('{"_format_version": "3.0"}') == {"_format_version": "3.0"}


def test_missing_references_fail_clearly() -> None:
    exc = load_error({"_format_version": "3.0", "routes": [
        {"paths": ["/x"], "service": "nowhere"},
        {"paths": ["/y"], "service": {"id": "6f1c6a2e-4b53-4d7b-9a53-7a2f2f0f0a09"}},
        {"paths": ["/z"], "service": {"host": "x"}},
    ]})
    routes = exc.to_json()["fields"]["routes"]
    assert routes[0]["service"] == "no service with id or name 'nowhere' in this declarative config"
    assert "no service with id '6f1c6a2e" in routes[1]["service"]
    assert routes[2]["service"].startswith("expected an id or name of a service")


def test_duplicates_within_the_file() -> None:
    sid = "6f1c6a2e-4b53-4d7b-9a53-7a2f2f0f0a01"
    exc = load_error({"_format_version": "3.0", "services": [
        {"name": "same", "host": "a.internal"},
        {"name": "same", "host": "b.internal"},
        {"id": sid, "host": "c.internal", "plugins": [{"name": "key-auth"}, {"name": "key-auth"}]},
        {"id": sid, "host": "d.internal"},
    ]})
    services = exc.to_json()["fields"]["services"]
    assert services[0] is None
    assert "already used by the service at services.1" in services[1]["name"]
    assert services[2]["plugins"][0] is None
    assert "has the same name, route, service, consumer" in services[2]["plugins"][1]["@entity"][0]
    assert "has the id" in services[3]["id"]


def test_route_must_fit_its_service() -> None:
    exc = load_error({"_format_version": "3.0", "services": [
        {"name": "plain", "host": "a.internal",
         "routes": [{"protocols": ["ws"], "paths": ["/"]}]}]})
    assert "not compatible" in exc.fields["services"][0]["routes"][0]["protocols"]


def test_nested_entity_may_not_point_elsewhere() -> None:
    exc = load_error({"_format_version": "3.0", "services": [
        {"name": "a", "host": "a.internal"},
        {"name": "b", "host": "b.internal", "routes": [{"paths": ["/"], "service": "a"}]}]})
    assert "enclosing service" in exc.fields["services"][1]["routes"][0]["service"]


def test_event_hooks_are_a_tidegate_extension() -> None:
    config = declarative.load({"_format_version": "3.0", "event_hooks": [
        {"source": "crud", "event": "consumers", "handler": "webhook",
         "config": {"url": "https://hooks.example.com/x"}}]})
    (hook,) = config["event_hooks"]
    assert hook["config"]["ssl_verify"] is False and is_uuid(hook["id"])
    exc = load_error({"_format_version": "3.0", "event_hooks": [
        {"source": "nope", "handler": "log"}]})
    assert "is not registered" in exc.fields["event_hooks"][0]["source"]


def test_structure_errors() -> None:
    exc = load_error({"_format_version": "3.0", "services": {"name": "x"},
                      "upstreams": ["not-a-record", {"name": "u", "targets": "10.0.0.1"}]})
    assert exc.fields["services"] == "expected an array"
    assert exc.fields["upstreams"][0] == "expected a record"
    assert exc.fields["upstreams"][1]["targets"] == "expected an array"


def test_realistic_file_loads() -> None:
    config = declarative.load_text(REALISTIC.read_bytes())
    counts = {k: len(v) for k, v in config.items()}
    assert counts == {"certificates": 1, "snis": 2, "services": 4, "routes": 5, "consumers": 2,
                      "keyauth_credentials": 2, "upstreams": 1, "targets": 3, "plugins": 5,
                      "event_hooks": 0}
    routes = by_name(config["routes"])
    versioned = routes["default.shop-api.api-versioned.00"]
    assert versioned["paths"] == ["~/api/v\\d+/orders$", "~/api/v\\d+"]
    assert versioned["headers"] == {"x-tenant": ["acme", "globex"]}
    assert versioned["strip_path"] is False and versioned["preserve_host"] is True
    assert routes["default.billing.invoices.00"]["paths"][1] == "~/invoices/(\\d+)$"
    upstream = config["upstreams"][0]
    assert upstream["healthchecks"]["active"]["http_path"] == "/healthz"
    assert upstream["healthchecks"]["active"]["unhealthy"]["http_statuses"][0] == 429
    assert "billing-canary.internal:8000" in {t["target"] for t in config["targets"]}
    consumer_plugin = next(p for p in config["plugins"] if p["consumer"])
    assert consumer_plugin["route"] == {"id": routes["default.chat.ws.00"]["id"]}


def test_pcre_named_groups_in_regex_paths() -> None:
    """Kong users write PCRE named groups; they load and are kept as written."""
    config = declarative.load({"_format_version": "3.0", "services": [
        {"host": "a.internal", "routes": [{"paths": ["~/invoices/(?<id>\\d+)$"]}]}]})
    assert config["routes"][0]["paths"] == ["~/invoices/(?<id>\\d+)$"]


def test_export_reimports_to_the_same_config() -> None:
    config = declarative.load_text(REALISTIC.read_bytes())
    document = declarative.export(config)
    assert document["_format_version"] == "3.0"
    assert "admins" not in document and "event_hooks" not in document  # empty lists dropped
    for entities in document.values():
        if isinstance(entities, list):
            ids = [e["id"] for e in entities]
            assert ids == sorted(ids)
    again = declarative.load(json.loads(json.dumps(document)))
    assert without_times(again) == without_times(config)
    via_yaml = declarative.load_text(declarative.dump_yaml(document))
    assert without_times(via_yaml) == without_times(config)
    assert declarative.export(again) == document


# ---- the Admin API ----------------------------------------------------------------------------


async def change_count(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (await conn.execute("SELECT count(*) FROM change_log")).fetchone()
    assert row is not None
    return int(row[0])


async def post_config(admin: aiohttp.ClientSession, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with admin.post("/config", **kwargs) as resp:
        return resp.status, await resp.json()


async def get_export(admin: aiohttp.ClientSession) -> dict[str, Any]:
    async with admin.get("/config") as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


async def test_post_json_then_entities_are_served(admin: aiohttp.ClientSession) -> None:
    status, body = await post_config(admin, json=NESTED)
    assert status == 201, body
    assert body["entities"]["services"] == 2 and body["entities"]["plugins"] == 3
    assert body["stats"]["create"] == 11 and body["stats"]["delete"] == 0
    assert body["configuration_version"] > 0
    async with admin.get("/services/orders/routes") as resp:
        routes = (await resp.json())["data"]
    assert {tuple(r["paths"]) for r in routes} == {("/orders",), ("~/api/v\\d+",)}
    async with admin.get("/upstreams/orders.internal/targets") as resp:
        assert len((await resp.json())["data"]) == 2


async def test_post_yaml_multipart_and_form(admin: aiohttp.ClientSession, dsn: str) -> None:
    text = REALISTIC.read_text()
    status, body = await post_config(
        admin, data=text.encode(), headers={"Content-Type": "application/yaml"})
    assert status == 201, body
    assert body["entities"]["routes"] == 5
    baseline = await change_count(dsn)
    exported = await get_export(admin)
    # the same file again, sent the ways curl sends it, changes nothing
    form = aiohttp.FormData()
    form.add_field("config", text.encode(), filename="kong.yml", content_type="text/yaml")
    status, body = await post_config(admin, data=form)
    assert status == 201, body
    assert body["stats"]["create"] == body["stats"]["update"] == body["stats"]["delete"] == 0
    status, body = await post_config(admin, data={"config": text})  # form-urlencoded
    assert status == 201, body
    status, body = await post_config(admin, json={"config": text})
    assert status == 201, body
    status, body = await post_config(
        admin, data=text.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201, body
    for ctype in ("text/yaml", "application/x-yaml"):
        status, body = await post_config(admin, data=text.encode(), headers={"Content-Type": ctype})
        assert status == 201, body
    assert await change_count(dsn) == baseline
    assert await get_export(admin) == exported
    async with admin.get("/certificates") as resp:
        (cert,) = (await resp.json())["data"]
    assert sorted(cert["snis"]) == ["*.shop.example.com", "shop.example.com"]
    async with admin.get("/routes/default.shop-api.api-versioned.00") as resp:
        route = await resp.json()
    assert route["paths"] == ["~/api/v\\d+/orders$", "~/api/v\\d+"]


async def test_round_trip_import_export_import(admin: aiohttp.ClientSession, dsn: str) -> None:
    status, _ = await post_config(
        admin, data=REALISTIC.read_bytes(), headers={"Content-Type": "application/yaml"})
    assert status == 201
    first = await get_export(admin)
    before = await change_count(dsn)
    status, body = await post_config(admin, json=first)
    assert status == 201, body
    assert body["stats"]["unchanged"] == sum(body["entities"].values())
    assert await change_count(dsn) == before
    assert await get_export(admin) == first
    # YAML export, by query or by Accept, says the same thing
    async with admin.get("/config", params={"format": "yaml"}) as resp:
        assert resp.status == 200 and resp.content_type == "application/yaml"
        as_yaml = await resp.text()
    assert yaml.safe_load(as_yaml) == first
    assert "-----BEGIN CERTIFICATE-----\n" in as_yaml and "cert: |" in as_yaml
    async with admin.get("/config", headers={"Accept": "application/yaml"}) as resp:
        assert resp.content_type == "application/yaml"
        assert await resp.text() == as_yaml
    status, body = await post_config(
        admin, data=as_yaml.encode(), headers={"Content-Type": "application/yaml"})
    assert status == 201 and body["stats"]["unchanged"] == sum(body["entities"].values())
    assert await change_count(dsn) == before
    async with admin.get("/config", params={"format": "xml"}) as resp:
        assert resp.status == 400


async def test_replace_removes_what_the_file_does_not_name(admin: aiohttp.ClientSession) -> None:
    status, _ = await post_config(admin, json=NESTED)
    assert status == 201
    smaller = {"_format_version": "3.0", "services": [
        {"name": "chat", "protocol": "ws", "host": "chat.internal", "port": 9001}]}
    status, body = await post_config(admin, json=smaller)
    assert status == 201, body
    assert body["stats"]["update"] == 1 and body["stats"]["delete"] == 10
    exported = await get_export(admin)
    assert [s["name"] for s in exported["services"]] == ["chat"]
    assert exported["services"][0]["port"] == 9001
    assert set(exported) == {"_format_version", "services"}


async def test_reimport_may_swap_unique_values(admin: aiohttp.ClientSession) -> None:
    """Uniqueness holds for the file as a whole, not for each row on the way there."""
    a, b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"

    def doc(name_a: str, name_b: str) -> dict[str, Any]:
        return {"_format_version": "3.0", "services": [
            {"id": a, "name": name_a, "host": "a.internal"},
            {"id": b, "name": name_b, "host": "b.internal"}]}

    r = await admin.post("/config", json=doc("x", "y"))
    assert r.status == 201, await r.text()
    r = await admin.post("/config", json=doc("y", "x"))
    assert r.status == 201, await r.text()
    assert (await (await admin.get(f"/services/{a}")).json())["name"] == "y"
    assert (await (await admin.get("/services/x")).json())["id"] == b
    r = await admin.post("/config", json=doc("z", "z"))
    assert r.status == 400 and (await r.json())["code"] == 14, "a duplicate is still refused"


async def test_bad_file_changes_nothing(admin: aiohttp.ClientSession, dsn: str) -> None:
    async with admin.post("/services", json={"name": "keep-me", "host": "keep.internal"}) as resp:
        assert resp.status == 201
    async with admin.post("/services/keep-me/routes", json={"paths": ["/keep"]}) as resp:
        assert resp.status == 201
    before = await change_count(dsn)
    exported = await get_export(admin)
    bad = copy.deepcopy(NESTED)
    bad["services"][0]["routes"][1]["paths"] = ["nope"]
    bad["upstreams"][0]["targets"].append({"target": "bad host!"})
    status, body = await post_config(admin, json=bad)
    assert status == 400
    assert body["code"] == 14 and body["name"] == "invalid declarative configuration"
    assert body["fields"]["services"][0]["routes"] == [
        None, {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}]
    assert body["fields"]["upstreams"][0]["targets"][:2] == [None, None]
    assert len(body["flattened_errors"]) == 2
    assert await change_count(dsn) == before
    assert await get_export(admin) == exported
    async with admin.get("/services/keep-me") as resp:
        assert resp.status == 200


async def test_route_with_missing_service_fails_clearly(admin: aiohttp.ClientSession) -> None:
    doc = {"_format_version": "3.0", "services": [{"name": "real", "host": "real.internal"}],
           "routes": [{"name": "lost", "paths": ["/lost"], "service": "imaginary"}]}
    status, body = await post_config(admin, json=doc)
    assert status == 400 and body["code"] == 14
    assert body["fields"]["routes"][0]["service"] == (
        "no service with id or name 'imaginary' in this declarative config")
    assert "routes.1.service: no service with id or name 'imaginary'" in body["message"]
    (entry,) = body["flattened_errors"]
    assert entry["entity_type"] == "route" and entry["entity_name"] == "lost"
    message = "no service with id or name 'imaginary' in this declarative config"
    assert entry["errors"] == [{"type": "field", "field": "service", "message": message}]
    async with admin.get("/services") as resp:
        assert (await resp.json())["data"] == []


async def test_unreadable_bodies(admin: aiohttp.ClientSession) -> None:
    status, body = await post_config(
        admin, data=b"services: [", headers={"Content-Type": "application/yaml"})
    assert status == 400 and body["code"] == 14 and "as YAML" in body["message"]
    status, body = await post_config(
        admin, data=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and body["code"] == 14 and "as JSON" in body["message"]
    status, body = await post_config(admin, data=b"", headers={"Content-Type": "application/json"})
    assert status == 400 and body["code"] == 14
    status, body = await post_config(admin, data=aiohttp.FormData({"other": "x"}))
    assert status == 400 and "form field 'config'" in body["message"]
    status, body = await post_config(admin, data=b"<a/>", headers={"Content-Type": "text/xml"})
    assert status == 415


# ---- the CLI ----------------------------------------------------------------------------------


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "config", *args],
        capture_output=True, text=True, input=stdin, timeout=60, check=False,
    )


def test_cli_validate_good_file() -> None:
    result = run_cli("validate", str(REALISTIC))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("parse successful")
    result = run_cli("validate", "-", stdin=json.dumps(NESTED))
    assert result.returncode == 0, result.stderr


async def test_cli_validate_bad_file_says_what_the_api_says(
    admin: aiohttp.ClientSession, tmp_path: Path
) -> None:
    bad = copy.deepcopy(NESTED)
    bad["services"][0]["routes"][0]["paths"] = ["relative"]
    bad["routes"] = [{"paths": ["/x"], "service": "ghost"}]
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(bad))
    status, body = await post_config(admin, data=path.read_bytes(),
                                     headers={"Content-Type": "application/yaml"})
    assert status == 400
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == body["message"]
    assert len(lines) == 1 + sum(len(e["errors"]) for e in body["flattened_errors"])
    assert any(line.startswith("  route orders-api (at services.1.routes.1): paths.1: should "
                                "start with") for line in lines)
    assert "  route (at routes.1): service: no service with id or name 'ghost' in this "\
        "declarative config" in lines
    assert "Traceback" not in result.stderr
    syntax = tmp_path / "broken.yml"
    syntax.write_text("services:\n  - name: [x\n")
    result = run_cli("validate", str(syntax))
    assert result.returncode == 1 and "failed parsing declarative configuration" in result.stderr
    result = run_cli("validate", str(tmp_path / "missing.yml"))
    assert result.returncode == 1 and "cannot read" in result.stderr
