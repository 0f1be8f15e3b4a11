"""Cluster certificates: shared/certs.py and the `tidegate certs gen` command.

Everything here writes real files into tmp_path and reads them back with `cryptography`, the way
the control and data planes will; the CLI is run as a subprocess, as a user runs it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from shared import certs

REPO = Path(__file__).resolve().parents[1]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def cn_of(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def eku_of(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "certs", "gen", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------------------------
# shared mode: gen_cluster_cert
# --------------------------------------------------------------------------------------------


def test_cluster_cert_is_self_signed_ec_p384_for_three_years(tmp_path: Path) -> None:
    crt, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    before = dt.datetime.now(dt.UTC)
    certs.gen_cluster_cert(crt, key)

    cert, private = read_cert(crt), read_key(key)
    assert isinstance(private.curve, ec.SECP384R1)
    assert cert.public_key().public_numbers() == private.public_key().public_numbers()
    cert.verify_directly_issued_by(cert)  # self-signed: its own key signed it
    assert cn_of(cert) == "kong_clustering"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kong_clustering"]
    # The same pair serves as TLS server (CP) and TLS client (DP).
    assert eku_of(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False

    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=1095)
    assert cert.not_valid_before_utc <= before  # already valid, even for a peer slightly behind
    expected_end = before + dt.timedelta(days=1095)
    assert abs(cert.not_valid_after_utc - expected_end) < dt.timedelta(minutes=10)


def test_cluster_key_is_0600_and_cert_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask must not widen the key's mode
    try:
        certs.gen_cluster_cert(tmp_path / "a.crt", tmp_path / "a.key")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "a.key") == 0o600
    assert mode_of(tmp_path / "a.crt") == 0o644

    old = os.umask(0o077)  # a strict umask must not make the certificate unreadable to others
    try:
        certs.gen_cluster_cert(tmp_path / "b.crt", tmp_path / "b.key")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "b.key") == 0o600
    assert mode_of(tmp_path / "b.crt") == 0o644


def test_cluster_cert_custom_days_and_cn(tmp_path: Path) -> None:
    info = certs.gen_cluster_cert(tmp_path / "c.crt", tmp_path / "c.key", days=30, cn="edge")
    cert = read_cert(tmp_path / "c.crt")
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30)
    assert cn_of(cert) == "edge"
    assert info.subject_cn == "edge"


@pytest.mark.parametrize("existing", ["cert", "key", "both"])
def test_gen_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    crt, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    present = {"cert": [crt], "key": [key], "both": [crt, key]}[existing]
    for path in present:
        path.write_bytes(b"precious")

    with pytest.raises(certs.CertExistsError, match="refusing to overwrite"):
        certs.gen_cluster_cert(crt, key)

    for path in present:
        assert path.read_bytes() == b"precious"
    for path in {crt, key} - set(present):
        assert not path.exists(), "a refused run must not leave half a pair behind"


def test_gen_refuses_to_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    (tmp_path / "cluster.key").symlink_to(target)
    with pytest.raises(certs.CertExistsError):
        certs.gen_cluster_cert(tmp_path / "cluster.crt", tmp_path / "cluster.key")
    assert target.read_bytes() == b"precious"


def test_gen_rejects_nonpositive_days(tmp_path: Path) -> None:
    with pytest.raises(certs.CertError, match="at least 1 day"):
        certs.gen_cluster_cert(tmp_path / "c.crt", tmp_path / "c.key", days=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# pki mode: gen_ca, gen_signed
# --------------------------------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, Path]:
    crt, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    certs.gen_ca(crt, key)
    return crt, key


def test_ca_is_a_p384_ca_that_only_signs(ca: tuple[Path, Path]) -> None:
    cert = read_cert(ca[0])
    assert isinstance(read_key(ca[1]).curve, ec.SECP384R1)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature
    assert mode_of(ca[1]) == 0o600


def test_signed_server_cert_verifies_against_ca_for_its_name(
    tmp_path: Path, ca: tuple[Path, Path]
) -> None:
    crt, key = tmp_path / "cp.crt", tmp_path / "cp.key"
    certs.gen_signed(*ca, crt, key, cn="cp.example", dns_names=["cp.example", "cp"], server=True)

    cert = read_cert(crt)
    assert isinstance(read_key(key).curve, ec.SECP384R1)
    assert mode_of(key) == 0o600 and mode_of(crt) == 0o644
    assert eku_of(cert) == {ExtendedKeyUsageOID.SERVER_AUTH}
    # A real chain verification, as a TLS client would do it: right name passes, other fails.
    store = Store([read_cert(ca[0])])
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName("cp.example"))
    verifier.verify(cert, [])
    wrong = PolicyBuilder().store(store).build_server_verifier(x509.DNSName("evil.example"))
    with pytest.raises(x509.verification.VerificationError):
        wrong.verify(cert, [])


def test_signed_client_cert_verifies_as_client(tmp_path: Path, ca: tuple[Path, Path]) -> None:
    crt, key = tmp_path / "dp.crt", tmp_path / "dp.key"
    info = certs.gen_signed(*ca, crt, key, cn="dp-1")
    cert = read_cert(crt)
    assert eku_of(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert info.sans == ("dp-1",)
    verified = PolicyBuilder().store(Store([read_cert(ca[0])])).build_client_verifier()
    assert verified.verify(cert, []).subjects is not None


def test_signed_cert_from_another_ca_does_not_verify(tmp_path: Path, ca: tuple[Path, Path]) -> None:
    certs.gen_ca(tmp_path / "other-ca.crt", tmp_path / "other-ca.key")
    certs.gen_signed(tmp_path / "other-ca.crt", tmp_path / "other-ca.key",
                     tmp_path / "dp.crt", tmp_path / "dp.key", cn="dp-1")  # fmt: skip
    verifier = PolicyBuilder().store(Store([read_cert(ca[0])])).build_client_verifier()
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(read_cert(tmp_path / "dp.crt"), [])


def test_gen_signed_refuses_a_non_ca_issuer(tmp_path: Path) -> None:
    certs.gen_cluster_cert(tmp_path / "leaf.crt", tmp_path / "leaf.key")
    with pytest.raises(certs.CertError, match="not a CA"):
        certs.gen_signed(tmp_path / "leaf.crt", tmp_path / "leaf.key",
                         tmp_path / "x.crt", tmp_path / "x.key", cn="x")  # fmt: skip
    assert not (tmp_path / "x.key").exists()


def test_gen_signed_refuses_a_key_of_another_ca(tmp_path: Path, ca: tuple[Path, Path]) -> None:
    certs.gen_ca(tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(certs.CertError, match="does not belong"):
        certs.gen_signed(ca[0], tmp_path / "b.key", tmp_path / "x.crt", tmp_path / "x.key", cn="x")


# --------------------------------------------------------------------------------------------
# load_cert_info
# --------------------------------------------------------------------------------------------


def test_load_cert_info(tmp_path: Path, ca: tuple[Path, Path]) -> None:
    crt = tmp_path / "cp.crt"
    certs.gen_signed(*ca, crt, tmp_path / "cp.key", cn="cp", dns_names=["cp", "cp.example"],
                     server=True, days=10)  # fmt: skip
    info = certs.load_cert_info(crt)
    cert = read_cert(crt)

    assert info.subject_cn == "cp"
    assert info.issuer_cn == "tidegate cluster CA"
    assert info.sans == ("cp", "cp.example")
    assert info.not_after == cert.not_valid_after_utc
    assert info.expiry_timestamp == int(cert.not_valid_after_utc.timestamp())
    assert info.sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert info.sha256 == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert info.is_ca is False
    assert not info.expired()
    assert info.expired(now=cert.not_valid_after_utc + dt.timedelta(seconds=1))


def test_load_cert_info_errors_are_readable(tmp_path: Path) -> None:
    with pytest.raises(certs.CertError, match="cannot read certificate"):
        certs.load_cert_info(tmp_path / "missing.crt")
    (tmp_path / "junk.crt").write_text("not a certificate")
    with pytest.raises(certs.CertError, match="not a PEM certificate"):
        certs.load_cert_info(tmp_path / "junk.crt")


def test_expired_cert_can_be_made_for_tests(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    info = certs.gen_cluster_cert(tmp_path / "e.crt", tmp_path / "e.key", days=1, not_before=past)
    assert info.expired()
    assert info.not_after < dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------------------------
# The CLI, as a user runs it
# --------------------------------------------------------------------------------------------


def test_cli_gen_shared_defaults(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    crt, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    assert mode_of(key) == 0o600 and mode_of(crt) == 0o644
    cert = read_cert(crt)
    assert cn_of(cert) == "kong_clustering"
    assert isinstance(read_key(key).curve, ec.SECP384R1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=1095)
    # The user is told what was written and the digest both sides will compare.
    assert "cluster.crt" in result.stdout
    assert certs.load_cert_info(crt).sha256 in result.stdout


def test_cli_gen_refuses_overwrite_with_message_and_exit_1(tmp_path: Path) -> None:
    assert run_cli(cwd=tmp_path).returncode == 0
    before = (tmp_path / "cluster.key").read_bytes()

    result = run_cli(cwd=tmp_path)
    assert result.returncode == 1
    assert "refusing to overwrite" in result.stderr
    assert "cluster.crt" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "cluster.key").read_bytes() == before


def test_cli_gen_shared_paths_and_days(tmp_path: Path) -> None:
    result = run_cli("--cert", "dp/c.pem", "--key", "dp/k.pem", "--days", "30", cwd=tmp_path)
    assert result.returncode == 1  # the directory does not exist: a message, not a traceback
    assert "cannot create" in result.stderr and "Traceback" not in result.stderr

    (tmp_path / "dp").mkdir()
    result = run_cli("--cert", "dp/c.pem", "--key", "dp/k.pem", "--days", "30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cert = read_cert(tmp_path / "dp" / "c.pem")
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30)
    assert mode_of(tmp_path / "dp" / "k.pem") == 0o600


def test_cli_gen_pki_writes_a_verifiable_set(tmp_path: Path) -> None:
    result = run_cli("--ca", "--out-dir", "pki", "--server-name", "cp.example",
                     "--dp-name", "edge-1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = tmp_path / "pki"
    for name in ("ca", "cp", "dp"):
        assert mode_of(out / f"{name}.key") == 0o600
        assert mode_of(out / f"{name}.crt") == 0o644
    store = Store([read_cert(out / "ca.crt")])
    cp = read_cert(out / "cp.crt")
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName("cp.example")).verify(cp, [])
    dp = read_cert(out / "dp.crt")
    PolicyBuilder().store(store).build_client_verifier().verify(dp, [])
    assert cn_of(dp) == "edge-1"


def test_cli_gen_pki_refuses_if_any_file_exists_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    out.mkdir()
    (out / "dp.key").write_bytes(b"precious")
    result = run_cli("--ca", "--out-dir", str(out), cwd=tmp_path)
    assert result.returncode == 1
    assert "refusing to overwrite" in result.stderr and "dp.key" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["dp.key"]
    assert (out / "dp.key").read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ca"], "--ca needs --out-dir"),
        (["--ca", "--out-dir", "x", "--cert", "a.crt"], "--cert/--key are for shared mode"),
        (["--out-dir", "x"], "--out-dir is for pki mode"),
        (["--days", "0"], "at least 1 day"),
    ],
)
def test_cli_gen_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
