"""Admin authentication: with RBAC enforced every request needs a valid Kong-Admin-Token."""

from __future__ import annotations

from aiohttp import ClientSession

from cp.store import token_digest
from tests.conftest import serve_admin

DENIED = {"message": "Invalid credentials. Token or User credentials required"}


async def test_rbac_off_needs_no_token(admin):
    r = await admin.get("/services")
    assert r.status == 200


async def test_rbac_on(store):
    runner, url = await serve_admin(store, {
        "enforce_rbac": True, "admin_password_digest": token_digest("s3cret-password")})
    try:
        async with ClientSession(base_url=url) as client:
            for headers in ({}, {"Kong-Admin-Token": "wrong"}):
                r = await client.get("/services", headers=headers)
                assert (r.status, await r.json()) == (401, DENIED)
            r = await client.post("/consumers", json={"username": "x"})
            assert r.status == 401, "writes are refused too"

            root = {"Kong-Admin-Token": "s3cret-password"}
            r = await client.post("/admins", json={"username": "ops"}, headers=root)
            assert r.status == 201
            ops_token = (await r.json())["token"]
            r = await client.get("/services", headers={"Kong-Admin-Token": ops_token})
            assert r.status == 200

            r = await client.post("/admins", headers=root, json={
                "username": "off", "token": "disabled-token-123", "rbac_token_enabled": False})
            assert r.status == 201
            r = await client.get("/services", headers={"Kong-Admin-Token": "disabled-token-123"})
            assert r.status == 401

            r = await client.delete("/admins/ops", headers=root)
            assert r.status == 204
            r = await client.get("/services", headers={"Kong-Admin-Token": ops_token})
            assert r.status == 401, "a deleted admin's token stops working"
    finally:
        await runner.cleanup()
