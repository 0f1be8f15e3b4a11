"""Request bodies as Kong reads them: JSON, form-urlencoded and multipart, one shape after.

Form keys use Kong's syntax — `config.url=…` nests, `paths[]=/a` or a repeated key builds an
array, `paths[2]=/b` sets an index, `headers[x-foo]=v` builds a map — and form values, which are
always strings, are coerced by the schema: "" is null, numbers and booleans are parsed, and a
single value given for an array becomes a one-item array. JSON is taken as typed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from shared.errors import KongError
from shared.schema.entity import EntitySchema
from shared.schema.fields import Field

_SEGMENT = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")
_APPEND = object()


class BadBody(KongError):
    """A body that cannot be read at all; Kong answers these with a bare message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message}


async def read_body(request: web.Request, schema: EntitySchema | None) -> Any:
    """Decode the body into plain data (dict for forms) ready for `schema.process`."""
    if not request.body_exists:
        return {}
    ctype = request.content_type
    if ctype == "application/json" or ctype.endswith("+json"):
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadBody("Cannot parse JSON body") from None
        except RecursionError:
            raise BadBody("Cannot parse JSON body: nested too deeply") from None
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except ValueError:
            raise BadBody("Cannot parse form body") from None
        items = []
        for key, value in form.items():
            if isinstance(value, web.FileField):
                value = value.file.read().decode("utf-8", "replace")
            items.append((key, str(value)))
        data = decode_form(items)
        return coerce_entity(schema, data) if schema is not None else data
    raw = await request.read()
    if not raw.strip():
        return {}
    raise BadBody(f"Unsupported Content-Type: {ctype}", status=415)


def _parse_key(key: str) -> list[Any]:
    path: list[Any] = []
    for part in key.split("."):
        for name, bracket in _SEGMENT.findall(part):
            if name:
                path.append(name)
            elif bracket == "":
                path.append(_APPEND)
            elif bracket.isascii() and bracket.isdigit():
                path.append(int(bracket))
            else:
                path.append(bracket)
    return path or [key]


def decode_form(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Build nested data from form items with Kong's key syntax."""
    root: dict[Any, Any] = {}
    for key, value in items:
        path = _parse_key(key)
        append = path[-1] is _APPEND
        path = [seg for seg in path if seg is not _APPEND] or [key]
        node = root
        for seg in path[:-1]:
            child = node.get(seg)
            if not isinstance(child, dict):
                child = node[seg] = {}
            node = child
        last = path[-1]
        if append or last in node:
            existing = node.get(last)
            if existing is None:
                node[last] = [value]
            elif isinstance(existing, list):
                existing.append(value)
            else:
                node[last] = [existing, value]
        else:
            node[last] = value
    # The top level is always the entity's fields, even when every key looks like an index
    # (`[0]=x`): it names field "0", which the schema then rejects.
    return {str(k): _lists_from_indexes(v) for k, v in root.items()}


def _lists_from_indexes(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _lists_from_indexes(v) for k, v in node.items()}
        if converted and all(isinstance(k, int) for k in converted):
            return [converted[k] for k in sorted(converted)]
        return {str(k): v for k, v in converted.items()}
    if isinstance(node, list):
        return [_lists_from_indexes(v) for v in node]
    return node


def coerce_entity(schema: EntitySchema | None, data: dict[str, Any]) -> dict[str, Any]:
    if schema is None:
        return data
    fields = dict(schema.fields)
    for name, resolve in schema.dynamic.items():
        resolved = resolve(data)
        if resolved is not None:
            fields[name] = resolved
    return coerce_record(fields, data)


def coerce_record(fields: dict[str, Field] | None, data: dict[str, Any]) -> dict[str, Any]:
    if not fields:
        return {k: _blank_to_null(v) for k, v in data.items()}
    return {k: coerce(fields[k], v) if k in fields else v for k, v in data.items()}


def _blank_to_null(value: Any) -> Any:
    return None if value == "" else value


def coerce(f: Field, value: Any) -> Any:
    """Coerce one form value (strings, lists, dicts of them) to the field's type."""
    if value == "":
        return None
    t = f.type
    if t in ("array", "set"):
        items = value if isinstance(value, list) else [value]
        return [coerce(f.elements, v) if f.elements else v for v in items]
    if isinstance(value, list):
        return value
    if t == "integer" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if t == "number" and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    if t == "boolean" and isinstance(value, str):
        return {"true": True, "false": False}.get(value.lower(), value)
    if t == "map" and isinstance(value, dict) and f.values is not None:
        return {k: coerce(f.values, v) for k, v in value.items()}
    if t == "record" and isinstance(value, dict):
        return coerce_record(f.fields, value)
    return value
