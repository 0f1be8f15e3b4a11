"""TLS for the proxy's HTTPS listener: the certificate is chosen per SNI from the config.

The listener's SSLContext has an `sni_callback` that looks the client's server name up in the
`snis` of the running config (exact name first, then `*.domain` and `name.*` wildcards) and
switches the connection to that certificate's context; with no match (or no SNI) a self-signed
default certificate, generated at start, is served, as Kong does. The chosen name is remembered
on the SSL object so the router can match routes' `snis`.
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
        cert.write_text(cert_pem)
        key.write_text(key_pem)
        key.chmod(0o600)
        ctx.load_cert_chain(cert, key)
    return ctx


def self_signed(cn: str = "localhost") -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


class CertStore:
    """SNI → SSLContext for the running config, plus the listener's own context."""

    def __init__(self) -> None:
        self.default = _context(*self_signed())
        self.default.sni_callback = self._pick
        self.by_name: dict[str, ssl.SSLContext] = {}
        self._by_cert: dict[str, tuple[str, ssl.SSLContext]] = {}
        self._sni_seen: dict[int, str] = {}

    def rebuild(self, config: Any) -> None:
        """Contexts for a new snapshot (unchanged certificates keep theirs)."""
        certs = config.entities.get("certificates", {})
        contexts: dict[str, tuple[str, ssl.SSLContext]] = {}
        for cid, cert in certs.items():
            digest = cert["cert"] + cert["key"]
            old = self._by_cert.get(cid)
            if old is not None and old[0] == digest:
                contexts[cid] = old
            else:
                try:
                    contexts[cid] = (digest, _context(cert["cert"], cert["key"]))
                except (ssl.SSLError, ValueError):
                    continue
        by_name = {}
        for sni in config.entities.get("snis", {}).values():
            found = contexts.get((sni.get("certificate") or {}).get("id", ""))
            if found is not None:
                by_name[sni["name"].lower()] = found[1]
        self._by_cert, self.by_name = contexts, by_name

    def lookup(self, name: str) -> ssl.SSLContext | None:
        ctx = self.by_name.get(name)
        if ctx is not None:
            return ctx
        _, _, rest = name.partition(".")
        ctx = self.by_name.get(f"*.{rest}") if rest else None
        if ctx is None and "." in name:
            ctx = self.by_name.get(name.rpartition(".")[0] + ".*")
        return ctx

    def _pick(self, ssl_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower()
        if len(self._sni_seen) > 10_000:  # handshakes that failed after the callback
            self._sni_seen.clear()
        self._sni_seen[id(ssl_object)] = name
        ctx = self.lookup(name)
        if ctx is not None:
            ssl_object.context = ctx

    def sni_of(self, ssl_object: Any) -> str | None:
        """The server name the client asked for on this connection (once, then forgotten)."""
        if ssl_object is None:
            return None
        return self._sni_seen.pop(id(ssl_object), None)
