"""The Admin API fuzzed from its own OpenAPI document, and with random bodies: never a 5xx.

The Admin API runs on a real socket over a real PostgreSQL database, in a thread with its own
event loop, because schemathesis and hypothesis drive it with blocking HTTP calls. Every answer
must be below 500, and every 4xx must be a JSON object with a `message`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import requests
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cp.admin.app import create_app
from cp.admin.entities import entity_routes, url_name
from cp.admin.openapi import build_openapi
from cp.store import Store
from shared.entities import ENTITIES

schemathesis = pytest.importorskip("schemathesis")

# Per operation (~150 of them) and per collection endpoint: small enough for the whole file to run
# in well under 3 minutes on 2 cores; TIDEGATE_FUZZ_SCALE=10 makes a deeper hunt.
SCALE = float(os.environ.get("TIDEGATE_FUZZ_SCALE", "1"))
MAX_EXAMPLES = max(1, int(25 * SCALE))
BODY_EXAMPLES = max(1, int(50 * SCALE))


class LiveAdmin:
    """A real Admin API in a background thread, on a fresh database made from the template."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="admin-fuzz", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the Admin API did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to the test through start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        store = await Store.open(self.dsn, min_size=1, max_size=8)
        runner = web.AppRunner(create_app(store), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await store.close()


@pytest.fixture(scope="module")
def live_admin(pg, template_db) -> Iterator[LiveAdmin]:
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    server = LiveAdmin(pg.dsn.replace("dbname=tidegate", f"dbname={name}"))
    server.start()
    yield server
    server.stop()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def http(live_admin) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


class _ServerErrors(logging.Handler):
    """Keeps the Admin API's logged tracebacks so a 5xx failure shows its cause."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


SERVER_ERRORS = _ServerErrors()
logging.getLogger("tidegate.admin").addHandler(SERVER_ERRORS)


def assert_sane(response: requests.Response, what: str = "") -> None:
    """No 5xx; a 4xx is a JSON object with a message."""
    label = f"{response.request.method} {response.request.url} {what}"
    if response.status_code >= 500:
        cause = SERVER_ERRORS.records[-1] if SERVER_ERRORS.records else "(nothing logged)"
        pytest.fail(f"{label} -> {response.status_code}: {response.text[:500]}\n{cause}")
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            pytest.fail(f"{label} -> {response.status_code} without a JSON body: {response.text!r}")
        assert isinstance(body, dict) and isinstance(body.get("message"), str), (label, body)


# ---- seed data: parents, so nested endpoints have something to hang from -----------------------


def _self_signed() -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


@pytest.fixture(scope="module")
def seeded(live_admin, http) -> dict[str, dict[str, Any]]:
    """One entity of each parent type (and a few children), created through the API."""
    cert, key = _self_signed()
    base = live_admin.url
    made: dict[str, dict[str, Any]] = {}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = http.post(base + path, json=body)
        assert r.status_code == 201, (path, r.text)
        return r.json()

    made["certificates"] = post("/certificates", {"cert": cert, "key": key,
                                                  "snis": ["seed.example"]})
    made["services"] = post("/services", {"name": "seed", "url": "http://seed.example/x"})
    made["routes"] = post("/routes", {"name": "seed", "paths": ["/seed"],
                                      "service": {"id": made["services"]["id"]}})
    made["consumers"] = post("/consumers", {"username": "seed"})
    made["keyauth_credentials"] = post("/consumers/seed/key-auth", {"key": "seed-key"})
    made["upstreams"] = post("/upstreams", {"name": "seed.upstream"})
    made["targets"] = post(f"/upstreams/{made['upstreams']['id']}/targets",
                           {"target": "10.0.0.1:80"})
    sni = http.get(f"{base}/snis/seed.example")
    assert sni.status_code == 200, sni.text
    made["snis"] = sni.json()
    made["plugins"] = post("/plugins", {"name": "key-auth",
                                        "route": {"id": made["routes"]["id"]}})
    made["admins"] = post("/admins", {"username": "seed", "token": "seed-token-123"})
    made["event_hooks"] = post("/event-hooks", {"source": "crud", "handler": "log"})
    return made


# ---- hypothesis: random bodies at every collection ---------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**80)
    | st.integers(min_value=-(2**80), max_value=-(2**63) + 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
    | st.sampled_from(["", "NaN", "Infinity", "-1", "1e999", "null", "true", "\x00", "\ud800",
                       "é", "💥", "a" * 300, "00000000-0000-0000-0000-000000000000",
                       "urn:12345678123456781234567812345678", "http://x/", "~/(", "*.x.*"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _field_names(schema_name: str) -> list[str]:
    fields = ENTITIES[schema_name].fields
    names = list(fields) + list(ENTITIES[schema_name].shorthands)
    for name, f in fields.items():
        if f.type == "record" and f.fields:
            names += [f"{name}.{sub}" for sub in f.fields]
    return names


def _bodies(schema_name: str) -> st.SearchStrategy[Any]:
    names = [n for n in _field_names(schema_name) if "." not in n]
    keys = st.sampled_from(names) | st.text(max_size=8)
    return (
        st.dictionaries(keys, _JSON, max_size=8)
        | _JSON
    )


def _form_pairs(schema_name: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    names = _field_names(schema_name)
    suffixes = st.sampled_from(["", "[]", "[0]", "[1]", "[x]", ".a", ".", "[", "]", "[][]", "..x"])
    key = st.builds(lambda n, s: n + s, st.sampled_from(names) | st.text(max_size=6), suffixes)
    value = st.sampled_from(["", "1", "-5", "1.5", "true", "false", "nan", "9" * 30, "x", "/a",
                             "http://a.b", "\x00", "ws"]) | st.text(max_size=12)
    return st.lists(st.tuples(key, value), max_size=10)


COLLECTIONS = sorted({(r.path, r.schema.name) for r in entity_routes() if r.kind == "create"})
_BODY_SETTINGS = settings(max_examples=BODY_EXAMPLES, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))


def _resolve(path: str, seeded: dict[str, dict[str, Any]]) -> str:
    if "{parent}" not in path:
        return path
    parent_url = path.split("/")[1].replace("-", "_")
    return path.replace("{parent}", seeded[parent_url]["id"])


@pytest.mark.parametrize(("path", "schema_name"), COLLECTIONS, ids=[p for p, _ in COLLECTIONS])
def test_random_json_bodies(live_admin, http, seeded, path, schema_name):
    url = live_admin.url + _resolve(path, seeded)

    @_BODY_SETTINGS
    @given(body=_bodies(schema_name), method=st.sampled_from(["POST", "POST", "PATCH", "PUT"]))
    def run(body: Any, method: str) -> None:
        data = json.dumps(body, allow_nan=True).encode()
        target = url
        if method != "POST":
            collection = url_name(ENTITIES[schema_name])
            target = f"{live_admin.url}/{collection}/{seeded[schema_name]['id']}"
        r = http.request(method, target, data=data, headers={"Content-Type": "application/json"})
        assert_sane(r, f"body={data[:300]!r}")

    run()


@pytest.mark.parametrize(("path", "schema_name"), COLLECTIONS, ids=[p for p, _ in COLLECTIONS])
def test_random_form_bodies(live_admin, http, seeded, path, schema_name):
    url = live_admin.url + _resolve(path, seeded)

    @_BODY_SETTINGS
    @given(pairs=_form_pairs(schema_name))
    def run(pairs: list[tuple[str, str]]) -> None:
        data = urlencode(pairs, encoding="utf-8", errors="surrogatepass")
        r = http.post(url, data=data,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_sane(r, f"form={data[:300]!r}")

    run()


# ---- regressions: inputs that once made the Admin API answer 500 ---------------------------------


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


REGRESSIONS: list[tuple[str, str, Any]] = [
    # Text PostgreSQL cannot store: NUL characters and lone surrogates, in bodies, keys, queries.
    ("POST", "/consumers", {"username": "a\x00b"}),
    ("POST", "/consumers", {"username": "\ud800"}),
    ("POST", "/admins", {"username": "x", "token": "12345678\x00"}),
    ("POST", "/routes", {"paths": ["/a"], "service": {"name": "a\x00"}}),
    ("POST", "/services", {"host": "example.com", "tags": ["\ud83d"]}),
    ("POST", "/event-hooks", {"source": "\x00", "handler": "log"}),
    ("GET", "/consumers/a%00b", None),
    ("PUT", "/consumers/a%00b", {}),
    ("GET", "/consumers?username=a%00", None),
    ("GET", "/services?tags=a%00", None),
    ("GET", "/tags/a%00", None),
    # UUIDs that Python's uuid.UUID accepts but PostgreSQL does not.
    ("GET", "/services/urn:12345678123456781234567812345678", None),
    ("GET", "/event-hooks/{{12345678123456781234567812345678}}", None),
    ("PUT", "/targets/----12345678123456781234567812345678", {"target": "a:1"}),
    ("POST", "/consumers", {"username": "u", "id": "urn:12345678123456781234567812345678"}),
    ("POST", "/routes", {"paths": ["/a"],
                         "service": {"id": "{12345678123456781234567812345678}"}}),
    # Offsets that decode but are not cursors of that list.
    ("GET", f"/services?offset={_b64('a|b')}", None),
    ("GET", f"/tags?offset={_b64('a|b')}", None),
    ("GET", f"/tags?offset={_b64('a|b|c' + chr(0))}", None),
    # Regexes that crash the compiler instead of failing to parse.
    ("POST", "/routes", {"paths": ["~/a{99999999999}"]}),
    ("POST", "/routes", {"paths": ["~/" + "(" * 5000 + ")" * 5000]}),
    # A form whose top-level keys all look like indexes.
    ("POST", "/targets", "[0]="),
    ("POST", "/services", "0=a&1=b"),
    # Digits that are not ASCII: str.isdigit() says yes, int() says no.
    ("PATCH", "/event-hooks/0", "a[%C2%B2]=x"),
    ("POST", "/upstreams/u/targets", {"target": "10.0.0.1:\u00b2"}),
    ("POST", "/routes", {"hosts": ["a.test:\u00b2"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), REGRESSIONS,
                         ids=[f"{m} {p[:40]}" for m, p, _ in REGRESSIONS])
def test_regressions_are_client_errors(live_admin, http, method, path, body):
    url = live_admin.url + path
    if isinstance(body, str):
        r = http.request(method, url, data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    elif body is None:
        r = http.request(method, url)
    else:
        r = http.request(method, url, data=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
    assert_sane(r)
    assert r.status_code in (400, 404), r.text


def test_deeply_nested_json_is_a_client_error(live_admin, http):
    body = ("[" * 100_000 + "]" * 100_000).encode()
    r = http.post(live_admin.url + "/services", data=body,
                  headers={"Content-Type": "application/json"})
    assert_sane(r)
    assert r.status_code == 400


def test_alternative_certificate_without_its_key(live_admin, http):
    cert, key = _self_signed()
    r = http.post(live_admin.url + "/certificates",
                  json={"cert": cert, "key": key, "cert_alt": cert})
    assert_sane(r)
    assert r.status_code == 400
    assert r.json()["name"] == "schema violation"


def test_multipart_without_boundary(live_admin, http):
    r = http.post(live_admin.url + "/services", data=b"name=x",
                  headers={"Content-Type": "multipart/form-data"})
    assert_sane(r)


# ---- schemathesis: the whole document (last: POST /config may replace everything) ------------


# The document the server serves at /openapi.json (test_openapi checks they are equal); loading
# it at import time lets schemathesis make one pytest test per operation.
schema = schemathesis.openapi.from_dict(build_openapi())
schema.config.generation.update(
    modes=["positive", "negative"], max_examples=MAX_EXAMPLES, allow_x00=True,
)
schema.config.phases.update(phases=["examples", "fuzzing"])


def test_served_document_is_the_fuzzed_one(live_admin, http):
    assert http.get(live_admin.url + "/openapi.json").json() == build_openapi()


STATUSES: Counter[tuple[str, int]] = Counter()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink])
def test_openapi_fuzz_no_server_errors(case, live_admin, http, seeded):
    response = case.call(base_url=live_admin.url, session=http, timeout=30)
    STATUSES[(case.method, response.status_code)] += 1
    assert_sane(response, f"(case: body={case.body!r:.300} query={case.query!r:.200})")


def test_fuzzing_got_past_validation():
    """The generated cases are not all rejected: some writes succeed, so the store is exercised."""
    if not STATUSES:
        pytest.skip("the schemathesis tests did not run")
    assert STATUSES[("POST", 201)] > 0
    assert sum(n for (m, code), n in STATUSES.items() if m in ("PUT", "PATCH") and code == 200)
    assert sum(n for (_, code), n in STATUSES.items() if 400 <= code < 500)
