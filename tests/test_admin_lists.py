"""Pagination, tag filters, /tags, and query filters, through the real Admin API."""

from __future__ import annotations

import aiohttp


async def create_consumers(admin, n, tags_for=lambda i: None):
    for i in range(n):
        body = {"username": f"user-{i:03d}"}
        if tags_for(i):
            body["tags"] = tags_for(i)
        r = await admin.post("/consumers", json=body)
        assert r.status == 201, await r.text()


async def test_pagination_walks_every_page_once(admin):
    await create_consumers(admin, 25)
    seen, url, pages = [], "/consumers?size=10", 0
    while url:
        r = await admin.get(url)
        body = await r.json()
        seen += [c["username"] for c in body["data"]]
        pages += 1
        if body["next"]:
            assert body["next"].startswith("/consumers?") and "size=10" in body["next"]
            assert body["offset"] in body["next"]
        url = body["next"]
    assert pages == 3
    assert sorted(seen) == [f"user-{i:03d}" for i in range(25)]


async def test_size_and_offset_errors(admin):
    r = await admin.get("/consumers?size=abc")
    assert r.status == 400
    assert await r.json() == {"code": 9, "name": "invalid size", "message": "size must be a number",
                              "fields": {}}
    r = await admin.get("/consumers?size=1001")
    assert r.status == 400 and (await r.json())["code"] == 9
    r = await admin.get("/consumers?offset=%%%")
    body = await r.json()
    assert r.status == 400 and body["code"] == 7 and body["name"] == "invalid offset"


async def test_tag_filters(admin):
    tags = {0: ["a", "b"], 1: ["a"], 2: ["b"], 3: ["c"]}
    await create_consumers(admin, 5, lambda i: tags.get(i))

    async def names(query):
        r = await admin.get(f"/consumers?tags={query}")
        assert r.status == 200, await r.text()
        return sorted(c["username"] for c in (await r.json())["data"])

    assert await names("a,b") == ["user-000"]
    assert await names("a") == ["user-000", "user-001"]
    assert await names("a/c") == ["user-000", "user-001", "user-003"]
    r = await admin.get("/consumers?tags=a,b/c")
    body = await r.json()
    assert r.status == 400 and body["code"] == 11 and "tags" in body["fields"]


async def test_tags_endpoint(admin):
    await admin.post("/services", json={"name": "s", "host": "h.test", "tags": ["prod", "x"]})
    await create_consumers(admin, 2, lambda i: ["prod"])
    r = await admin.get("/tags/prod")
    rows = (await r.json())["data"]
    assert sorted(row["entity_name"] for row in rows) == ["consumers", "consumers", "services"]
    assert all(row["tag"] == "prod" for row in rows)
    r = await admin.get("/tags?size=2")
    body = await r.json()
    assert len(body["data"]) == 2 and body["next"]
    r = await admin.get(body["next"])
    rest = (await r.json())["data"]
    assert len(rest) == 2  # 4 (entity, tag) pairs in all


async def test_filter_by_unique_field(admin):
    await admin.post("/consumers", json={"username": "a", "custom_id": "c-a"})
    await admin.post("/consumers", json={"username": "b", "custom_id": "c-b"})
    r = await admin.get("/consumers?custom_id=c-b")
    assert [c["username"] for c in (await r.json())["data"]] == ["b"]


async def test_bodies_form_json_multipart(admin):
    # The seed's commands: `-d username="Ada Lovelace"` and dotted config keys.
    r = await admin.post("/consumers", data={"username": "Ada Lovelace"})
    assert r.status == 201 and (await r.json())["username"] == "Ada Lovelace"
    r = await admin.post("/services", data={"name": "f", "host": "f.test", "port": "8080",
                                            "retries": "", "enabled": "false"})
    body = await r.json()
    assert r.status == 201 and body["port"] == 8080 and body["retries"] is None
    assert body["enabled"] is False
    form = aiohttp.FormData()
    for key, value in [("paths[]", "/a"), ("paths[]", "/b"), ("methods", "GET"),
                       ("headers[x-version]", "2"), ("hosts", "only.test"),
                       ("strip_path", "false"), ("regex_priority", "7"), ("service.name", "f")]:
        form.add_field(key, value)
    r = await admin.post("/routes", data=form)
    route = await r.json()
    assert r.status == 201, route
    assert route["paths"] == ["/a", "/b"] and route["methods"] == ["GET"]
    assert route["hosts"] == ["only.test"], "one value for an array field is a one-item array"
    assert route["headers"] == {"x-version": ["2"]}
    assert route["strip_path"] is False and route["regex_priority"] == 7
    mp = aiohttp.FormData()
    mp.add_field("name", "key-auth")
    mp.add_field("config.key_names", "apikey")
    mp.add_field("config.key_names", "x-key")
    mp.add_field("config.hide_credentials", "true")
    mp.add_field("note", b"", filename="empty.txt")  # multipart, with a file part
    r = await admin.post("/plugins", data=mp)
    body = await r.json()
    assert r.status == 400 and body["fields"] == {"note": "unknown field"}
    mp = aiohttp.FormData()
    mp.add_field("name", "key-auth")
    mp.add_field("config.key_names", "apikey")
    mp.add_field("config.key_names", "x-key")
    mp.add_field("config.hide_credentials", "true", content_type="text/plain")
    mp.add_field("tags[]", b"uploaded", filename="tag.txt")
    r = await admin.post("/plugins", data=mp)
    plugin = await r.json()
    assert r.status == 201, plugin
    assert plugin["config"]["key_names"] == ["apikey", "x-key"]
    assert plugin["config"]["hide_credentials"] is True and plugin["tags"] == ["uploaded"]


async def test_unreadable_bodies(admin):
    r = await admin.post("/services", data=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert (r.status, await r.json()) == (400, {"message": "Cannot parse JSON body"})
    r = await admin.post("/services", data=b"<x/>", headers={"Content-Type": "application/xml"})
    assert r.status == 415 and "message" in await r.json()
    r = await admin.post("/services", json=[1, 2])
    assert r.status == 400 and (await r.json())["code"] == 2
    r = await admin.delete("/services")
    assert (r.status, await r.json()) == (405, {"message": "Method not allowed"})
