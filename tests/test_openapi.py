"""The OpenAPI document: served, valid, generated from the schema, and in step with the router."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cp.admin.app import create_app
from cp.admin.entities import entity_routes, url_name
from cp.admin.openapi import build_openapi, component_name, ecma_pattern
from shared import plugins as plugin_registry
from shared.entities import ENTITIES

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_openapi()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for v in node.values():
            found += _refs(v)
        return found
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_served_at_openapi_json(admin, doc):
    r = await admin.get("/openapi.json")
    assert r.status == 200
    assert r.content_type == "application/json"
    served = await r.json()
    assert served == doc
    assert served["openapi"].startswith("3.0")


def test_valid_against_the_openapi_meta_schema(doc):
    validator = pytest.importorskip("schemathesis.specs.openapi.definitions").OPENAPI_30_VALIDATOR
    errors = [str(e) for e in validator.iter_errors(doc)]
    assert errors == []


def test_structure(doc):
    assert doc["info"]["title"] and doc["info"]["version"]
    operation_ids = []
    for path, item in doc["paths"].items():
        declared = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert method in METHODS
            operation_ids.append(op["operationId"])
            assert op["responses"], (method, path)
            params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert set(params) == declared, (method, path)
            assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
    assert len(operation_ids) == len(set(operation_ids))
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    for name in schemas:
        assert re.fullmatch(r"[A-Za-z0-9.\-_]+", name), name


def test_every_entity_has_a_schema_and_paths(doc):
    schemas = doc["components"]["schemas"]
    for schema in ENTITIES.values():
        comp = schemas[component_name(schema)]
        assert set(schema.fields) <= set(comp["properties"])
        for name, f in schema.fields.items():
            prop = comp["properties"][name]
            assert prop.get("nullable", False) == (not f.required), (schema.name, name)
            if f.writeonly:
                assert prop["writeOnly"] is True
            if name in ("id", "created_at", "updated_at"):
                assert prop["readOnly"] is True
            if f.one_of:
                assert set(f.one_of) <= set(prop["enum"])
            if f.type == "foreign":
                assert prop["properties"]["id"]["format"] == "uuid"
        assert "required" not in schemas[component_name(schema) + "Update"]
        base = f"/{url_name(schema)}"
        assert set(doc["paths"][base]) == {"get", "post"}
        assert set(doc["paths"][base + "/{key}"]) == {"get", "patch", "put", "delete"}
        list_op = doc["paths"][base]["get"]
        assert {"size", "offset"} <= {p["name"] for p in list_op["parameters"]}
        body = doc["paths"][base]["post"]["requestBody"]["content"]
        assert set(body) == {"application/json", "application/x-www-form-urlencoded"}
        for status in ("400", "409"):
            error = doc["paths"][base]["post"]["responses"][status]
            assert error["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}
    assert doc["paths"]["/services/{parent}/routes"]["get"]
    assert doc["paths"]["/routes/{key}/service"]["get"]
    assert doc["paths"]["/upstreams/{parent}/targets/{key}"]["delete"]


def test_schema_details_come_from_the_fields(doc):
    schemas = doc["components"]["schemas"]
    service = schemas["Service"]["properties"]
    assert service["port"]["minimum"] == 0 and service["port"]["maximum"] == 65535
    assert service["port"]["default"] == 80
    assert service["protocol"]["enum"][0] == "grpc"
    assert "url" in service  # the shorthand is accepted on input
    assert schemas["Service"]["required"] == ["host"]
    assert schemas["Admin"]["properties"]["token"]["writeOnly"] is True
    assert schemas["Admin"]["properties"]["email"]["pattern"] == r"^[^@\s]+@[^@\s]+$"
    # Plugin config: one variant per registered plugin.
    config = schemas["Plugin"]["properties"]["config"]
    names = sorted(plugin_registry.available())
    assert [r["$ref"].rsplit(".", 1)[1] for r in config["anyOf"]] == names
    assert schemas["Plugin"]["properties"]["name"]["enum"] == names
    key_auth = schemas["Plugin.config.key-auth"]
    assert key_auth["properties"]["key_names"]["default"] == ["apikey"]
    assert key_auth["additionalProperties"] is False


def test_ecma_pattern_filter():
    assert ecma_pattern(r"^[A-Z]+$") == r"^[A-Z]+$"
    assert ecma_pattern(r"(?P<x>a)") is None
    assert ecma_pattern(r"\Aabc\Z") is None
    assert ecma_pattern(r"(?i)abc") is None
    assert ecma_pattern(r"a++") is None
    assert ecma_pattern(r"[") is None


def test_every_registered_route_is_documented(doc):
    """Drift check: the router and the document list exactly the same operations."""
    app = create_app(store=None)  # type: ignore[arg-type]  # routes only; no requests served
    registered = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD to every GET
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        registered.add((route.method.lower(), path))
    documented = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert registered == documented
    generated = {(r.method.lower(), r.path) for r in entity_routes()}
    assert generated <= documented
