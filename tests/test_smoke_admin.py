async def test_create_and_read_service(admin):
    r = await admin.post("/services", data={"name": "s1", "url": "http://up.example:8080/x"})
    assert r.status == 201
    body = await r.json()
    assert body["host"] == "up.example" and body["port"] == 8080 and body["path"] == "/x"
    r = await admin.get("/services/s1")
    assert (await r.json())["id"] == body["id"]
