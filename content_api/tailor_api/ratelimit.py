"""Rate limits of the public routes, per client address and per user, shared by every replica.

Fixed windows counted in Redis (docs/content-api.md#rate-limits): per request one pipelined round trip of
INCR and EXPIRE on the window's key for each scope, on the hot path's multiplexed connection (so
concurrent requests share its writes). Keys carry the stack's prefix and the window's number and live
one window, so what the limiter keeps in Redis is bounded by the requests of one window, whatever
the clients send. A client address is the peer's, or, only when the peer is a trusted proxy (the
ruleset's `trustedProxies`), the first hop of X-Forwarded-For from the right outside those ranges: a
client cannot choose its own address by sending the header. IPv6 clients are counted by their /64,
which one subscriber usually holds whole.

If Redis does not answer, requests pass (fail open): the routes limited here need Redis themselves
and answer 503 then, and a limiter that refused every request while Redis blinks would turn a short
outage into a longer one for every shopper.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from prometheus_client import Counter

from tailor.core import logthrottle
from tailor.core.rules import ruleset
from tailor_api import resp, web

log = logging.getLogger(__name__)
log.addFilter(logthrottle.RepeatThrottle())

rate_limited = Counter(
    "tailor_api_rate_limited_total",
    "Requests answered 429 because a rate limit (scope: client or user) was used up",
    ["route", "scope"],
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=64)
def _rate_limited_counter(route: str, scope: str) -> Counter:
    return rate_limited.labels(route, scope)


@dataclass(frozen=True, slots=True)
class Window:
    scope: str  # "client" or "user": the metric's label and part of the key
    requests: int
    seconds: int


class Limiter:
    """The limits of the ruleset being served (`configure` on every swap); none before the first."""

    def __init__(self, stack: str) -> None:
        self.key_prefix = f"tailor:{stack}:rl:"
        self.per_client: Window | None = None
        self.per_user: Window | None = None
        self.trusted: tuple[Network, ...] = ()

    def configure(self, limits: ruleset.RateLimits) -> None:
        client, user = limits.per_client, limits.per_user
        self.per_client = Window("client", client.requests, client.seconds) if client.requests else None
        self.per_user = Window("user", user.requests, user.seconds) if user.requests else None
        self.trusted = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in limits.trusted_proxies)

    @property
    def active(self) -> bool:
        return self.per_client is not None or self.per_user is not None

    # --- who is asking ---------------------------------------------------------------------------

    def client_address(self, scope: web.Scope) -> str:
        """The address counted for this request (see the module's docstring)."""
        peer = scope.get("client")
        host = peer[0] if peer else ""
        address = _parse(host)
        if address is None:
            return host[:64] or "unknown"  # a Unix socket or a test client: counted by what it is
        if self.trusted and self._is_trusted(address):
            forwarded = web.header(scope, b"x-forwarded-for")
            if forwarded:
                address = self._first_untrusted(forwarded, address)
        return _bucket(address)

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted)

    def _first_untrusted(self, forwarded: bytes, peer: Address) -> Address:
        """From the right: each hop was added by the proxy before it, so only the hops our trusted
        proxies appended are believed; the first outside them is the client. A hop that is not an
        address ends the walk at the last address believed."""
        nearest = peer
        for part in reversed(forwarded.decode("latin-1").split(",")[-32:]):
            hop = _parse(part.strip())
            if hop is None:
                return nearest
            if not self._is_trusted(hop):
                return hop
            nearest = hop
        return nearest

    # --- counting --------------------------------------------------------------------------------

    async def check(
        self, connection: resp.Pipelined, route: str, client: str | None, user: str | None
    ) -> web.Reply | None:
        """None to go on, else the 429 to answer. One round trip for both scopes."""
        now = time.time()
        counted: list[tuple[Window, float]] = []
        commands: list[resp.Command] = []
        for window, who in ((self.per_client, client), (self.per_user, user)):
            if window is None or who is None:
                continue
            number = int(now // window.seconds)
            key = f"{self.key_prefix}{window.scope[0]}:{who}:{number}"
            commands += [("INCR", key), ("EXPIRE", key, window.seconds + 1)]
            counted.append((window, (number + 1) * window.seconds))
        if not commands:
            return None
        try:
            replies = await connection.execute(commands)
        except resp.RedisUnavailable as error:
            log.warning("rate limits not checked (requests pass): Redis did not answer: %s", error)
            return None
        return self._verdict(route, counted, replies[0::2], now)

    def _verdict(
        self, route: str, counted: Sequence[tuple[Window, float]], counts: Sequence[object], now: float
    ) -> web.Reply | None:
        for (window, ends_at), count in zip(counted, counts, strict=True):
            if isinstance(count, resp.ReplyError):
                log.warning("rate limits not checked (requests pass): Redis refused: %s", count)
                continue
            if isinstance(count, int) and count > window.requests:
                _rate_limited_counter(route, window.scope).inc()
                return too_many(window, max(1, math.ceil(ends_at - now)))
        return None


def too_many(window: Window, retry_after: int) -> web.Reply:
    who = "this client address" if window.scope == "client" else "this user"
    detail = (
        f"{who} made more than {window.requests} requests in {window.seconds}s; "
        f"retry after {retry_after}s (Retry-After)"
    )
    reply = web.problem(429, "rate-limited", "Too many requests", detail, scope=window.scope)
    reply.headers.append((b"retry-after", b"%d" % retry_after))
    return reply


def _parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bucket(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address) + "/64"
    return str(address)
