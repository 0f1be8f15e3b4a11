"""``tidegate config``: work with declarative configuration files (kong.yml).

``tidegate config validate FILE`` checks a file offline with the same loader the Admin API's
``POST /config`` uses, and reports the same errors: it prints ``parse successful`` and exits 0, or
prints the error message and one line per invalid entity and exits 1. ``FILE`` may be ``-`` for
standard input.

``tidegate config show [--plane cp|dp] [--config FILE]`` prints the settings a ``cp start`` or
``dp start`` with no flags would run with here (environment, then the config file, then defaults),
each line naming its source, credentials masked: what an operator checks before a restart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared import declarative
from shared.errors import DeclarativeConfigError


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` command group to the ``tidegate`` parser."""
    group = groups.add_parser(
        "config",
        help="validate kong.yml files; show the effective settings",
        description="Declarative configuration (kong.yml, _format_version 3.0) tools, and the "
                    "planes' effective settings.",
    )
    commands = group.add_subparsers(dest="config_command", metavar="COMMAND")
    commands.required = True
    validate = commands.add_parser(
        "validate",
        help="check a declarative config file without applying it",
        description=(
            "Parse and validate a declarative config file (YAML or JSON) exactly as the Admin "
            "API's POST /config would. Exit 0 when valid, 1 when not."
        ),
    )
    validate.add_argument("file", metavar="FILE", help="the kong.yml (or .json) file; - for stdin")
    validate.set_defaults(handler=run_validate)
    show = commands.add_parser(
        "show",
        help="print the effective settings of a plane, secrets masked",
        description=(
            "Print the settings `tidegate cp start` / `dp start` would use with no flags: "
            "TIDEGATE_<NAME> wins over the config file, which wins over the default (a flag "
            "would win over all three). Passwords, tokens and the DSN's password are masked."
        ),
    )
    show.add_argument("--plane", choices=("cp", "dp"), default="cp",
                      help="whose settings (default cp)")
    show.add_argument("--config", metavar="FILE",
                      help="TOML settings file (default: TIDEGATE_CONFIG, if set)")
    show.add_argument("--format", choices=("toml", "json"), default="toml",
                      help="toml (default): key = value  # source; json: {values, sources}")
    show.set_defaults(handler=run_show)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def run_validate(args: argparse.Namespace) -> int:
    try:
        text = _read(args.file)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        config = declarative.load_text(text)
    except DeclarativeConfigError as exc:
        for line in declarative.error_lines(exc):
            print(line, file=sys.stderr)
        return 1
    counts = ", ".join(f"{len(v)} {k}" for k, v in config.items() if v)
    print("parse successful" + (f" ({counts})" if counts else ""))
    return 0


def _toml_value(value: object) -> str:
    """One value in TOML syntax (json's escaping is valid TOML for strings and numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def run_show(args: argparse.Namespace) -> int:
    from shared.settings import masked, resolve

    if args.plane == "cp":
        from cp.settings import CPSettings as cls
    else:
        from dp.settings import DPSettings as cls  # type: ignore[assignment]
    settings, sources = resolve(cls, config=args.config)  # SettingsError: reported by main
    values = masked(settings)
    if args.format == "json":
        print(json.dumps({"plane": args.plane, "values": values, "sources": sources}, indent=2))
        return 0
    for name, value in values.items():
        # An unset optional setting has no TOML spelling: shown as a comment, so the output
        # (secrets aside) can be saved and used as a --config file.
        line = f"# {name} unset" if value is None else f"{name} = {_toml_value(value)}"
        print(f"{line}  # {sources[name]}")
    return 0
