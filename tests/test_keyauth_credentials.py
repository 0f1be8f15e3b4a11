"""key-auth credentials: the Admin API (`/consumers/{c}/key-auth`, `/key-auths`) and kong.yml."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import psycopg
import pytest

from shared import declarative
from shared.errors import DeclarativeConfigError

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]{32,}$")


async def call(admin, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with admin.request(method, path, **kwargs) as r:
        return r.status, (None if r.status == 204 else await r.json())


async def consumer(admin, username: str) -> dict[str, Any]:
    status, body = await call(admin, "POST", "/consumers", json={"username": username})
    assert status == 201, body
    return body


async def test_nested_create_with_and_without_a_key(admin) -> None:
    ada = await consumer(admin, "ada")
    # curl -X POST :8001/consumers/ada/key-auth -d key=secret
    status, given = await call(admin, "POST", "/consumers/ada/key-auth", data={"key": "secret"})
    assert status == 201, given
    assert given["key"] == "secret" and given["consumer"] == {"id": ada["id"]}
    assert given["id"] and given["created_at"] > 0 and given.get("ttl") is None
    status, generated = await call(admin, "POST", f"/consumers/{ada['id']}/key-auth", json={})
    assert status == 201, generated
    status, other = await call(admin, "POST", "/consumers/ada/key-auth")
    assert status == 201, other
    assert URL_SAFE.match(generated["key"]) and URL_SAFE.match(other["key"])
    assert len({given["key"], generated["key"], other["key"]}) == 3

    status, listed = await call(admin, "GET", "/consumers/ada/key-auth")
    assert status == 200
    assert {c["id"] for c in listed["data"]} == {given["id"], generated["id"], other["id"]}
    status, body = await call(admin, "POST", "/consumers/nobody/key-auth", json={"key": "x"})
    assert (status, body) == (404, {"message": "Not found"})
    status, body = await call(admin, "POST", "/key-auths", json={"key": "orphan"})
    assert status == 400 and body["fields"] == {"consumer": "required field missing"}


async def test_lookup_update_and_delete(admin) -> None:
    ada = await consumer(admin, "ada")
    await consumer(admin, "bob")
    _, cred = await call(admin, "POST", "/consumers/ada/key-auth",
                         json={"key": "ada-key", "ttl": 600, "tags": ["team-a"]})
    _, bobs = await call(admin, "POST", "/consumers/bob/key-auth", json={"key": "bob-key"})

    for key in (cred["id"], "ada-key"):  # GET /key-auths/{id or key}
        status, got = await call(admin, "GET", f"/key-auths/{key}")
        assert status == 200 and got == cred, key
    status, owner = await call(admin, "GET", f"/key-auths/{cred['id']}/consumer")
    assert status == 200 and owner["id"] == ada["id"] and owner["username"] == "ada"
    status, listed = await call(admin, "GET", "/key-auths")
    assert {c["id"] for c in listed["data"]} == {cred["id"], bobs["id"]}
    status, filtered = await call(admin, "GET", "/key-auths", params={"tags": "team-a"})
    assert [c["id"] for c in filtered["data"]] == [cred["id"]]

    # Within a consumer's scope, another consumer's credential does not exist.
    status, got = await call(admin, "GET", f"/consumers/ada/key-auth/{cred['id']}")
    assert status == 200 and got["key"] == "ada-key"
    status, _ = await call(admin, "GET", f"/consumers/ada/key-auth/{bobs['id']}")
    assert status == 404
    status, _ = await call(admin, "DELETE", f"/consumers/ada/key-auth/{bobs['id']}")
    assert status == 204
    assert (await call(admin, "GET", f"/key-auths/{bobs['id']}"))[0] == 200

    status, patched = await call(admin, "PATCH", f"/consumers/ada/key-auth/{cred['id']}",
                                 json={"key": "ada-rotated"})
    assert status == 200 and patched["key"] == "ada-rotated" and patched["ttl"] == 600
    assert patched["created_at"] == cred["created_at"] and patched["consumer"] == cred["consumer"]
    assert (await call(admin, "GET", "/key-auths/ada-key"))[0] == 404
    status, bad = await call(admin, "PATCH", f"/key-auths/{cred['id']}", json={"ttl": -1})
    assert status == 400 and "ttl" in bad["fields"]

    status, _ = await call(admin, "DELETE", f"/consumers/ada/key-auth/{cred['id']}")
    assert status == 204
    assert (await call(admin, "GET", f"/key-auths/{cred['id']}"))[0] == 404


async def test_duplicate_key_is_a_conflict(admin) -> None:
    await consumer(admin, "ada")
    await consumer(admin, "bob")
    assert (await call(admin, "POST", "/consumers/ada/key-auth", json={"key": "same"}))[0] == 201
    for path in ("/consumers/bob/key-auth", "/consumers/ada/key-auth"):
        status, body = await call(admin, "POST", path, json={"key": "same"})
        assert status == 409, body
        assert body["name"] == "unique constraint violation" and body["fields"] == {"key": "same"}
    _, listed = await call(admin, "GET", "/key-auths")
    assert len(listed["data"]) == 1


async def test_deleting_the_consumer_deletes_its_credentials(admin, dsn: str) -> None:
    ada = await consumer(admin, "ada")
    await consumer(admin, "bob")
    _, a1 = await call(admin, "POST", "/consumers/ada/key-auth", json={"key": "a1"})
    _, a2 = await call(admin, "POST", "/consumers/ada/key-auth")
    _, b1 = await call(admin, "POST", "/consumers/bob/key-auth", json={"key": "b1"})
    status, _ = await call(admin, "DELETE", "/consumers/ada")
    assert status == 204
    for cred in (a1, a2):
        assert (await call(admin, "GET", f"/key-auths/{cred['id']}"))[0] == 404
    assert (await call(admin, "GET", f"/key-auths/{b1['id']}"))[0] == 200
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute(
            "SELECT entity_type, entity_id::text FROM change_log WHERE op = 'delete' ORDER BY id"
        )).fetchall()
    # every cascaded delete reaches the change log (and so the data planes), children first
    assert rows[-1] == ("consumers", ada["id"])
    assert sorted(rows[:-1]) == sorted([("keyauth_credentials", a1["id"]),
                                        ("keyauth_credentials", a2["id"])])


# ---- kong.yml ---------------------------------------------------------------------------------

DOC = {
    "_format_version": "3.0",
    "consumers": [
        {"username": "ada", "keyauth_credentials": [{"key": "ada-1"}, {"key": "ada-2", "ttl": 60}]},
        {"username": "bob"},
    ],
    "keyauth_credentials": [{"key": "bob-1", "consumer": "bob", "tags": ["top"]}],
}


def test_loader_flattens_nested_and_top_level_credentials() -> None:
    config = declarative.load(copy.deepcopy(DOC))
    consumers = {c["username"]: c["id"] for c in config["consumers"]}
    creds = {c["key"]: c for c in config["keyauth_credentials"]}
    assert set(creds) == {"ada-1", "ada-2", "bob-1"}
    assert creds["ada-1"]["consumer"] == creds["ada-2"]["consumer"] == {"id": consumers["ada"]}
    assert creds["bob-1"]["consumer"] == {"id": consumers["bob"]} and creds["bob-1"]["tags"] == [
        "top"]
    assert creds["ada-2"]["ttl"] == 60
    again = declarative.load(copy.deepcopy(DOC))
    assert [c["id"] for c in again["keyauth_credentials"]] == [
        c["id"] for c in config["keyauth_credentials"]]
    # A credential without a key gets a random one.
    generated = declarative.load({"_format_version": "3.0", "consumers": [
        {"username": "x", "keyauth_credentials": [{}, {}]}]})["keyauth_credentials"]
    assert all(URL_SAFE.match(c["key"]) for c in generated)
    assert generated[0]["key"] != generated[1]["key"]


def test_loader_errors_never_show_the_key() -> None:
    doc = copy.deepcopy(DOC)
    doc["consumers"][1]["keyauth_credentials"] = [{"key": "ada-1"}]  # bob reuses ada's key
    doc["keyauth_credentials"].append({"key": "sekrit-orphan", "consumer": "nobody"})
    with pytest.raises(DeclarativeConfigError) as info:
        declarative.load(doc)
    exc = info.value
    assert exc.fields["consumers"][1]["keyauth_credentials"][0]["key"].endswith(
        "is already used by the keyauth_credential at consumers.1.keyauth_credentials.1")
    assert "no consumer with id or username 'nobody'" in exc.fields["keyauth_credentials"][1][
        "consumer"]
    report = json.dumps([exc.fields, exc.flattened])
    assert "ada-1" not in report and "sekrit-orphan" not in report
    assert "ada-1" not in "\n".join(declarative.error_lines(exc))


def test_credential_ids_are_not_derived_from_keys() -> None:
    """An id computed from the key would let anyone who sees the id test guesses of the key."""
    one = declarative.load({"_format_version": "3.0", "consumers": [
        {"username": "u", "keyauth_credentials": [{"key": "guessable"}]}]})
    two = declarative.load({"_format_version": "3.0", "consumers": [
        {"username": "u", "keyauth_credentials": [{"key": "other"}]}]})
    assert one["keyauth_credentials"][0]["id"] == two["keyauth_credentials"][0]["id"]


async def test_config_import_and_round_trip(admin, dsn: str) -> None:
    status, body = await call(admin, "POST", "/config", json=DOC)
    assert status == 201, body
    assert body["entities"]["keyauth_credentials"] == 3
    status, listed = await call(admin, "GET", "/consumers/ada/key-auth")
    assert sorted(c["key"] for c in listed["data"]) == ["ada-1", "ada-2"]
    status, owner = await call(admin, "GET", "/key-auths/bob-1/consumer")
    assert status == 200 and owner["username"] == "bob"

    status, exported = await call(admin, "GET", "/config")
    assert status == 200
    assert sorted(c["key"] for c in exported["keyauth_credentials"]) == ["ada-1", "ada-2", "bob-1"]
    status, body = await call(admin, "POST", "/config", json=exported)
    assert status == 201 and body["stats"]["unchanged"] == sum(body["entities"].values())
    assert (await call(admin, "GET", "/config"))[1] == exported

    # Dropping a consumer from the file drops its credentials with it.
    smaller = {"_format_version": "3.0", "consumers": [{"username": "bob"}]}
    status, body = await call(admin, "POST", "/config", json=smaller)
    assert status == 201 and body["entities"]["keyauth_credentials"] == 0
    _, listed = await call(admin, "GET", "/key-auths")
    assert listed["data"] == []
