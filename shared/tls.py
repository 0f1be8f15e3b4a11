"""mTLS for the cluster link: gRPC credentials, the peer check, and logging of refusals.

Two modes, as in Kong (``cluster_mtls``):

``shared``
    Control plane and data planes hold the same self-signed certificate and key. The control plane
    trusts exactly that certificate as root and requires a client certificate, then checks in
    Python that the peer's certificate *is* its own (equal SHA-256 digest). The root alone is not
    enough when a user brings a shared certificate that is marked as a CA (``openssl req -x509``
    does that by default): then certificates *signed* by it would pass the TLS layer.
``pki``
    A private CA signs the control plane's server certificate and the data planes' client
    certificates. Both sides trust the CA; the data plane checks the control plane's certificate
    against the configured server name; the control plane may restrict which data plane names
    (certificate CN or DNS SAN) it accepts.

Where a refused data plane is logged, and by whom (logger ``tidegate.cluster``)
--------------------------------------------------------------------------------
gRPC Python offers no hook into the TLS handshake: with ``require_client_auth=True`` gRPC core
(BoringSSL) verifies the client certificate itself and drops a connection that fails, before any
Python code runs. The cases split like this:

* **Refused by gRPC core, during the handshake** — no client certificate, a certificate that is
  not the cluster certificate / not signed by the cluster CA, an expired (or not yet valid)
  certificate, a plaintext (non-TLS) client. gRPC core reports each of these as one INFO line on
  the process's stderr (``... Handshake failed with error ...: <OpenSSL reason>``), without the
  peer's address. :class:`HandshakeFailureLog` tees file descriptor 2, recognises those lines and
  re-emits each as a WARNING on ``tidegate.cluster`` with a plain-language reason, so they land in
  the control plane's log next to everything else. Limits: the peer address is unknown (gRPC core
  does not print it outside its very verbose ``GRPC_TRACE=handshaker`` tracing); nothing is
  reported when gRPC core logging is turned down (``GRPC_VERBOSITY=ERROR``); and a failed
  *outgoing* TLS handshake of a gRPC client in the same process would be reported the same way
  (the control plane makes no outgoing gRPC connections). The line format is gRPC's, not an API:
  an unrecognised reason is still logged, as "TLS handshake failed" with gRPC's raw text.
* **Refused by the data plane** — when the data plane does not trust the control plane's
  certificate (another cluster's certificate, wrong CA, wrong server name), the data plane aborts
  the handshake; gRPC core on the control plane logs nothing, so neither do we. The data plane's
  RPC fails with UNAVAILABLE and a detail such as ``CERTIFICATE_VERIFY_FAILED``, which the data
  plane must log.
* **Refused by us, after the handshake** — in shared mode a peer certificate that passed TLS but is
  not byte-identical to the cluster certificate; in pki mode a data plane whose name is not in
  ``allowed_names``; in both, a call with no client certificate at all (which can only happen on a
  misconfigured server) or an expired one. :func:`check_peer` finds the reason and
  :class:`PeerCheckInterceptor` logs it with the peer address and ends the call with
  ``PERMISSION_DENIED``, for every method of the server, so no handler can forget the check.

The data plane side does not verify the control plane's certificate digest in shared mode: the
gRPC Python client exposes no peer certificate. It trusts only the cluster certificate as root,
which for a non-CA certificate (what ``tidegate certs gen`` writes) means exactly that certificate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.certs import CLUSTER_CN, CertError, cert_digest, cert_info, cert_info_from_pem

LOG = logging.getLogger("tidegate.cluster")

Mode = Literal["shared", "pki"]
MODES: tuple[Mode, ...] = ("shared", "pki")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterTLS:
    """The certificate material of one side of the cluster link, validated once at start-up.

    ``cert_pem``/``key_pem`` are this node's own pair (in shared mode: the cluster pair).
    ``ca_pem`` is the CA in pki mode. ``server_name`` is the name a data plane expects in the
    control plane's certificate in pki mode (Kong's ``cluster_server_name``); in shared mode it is
    the cluster certificate's CN. ``allowed_names`` optionally restricts data planes in pki mode.
    """

    mode: Mode
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None = None
    server_name: str = CLUSTER_CN
    allowed_names: frozenset[str] = frozenset()
    cert_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CertError(
                f"cluster mTLS mode must be one of {', '.join(MODES)}, got {self.mode!r}"
            )
        if self.mode == "pki" and not self.ca_pem:
            raise CertError("pki mode needs the cluster CA certificate")
        info = cert_info_from_pem(self.cert_pem)
        _check_key_matches(self.cert_pem, self.key_pem)
        if info.expired():
            raise CertError(f"the cluster certificate expired on {info.not_after:%Y-%m-%d}")
        if self.ca_pem:
            cert_info_from_pem(self.ca_pem)  # fail early on a CA file that is not a certificate
        object.__setattr__(self, "allowed_names", frozenset(n.lower() for n in self.allowed_names))
        object.__setattr__(self, "cert_sha256", cert_digest(self.cert_pem))
        if self.mode == "shared":
            object.__setattr__(self, "server_name", info.subject_cn or CLUSTER_CN)

    @classmethod
    def from_files(
        cls,
        mode: Mode,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        ca: str | os.PathLike[str] | None = None,
        server_name: str = CLUSTER_CN,
        allowed_names: Iterable[str] = (),
    ) -> ClusterTLS:
        """Read the PEM files named in the configuration."""
        return cls(
            mode=mode,
            cert_pem=_read(cert, "cluster certificate"),
            key_pem=_read(key, "cluster certificate key"),
            ca_pem=_read(ca, "cluster CA certificate") if ca else None,
            server_name=server_name,
            allowed_names=frozenset(allowed_names),
        )

    @property
    def root_pem(self) -> bytes:
        """What each side trusts: the cluster certificate itself (shared) or the CA (pki)."""
        return self.cert_pem if self.mode == "shared" else (self.ca_pem or b"")


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def server_credentials(tls: ClusterTLS) -> grpc.ServerCredentials:
    """Credentials for the control plane's cluster port: TLS with a required client certificate."""
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)],
        root_certificates=tls.root_pem,
        require_client_auth=True,
    )


def channel_credentials(tls: ClusterTLS) -> grpc.ChannelCredentials:
    """Credentials for a data plane: present our certificate, trust only the cluster root."""
    return grpc.ssl_channel_credentials(
        root_certificates=tls.root_pem,
        private_key=tls.key_pem,
        certificate_chain=tls.cert_pem,
    )


def channel_options(tls: ClusterTLS) -> list[tuple[str, Any]]:
    """Channel options so the data plane checks the control plane's certificate by name.

    The data plane dials an address (``cp.internal:8005``, an IP, ...) but expects the name in the
    certificate: ``kong_clustering`` (the shared certificate's CN) or the configured server name.
    """
    return [("grpc.ssl_target_name_override", tls.server_name)]


def secure_channel(target: str, tls: ClusterTLS, options: Iterable[tuple[str, Any]] = ()) -> Any:
    """A ``grpc.aio`` channel to the control plane at ``target``; call inside the running loop."""
    return grpc.aio.secure_channel(
        target, channel_credentials(tls), options=[*channel_options(tls), *options]
    )


# --------------------------------------------------------------------------------------------
# The peer check (after the handshake)
# --------------------------------------------------------------------------------------------


def check_peer(
    context: grpc.ServicerContext | grpc.aio.ServicerContext,
    mode: Mode,
    *,
    cluster_cert_sha256: str | None = None,
    allowed_names: Collection[str] = (),
    now: dt.datetime | None = None,
) -> str | None:
    """Why this call's peer must be refused, or ``None`` when it is an acceptable data plane.

    Shared mode needs ``cluster_cert_sha256`` (the control plane's own certificate digest); the
    peer's certificate must have exactly that digest. Pki mode accepts any certificate the TLS
    layer verified against the CA, restricted to ``allowed_names`` (lower-case CN or DNS SAN)
    when that is non-empty.
    """
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return "no client certificate (the connection is not mutual TLS)"
    try:
        info = cert_info_from_pem(pems[0])
    except CertError as exc:
        return f"unreadable client certificate: {exc}"
    if info.expired(now):
        return (
            f"client certificate expired or not yet valid (valid until {info.not_after:%Y-%m-%d})"
        )
    if mode == "shared":
        if not cluster_cert_sha256:
            raise ValueError("shared mode needs the cluster certificate digest")
        if info.sha256 != cluster_cert_sha256:
            return (
                f"client certificate (CN={info.subject_cn}, sha256 {info.sha256[:16]}...) is not "
                "the cluster certificate"
            )
        return None
    if mode == "pki":
        names = {n.lower() for n in (info.subject_cn, *info.sans) if n}
        if allowed_names and not names & set(allowed_names):
            shown = ", ".join(sorted(names)) or "none"
            return f"data plane name not allowed (certificate names: {shown})"
        return None
    raise ValueError(f"unknown cluster mTLS mode {mode!r}")


def peer_names(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> list[str]:
    """Names in the peer certificate as gRPC reports them (CN first), for logs and the registry."""
    auth = context.auth_context()
    raw = [*auth.get("x509_common_name", []), *auth.get("x509_subject_alternative_name", [])]
    return list(dict.fromkeys(v.decode(errors="replace") for v in raw))


class PeerCheckInterceptor(grpc.aio.ServerInterceptor):
    """Runs :func:`check_peer` before every call on the server; logs and refuses failures.

    Installing the check as an interceptor (``grpc.aio.server(interceptors=[...])``) rather than
    in each handler means a method added later cannot skip it.
    """

    def __init__(self, tls: ClusterTLS, logger: logging.Logger = LOG) -> None:
        self._tls = tls
        self._log = logger

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _guard_handler(handler, self._refuse)

    async def _refuse(self, context: grpc.aio.ServicerContext) -> None:
        """Abort the call (raises) when the peer is refused; return quietly otherwise."""
        reason = check_peer(
            context,
            self._tls.mode,
            cluster_cert_sha256=self._tls.cert_sha256,
            allowed_names=self._tls.allowed_names,
        )
        if reason is None:
            return
        self._log.warning(
            "refused data plane %s: %s",
            context.peer(),
            reason,
            extra={"refusal_reason": reason, "peer": context.peer()},
        )
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED, f"refused by control plane: {reason}"
        )


def _guard_handler(
    handler: grpc.RpcMethodHandler, guard: Callable[[Any], Any]
) -> grpc.RpcMethodHandler:
    """The same handler, with ``await guard(context)`` run before its behaviour."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attr, make in kinds:
        behaviour = getattr(handler, attr)
        if behaviour is not None:
            return make(
                _guarded(behaviour, guard),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _guarded(behaviour: Callable[..., Any], guard: Callable[[Any], Any]) -> Callable[..., Any]:
    """Wrap a handler behaviour, keeping its shape (async generator or coroutine)."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await guard(context)
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await guard(context)
        result = behaviour(request, context)
        return await result if inspect.isawaitable(result) else result

    return call


# --------------------------------------------------------------------------------------------
# Handshake refusals reported by gRPC core
# --------------------------------------------------------------------------------------------

# gRPC core (ssl_transport_security.cc) writes, at INFO level, e.g.:
#   I1122 11:10:03.689229 4173 ssl_transport_security.cc:2563] Handshake failed with error
#   SSL_ERROR_SSL: error:100000c0:SSL routines:OPENSSL_internal:PEER_DID_NOT_RETURN_A_CERTIFICATE
# (one line; the detail after "with error" is OpenSSL's reason, matched in _HANDSHAKE_REASONS).
_CORE_HANDSHAKE_FAILURE = re.compile(rb"\] Handshake failed with error (?P<detail>.*)")

# (substring of gRPC/OpenSSL's detail, what it means for an operator), first match wins.
_HANDSHAKE_REASONS: tuple[tuple[str, str], ...] = (
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "the client presented no certificate"),
    ("certificate has expired", "the client certificate has expired"),
    ("certificate is not yet valid", "the client certificate is not yet valid"),
    ("unable to get local issuer certificate", "the client certificate is not trusted"),
    ("self-signed certificate", "the client certificate is not trusted"),
    ("self signed certificate", "the client certificate is not trusted"),
    ("certificate signature failure", "the client certificate is not trusted"),
    ("unsupported certificate purpose", "the client certificate is not for client use"),
    ("WRONG_VERSION_NUMBER", "the client did not speak TLS (plaintext connection?)"),
    ("HTTP_REQUEST", "the client did not speak TLS (plaintext HTTP request)"),
    ("PACKET_LENGTH_TOO_LONG", "the client did not speak TLS"),
    ("NO_SHARED_CIPHER", "no TLS cipher in common with the client"),
    ("UNSUPPORTED_PROTOCOL", "the client's TLS version is not supported"),
)


def explain_handshake_failure(detail: str) -> str:
    """A plain-language reason for gRPC core's handshake failure ``detail``."""
    for needle, reason in _HANDSHAKE_REASONS:
        if needle in detail:
            return reason
    return "TLS handshake failed"


class HandshakeFailureLog:
    """Re-emit gRPC core's TLS handshake failures as ``tidegate.cluster`` log records.

    gRPC core writes to file descriptor 2 directly, not through Python's ``logging``. While
    started, this tees fd 2 through a pipe: every byte is passed on unchanged to the original
    stderr, and each handshake-failure line also becomes a WARNING record ("refused a cluster
    connection during the TLS handshake: <reason>") with ``refusal_reason`` and ``tls_error``
    attributes. Start it once in the control plane process, after logging is configured. Use it as
    a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, logger: logging.Logger = LOG) -> None:
        self._log = logger
        self._saved_fd: int | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> HandshakeFailureLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Put the tee in place; idempotent."""
        if self._threads:
            return
        _flush_python_stderr()
        read_fd, write_fd = os.pipe()
        self._saved_fd = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        # Two threads: the pump only copies bytes, so it never blocks on fd 2 itself; records are
        # emitted by the second thread, whose handlers may well write to stderr, i.e. to the pump.
        failures: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(
                target=self._pump,
                args=(read_fd, self._saved_fd, failures),
                daemon=True,
                name="grpc-core-log-pump",
            ),
            threading.Thread(
                target=self._emit, args=(failures,), daemon=True, name="grpc-core-log-emit"
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Give fd 2 back to the original stderr and wait for the tee to drain."""
        if not self._threads or self._saved_fd is None:
            return
        _flush_python_stderr()
        os.dup2(self._saved_fd, 2)  # closes our pipe's last write end: the pump sees EOF
        for thread in self._threads:
            thread.join(timeout)
        if not any(t.is_alive() for t in self._threads):  # a child may still hold the pipe open
            os.close(self._saved_fd)
        self._threads = []
        self._saved_fd = None

    @staticmethod
    def _pump(read_fd: int, out_fd: int, failures: queue.SimpleQueue[bytes | None]) -> None:
        pending = b""
        try:
            while chunk := os.read(read_fd, 65536):
                _write_all(out_fd, chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if match := _CORE_HANDSHAKE_FAILURE.search(line):
                        failures.put(match["detail"])
                pending = pending[-65536:]  # a runaway line without newline cannot grow forever
        finally:
            failures.put(None)
            os.close(read_fd)

    def _emit(self, failures: queue.SimpleQueue[bytes | None]) -> None:
        while (raw := failures.get()) is not None:
            detail = raw.decode(errors="replace").strip()
            reason = explain_handshake_failure(detail)
            self._log.warning(
                "refused a cluster connection during the TLS handshake: %s [gRPC: %s]",
                reason,
                detail,
                extra={"refusal_reason": reason, "tls_error": detail},
            )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertError(f"cannot read {what} {os.fspath(path)!r}: {exc.strerror}") from exc


def _check_key_matches(cert_pem: bytes, key_pem: bytes) -> None:
    """Fail with a clear message instead of gRPC's obscure one when key and cert do not match."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(f"the cluster key is not an unencrypted PEM private key: {exc}") from exc
    cert = x509.load_pem_x509_certificate(cert_pem)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != cert.public_key().public_bytes(der, public):
        info = cert_info(cert)
        raise CertError(f"the cluster key does not belong to the certificate CN={info.subject_cn}")


def _flush_python_stderr() -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return  # the original stderr is gone; keep draining so writers never block
        view = view[written:]
