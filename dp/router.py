"""The router: which route (and service) a request belongs to, with Kong's priority rules.

Pure logic, no I/O. A `Router` is built once per config snapshot and never changes, so request
handling reads it without locks while the next one is being built.

Every route is expanded into one *candidate* per path (or a single path-less one), each with a
precomputed priority key. Kong's order, most important first:

1. more matching fields (hosts, headers, methods, paths, snis); with as many, hosts before
   headers before paths before methods before snis;
2. a plain host over a wildcard host;
3. more headers;
4. regex paths over prefixes, regex paths by `regex_priority`;
5. the longest prefix; then the oldest route.

Matching does not scan all routes: candidates are bucketed by host (exact hosts in a dict, leading
and trailing wildcards in dicts keyed by their fixed part, host-less ones apart), and inside a
bucket prefix paths live in a table keyed by the prefix itself, probed once per distinct prefix
length present in that bucket. Only regex paths of a reachable bucket are tried one by one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.schema.typedefs import compile_route_regex

FIELDS = ("hosts", "headers", "methods", "paths", "snis")
# With as many fields, which fields: hosts weigh most, then headers, paths, methods, snis.
_FIELD_BITS = {"hosts": 16, "headers": 8, "paths": 4, "methods": 2, "snis": 1}
_EMPTY: tuple = ()
_Placed = tuple[str, str, "_Candidate"]  # (index table, key in it, candidate)
# Changes up to this many routes update the previous router; more rebuild it from scratch.
INCREMENTAL_LIMIT = 256


@dataclass(frozen=True, slots=True)
class Match:
    """A routed request. `protocol_error` is 426 (or a redirect status) when the route only
    accepts TLS and the request came in plain text; the proxy then answers it itself."""

    route: dict[str, Any]
    service: dict[str, Any] | None
    upstream_path: str  # path (with query string) to send upstream
    captures: dict[str, str] | None
    strip_path: bool
    preserve_host: bool
    protocol_error: int | None = None


class _Candidate:
    """One (route, path) pair with everything matching needs, precomputed."""

    __slots__ = ("headers", "key", "methods", "prefix", "protocols", "regex", "route",
                 "service", "snis")

    def __init__(self, route: dict[str, Any], service: dict[str, Any] | None,
                 path: str | None, key: tuple) -> None:
        self.route = route
        self.service = service
        self.protocols = frozenset(route.get("protocols") or ("http", "https"))
        self.methods = frozenset(route.get("methods") or _EMPTY) or None
        self.snis = frozenset(s.lower() for s in route.get("snis") or _EMPTY) or None
        headers = route.get("headers") or {}
        self.headers = tuple((name.lower(), frozenset(v.lower() for v in values))
                             for name, values in headers.items())
        self.regex = compile_route_regex(path[1:]) if path and path.startswith("~") else None
        self.prefix = path if path and self.regex is None else None
        self.key = key

    def accepts(self, method: str, headers: dict[str, str], sni: str | None,
                upgrade: bool) -> bool:
        """Everything but host and path (the index already checked those)."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.snis is not None and (sni is None or sni.lower() not in self.snis):
            return False
        for name, values in self.headers:
            value = headers.get(name)
            if value is None or value.lower() not in values:
                return False
        protocols = self.protocols
        if upgrade:
            return not protocols.isdisjoint(("ws", "wss", "http", "https"))
        return not protocols.isdisjoint(("http", "https"))


class _Bucket:
    """Candidates sharing one host rule: prefix table, regex list, path-less list."""

    __slots__ = ("lengths", "no_path", "prefixes", "regexes")

    def __init__(self) -> None:
        self.prefixes: dict[str, list[_Candidate]] = {}
        self.lengths: list[int] = []
        self.regexes: list[_Candidate] = []
        self.no_path: list[_Candidate] = []

    def add(self, cand: _Candidate) -> None:
        if cand.regex is not None:
            self.regexes.append(cand)
        elif cand.prefix is not None:
            self.prefixes.setdefault(cand.prefix, []).append(cand)
        else:
            self.no_path.append(cand)

    def copy_without(self, gone: list[_Candidate]) -> _Bucket:
        """A copy for the next router, without `gone`; the lists that will be mutated are new
        (the previous router is still serving from this one)."""
        out = _Bucket()
        gone_ids = {id(c) for c in gone}
        out.prefixes = dict(self.prefixes)
        for cand in gone:
            kept = [c for c in out.prefixes.get(cand.prefix or "", ()) if id(c) not in gone_ids]
            if kept:
                out.prefixes[cand.prefix or ""] = kept
            else:
                out.prefixes.pop(cand.prefix or "", None)
        out.regexes = [c for c in self.regexes if id(c) not in gone_ids]
        out.no_path = [c for c in self.no_path if id(c) not in gone_ids]
        return out

    def add_copied(self, cand: _Candidate) -> None:
        """`add` on a copied bucket: prefix lists shared with the previous router are replaced."""
        if cand.regex is None and cand.prefix is not None:
            self.prefixes[cand.prefix] = [*self.prefixes.get(cand.prefix, ()), cand]
        else:
            self.add(cand)

    def freeze(self) -> None:
        self.lengths = sorted({len(p) for p in self.prefixes}, reverse=True)
        self.regexes.sort(key=lambda c: c.key)
        for lst in self.prefixes.values():
            lst.sort(key=lambda c: c.key)
        self.no_path.sort(key=lambda c: c.key)

    def collect(self, path: str, out: list[tuple[_Candidate, re.Match[str] | None]]) -> None:
        n = len(path)
        prefixes = self.prefixes
        for length in self.lengths:
            if length <= n:
                hit = prefixes.get(path[:length])
                if hit is not None:
                    for cand in hit:
                        out.append((cand, None))
        for cand in self.regexes:
            m = cand.regex.match(path)  # type: ignore[union-attr]
            if m is not None:
                out.append((cand, m))
        for cand in self.no_path:
            out.append((cand, None))


def _priority(route: dict[str, Any], path: str | None, exact_host: bool) -> tuple:
    fields = sum(1 for f in FIELDS if route.get(f))
    mask = sum(bit for f, bit in _FIELD_BITS.items() if route.get(f))
    is_regex = bool(path and path.startswith("~"))
    return (
        -fields,
        -mask,
        0 if exact_host or not route.get("hosts") else 1,
        -len(route.get("headers") or {}),
        0 if is_regex else 1,
        -(route.get("regex_priority") or 0) if is_regex else 0,
        -len(path) if path and not is_regex else 0,
        route.get("created_at") or 0,
        route["id"],
    )


class Router:
    """Immutable index of the routes of one snapshot."""

    def __init__(self, routes: list[dict[str, Any]], services: dict[str, dict[str, Any]],
                 previous: Router | None = None):
        self.exact: dict[str, _Bucket] = {}
        self.leading: dict[str, _Bucket] = {}  # "*.example.com" keyed "example.com"
        self.trailing: dict[str, _Bucket] = {}  # "example.*" keyed "example"
        self.any_host = _Bucket()
        self.size = 0
        # Per route: the (route, service) objects it was built from and its placed candidates.
        # Entities a config change leaves alone keep their identity from one snapshot to the
        # next, so a rebuild after a one-route delta recompiles one route's regexes, not all.
        self.placed: dict[str, tuple[dict[str, Any], Any, list[_Placed]]] = {}
        reuse = previous.placed if previous is not None else {}
        fresh: list[str] = []
        for route in routes:
            service_ref = route.get("service")
            service = services.get(service_ref["id"]) if service_ref else None
            if service is not None and service.get("enabled") is False:
                continue  # a disabled service takes its routes out of the router, as in Kong
            before = reuse.get(route["id"])
            if before is not None and before[0] is route and before[1] is service:
                self.placed[route["id"]] = before
            else:
                placed = list(self._candidates(route, service))
                self.placed[route["id"]] = (route, service, placed)
                fresh.append(route["id"])
        gone = [rid for rid, before in reuse.items() if self.placed.get(rid) is not before]
        if previous is not None and len(fresh) + len(gone) <= INCREMENTAL_LIMIT:
            self._update(previous, fresh, gone)
        else:
            self._build()

    def _build(self) -> None:
        for _, _, placed in self.placed.values():
            for where, key, cand in placed:
                self._place(where, key, cand)
        for bucket in (*self.exact.values(), *self.leading.values(), *self.trailing.values(),
                       self.any_host):
            bucket.freeze()

    def _update(self, previous: Router, fresh: list[str], gone: list[str]) -> None:
        """Start from `previous` and rebuild only the buckets the changed routes touch."""
        self.exact, self.leading = dict(previous.exact), dict(previous.leading)
        self.trailing, self.any_host = dict(previous.trailing), previous.any_host
        self.size = previous.size
        removed: dict[tuple[str, str], list[_Candidate]] = {}
        for rid in gone:
            for where, key, cand in previous.placed[rid][2]:
                removed.setdefault((where, key), []).append(cand)
        copied: dict[tuple[str, str], _Bucket] = {}
        for (where, key), cands in removed.items():
            copied[(where, key)] = self._copy(where, key, cands)
            self.size -= len(cands)
        for rid in fresh:
            for where, key, cand in self.placed[rid][2]:
                bucket = copied.get((where, key)) or self._copy(where, key, [])
                copied[(where, key)] = bucket
                bucket.add_copied(cand)
                self.size += 1
        for bucket in copied.values():
            bucket.freeze()

    def _copy(self, where: str, key: str, gone: list[_Candidate]) -> _Bucket:
        """Replace the bucket at (where, key) in this router by a copy without `gone`."""
        if where == "any":
            self.any_host = self.any_host.copy_without(gone)
            return self.any_host
        table = {"exact": self.exact, "leading": self.leading, "trailing": self.trailing}[where]
        old = table.get(key)
        table[key] = old.copy_without(gone) if old is not None else _Bucket()
        return table[key]

    @classmethod
    def from_config(cls, config: Any, previous: Router | None = None) -> Router:
        """Build from a `ConfigSet` (only HTTP-family routes take part), reusing what the
        `previous` router compiled for routes that did not change."""
        routes = [r for r in config.entities["routes"].values()
                  if set(r.get("protocols") or ("http",)) & {"http", "https", "ws", "wss"}]
        return cls(routes, config.entities["services"], previous)

    @staticmethod
    def _candidates(route: dict[str, Any], service: dict[str, Any] | None) -> Iterator[_Placed]:
        """One candidate per (path, host) of the route, with where it goes in the index."""
        hosts = [h.lower() for h in route.get("hosts") or _EMPTY]
        for path in route.get("paths") or [None]:
            if not hosts:
                yield "any", "", _Candidate(route, service, path, _priority(route, path, False))
                continue
            for host in hosts:
                exact = "*" not in host
                cand = _Candidate(route, service, path, _priority(route, path, exact))
                if exact:
                    yield "exact", host, cand
                elif host.startswith("*."):
                    yield "leading", host[2:], cand
                else:
                    yield "trailing", host[:-2], cand

    def _place(self, where: str, key: str, cand: _Candidate) -> None:
        self.size += 1
        if where == "any":
            self.any_host.add(cand)
            return
        table = {"exact": self.exact, "leading": self.leading, "trailing": self.trailing}[where]
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = _Bucket()
        bucket.add(cand)

    def _buckets(self, host: str) -> list[_Bucket]:
        found = []
        bucket = self.exact.get(host)
        if bucket is not None:
            found.append(bucket)
        bare, _, port = host.partition(":")
        if port:
            bucket = self.exact.get(bare)
            if bucket is not None:
                found.append(bucket)
        if self.leading:
            dot = bare.find(".")
            while dot >= 0:
                bucket = self.leading.get(bare[dot + 1:])
                if bucket is not None:
                    found.append(bucket)
                dot = bare.find(".", dot + 1)
        if self.trailing:
            dot = bare.rfind(".")
            while dot > 0:
                bucket = self.trailing.get(bare[:dot])
                if bucket is not None:
                    found.append(bucket)
                dot = bare.rfind(".", 0, dot)
        found.append(self.any_host)
        return found

    def match(self, method: str, host: str, path: str, headers: dict[str, str],
              sni: str | None = None, scheme: str = "http", upgrade: bool = False,
              query: str = "") -> Match | None:
        """The best route for a request, or None. `headers` are keyed by lower-case name;
        `path` has no query string (pass it as `query` to have it on `upstream_path`)."""
        found: list[tuple[_Candidate, re.Match[str] | None]] = []
        for bucket in self._buckets(host.lower()):
            bucket.collect(path, found)
        best: _Candidate | None = None
        best_m: re.Match[str] | None = None
        for cand, m in found:
            if (best is None or cand.key < best.key) and cand.accepts(method, headers, sni,
                                                                       upgrade):
                best, best_m = cand, m
        if best is None:
            return None
        return _to_match(best, best_m, path, query, scheme, upgrade)


def _to_match(cand: _Candidate, m: re.Match[str] | None, path: str, query: str,
              scheme: str, upgrade: bool) -> Match:
    route = cand.route
    strip = bool(route.get("strip_path", True))
    if not strip:
        rest = path
    elif m is not None:
        rest = path[m.end():]
    elif cand.prefix is not None:
        rest = path[len(cand.prefix):]
    else:
        rest = path
    service = cand.service
    base = service.get("path") if service else None
    upstream = join_path(base, rest, route.get("path_handling") or "v0")
    if query:
        upstream = f"{upstream}?{query}"
    captures = None
    if m is not None and (m.groups() or m.groupdict()):
        captures = {str(i + 1): g for i, g in enumerate(m.groups()) if g is not None}
        captures.update({k: v for k, v in m.groupdict().items() if v is not None})
    error = None
    wanted = ("wss" if scheme == "https" else "ws") if upgrade else scheme
    if wanted not in cand.protocols and not (upgrade and scheme in cand.protocols):
        # Only the TLS variant is allowed: answer 426 (or the configured redirect).
        error = int(route.get("https_redirect_status_code") or 426)
    return Match(route, service, upstream, captures, strip,
                 bool(route.get("preserve_host")), error)


def join_path(base: str | None, rest: str, handling: str = "v0") -> str:
    """The upstream path: the service's path followed by what is left of the request path.

    v0 puts a slash between them when neither side has one (`/s` + `a` → `/s/a`); v1
    concatenates (`/s` + `a` → `/sa`). Either way an empty remainder leaves the service path
    as is and a doubled slash at the seam is collapsed.
    """
    if not base or base == "/":
        if not rest:
            return "/"
        return rest if rest[0] == "/" else "/" + rest
    if not rest:
        return base
    if base[-1] == "/" and rest[0] == "/":
        return base + rest[1:]
    if handling == "v0" and base[-1] != "/" and rest[0] != "/":
        return base + "/" + rest
    return base + rest
