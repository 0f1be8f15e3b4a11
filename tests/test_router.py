"""The router on its own: Kong's matching and priority rules, path joining, the index."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dp.router import Router, join_path

SVC = {"id": "s1", "host": "up", "port": 80, "protocol": "http", "path": None, "enabled": True}


def route(rid: str, **kw: Any) -> dict[str, Any]:
    base = {"id": rid, "name": rid, "protocols": ["http", "https"], "strip_path": True,
            "preserve_host": False, "regex_priority": 0, "path_handling": "v0",
            "https_redirect_status_code": 426, "service": {"id": "s1"}, "created_at": 1}
    base.update(kw)
    return base


def router(*routes: dict[str, Any], service: dict[str, Any] = SVC) -> Router:
    return Router(list(routes), {service["id"]: service})


def name_of(r: Router, method: str = "GET", host: str = "x.test", path: str = "/",
            headers: dict[str, str] | None = None, **kw: Any) -> str | None:
    m = r.match(method, host, path, headers or {}, **kw)
    return m.route["id"] if m else None


def test_hosts_exact_over_wildcard_over_none() -> None:
    r = router(route("exact", hosts=["api.example.com"]),
               route("lead", hosts=["*.example.com"]),
               route("trail", hosts=["api.example.*"]),
               route("any", paths=["/"]))
    assert name_of(r, host="api.example.com") == "exact"
    assert name_of(r, host="API.example.com:8000") == "exact"
    assert name_of(r, host="www.example.com") == "lead"
    assert name_of(r, host="a.b.example.com") == "lead"
    assert name_of(r, host="api.example.org") == "trail"
    assert name_of(r, host="other.test") == "any"


def test_longest_prefix_and_regex_priority() -> None:
    r = router(route("short", paths=["/api"]), route("long", paths=["/api/v1"]),
               route("re-low", paths=[r"~/api/v\d+/users$"], regex_priority=1),
               route("re-high", paths=[r"~/api/v1/users$"], regex_priority=5))
    assert name_of(r, path="/api/x") == "short"
    assert name_of(r, path="/api/v1/x") == "long"
    assert name_of(r, path="/api/v2/users") == "re-low"
    assert name_of(r, path="/api/v1/users") == "re-high"
    assert name_of(r, path="/nothing") is None


def test_more_fields_then_headers_win() -> None:
    r = router(route("path", paths=["/a/b/c"]),
               route("path+method", paths=["/a"], methods=["POST"]),
               route("path+hdr", paths=["/a"], headers={"x-version": ["1", "2"]}),
               route("path+2hdr", paths=["/a"], headers={"x-version": ["2"], "x-b": ["y"]}))
    assert name_of(r, "POST", path="/a/b/c") == "path+method"
    assert name_of(r, "GET", path="/a/b/c") == "path"
    assert name_of(r, path="/a/b/c", headers={"x-version": "1"}) == "path+hdr"
    assert name_of(r, path="/a", headers={"x-version": "2", "x-b": "Y"}) == "path+2hdr"
    assert name_of(r, "DELETE", path="/a") is None


def test_methods_and_snis() -> None:
    r = router(route("get", paths=["/m"], methods=["GET", "HEAD"]),
               route("sni", protocols=["https"], snis=["secure.test"], paths=["/m"]))
    assert name_of(r, "HEAD", path="/m") == "get"
    assert name_of(r, "PUT", path="/m") is None
    assert name_of(r, "PUT", path="/m", sni="secure.test", scheme="https") == "sni"


def test_https_only_route_on_plain_text_is_426() -> None:
    r = router(route("tls", protocols=["https"], paths=["/t"]),
               route("redir", protocols=["https"], paths=["/r"], https_redirect_status_code=301))
    m = r.match("GET", "x", "/t/a", {}, scheme="http")
    assert m is not None and m.protocol_error == 426
    assert r.match("GET", "x", "/t/a", {}, scheme="https").protocol_error is None
    assert r.match("GET", "x", "/r", {}, scheme="http").protocol_error == 301


def test_ws_routes_only_for_upgrades() -> None:
    ws_svc = {**SVC, "protocol": "ws"}
    r = router(route("ws", protocols=["ws", "wss"], paths=["/chat"]), service=ws_svc)
    assert name_of(r, path="/chat") is None
    assert name_of(r, path="/chat", upgrade=True) == "ws"
    wss = router(route("wss", protocols=["wss"], paths=["/chat"]), service=ws_svc)
    m = wss.match("GET", "x", "/chat", {}, scheme="http", upgrade=True)
    assert m is not None and m.protocol_error == 426


@pytest.mark.parametrize(("service_path", "route_path", "request_path", "strip", "handling",
                          "expected"), [
    (None, "/api", "/api/users", True, "v0", "/users"),
    (None, "/api", "/api", True, "v0", "/"),
    (None, "/api", "/api/users", False, "v0", "/api/users"),
    ("/base", "/api", "/api/users", True, "v0", "/base/users"),
    ("/base", "/api", "/apiusers", True, "v0", "/base/users"),
    ("/base", "/api", "/apiusers", True, "v1", "/baseusers"),
    ("/base/", "/api", "/api/users", True, "v1", "/base/users"),
    ("/base", "/api", "/api", True, "v0", "/base"),
])
def test_strip_path_and_path_handling(service_path: str | None, route_path: str,
                                      request_path: str, strip: bool, handling: str,
                                      expected: str) -> None:
    r = router(route("r", paths=[route_path], strip_path=strip, path_handling=handling),
               service={**SVC, "path": service_path})
    m = r.match("GET", "x", request_path, {}, query="q=1")
    assert m is not None and m.upstream_path == f"{expected}?q=1"


def test_regex_strip_and_captures() -> None:
    r = router(route("re", paths=[r"~/users/(?<uid>\d+)"]))
    m = r.match("GET", "x", "/users/42/profile", {})
    assert m is not None
    assert m.upstream_path == "/profile" and m.captures == {"1": "42", "uid": "42"}


def test_preserve_host_flag_and_disabled_service() -> None:
    r = router(route("keep", paths=["/k"], preserve_host=True))
    assert r.match("GET", "x", "/k", {}).preserve_host is True
    off = router(route("off", paths=["/k"]), service={**SVC, "enabled": False})
    assert off.match("GET", "x", "/k", {}) is None


def test_join_path() -> None:
    assert join_path(None, "") == "/"
    assert join_path("/", "a") == "/a"
    assert join_path("/s/", "/a") == "/s/a"


def test_matching_cost_does_not_grow_with_routes() -> None:
    def build(n: int) -> Router:
        routes = [route(f"r{i}", hosts=[f"h{i % 50}.test"], paths=[f"/svc{i}/items"])
                  for i in range(n)]
        return router(*routes)

    def cost(r: Router, n: int) -> float:
        paths = [(f"h{i % 50}.test", f"/svc{i}/items/1") for i in range(0, n, max(1, n // 200))]
        start = time.perf_counter()
        for _ in range(5):
            for host, path in paths:
                assert r.match("GET", host, path, {}) is not None
        return (time.perf_counter() - start) / (5 * len(paths))

    small, large = cost(build(100), 100), cost(build(10_000), 10_000)
    assert large < small * 10, (small, large)  # 100x the routes, far less than 100x the cost


def test_rebuild_after_small_changes_matches_a_full_build() -> None:
    """After each small change the router is updated from the previous one, not rebuilt; it
    must route exactly as a router built from scratch would."""
    import random

    rng = random.Random(7)
    hosts = [None, ["a.test"], ["*.w.test"], ["b.*"], ["a.test", "c.test"]]
    routes = {f"r{i}": route(f"r{i}", paths=[f"/p{i % 40}", f"~/x{i}/\\d+"],
                             hosts=rng.choice(hosts), regex_priority=i % 3)
              for i in range(300)}
    services = {"s1": SVC}
    current = Router(list(routes.values()), services)
    probes = [(h, p) for h in ("a.test", "q.w.test", "b.org", "c.test", "none.test")
              for p in ("/p1", "/p17/deep", "/x5/12", "/x299/7", "/new/1", "/")]
    for step in range(60):
        rid = rng.choice(sorted(routes))
        action = rng.choice(["update", "delete", "add"])
        old = routes[rid]
        touched = [(h, p.lstrip("~").replace("\\d+", "7")) for h in (old.get("hosts") or
                   ["none.test"]) for p in old["paths"]]
        if action == "update":
            routes[rid] = {**routes[rid], "paths": [f"/p{step}", f"~/y{step}/\\d+"],
                           "hosts": rng.choice(hosts)}
        elif action == "delete":
            del routes[rid]
        else:
            routes[f"n{step}"] = route(f"n{step}", paths=[f"/new/{step}", "/new"],
                                       hosts=rng.choice(hosts))
        current = Router(list(routes.values()), services, previous=current)
        full = Router(list(routes.values()), services)
        assert candidates(current) == candidates(full) == full.size
        for host, path in [*probes, *touched, ("a.test", f"/p{step}"), ("a.test", f"/y{step}/3")]:
            host = host.replace("*.", "q.").replace(".*", ".org")
            assert name_of(current, host=host, path=path) == name_of(full, host=host, path=path)


def candidates(r: Router) -> int:
    """What the router's index really holds (not its own count)."""
    buckets = [*r.exact.values(), *r.leading.values(), *r.trailing.values(), r.any_host]
    return sum(len(b.regexes) + len(b.no_path) + sum(map(len, b.prefixes.values()))
               for b in buckets)
