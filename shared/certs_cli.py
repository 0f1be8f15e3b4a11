"""``tidegate certs``: generate the certificates of the cluster link.

``tidegate certs gen`` writes one self-signed pair for ``shared`` mode (``cluster.crt`` /
``cluster.key``, like ``kong hybrid gen_cert``); ``tidegate certs gen --ca --out-dir DIR`` writes a
private CA and the control plane and data plane pairs it signed, for ``pki`` mode. Existing files
are never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared import certs

DEFAULT_CERT = "cluster.crt"
DEFAULT_KEY = "cluster.key"
DEFAULT_DP_NAME = "tidegate-dp"

# File names written by pki mode, inside --out-dir.
PKI_FILES = {
    "ca": ("ca.crt", "ca.key"),
    "cp": ("cp.crt", "cp.key"),
    "dp": ("dp.crt", "dp.key"),
}


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``certs`` command group to the ``tidegate`` parser."""
    group = groups.add_parser(
        "certs",
        help="generate cluster (CP<->DP mTLS) certificates",
        description="Certificates for the mutual-TLS link between control and data planes.",
    )
    commands = group.add_subparsers(dest="certs_command", metavar="COMMAND")
    commands.required = True
    gen = commands.add_parser(
        "gen",
        help="generate a shared cluster certificate, or a CA and signed pairs (--ca)",
        description=(
            "Shared mode (default): write one self-signed EC P-384 certificate and key, to copy to "
            "the control plane and every data plane. With --ca (pki mode): write a CA and the "
            "control plane and data plane certificates it signs into --out-dir. Never overwrites."
        ),
    )
    gen.add_argument("--cert", help=f"certificate file to write (default {DEFAULT_CERT})")
    gen.add_argument("--key", help=f"private key file to write, mode 0600 (default {DEFAULT_KEY})")
    gen.add_argument(
        "--days",
        type=int,
        default=certs.DEFAULT_DAYS,
        help=f"validity of the certificates in days (default {certs.DEFAULT_DAYS})",
    )
    gen.add_argument(
        "--ca", action="store_true", help="pki mode: generate a CA and certificates signed by it"
    )
    gen.add_argument("--out-dir", help="pki mode: directory for ca/cp/dp .crt and .key files")
    gen.add_argument(
        "--server-name",
        default=certs.CLUSTER_CN,
        help="pki mode: name data planes use to verify the control plane "
        f"(cluster_server_name; default {certs.CLUSTER_CN})",
    )
    gen.add_argument(
        "--dp-name",
        default=DEFAULT_DP_NAME,
        help=f"pki mode: name in the data plane certificate (default {DEFAULT_DP_NAME})",
    )
    gen.set_defaults(handler=run_gen)


def run_gen(args: argparse.Namespace) -> int:
    """Handler of ``tidegate certs gen``: 0 on success, 1 with a message on stderr otherwise."""
    try:
        if args.ca:
            _gen_pki(args)
        else:
            _gen_shared(args)
    except (certs.CertError, OSError, ValueError) as exc:
        print(f"tidegate certs gen: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _gen_shared(args: argparse.Namespace) -> None:
    if args.out_dir:
        raise ValueError("--out-dir is for pki mode (--ca); use --cert and --key in shared mode")
    cert = args.cert or DEFAULT_CERT
    key = args.key or DEFAULT_KEY
    info = certs.gen_cluster_cert(cert, key, days=args.days)
    print(f"wrote {cert} and {key} (mode 0600)")
    _describe(info)
    print("copy both files to the control plane and to every data plane (cluster_mtls = shared)")


def _gen_pki(args: argparse.Namespace) -> None:
    if args.cert or args.key:
        raise ValueError("--cert/--key are for shared mode; with --ca, files go to --out-dir")
    if not args.out_dir:
        raise ValueError("--ca needs --out-dir DIR")
    out = Path(args.out_dir)
    paths = {role: (out / crt, out / key) for role, (crt, key) in PKI_FILES.items()}
    # Check every target before writing anything, so a refusal leaves no half-made set behind.
    certs.refuse_existing(*(p for pair in paths.values() for p in pair))
    out.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = paths["ca"]
    ca = certs.gen_ca(ca_crt, ca_key, days=max(args.days, certs.DEFAULT_CA_DAYS))
    cp = certs.gen_signed(
        ca_crt, ca_key, *paths["cp"], cn=args.server_name, server=True, days=args.days
    )
    dp = certs.gen_signed(ca_crt, ca_key, *paths["dp"], cn=args.dp_name, days=args.days)
    for role, info in (("ca", ca), ("cp", cp), ("dp", dp)):
        crt, key = paths[role]
        print(f"wrote {crt} and {key} (mode 0600)")
        _describe(info)
    print(
        f"control plane: {paths['cp'][0].name}, {paths['cp'][1].name}, ca.crt; "
        f"data planes: {paths['dp'][0].name}, {paths['dp'][1].name}, ca.crt "
        f"(cluster_mtls = pki, cluster_server_name = {args.server_name}); keep ca.key offline"
    )


def _describe(info: certs.CertInfo) -> None:
    names = ", ".join(info.sans) or "-"
    print(
        f"  CN={info.subject_cn} SAN={names} expires {info.not_after:%Y-%m-%d} sha256={info.sha256}"
    )
