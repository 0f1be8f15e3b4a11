"""Settings for both planes, from four sources: flag > `TIDEGATE_<NAME>` > config file > default.

The config file is TOML (`--config FILE`, or `TIDEGATE_CONFIG`), one key per settings field with
the field's name (`admin_listen = "0.0.0.0:8001"`). A key that is not a field is an error rather
than ignored: a misspelt `pg_dns` silently falling back to the embedded PostgreSQL is worse than
refusing to start. Relative paths in any source are relative to the working directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MASK = "********"
# Field names whose string values are credentials (paths to key files are not: they stay visible).
_SECRET_NAME = re.compile(r"password|secret|token|key", re.IGNORECASE)


class SettingsError(ValueError):
    """A source holds something the settings cannot take; the message names the source."""


def env_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "on", "true", "yes")


def _kinds(hint: Any) -> tuple[Any, ...]:
    """The plain types a hint allows: `str | None` -> (str, NoneType)."""
    return typing.get_args(hint) if typing.get_args(hint) and typing.get_origin(hint) is not dict \
        else (typing.get_origin(hint) or hint,)


def _convert(kind: Any, value: Any) -> Any:
    """A raw value (a string from a flag or the environment, a TOML value) as the field's type."""
    kinds = _kinds(kind)
    if isinstance(value, str):
        if bool in kinds or kind == "bool":
            return env_bool(value)
        if str in kinds:
            return value
        if Path in kinds:
            return Path(value)
        if dict in kinds:
            return dict(item.split("=", 1) for item in value.split(",") if "=" in item)
        if int in kinds:
            return int(value)
        if float in kinds:
            return float(value)
        return value
    if isinstance(value, bool):  # before int: True is an int to isinstance
        if bool in kinds:
            return value
    elif isinstance(value, int) and float in kinds and int not in kinds:
        return float(value)
    elif isinstance(value, dict) and dict in kinds:
        return {str(k): str(v) for k, v in value.items()}
    elif any(k in (int, float) and isinstance(value, k) for k in kinds):
        return value
    raise ValueError(f"expected {' or '.join(getattr(k, '__name__', str(k)) for k in kinds)}")


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """The TOML file's keys, checked against the fields of `cls`."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: invalid TOML: {exc}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError(f"config file {path}: unknown keys {', '.join(unknown)} "
                            f"(valid keys for {cls.__name__}: {', '.join(sorted(names))})")
    return data


def resolve(cls: type[T], args: Any = None, env: dict[str, str] | None = None,
            config: str | Path | None = None) -> tuple[T, dict[str, str]]:
    """Settings and, per field, where its value came from: flag, env, file or default."""
    env = dict(os.environ if env is None else env)
    path = config or (getattr(args, "config", None) if args is not None else None) \
        or env.get("TIDEGATE_CONFIG")
    from_file = read_config_file(path, cls) if path else {}
    settings = cls()
    hints = typing.get_type_hints(cls)
    sources: dict[str, str] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var, flag = f"TIDEGATE_{f.name.upper()}", "--" + f.name.replace("_", "-")
        candidates = (
            ("flag", getattr(args, f.name, None) if args is not None else None, flag),
            ("env", env.get(var), var),
            ("file", from_file.get(f.name), f"{path}: {f.name}"),
        )
        sources[f.name] = "default"
        for source, value, where in candidates:
            if value is None:
                continue
            try:
                setattr(settings, f.name, _convert(hints[f.name], value))
            except ValueError as exc:
                raise SettingsError(f"{where}: {value!r}: {exc}") from None
            sources[f.name] = source
            break
    return settings, sources


def from_sources(cls: type[T], args: Any = None, env: dict[str, str] | None = None,
                 config: str | Path | None = None) -> T:
    """The effective settings: flag > env > file (`config`, `args.config`, `TIDEGATE_CONFIG`)."""
    return resolve(cls, args, env, config)[0]


def add_setting_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Give every field of `cls` a `--field-name` flag unless the parser already has one for
    it (those keep their own wording): every setting can then come from a flag, and a new
    setting gets its flag without anyone remembering to add it."""
    taken = {action.dest for action in parser._actions}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in taken:
            continue
        default = "generated" if f.default is dataclasses.MISSING else f.default or "empty"
        if _SECRET_NAME.search(f.name):
            default = "none; a flag is visible to local users, prefer the environment"
        text = f"setting {f.name} (default {default}; or TIDEGATE_{f.name.upper()})"
        flag = "--" + f.name.replace("_", "-")
        if bool in _kinds(hints[f.name]):
            parser.add_argument(flag, nargs="?", const="on", metavar="on|off", help=text)
        else:
            parser.add_argument(flag, metavar=f.name.upper(), help=text)


def mask_dsn(dsn: str) -> str:
    """A PostgreSQL DSN with its password hidden, in URL or keyword (`password=…`) form."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*(@)", rf"\g<1>{MASK}\g<2>", dsn)
    return re.sub(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", rf"\g<1>{MASK}", dsn)


def masked(settings: Any) -> dict[str, Any]:
    """Field values for display: credentials masked, paths as strings."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, str) and value and f.name.endswith("dsn"):
            value = mask_dsn(value)
        elif isinstance(value, str) and value and _SECRET_NAME.search(f.name):
            value = MASK
        out[f.name] = value
    return out


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)
