"""Kong-shaped errors, defined once for the Admin API, the store and the declarative loader.

Every error a user can cause carries Kong's numeric `code`, its `name`, a human `message` and
machine-readable `fields`, and knows the HTTP status the Admin API answers it with. Field errors
are nested dicts (records) whose array element errors are keyed by 0-based int index.
"""

from __future__ import annotations

from typing import Any

FieldErrors = dict[Any, Any]


def _flatten(errors: FieldErrors, prefix: str = "") -> list[str]:
    """`{"config": {"url": "x"}, "paths": {1: "y"}}` → `["config.url: x", "paths.2: y"]`."""
    out: list[str] = []
    # As Kong lists them: entity-level errors first, then fields by name, elements by index.
    keys = sorted(errors, key=lambda k: (k != "@entity", isinstance(k, str), k if isinstance(
        k, str) else f"{k:09d}"))
    for key in keys:
        value = errors[key]
        name = str(key + 1) if isinstance(key, int) else key
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(value, dict):
            out.extend(_flatten(value, path))
        elif isinstance(value, list):
            out.extend(f"{path}: {v}" if path != "@entity" else str(v) for v in value)
        else:
            out.append(f"{path}: {value}")
    return out


def _jsonable(errors: Any) -> Any:
    """Int-keyed error maps become JSON arrays (nulls for valid elements), as Kong shows them."""
    if not isinstance(errors, dict):
        return errors
    if errors and all(isinstance(k, int) for k in errors):
        items: list[Any] = [None] * (max(errors) + 1)
        for k, v in errors.items():
            items[k] = _jsonable(v)
        return items
    return {str(k): _jsonable(v) for k, v in errors.items()}


class KongError(Exception):
    """Base of every user-facing error: `code`, `name`, `status` are per class."""

    code = 0
    name = "error"
    status = 400

    def __init__(self, message: str, fields: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields if fields is not None else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "fields": _jsonable(self.fields),
        }


class SchemaViolation(KongError):
    code, name, status = 2, "schema violation", 400

    def __init__(self, errors: FieldErrors) -> None:
        parts = _flatten(errors)
        if len(parts) == 1:
            message = f"schema violation ({parts[0]})"
        else:
            message = f"{len(parts)} schema violations ({'; '.join(parts)})"
        super().__init__(message, errors)
        self.errors = errors


class ForeignKeyViolation(KongError):
    code, name, status = 4, "foreign key violation", 400

    @classmethod
    def missing_parent(cls, field: str, key: dict[str, Any], parent: str) -> ForeignKeyViolation:
        return cls(
            f"the foreign key '{_pretty(key)}' does not reference an existing '{parent}' entity.",
            {field: key},
        )

    @classmethod
    def referenced_by(cls, child: str, parent: str) -> ForeignKeyViolation:
        return cls(
            f"an existing '{child}' entity references this '{parent}' entity",
            {"@referenced_by": child},
        )


class UniqueViolation(KongError):
    code, name, status = 5, "unique constraint violation", 409

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(f"UNIQUE violation detected on '{_pretty(key)}'", key)


class NotFound(KongError):
    code, name, status = 6, "not found", 404


class InvalidOffset(KongError):
    code, name, status = 7, "invalid offset", 400

    def __init__(self, offset: str, reason: str) -> None:
        super().__init__(f"'{offset}' is not a valid offset: {reason}")


class InvalidSize(KongError):
    code, name, status = 9, "invalid size", 400


class InvalidOptions(KongError):
    code, name, status = 11, "invalid options", 400

    def __init__(self, errors: dict[str, str]) -> None:
        parts = [f"{k}: {v}" for k, v in errors.items()]
        message = (
            f"invalid option ({parts[0]})"
            if len(parts) == 1
            else f"{len(parts)} option violations ({'; '.join(parts)})"
        )
        super().__init__(message, errors)


class DeclarativeConfigError(KongError):
    code, name, status = 14, "invalid declarative configuration", 400

    def __init__(self, errors: Any, flattened: list[dict[str, Any]] | None = None) -> None:
        summary = "; ".join(_flatten(errors)) if isinstance(errors, dict) else str(errors)
        super().__init__(f"declarative config is invalid: {summary}", errors)
        self.flattened = flattened or []

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        if self.flattened:
            body["flattened_errors"] = self.flattened
        return body


def _pretty(key: dict[str, Any]) -> str:
    """Render a key like Kong's pl.pretty: `{name="foo"}`."""
    parts = []
    for k, v in key.items():
        if isinstance(v, dict):
            rendered = _pretty(v)
        elif v is None:
            rendered = "null"
        elif isinstance(v, str):
            rendered = f'"{v}"'
        else:
            rendered = str(v)
        parts.append(f"{k}={rendered}")
    return "{" + ",".join(parts) + "}"
