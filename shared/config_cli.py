"""``tidegate config``: work with declarative configuration files (kong.yml).

``tidegate config validate FILE`` checks a file offline with the same loader the Admin API's
``POST /config`` uses, and reports the same errors: it prints ``parse successful`` and exits 0, or
prints the error message and one line per invalid entity and exits 1. ``FILE`` may be ``-`` for
standard input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared import declarative
from shared.errors import DeclarativeConfigError


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` command group to the ``tidegate`` parser."""
    group = groups.add_parser(
        "config",
        help="validate declarative configuration files (kong.yml)",
        description="Declarative configuration (kong.yml, _format_version 3.0) tools.",
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
