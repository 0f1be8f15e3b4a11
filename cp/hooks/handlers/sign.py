"""Headers every HTTP delivery carries: the stable delivery id and the signatures."""

from __future__ import annotations

from multidict import CIMultiDict

from cp.hooks.config import HooksConfig
from cp.hooks.signing import kong_signature, standard_headers


def add_signatures(headers: CIMultiDict[str], body: bytes, secret: str | None,
                   delivery_id: str, config: HooksConfig) -> None:
    """`webhook-id` always (receivers dedupe on it), `x-kong-signature` with a secret, and the
    Standard Webhooks timestamp/signature when enabled."""
    if secret:
        headers["x-kong-signature"] = kong_signature(secret, body)
    if config.standard_webhooks:
        headers.update(standard_headers(delivery_id, body, secret))
    else:
        headers["webhook-id"] = delivery_id
