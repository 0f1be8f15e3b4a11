"""Settings for both planes: a flag wins over `TIDEGATE_<NAME>`, which wins over the default."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def env_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "on", "true", "yes")


def _convert(kind: Any, value: Any) -> Any:
    if isinstance(value, str):
        if kind is bool or kind == "bool":
            return env_bool(value)
        if Path in typing.get_args(kind) or kind is Path:
            return Path(value)
        if dict in (typing.get_origin(kind), kind):
            return dict(item.split("=", 1) for item in value.split(",") if "=" in item)
    return value


def from_sources(cls: type[T], args: Any = None, env: dict[str, str] | None = None) -> T:
    env = dict(os.environ if env is None else env)
    settings = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = getattr(args, f.name, None) if args is not None else None
        value = flag if flag is not None else env.get(f"TIDEGATE_{f.name.upper()}")
        if value is not None:
            setattr(settings, f.name, _convert(hints[f.name], value))
    return settings


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)
