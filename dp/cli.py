"""`tidegate dp …`: start a data plane (hybrid, or DB-less standalone)."""

from __future__ import annotations

import argparse
from typing import Any

from dp.settings import DPSettings
from shared.logs import setup_logging
from shared.settings import add_setting_flags


def register(groups: Any) -> None:
    dp = groups.add_parser("dp", help="data plane: DB-less proxy at the edge")
    sub = dp.add_subparsers(dest="dp_command", metavar="COMMAND")
    sub.required = True
    start = sub.add_parser("start", help="start a data plane")
    start.add_argument("--prefix", help="state directory: cache, node id (default ./.tidegate-dp)")
    start.add_argument("--cp", help="control plane cluster address HOST:8005 (hybrid mode)")
    start.add_argument("--cert", dest="cluster_cert", help="cluster certificate (PEM)")
    start.add_argument("--key", dest="cluster_key", help="cluster certificate key (PEM)")
    start.add_argument("--cluster-mtls", choices=("shared", "pki"),
                       help="shared: the CP's own cluster certificate; pki: CA-signed")
    start.add_argument("--cluster-ca-cert", help="CA certificate (pki mode)")
    start.add_argument("--cluster-server-name",
                       help="name expected in the CP's certificate (pki mode)")
    start.add_argument("--declarative-config", help="kong.yml to serve with no control plane")
    start.add_argument("--status-listen", help="status address (default 127.0.0.1:8100)")
    start.add_argument("--proxy-listen", help="proxy address (default 0.0.0.0:8000; off)")
    start.add_argument("--proxy-ssl-listen", help="TLS proxy address (default 0.0.0.0:8443; off)")
    start.add_argument("--workers", type=_workers,
                       help="proxy worker processes: a number or auto (one per core); default 1")
    start.add_argument("--labels", help="labels shown on the CP: key=value,key=value")
    start.add_argument("--plugins", help="enabled plugins: bundled, or a comma-separated list")
    start.add_argument("--log-format", choices=("text", "json"))
    start.add_argument("--config", metavar="FILE",
                       help="TOML settings file, keys = setting names (or TIDEGATE_CONFIG); "
                            "a flag wins over TIDEGATE_<NAME>, which wins over the file")
    add_setting_flags(start, DPSettings)  # every other setting: --event-queue-size, …
    start.set_defaults(handler=_start)


def _workers(value: str) -> str:
    from dp.settings import parse_workers

    try:
        parse_workers(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of at least 1, or auto") from None
    return value


def _start(args: argparse.Namespace) -> int:
    from dp.server import node_id_for, run
    from dp.settings import DPSettings

    settings = DPSettings.from_sources(args)
    settings.prefix.mkdir(parents=True, exist_ok=True)
    setup_logging("dp", node_id_for(settings.prefix), settings.log_format)
    return run(settings)
