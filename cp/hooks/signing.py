"""Signatures receivers can check: Kong's `x-kong-signature` and Standard Webhooks headers.

Both are computed over the exact body bytes sent, never over a re-serialisation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

SECRET_PREFIX = "whsec_"


def kong_signature(secret: str, body: bytes) -> str:
    """`sha1=<lowercase hex HMAC-SHA1(secret, body)>`, as Kong sends it."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _standard_key(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_<base64>`; any other secret is used as its bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def standard_headers(delivery_id: str, body: bytes, secret: str | None,
                     now: float | None = None) -> dict[str, str]:
    """`webhook-id` (stable across retries), `webhook-timestamp` and, with a secret,
    `webhook-signature: v1,<base64 HMAC-SHA256(id.timestamp.body)>`."""
    stamp = str(int(time.time() if now is None else now))
    headers = {"webhook-id": delivery_id, "webhook-timestamp": stamp}
    if secret:
        signed = f"{delivery_id}.{stamp}.".encode() + body
        digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
        headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
    return headers
