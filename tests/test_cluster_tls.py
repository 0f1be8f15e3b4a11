"""mTLS on the cluster link, over real gRPC: who gets a stream, who is refused, what the CP logs.

Each test starts a real ``grpc.aio`` server on 127.0.0.1:0 with the credentials and the peer check
of shared/tls.py and a minimal servicer for ``Cluster.Connect`` that answers every Hello with an
EventAck naming the node. Real clients connect with real certificate files. A refusal is what the
data plane observes (the RPC fails, with which status) plus what the control plane logs on
``tidegate.cluster``; nothing waits on timers: RPCs have deadlines, log waits have a timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared import certs, tls
from shared.proto_gen import cluster_pb2 as pb
from shared.proto_gen import cluster_pb2_grpc as pb_grpc

RPC_DEADLINE = 10.0  # seconds; generous, only hit when something is broken
LOG_WAIT = 10.0
CP_NAME = "cp.tidegate.test"


# --------------------------------------------------------------------------------------------
# Certificates on disk
# --------------------------------------------------------------------------------------------


@dataclass
class Pair:
    cert: Path
    key: Path


@pytest.fixture
def shared_pair(tmp_path: Path) -> Pair:
    pair = Pair(tmp_path / "cluster.crt", tmp_path / "cluster.key")
    certs.gen_cluster_cert(pair.cert, pair.key)
    return pair


@pytest.fixture
def other_shared_pair(tmp_path: Path) -> Pair:
    """Another cluster's certificate: same CN ``kong_clustering``, different key."""
    pair = Pair(tmp_path / "other.crt", tmp_path / "other.key")
    certs.gen_cluster_cert(pair.cert, pair.key)
    return pair


@dataclass
class Pki:
    ca: Pair
    cp: Pair
    dir: Path

    def client(self, name: str, **kwargs: object) -> Pair:
        pair = Pair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        certs.gen_signed(self.ca.cert, self.ca.key, pair.cert, pair.key, cn=name, **kwargs)  # type: ignore[arg-type]
        return pair


def make_pki(base: Path) -> Pki:
    base.mkdir()
    ca = Pair(base / "ca.crt", base / "ca.key")
    certs.gen_ca(ca.cert, ca.key)
    cp = Pair(base / "cp.crt", base / "cp.key")
    certs.gen_signed(ca.cert, ca.key, cp.cert, cp.key, cn=CP_NAME, server=True)
    return Pki(ca, cp, base)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def shared_tls(pair: Pair) -> tls.ClusterTLS:
    return tls.ClusterTLS.from_files("shared", pair.cert, pair.key)


def pki_tls(pki: Pki, pair: Pair, allowed: tuple[str, ...] = ()) -> tls.ClusterTLS:
    return tls.ClusterTLS.from_files(
        "pki", pair.cert, pair.key, ca=pki.ca.cert, server_name=CP_NAME, allowed_names=allowed
    )


# --------------------------------------------------------------------------------------------
# A control plane and a data plane
# --------------------------------------------------------------------------------------------


class MinimalCP(pb_grpc.ClusterServicer):
    """Answers each Hello with an EventAck whose boot_id is the node id."""

    async def Connect(
        self, request_iterator: AsyncIterator[pb.DataPlaneMessage], context: object
    ) -> AsyncIterator[pb.ControlPlaneMessage]:
        async for message in request_iterator:
            if message.WhichOneof("kind") == "hello":
                ack = pb.EventAck(boot_id=message.hello.node_id, up_to_seq=0)
                yield pb.ControlPlaneMessage(event_ack=ack)


@asynccontextmanager
async def control_plane(cp_tls: tls.ClusterTLS, *, insecure: bool = False) -> AsyncIterator[str]:
    """A running CP cluster server; yields its address."""
    server = grpc.aio.server(interceptors=[tls.PeerCheckInterceptor(cp_tls)])
    pb_grpc.add_ClusterServicer_to_server(MinimalCP(), server)
    if insecure:  # only to prove the peer check holds even on a misconfigured port
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(cp_tls))
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def hellos(*node_ids: str) -> list[pb.DataPlaneMessage]:
    return [pb.DataPlaneMessage(hello=pb.Hello(node_id=n, hostname="dp-host")) for n in node_ids]


async def converse(channel: grpc.aio.Channel, *node_ids: str) -> list[str]:
    """Open Connect, send one Hello per node id, return the boot ids the CP acknowledged."""
    try:
        call = pb_grpc.ClusterStub(channel).Connect(iter(hellos(*node_ids)), timeout=RPC_DEADLINE)
        return [m.event_ack.boot_id async for m in call]
    finally:
        await channel.close()


async def refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    """Run one exchange that must fail; return the error the data plane sees."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await converse(channel, "dp-1")
    return caught.value


def client_channel(address: str, root: Path, pair: Pair | None, name: str) -> grpc.aio.Channel:
    """A hand-made DP channel, for clients that ClusterTLS would not even build."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=root.read_bytes(),
        private_key=pair.key.read_bytes() if pair else None,
        certificate_chain=pair.cert.read_bytes() if pair else None,
    )
    return grpc.aio.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", name)]
    )


# --------------------------------------------------------------------------------------------
# Observing the CP's log
# --------------------------------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Collects ``tidegate.cluster`` records from any thread; lets a test wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def _wait(self, match: Callable[[logging.LogRecord], bool], timeout: float) -> list:
        with self._changed:
            self._changed.wait_for(lambda: any(map(match, self.records)), timeout)
            return [r for r in self.records if match(r)]

    async def refusal(self, contains: str) -> logging.LogRecord:
        """The first refusal record whose reason contains ``contains`` (waits up to LOG_WAIT)."""

        def match(r: logging.LogRecord) -> bool:
            return contains in getattr(r, "refusal_reason", "")

        found = await asyncio.to_thread(self._wait, match, LOG_WAIT)
        assert found, (
            f"no refusal logged with {contains!r}; got {[r.getMessage() for r in self.records]}"
        )
        return found[0]


@pytest.fixture
def cp_log() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("tidegate.cluster")
    logger.addHandler(watch)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(old_level)


@contextmanager
def core_refusals_logged() -> Iterator[None]:
    """Run the CP's bridge from gRPC core's stderr lines to the log, within the test body."""
    bridge = tls.HandshakeFailureLog()
    bridge.start()
    try:
        yield
    finally:
        bridge.stop()


# --------------------------------------------------------------------------------------------
# Accepted
# --------------------------------------------------------------------------------------------


async def test_shared_mode_dp_with_the_cluster_cert_streams(
    shared_pair: Pair, cp_log: LogWatch
) -> None:
    cluster = shared_tls(shared_pair)
    async with control_plane(cluster) as address:
        acked = await converse(tls.secure_channel(address, cluster), "dp-1", "dp-1b", "dp-1c")
    assert acked == ["dp-1", "dp-1b", "dp-1c"]
    assert cp_log.records == []


async def test_pki_mode_ca_signed_dp_streams(pki: Pki, cp_log: LogWatch) -> None:
    dp = pki.client("dp-1")
    async with control_plane(pki_tls(pki, pki.cp, allowed=("DP-1",))) as address:
        acked = await converse(tls.secure_channel(address, pki_tls(pki, dp)), "node-a")
    assert acked == ["node-a"]
    assert cp_log.records == []


async def test_pki_mode_any_ca_signed_dp_when_no_names_configured(pki: Pki) -> None:
    dp = pki.client("whatever-dp")
    async with control_plane(pki_tls(pki, pki.cp)) as address:
        assert await converse(tls.secure_channel(address, pki_tls(pki, dp)), "n") == ["n"]


# --------------------------------------------------------------------------------------------
# Refused by gRPC core in the TLS handshake; logged through HandshakeFailureLog
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["shared", "pki"])
async def test_refused_without_client_certificate(
    mode: str, shared_pair: Pair, pki: Pki, cp_log: LogWatch
) -> None:
    if mode == "shared":
        cp, root, name = shared_tls(shared_pair), shared_pair.cert, "kong_clustering"
    else:
        cp, root, name = pki_tls(pki, pki.cp), pki.ca.cert, CP_NAME
    with core_refusals_logged():
        async with control_plane(cp) as address:
            error = await refused(client_channel(address, root, None, name))
        record = await cp_log.refusal("presented no certificate")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert record.levelno == logging.WARNING
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in record.getMessage()


async def test_shared_mode_refuses_another_self_signed_cert(
    shared_pair: Pair, other_shared_pair: Pair, cp_log: LogWatch
) -> None:
    # The DP trusts the right CP, but presents a certificate of its own making (same CN).
    with core_refusals_logged():
        async with control_plane(shared_tls(shared_pair)) as address:
            channel = client_channel(
                address, shared_pair.cert, other_shared_pair, "kong_clustering"
            )
            error = await refused(channel)
        record = await cp_log.refusal("not trusted")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "unable to get local issuer certificate" in record.getMessage()


async def test_pki_mode_refuses_cert_from_another_ca(
    pki: Pki, tmp_path: Path, cp_log: LogWatch
) -> None:
    stranger = make_pki(tmp_path / "stranger").client("dp-1")
    with core_refusals_logged():
        async with control_plane(pki_tls(pki, pki.cp)) as address:
            error = await refused(client_channel(address, pki.ca.cert, stranger, CP_NAME))
        await cp_log.refusal("not trusted")
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_pki_mode_refuses_expired_dp_cert(pki: Pki, cp_log: LogWatch) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = pki.client("dp-1", days=1, not_before=past)
    assert certs.load_cert_info(expired.cert).expired()
    with core_refusals_logged():
        async with control_plane(pki_tls(pki, pki.cp)) as address:
            error = await refused(client_channel(address, pki.ca.cert, expired, CP_NAME))
        record = await cp_log.refusal("has expired")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "certificate has expired" in record.getMessage()


@pytest.mark.parametrize("mode", ["shared", "pki"])
async def test_refused_plaintext_client(
    mode: str, shared_pair: Pair, pki: Pki, cp_log: LogWatch
) -> None:
    cp = shared_tls(shared_pair) if mode == "shared" else pki_tls(pki, pki.cp)
    with core_refusals_logged():
        async with control_plane(cp) as address:
            error = await refused(grpc.aio.insecure_channel(address))
        await cp_log.refusal("did not speak TLS")
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_core_line_still_reaches_stderr(
    shared_pair: Pair, capfd: pytest.CaptureFixture[str], cp_log: LogWatch
) -> None:
    with core_refusals_logged():
        os.write(2, b"unrelated line from C code\n")
        async with control_plane(shared_tls(shared_pair)) as address:
            await refused(grpc.aio.insecure_channel(address))
        await cp_log.refusal("did not speak TLS")
    err = capfd.readouterr().err
    assert "unrelated line from C code\n" in err
    assert "Handshake failed" in err  # the tee passes gRPC's own line on unchanged


# --------------------------------------------------------------------------------------------
# Refused by our peer check after the handshake; logged with the peer address
# --------------------------------------------------------------------------------------------


def ca_style_cluster_cert(directory: Path) -> tuple[Pair, Pair]:
    """A shared cluster cert marked CA:TRUE (as ``openssl req -x509`` makes by default), and a
    second certificate signed by it. TLS accepts the second one: only the digest check refuses."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kong_clustering")])
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(True, False, False, False, False, True, False, False, False)
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("kong_clustering")]), False)
        .sign(key, hashes.SHA384())
    )
    child_key = ec.generate_private_key(ec.SECP384R1())
    child_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dp-impostor")])
    child = (
        x509.CertificateBuilder()
        .subject_name(child_name)
        .issuer_name(name)
        .public_key(child_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    pairs = []
    for stem, cert, private in (("root", root, key), ("child", child, child_key)):
        pair = Pair(directory / f"{stem}.crt", directory / f"{stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pairs.append(pair)
    return pairs[0], pairs[1]


async def test_shared_mode_refuses_cert_that_passes_tls_but_is_not_the_cluster_cert(
    tmp_path: Path, cp_log: LogWatch
) -> None:
    root, child = ca_style_cluster_cert(tmp_path)
    cluster = shared_tls(root)
    async with control_plane(cluster) as address:
        # Control: the cluster cert itself works with this CA-style certificate.
        assert await converse(tls.secure_channel(address, cluster), "ok") == ["ok"]
        error = await refused(client_channel(address, root.cert, child, "kong_clustering"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "is not the cluster certificate" in (error.details() or "")
    record = await cp_log.refusal("is not the cluster certificate")
    assert record.levelno == logging.WARNING
    assert "127.0.0.1" in record.getMessage()  # the CP log names the peer


async def test_pki_mode_refuses_dp_name_not_allowed(pki: Pki, cp_log: LogWatch) -> None:
    rogue = pki.client("dp-rogue")
    async with control_plane(pki_tls(pki, pki.cp, allowed=("dp-1", "dp-2"))) as address:
        error = await refused(tls.secure_channel(address, pki_tls(pki, rogue)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "dp-rogue" in (error.details() or "")
    record = await cp_log.refusal("data plane name not allowed")
    assert "dp-rogue" in record.getMessage() and "127.0.0.1" in record.getMessage()


async def test_peer_check_refuses_calls_without_tls_on_a_misconfigured_port(
    shared_pair: Pair, cp_log: LogWatch
) -> None:
    async with control_plane(shared_tls(shared_pair), insecure=True) as address:
        error = await refused(grpc.aio.insecure_channel(address))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    await cp_log.refusal("no client certificate")


# --------------------------------------------------------------------------------------------
# The data plane's side
# --------------------------------------------------------------------------------------------


async def test_dp_refuses_a_cp_it_does_not_trust(
    shared_pair: Pair, other_shared_pair: Pair
) -> None:
    # A DP holding another cluster's certificate rejects this CP's certificate itself; the CP
    # sees only a dropped handshake. The DP's error says why.
    async with control_plane(shared_tls(shared_pair)) as address:
        error = await refused(tls.secure_channel(address, shared_tls(other_shared_pair)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in (error.details() or "")


async def test_pki_dp_checks_the_cp_server_name(pki: Pki) -> None:
    dp = pki.client("dp-1")
    wrong_name = tls.ClusterTLS.from_files(
        "pki", dp.cert, dp.key, ca=pki.ca.cert, server_name="elsewhere.test"
    )
    async with control_plane(pki_tls(pki, pki.cp)) as address:
        error = await refused(tls.secure_channel(address, wrong_name))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------------------------
# Configuration errors and the pieces on their own
# --------------------------------------------------------------------------------------------


def test_cluster_tls_rejects_mismatched_key(shared_pair: Pair, other_shared_pair: Pair) -> None:
    with pytest.raises(certs.CertError, match="does not belong"):
        tls.ClusterTLS.from_files("shared", shared_pair.cert, other_shared_pair.key)


def test_cluster_tls_rejects_expired_own_cert(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    certs.gen_cluster_cert(tmp_path / "c.crt", tmp_path / "c.key", days=1, not_before=past)
    with pytest.raises(certs.CertError, match="expired"):
        tls.ClusterTLS.from_files("shared", tmp_path / "c.crt", tmp_path / "c.key")


def test_cluster_tls_pki_needs_ca_and_mode_must_be_known(shared_pair: Pair) -> None:
    with pytest.raises(certs.CertError, match="needs the cluster CA"):
        tls.ClusterTLS.from_files("pki", shared_pair.cert, shared_pair.key)
    with pytest.raises(certs.CertError, match="must be one of"):
        tls.ClusterTLS.from_files("tls", shared_pair.cert, shared_pair.key)  # type: ignore[arg-type]


def test_cluster_tls_missing_file_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(certs.CertError, match="cannot read cluster certificate"):
        tls.ClusterTLS.from_files("shared", tmp_path / "nope.crt", tmp_path / "nope.key")


class FakeContext:
    """Only what check_peer reads: gRPC's auth context."""

    def __init__(self, pem: bytes | None) -> None:
        self._auth = {"x509_pem_cert": [pem]} if pem else {}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def test_check_peer_reasons(shared_pair: Pair, other_shared_pair: Pair, pki: Pki) -> None:
    own = shared_pair.cert.read_bytes()
    digest = certs.cert_digest(own)
    assert tls.check_peer(FakeContext(own), "shared", cluster_cert_sha256=digest) is None
    other = other_shared_pair.cert.read_bytes()
    reason = tls.check_peer(FakeContext(other), "shared", cluster_cert_sha256=digest)
    assert reason is not None and "not the cluster certificate" in reason
    reason = tls.check_peer(FakeContext(None), "shared", cluster_cert_sha256=digest)
    assert reason is not None and "no client certificate" in reason

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2000)
    reason = tls.check_peer(FakeContext(own), "shared", cluster_cert_sha256=digest, now=later)
    assert reason is not None and "expired" in reason

    dp = pki.client("dp-7", dns_names=["dp-7", "edge-7.example"]).cert.read_bytes()
    assert tls.check_peer(FakeContext(dp), "pki", allowed_names={"edge-7.example"}) is None
    reason = tls.check_peer(FakeContext(dp), "pki", allowed_names={"dp-1"})
    assert reason is not None and "dp-7" in reason and "edge-7.example" in reason


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ("SSL_ERROR_SSL: error:100000c0:SSL routines:OPENSSL_internal:"
         "PEER_DID_NOT_RETURN_A_CERTIFICATE: x", "the client presented no certificate"),
        ("CERTIFICATE_VERIFY_FAILED: certificate has expired",
         "the client certificate has expired"),
        ("CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate",
         "the client certificate is not trusted"),
        ("error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
         "the client did not speak TLS (plaintext connection?)"),
        ("something new", "TLS handshake failed"),
    ],
)  # fmt: skip
def test_explain_handshake_failure(detail: str, reason: str) -> None:
    assert tls.explain_handshake_failure(detail) == reason
