"""The key a consistent-hashing upstream hashes a request on (`hash_on`, then `hash_fallback`).

`none` gives no key (the balancer falls back to round-robin). A missing input (no header, no
consumer...) moves on to the fallback; a missing `hash_on_cookie` cookie is generated instead, as
in Kong: the request hashes on the new value and the response sets the cookie, so the client's
next requests stick to the same target.
"""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs


def _one(upstream: dict[str, Any], which: str, req: Any, client_ip: str,
         consumer_id: str | None, captures: dict[str, str] | None) -> str | None:
    mode = upstream.get(which) or "none"
    if mode == "none":
        return None
    if mode == "ip":
        return client_ip
    if mode == "consumer":
        return consumer_id
    if mode == "path":
        return str(req.path)
    if mode == "header":
        name = upstream.get(f"{which}_header") or ""
        return req.hmap.get(name.lower())  # type: ignore[no-any-return]
    if mode == "cookie":
        raw = req.hmap.get("cookie")
        if not raw:
            return None
        morsel = SimpleCookie(raw).get(upstream.get("hash_on_cookie") or "")
        return morsel.value if morsel else None
    if mode == "query_arg":
        values = parse_qs(req.query).get(upstream.get(f"{which}_query_arg") or "")
        return ",".join(values) if values else None
    if mode == "uri_capture":
        return (captures or {}).get(upstream.get(f"{which}_uri_capture") or "")
    return None


def hash_key(upstream: dict[str, Any], req: Any, client_ip: str, consumer_id: str | None,
             captures: dict[str, str] | None) -> tuple[str | None, str | None]:
    """(the key to hash on, a Set-Cookie value to add to the response or None)."""
    key = _one(upstream, "hash_on", req, client_ip, consumer_id, captures)
    if key is None and upstream.get("hash_on") == "cookie":
        key = uuid.uuid4().hex
        path = upstream.get("hash_on_cookie_path") or "/"
        return key, f"{upstream.get('hash_on_cookie')}={key}; Path={path}"
    if key is None:
        key = _one(upstream, "hash_fallback", req, client_ip, consumer_id, captures)
    return key, None
