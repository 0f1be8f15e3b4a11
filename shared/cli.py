"""The `tidegate` command: one entry point, subcommands registered by the rooms that own them.

Each command group lives next to the code it drives (`cp/cli.py`, `dp/cli.py`, ...) and exposes
`register(subparsers)`; this module only assembles them, so adding a group never touches the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shared import __version__

# Modules that contribute command groups, in the order `--help` lists them.
COMMAND_MODULES = (
    "shared.quickstart", "cp.cli", "dp.cli", "shared.config_cli", "shared.certs_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidegate",
        description="tidegate: a hybrid-mode, Kong-compatible API gateway.",
    )
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    groups.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a room that has not been built yet
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.parse_args([*(argv or sys.argv[1:]), "--help"])
        return 2
    from shared.settings import SettingsError

    try:
        return int(handler(args) or 0)
    except SettingsError as exc:  # a bad flag value, TIDEGATE_* variable or config file key
        print(f"tidegate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
