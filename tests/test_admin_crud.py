"""CRUD for every entity through the real Admin API, nested endpoints, and Kong's error shapes."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cp.admin.entities import url_name
from shared.entities import ENTITIES


def make_cert(cn: str = "example.com") -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key


async def call(admin, method, path, **kwargs):
    r = await admin.request(method, path, **kwargs)
    body = None if r.status == 204 else await r.json()
    return r.status, body


async def new_service(admin, name="svc", **extra):
    status, body = await call(admin, "POST", "/services",
                              json={"name": name, "url": "http://upstream.test:8080", **extra})
    assert status == 201, body
    return body


# Minimal valid bodies per entity, and a field each test PATCHes.
def bodies(ids):
    cert, key = make_cert()
    return {
        "services": ({"name": "s-crud", "host": "a.test"}, {"retries": 2}),
        "routes": ({"name": "r-crud", "paths": ["/x"]}, {"paths": ["/y"]}),
        "consumers": ({"username": "ada"}, {"custom_id": "c-1"}),
        "keyauth_credentials": ({"key": "k-crud", "consumer": {"id": ids["consumer"]}},
                                {"ttl": 3600}),
        "upstreams": ({"name": "up.test"}, {"slots": 100}),
        "targets": ({"target": "10.0.0.1", "upstream": {"id": ids["upstream"]}}, {"weight": 5}),
        "plugins": ({"name": "key-auth"}, {"config": {"hide_credentials": True}}),
        "certificates": ({"cert": cert, "key": key}, {"tags": ["t"]}),
        "snis": ({"name": "a.example.com", "certificate": {"id": ids["certificate"]}},
                 {"tags": ["t"]}),
        "event_hooks": ({"source": "crud", "event": "consumers", "handler": "log"},
                        {"snooze": 5}),
        "admins": ({"username": "root", "token": "0123456789abcdef"}, {"email": "a@b.test"}),
    }


@pytest.mark.parametrize("entity", [
    "services", "routes", "consumers", "keyauth_credentials", "upstreams", "targets", "plugins",
    "certificates", "snis", "event_hooks", "admins",
])
async def test_entity_crud(admin, entity):
    _, up = await call(admin, "POST", "/upstreams", json={"name": "parent.test"})
    cert, key = make_cert("parent")
    _, crt = await call(admin, "POST", "/certificates", json={"cert": cert, "key": key})
    _, owner = await call(admin, "POST", "/consumers", json={"username": "parent-consumer"})
    ids = {"upstream": up["id"], "certificate": crt["id"], "consumer": owner["id"]}
    create, patch = bodies(ids)[entity]
    path = "/" + url_name(ENTITIES[entity])

    status, created = await call(admin, "POST", path, json=create)
    assert status == 201, created
    assert created["id"] and created["created_at"] > 0
    for k, v in create.items():
        if k != "token":
            assert created[k] == v or (k == "target" and created[k] == "10.0.0.1:8000"), k

    status, got = await call(admin, "GET", f"{path}/{created['id']}")
    assert status == 200 and got["id"] == created["id"]

    status, patched = await call(admin, "PATCH", f"{path}/{created['id']}", json=patch)
    assert status == 200, patched
    for k, v in patch.items():
        if isinstance(v, dict):
            assert patched[k].items() >= v.items()
        else:
            assert patched[k] == v
    assert patched["created_at"] == created["created_at"]

    status, listed = await call(admin, "GET", path)
    assert status == 200 and created["id"] in [e["id"] for e in listed["data"]]

    status, _ = await call(admin, "DELETE", f"{path}/{created['id']}")
    assert status == 204
    status, body = await call(admin, "GET", f"{path}/{created['id']}")
    assert (status, body) == (404, {"message": "Not found"})


async def test_lookup_by_name_and_put_upsert(admin):
    status, created = await call(admin, "PUT", "/services/by-put", json={"host": "h.test"})
    assert status == 200 and created["name"] == "by-put"
    status, again = await call(admin, "PUT", "/services/by-put", json={"host": "h2.test"})
    assert status == 200 and again["id"] == created["id"] and again["host"] == "h2.test"
    assert again["retries"] == 5  # PUT replaces: unspecified fields are back to defaults
    status, got = await call(admin, "GET", "/services/by-put")
    assert got["id"] == created["id"]
    status, got = await call(admin, "GET", "/consumers/nobody")
    assert status == 404


async def test_patch_merges_plugin_config(admin):
    _, plugin = await call(admin, "POST", "/plugins",
                           json={"name": "key-auth", "config": {"key_names": ["k1"]}})
    _, patched = await call(admin, "PATCH", f"/plugins/{plugin['id']}",
                            json={"config": {"hide_credentials": True}})
    assert patched["config"]["key_names"] == ["k1"]
    assert patched["config"]["hide_credentials"] is True


async def test_nested_endpoints(admin):
    svc = await new_service(admin)
    status, route = await call(admin, "POST", "/services/svc/routes", json={"paths": ["/a"]})
    assert status == 201 and route["service"] == {"id": svc["id"]}
    status, listed = await call(admin, "GET", f"/services/{svc['id']}/routes")
    assert [r["id"] for r in listed["data"]] == [route["id"]]
    status, parent = await call(admin, "GET", f"/routes/{route['id']}/service")
    assert status == 200 and parent["id"] == svc["id"]
    status, parent = await call(admin, "PATCH", f"/routes/{route['id']}/service",
                                json={"retries": 1})
    assert status == 200 and parent["retries"] == 1

    status, plugin = await call(admin, "POST", "/services/svc/plugins", json={"name": "key-auth"})
    assert status == 201 and plugin["service"] == {"id": svc["id"]}
    status, _ = await call(admin, "GET", f"/routes/{route['id']}/plugins")
    assert status == 200

    await call(admin, "POST", "/services", json={"name": "other", "host": "o.test"})
    status, body = await call(admin, "GET", f"/services/other/routes/{route['id']}")
    assert status == 404, "a route is only visible under its own service"
    status, body = await call(admin, "GET", f"/services/svc/routes/{route['id']}")
    assert status == 200

    _, up = await call(admin, "POST", "/upstreams", json={"name": "lb.test"})
    status, target = await call(admin, "POST", "/upstreams/lb.test/targets",
                                data={"target": "10.1.1.1:9000", "weight": "10"})
    assert status == 201 and target["upstream"] == {"id": up["id"]} and target["weight"] == 10
    status, body = await call(admin, "GET", "/services/missing/routes")
    assert (status, body) == (404, {"message": "Not found"})


async def test_certificate_snis_shorthand(admin):
    cert, key = make_cert()
    status, created = await call(admin, "POST", "/certificates",
                                 json={"cert": cert, "key": key, "snis": ["a.test", "b.test"]})
    assert status == 201 and created["snis"] == ["a.test", "b.test"]
    status, snis = await call(admin, "GET", f"/certificates/{created['id']}/snis")
    assert sorted(s["name"] for s in snis["data"]) == ["a.test", "b.test"]
    _, patched = await call(admin, "PATCH", f"/certificates/{created['id']}", json={"tags": ["x"]})
    assert patched["snis"] == ["a.test", "b.test"], "a PATCH without snis keeps them"
    _, patched = await call(admin, "PATCH", f"/certificates/{created['id']}",
                            json={"snis": ["c.test"]})
    assert patched["snis"] == ["c.test"]
    other_cert, other_key = make_cert("other")
    status, body = await call(admin, "POST", "/certificates",
                              json={"cert": other_cert, "key": key})
    assert status == 400 and "certificate does not match key" in body["message"]
    del other_key


async def test_schema_violation_shape(admin):
    status, body = await call(admin, "POST", "/services", json={"port": "80", "protocol": "ftp"})
    assert status == 400
    assert body["code"] == 2 and body["name"] == "schema violation"
    assert body["fields"] == {
        "host": "required field missing",
        "port": "expected an integer",
        "protocol": "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, "
                    "ws, wss",
    }
    assert body["message"].startswith("3 schema violations (host: required field missing; ")
    status, body = await call(admin, "POST", "/routes", json={"protocols": ["http"]})
    assert body["fields"] == {"@entity": [
        "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]}
    status, body = await call(admin, "POST", "/services", json={"host": "a", "bogus": 1})
    assert body["fields"] == {"bogus": "unknown field"}
    status, body = await call(admin, "POST", "/plugins", json={"name": "nope"})
    assert status == 400 and "plugin 'nope' not enabled" in body["fields"]["name"]


async def test_unique_and_foreign_key_errors(admin):
    await new_service(admin, "dup")
    status, body = await call(admin, "POST", "/services", json={"name": "dup", "host": "x.test"})
    assert status == 409
    assert body == {"code": 5, "name": "unique constraint violation",
                    "message": "UNIQUE violation detected on '{name=\"dup\"}'",
                    "fields": {"name": "dup"}}
    missing = "00000000-0000-4000-8000-000000000000"
    status, body = await call(admin, "POST", "/routes",
                              json={"paths": ["/"], "service": {"id": missing}})
    assert status == 400 and body["code"] == 4
    assert body["message"] == (f"the foreign key '{{id=\"{missing}\"}}' does not reference an "
                               "existing 'services' entity.")
    status, body = await call(admin, "POST", "/routes",
                              json={"paths": ["/"], "service": {"name": "dup"}})
    assert status == 201, "a reference may name the parent by its endpoint key"
    status, body = await call(admin, "DELETE", "/services/dup")
    assert status == 400 and body["code"] == 4
    assert body["message"] == "an existing 'routes' entity references this 'services' entity"
    await call(admin, "POST", "/plugins", json={"name": "key-auth"})
    status, body = await call(admin, "POST", "/plugins", json={"name": "key-auth"})
    assert status == 409 and body["fields"] == {
        "name": "key-auth", "route": None, "service": None, "consumer": None}


async def test_route_protocols_must_fit_service(admin):
    await new_service(admin, "web")
    _, ws = await call(admin, "POST", "/services", json={"name": "ws", "url": "ws://w.test"})
    assert ws["protocol"] == "ws" and ws["port"] == 80
    status, body = await call(admin, "POST", "/services/web/routes",
                              json={"protocols": ["ws"], "paths": ["/ws"]})
    assert status == 400 and "not compatible" in body["fields"]["protocols"]
    status, _ = await call(admin, "POST", "/services/ws/routes",
                               json={"protocols": ["ws", "wss"], "paths": ["/ws"]})
    assert status == 201
    status, body = await call(admin, "PATCH", "/services/ws", json={"protocol": "http"})
    assert status == 400 and "incompatible with route" in body["message"]


async def test_cascades(admin):
    await new_service(admin, "gone")
    await call(admin, "POST", "/services/gone/plugins", json={"name": "key-auth"})
    status, _ = await call(admin, "DELETE", "/services/gone")
    assert status == 204
    _, plugins = await call(admin, "GET", "/plugins")
    assert plugins["data"] == []
    await call(admin, "POST", "/upstreams", json={"name": "u.test"})
    await call(admin, "POST", "/upstreams/u.test/targets", json={"target": "1.1.1.1"})
    await call(admin, "DELETE", "/upstreams/u.test")
    _, targets = await call(admin, "GET", "/targets")
    assert targets["data"] == []


async def test_admin_token_is_write_only(admin):
    status, created = await call(admin, "POST", "/admins", json={"username": "ops"})
    assert status == 201 and len(created["token"]) >= 32, "a generated token is shown once"
    _, got = await call(admin, "GET", f"/admins/{created['id']}")
    assert "token" not in got
    _, listed = await call(admin, "GET", "/admins")
    assert all("token" not in a for a in listed["data"])
