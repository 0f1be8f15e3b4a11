"""Certificates for the control plane <-> data plane cluster link.

The cluster link is mutually authenticated TLS, in one of the two modes Kong users know:

* ``shared`` (the default): one self-signed certificate and key, generated once with
  ``tidegate certs gen``, copied to the control plane and to every data plane. Each side trusts
  exactly that certificate, and the control plane additionally requires the peer's certificate to
  be byte-for-byte the same one (equal SHA-256 digest).
* ``pki``: a private CA signs one certificate for the control plane (with the server name in its
  SAN) and one per data plane (client certificates). Each side trusts the CA.

Keys are EC P-384 (small, fast handshakes, the curve Kong uses for its cluster certificate).
Private keys are written with mode 0600 and certificates with 0644, and no helper here ever
overwrites an existing file: silently replacing a cluster key would lock every data plane out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLUSTER_CN = "kong_clustering"
"""Common name (and TLS server name) of a shared-mode cluster certificate, as in Kong."""

DEFAULT_DAYS = 1095
"""Validity of generated leaf certificates: three years, as ``kong hybrid gen_cert``."""

DEFAULT_CA_DAYS = 3650
"""Validity of a generated CA: ten years, so the CA outlives the certificates it signs."""

KEY_MODE = 0o600
CERT_MODE = 0o644

# Certificates start being valid a little in the past so that a peer whose clock runs slightly
# behind does not reject a certificate generated a moment ago.
_CLOCK_SKEW = dt.timedelta(minutes=5)


class CertError(Exception):
    """A certificate could not be generated or read; the message is meant for the user."""


class CertExistsError(CertError, FileExistsError):
    """A target file already exists; we refuse to overwrite certificates or keys."""


@dataclass(frozen=True)
class CertInfo:
    """What the cluster needs to know about a certificate (and shows in its Admin API)."""

    subject_cn: str | None
    issuer_cn: str | None
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    sha256: str
    """Hex SHA-256 digest of the DER certificate: what shared mode compares."""
    is_ca: bool

    @property
    def expiry_timestamp(self) -> int:
        """Expiry as Unix seconds, the form of ``cert_details.expiry_timestamp``."""
        return int(self.not_after.timestamp())

    def expired(self, now: dt.datetime | None = None) -> bool:
        """Whether the certificate is outside its validity window at ``now`` (default: now)."""
        now = now or dt.datetime.now(dt.UTC)
        return not (self.not_before <= now <= self.not_after)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def gen_cluster_cert(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    days: int = DEFAULT_DAYS,
    cn: str = CLUSTER_CN,
    *,
    not_before: dt.datetime | None = None,
) -> CertInfo:
    """Write a self-signed EC P-384 certificate and key for ``shared`` mode.

    The same pair is used by the control plane (as TLS server) and the data planes (as TLS
    clients), so the certificate allows both uses and names ``cn`` in its SAN as well as its
    subject. Raises :class:`CertExistsError` if either file exists, before writing anything.
    ``not_before`` exists for tests that need an already expired certificate.
    """
    refuse_existing(cert_path, key_path)
    key = _new_key()
    start, end = _validity(days, not_before)
    name = _name(cn)
    builder = (
        _base_builder(name, name, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_san([cn]), critical=False)
    )
    cert = builder.sign(key, hashes.SHA384())
    _write_pair(cert, key, cert_path, key_path)
    return cert_info(cert)


def gen_ca(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    cn: str = "tidegate cluster CA",
    days: int = DEFAULT_CA_DAYS,
    *,
    not_before: dt.datetime | None = None,
) -> CertInfo:
    """Write a self-signed EC P-384 CA certificate and key for ``pki`` mode.

    The CA may only sign certificates (key usage ``keyCertSign``); keep its key off the data
    planes. Raises :class:`CertExistsError` if either file exists.
    """
    refuse_existing(cert_path, key_path)
    key = _new_key()
    start, end = _validity(days, not_before)
    name = _name(cn)
    builder = (
        _base_builder(name, name, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
    )
    cert = builder.sign(key, hashes.SHA384())
    _write_pair(cert, key, cert_path, key_path)
    return cert_info(cert)


def gen_signed(
    ca_cert: str | os.PathLike[str],
    ca_key: str | os.PathLike[str],
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    cn: str,
    dns_names: Sequence[str] = (),
    server: bool = False,
    days: int = DEFAULT_DAYS,
    *,
    not_before: dt.datetime | None = None,
) -> CertInfo:
    """Write an EC P-384 certificate signed by the CA in ``ca_cert``/``ca_key`` (``pki`` mode).

    ``server=True`` makes a control-plane certificate (extended key usage serverAuth); data
    planes verify the name they dial against its SAN, so ``dns_names`` defaults to ``[cn]``.
    ``server=False`` makes a data-plane client certificate (clientAuth). Raises
    :class:`CertExistsError` if a target file exists, :class:`CertError` if the CA is unusable.
    """
    refuse_existing(cert_path, key_path)
    issuer_cert = load_cert(ca_cert)
    issuer_key = load_key(ca_key)
    _check_can_sign(issuer_cert, issuer_key, ca_cert)
    key = _new_key()
    start, end = _validity(days, not_before)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _base_builder(_name(cn), issuer_cert.subject, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(_san(list(dns_names) or [cn]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(issuer_key, hashes.SHA384())
    _write_pair(cert, key, cert_path, key_path)
    return cert_info(cert)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load_cert_info(path: str | os.PathLike[str]) -> CertInfo:
    """Subject, SANs, validity and SHA-256 digest of the first certificate in a PEM file."""
    return cert_info(load_cert(path))


def cert_info_from_pem(pem: bytes) -> CertInfo:
    """Like :func:`load_cert_info`, for PEM bytes (e.g. a peer certificate from gRPC)."""
    return cert_info(_parse_pem(pem, "certificate"))


def cert_info(cert: x509.Certificate) -> CertInfo:
    """Summarise a parsed certificate."""
    return CertInfo(
        subject_cn=_common_name(cert.subject),
        issuer_cn=_common_name(cert.issuer),
        sans=_dns_sans(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=cert_digest(cert),
        is_ca=_is_ca(cert),
    )


def cert_digest(cert: x509.Certificate | bytes) -> str:
    """Hex SHA-256 of the DER encoding; accepts a parsed certificate or PEM bytes.

    The digest of the DER form does not depend on PEM line wrapping or trailing whitespace, so
    two copies of the same certificate always compare equal.
    """
    if isinstance(cert, bytes):
        cert = _parse_pem(cert, "certificate")
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    """Parse the first certificate of a PEM file, with a readable error if it is not one."""
    return _parse_pem(_read(path, "certificate"), f"certificate {os.fspath(path)!r}")


def load_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM EC private key, with a readable error if it is not one."""
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(
            f"{os.fspath(path)!r} is not an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{os.fspath(path)!r} is not an EC private key")
    return key


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _name(cn: str) -> x509.Name:
    if not cn:
        raise CertError("a certificate needs a non-empty common name")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _validity(days: int, not_before: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise CertError(f"validity must be at least 1 day, got {days}")
    start = not_before or dt.datetime.now(dt.UTC) - _CLOCK_SKEW
    return start, start + dt.timedelta(days=days)


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _san(dns_names: Iterable[str]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names])


def _check_can_sign(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, path: str | os.PathLike[str]
) -> None:
    if not _is_ca(cert):
        raise CertError(f"{os.fspath(path)!r} is not a CA certificate (basicConstraints CA:FALSE)")
    ca_key = cert.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey) or (
            ca_key.public_numbers() != key.public_key().public_numbers()):
        raise CertError(f"the CA key does not belong to the CA certificate {os.fspath(path)!r}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def _dns_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(ext.value.get_values_for_type(x509.DNSName))


def _parse_pem(data: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertError(f"{what} is not a PEM certificate: {exc}") from exc


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertError(f"cannot read {what} {os.fspath(path)!r}: {exc.strerror}") from exc


def refuse_existing(*paths: str | os.PathLike[str]) -> None:
    """Fail before writing anything if any target exists (a half-written pair is worse)."""
    existing = [os.fspath(p) for p in paths if os.path.lexists(p)]
    if existing:
        names = ", ".join(repr(p) for p in existing)
        raise CertExistsError(f"refusing to overwrite existing file(s): {names}")


def _write_pair(
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
) -> None:
    """Write the key first (0600), then the certificate (0644); undo the key if the cert fails."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(key_path, key_pem, KEY_MODE)
    try:
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    except BaseException:
        os.unlink(key_path)
        raise


def _write_new(path: str | os.PathLike[str], data: bytes, mode: int) -> None:
    """Create ``path`` exclusively (never following or replacing an existing file) with ``mode``.

    The mode is set explicitly after creation, so a permissive umask cannot widen it and a
    restrictive one cannot make the certificate unreadable to the gateway's user.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise CertExistsError(f"refusing to overwrite existing file {os.fspath(path)!r}") from exc
    except OSError as exc:
        raise CertError(f"cannot create {os.fspath(path)!r}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd != -1:
            os.close(fd)
