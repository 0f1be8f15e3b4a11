"""The response headers a verdict gives the client, as Kong sends them.

Per window: `X-RateLimit-Limit-<w>` and `X-RateLimit-Remaining-<w>` (<w> = second, minute, hour,
day, month, year for those sizes, else the number of seconds). Once: `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset` of the window with the least remaining (on a tie, the
larger window). A denied request also gets `Retry-After`: the reset plus a random jitter of up to
`retry_after_jitter_max` seconds, so clients told to come back do not all come back at once.
"""

from __future__ import annotations

import math
import random

from dp.plugins.pdk import header_key, header_line
from dp.ratelimit.limiter import Verdict, Window, WindowState
from dp.ratelimit.windows import reset_after


def _left(state: WindowState) -> int:
    return max(int(state.window.limit - state.value), 0)  # floor, for what is not negative


def _tightest(verdict: Verdict) -> WindowState:
    best = verdict.states[0]
    best_left = _left(best)
    for state in verdict.states[1:]:
        left = _left(state)
        if left < best_left or (left == best_left and state.window.size > best.window.size):
            best, best_left = state, left
    return best


def client_headers(verdict: Verdict, now: float, window_type: str) -> dict[str, str]:
    """Every rate-limit header of this verdict (Retry-After aside). Header names and limits
    are the window's, made once per config; only the counts are formatted here."""
    states = verdict.states
    if len(states) == 1:  # the usual case, on every request: one window, one dict display
        tight = states[0]
        w = tight.window
        left = str(max(int(w.limit - tight.value), 0))  # _left, inlined
        return {w.limit_header: w.limit_text, w.remaining_header: left,
                "RateLimit-Limit": w.limit_text, "RateLimit-Remaining": left,
                "RateLimit-Reset": str(reset_after(now, w.size, window_type, tight.value,
                                                   w.limit))}
    out = {}
    for state in states:
        out[state.window.limit_header] = state.window.limit_text
        out[state.window.remaining_header] = str(_left(state))
    tight = _tightest(verdict)
    w = tight.window
    out["RateLimit-Limit"] = w.limit_text
    out["RateLimit-Remaining"] = str(_left(tight))
    out["RateLimit-Reset"] = str(reset_after(now, w.size, window_type, tight.value, w.limit))
    return out


class OneWindowHeaders:
    """`client_headers` of an allowed request under a one-window config (the usual one),
    rendered for the PDK's `take_header_lines`: the limit lines once per config, the reset line
    once per second, only the two remaining lines per request. (An allowed request's reset
    depends on the clock alone, and for a window of whole seconds only on the second.)

    `allowed` runs on every such request, so it makes no call to a class (`int()`, `str()`:
    each costs a few times a plain function call on Python 3.11) and reads no nested
    attribute."""

    __slots__ = ("_lines", "_reset_key", "_since", "_until", "limit", "ratelimit_remaining_key",
                 "remaining_key", "remaining_name", "whole", "window", "window_type")

    def __init__(self, window: Window, window_type: str) -> None:
        self.window, self.window_type, self.limit = window, window_type, window.limit
        keys = [header_key(name) for name in (window.limit_header, window.remaining_header,
                                              "RateLimit-Limit", "RateLimit-Remaining",
                                              "RateLimit-Reset")]
        self.remaining_key, self.ratelimit_remaining_key = keys[1], keys[3]
        self.remaining_name = f"{window.remaining_header}: ".encode("latin-1")
        self._reset_key = keys[4]
        # A request's lines in `client_headers`' order, the limits filled in: each request
        # copies it and fills in its remaining lines (the reset line is renewed each second).
        self._lines = dict.fromkeys(keys, b"")
        self._lines[keys[0]] = header_line(window.limit_header, window.limit_text)
        self._lines[keys[2]] = header_line("RateLimit-Limit", window.limit_text)
        self.whole = float(window.size).is_integer()
        self._since = self._until = -math.inf  # the reset line holds for since <= now < until

    def allowed(self, value: float, now: float) -> dict[bytes, bytes]:
        """The lines for a request whose rate `value` is within the limit, in
        `client_headers`' order: a new dict each time, for the request to keep."""
        left = self.limit - value  # _left, inlined
        text = b"%d\r\n" % left if left > 0.0 else b"0\r\n"  # %d: floor, when positive
        if not self._since <= now < self._until:
            self._renew_reset(value, now)
        lines = self._lines.copy()
        lines[self.remaining_key] = self.remaining_name + text
        lines[self.ratelimit_remaining_key] = b"RateLimit-Remaining: " + text
        return lines

    def _renew_reset(self, value: float, now: float) -> None:
        w = self.window
        self._lines[self._reset_key] = header_line("RateLimit-Reset", reset_after(
            now, w.size, self.window_type, value, w.limit))
        if self.whole:  # the same reset for the rest of this second
            self._since = now // 1  # a float: float comparisons are the cheap ones
            self._until = self._since + 1
        else:
            self._since = self._until = now  # renewed on every request


def retry_after(reset: int, jitter_max: float, rng: random.Random | None = None) -> int:
    """Seconds for Retry-After: the reset, plus up to `jitter_max` seconds of jitter."""
    if jitter_max <= 0:
        return reset
    return reset + math.ceil((rng or random).uniform(0, jitter_max))
