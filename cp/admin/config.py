"""`/config`: the whole configuration as one declarative document (kong.yml).

`POST /config` replaces everything the data planes receive with the entities of the posted file,
in one transaction: a file with any error changes nothing. The file may come as a JSON body, a
YAML body (`application/yaml`, `text/yaml`, `application/x-yaml`), or a form field `config`
(`curl -F config=@kong.yml`); a JSON body `{"config": "<yaml or json text>"}` works too.
`GET /config` exports the configuration in the same format (JSON, or YAML with `?format=yaml` or
`Accept: application/yaml`); posting the export back changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from cp.admin.body import BadBody
from cp.admin.keys import STORE
from cp.store import Store
from shared import declarative
from shared.errors import DeclarativeConfigError, InvalidOptions

YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml")
TEXT_TYPES = ("text/plain", "application/octet-stream")


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def _missing() -> DeclarativeConfigError:
    return DeclarativeConfigError(
        {"@entity": ["expected a declarative configuration in the request body "
                     "(JSON, YAML, or a form field 'config')"]})


def _unwrap(data: Any) -> Any:
    """`{"config": ...}` (a string to parse, or the document itself) → the document."""
    if isinstance(data, dict) and set(data) == {"config"}:
        inner = data["config"]
        if isinstance(inner, str):
            return declarative.parse(inner)
        return inner
    return data


async def _read_source(request: web.Request) -> tuple[str | bytes, str | None]:
    """The posted file's text and its format ("json", "yaml", None: detect, or "raw-form")."""
    if not request.body_exists:
        raise _missing()
    ctype = request.content_type
    if ctype == "application/json" or ctype.endswith("+json"):
        return await request.read(), "json"
    if ctype in YAML_TYPES:
        return await request.read(), "yaml"
    if ctype in TEXT_TYPES:
        return await request.read(), None
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError):
            raise BadBody("Cannot parse form body") from None
        value = form.get("config")
        if isinstance(value, web.FileField):
            return value.file.read(), None
        if isinstance(value, str):
            return value, None
        if ctype == "application/x-www-form-urlencoded":
            # `curl --data-binary @kong.yml` sends the file itself under this content type.
            raw = await request.read()
            if raw.strip():
                return raw, "raw-form"
        raise _missing()
    raise BadBody(f"Unsupported Content-Type: {ctype}", status=415)


def _load(text: str | bytes, fmt: str | None) -> dict[str, list[dict[str, Any]]]:
    if fmt == "raw-form":  # a form without `config`: the body is the file only if it parses
        try:
            document = declarative.parse(text)
        except DeclarativeConfigError:
            raise _missing() from None
        return declarative.load(_unwrap(document))
    return declarative.load(_unwrap(declarative.parse(text, fmt)))


async def post_config(request: web.Request) -> web.Response:
    text, fmt = await _read_source(request)
    # Parsing and validating a large file is CPU work that must not stall the event loop.
    config = await asyncio.to_thread(_load, text, fmt)
    store = _store(request)
    stats = await store.replace_config(config)
    version = await store.version()
    return web.json_response(
        {
            "configuration_version": version,
            "stats": stats,
            "entities": {name: len(entities) for name, entities in config.items()},
            "config": declarative.export(config),
        },
        status=201,
        dumps=_dumps,
    )


def _wants_yaml(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("json", "yaml"):
            raise InvalidOptions({"format": "expected one of: json, yaml"})
        return fmt == "yaml"
    accept = request.headers.get("Accept", "")
    types = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    return any(t in YAML_TYPES for t in types) and "application/json" not in types[:1]


async def get_config(request: web.Request) -> web.Response:
    yaml_out = _wants_yaml(request)
    document = declarative.export(await _store(request).export_config())
    if yaml_out:
        text = await asyncio.to_thread(declarative.dump_yaml, document)
        return web.Response(text=text, content_type="application/yaml")
    return web.json_response(document, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/config", post_config)
    app.router.add_get("/config", get_config)
