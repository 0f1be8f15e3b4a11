"""Field types: what a value may be, its default, and how it is checked — Kong's messages included.

A `Field` is declarative data; `check()` turns an input value into the stored value or an error
(a string, or a nested dict of errors for records, arrays and maps). Nothing here touches the
database or HTTP: the same checks serve the Admin API, the store, kong.yml and the data plane.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MISSING: Any = object()  # "no value given", distinct from an explicit null

Validator = Callable[[Any], "str | None"]
Errors = Any  # str | dict[str | int, Errors]

REQUIRED = "required field missing"
UNKNOWN = "unknown field"


@dataclass(frozen=True)
class Field:
    """One field of an entity or record.

    `type` is one of string, integer, number, boolean, array, set, map, record, foreign, json.
    `default` MISSING means "no default" (the value stays null unless required); `auto` generates
    ids and timestamps. `elements`/`keys`/`values`/`fields` describe nested values; `reference`
    names the parent entity of a foreign field and `on_delete` what deleting the parent does.
    """

    type: str
    required: bool = False
    default: Any = MISSING
    auto: bool = False
    one_of: tuple[Any, ...] | None = None
    between: tuple[float, float] | None = None
    gt: float | None = None
    len_min: int | None = None
    len_max: int | None = None
    match: str | None = None
    starts_with: str | None = None
    elements: Field | None = None
    keys: Field | None = None
    values: Field | None = None
    fields: dict[str, Field] | None = None
    reference: str | None = None
    on_delete: str = "restrict"  # or "cascade"
    unique: bool = False
    writeonly: bool = False  # accepted on input, never shown (secrets)
    uuid: bool = False
    validator: Validator | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nullable(self) -> bool:
        return not self.required

    def default_value(self) -> Any:
        """The value a missing field takes (a fresh copy for containers)."""
        if self.default is MISSING:
            if self.type == "record" and self.fields is not None and self.required:
                return {}
            return None
        if isinstance(self.default, (list, dict)):
            import copy

            return copy.deepcopy(self.default)
        return self.default


def _type_error(f: Field, value: Any) -> str | None:
    t = f.type
    if t == "string":
        return text_error(value) if isinstance(value, str) else "expected a string"
    if t == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    if t == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected an integer"
    if t == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        return None if ok else "expected a number"
    if t in ("array", "set"):
        if isinstance(value, list):
            return None
        return "expected an array" if t == "array" else "expected a set"
    if t == "map":
        return None if isinstance(value, dict) else "expected a map"
    if t in ("record", "foreign"):
        return None if isinstance(value, dict) else "expected a record"
    return None  # json: anything JSON can carry


def _constraints(f: Field, value: Any) -> str | None:
    if f.one_of is not None and value not in f.one_of:
        return "expected one of: " + ", ".join(str(v) for v in f.one_of)
    if f.between is not None and not (f.between[0] <= value <= f.between[1]):
        lo, hi = f.between
        return f"value should be between {lo:g} and {hi:g}"
    if f.gt is not None and not value > f.gt:
        return f"value must be greater than {f.gt:g}"
    if f.type == "string":
        if f.len_min is not None and len(value) < f.len_min:
            return f"length must be at least {f.len_min}"
        if f.len_max is not None and len(value) > f.len_max:
            return f"length must be at most {f.len_max}"
        if f.starts_with is not None and not value.startswith(f.starts_with):
            return f"should start with: {f.starts_with}"
        if f.match is not None and not re.search(f.match, value):
            return f"invalid value: {value}"
        if f.uuid and not is_uuid(value):
            return "expected a valid UUID"
    if f.type in ("array", "set", "map") and f.len_min is not None and len(value) < f.len_min:
        return f"length must be at least {f.len_min}"
    if f.type in ("array", "set") and f.len_max is not None and len(value) > f.len_max:
        return f"length must be at most {f.len_max}"
    if f.validator is not None:
        return f.validator(value)
    return None


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def is_uuid(value: Any) -> bool:
    """The canonical 8-4-4-4-12 form only: `uuid.UUID()` also takes `urn:…`, braces and stray
    hyphens, which PostgreSQL's uuid type rejects."""
    return isinstance(value, str) and _UUID_RE.match(value) is not None


def text_error(value: str) -> str | None:
    """Text PostgreSQL cannot store (NUL characters, lone UTF-16 surrogates) is rejected here,
    as a schema violation, rather than failing later in the database."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid unicode: lone surrogate characters are not allowed"
    return None


def check(f: Field, value: Any) -> tuple[Any, Errors | None]:
    """Check one present, non-null value; return (normalised value, error or None)."""
    err = _type_error(f, value)
    if err:
        return value, err
    if f.type in ("array", "set"):
        value, err = _check_elements(f, value)
    elif f.type == "map":
        value, err = _check_map(f, value)
    elif f.type == "record" and f.fields is not None:
        value, err = check_record(f.fields, value)
    elif f.type == "foreign":
        value, err = _check_foreign(value)
    if err:
        return value, err
    return value, _constraints(f, value)


def _check_elements(f: Field, items: list[Any]) -> tuple[list[Any], Errors | None]:
    out: list[Any] = []
    errors: dict[int, Errors] = {}
    for i, item in enumerate(items):
        if f.elements is None:
            out.append(item)
            continue
        if item is None:
            errors[i] = REQUIRED
            continue
        value, err = check(f.elements, item)
        if err:
            errors[i] = err
        out.append(value)
    if f.type == "set" and not errors:
        seen: list[Any] = []
        for item in out:
            if item not in seen:
                seen.append(item)
        out = seen
    return out, errors or None


def _check_map(f: Field, mapping: dict[str, Any]) -> tuple[dict[str, Any], Errors | None]:
    out: dict[str, Any] = {}
    errors: dict[str, Errors] = {}
    for k, v in mapping.items():
        if f.keys is not None:
            _, err = check(f.keys, k)
            if err:
                errors[k] = err
                continue
        if f.values is not None:
            if v is None:
                errors[k] = REQUIRED
                continue
            v, err = check(f.values, v)
            if err:
                errors[k] = err
                continue
        out[k] = v
    return out, errors or None


def _check_foreign(value: dict[str, Any]) -> tuple[Any, Errors | None]:
    """A reference is `{"id": uuid}`, or an endpoint key (`{"name": …}`) the store resolves."""
    if "id" in value:
        extra = set(value) - {"id"}
        if extra:
            return value, {k: UNKNOWN for k in extra}
        if not is_uuid(value["id"]):
            return value, {"id": "expected a valid UUID"}
        return {"id": value["id"]}, None
    if len(value) == 1:
        ((k, v),) = value.items()
        if isinstance(v, str):
            err = text_error(v)
            return value, ({k: err} if err else None)
    return value, {"id": REQUIRED}


def check_record(
    fields: dict[str, Field], value: dict[str, Any], *, fill_defaults: bool = True
) -> tuple[dict[str, Any], Errors | None]:
    """Check a record: reject unknown keys, fill defaults, require required fields."""
    out: dict[str, Any] = {}
    errors: dict[str, Errors] = {}
    for k in value:
        if k not in fields:
            errors[k] = UNKNOWN
    for name, f in fields.items():
        v = value.get(name, MISSING)
        if v is MISSING:
            v = f.default_value() if fill_defaults else MISSING
            if v is MISSING:
                continue
            if v == {} and f.type == "record" and f.fields is not None:
                v, err = check_record(f.fields, {})
                if err:
                    errors[name] = err
        if v is None:
            if f.required:
                errors[name] = REQUIRED
            out[name] = None
            continue
        v, err = check(f, v)
        if err:
            errors[name] = err
        out[name] = v
    return out, errors or None
