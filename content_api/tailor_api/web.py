"""The HTTP pieces every route of the content API shares: replies, problems, query, headers, body.

One stack serves every route (tailor_api.app routes, these build and send the replies): no framework
on the hot path, chosen by measurement (docs/content-api.md, "Server stack"). Problems follow RFC 9457
(formerly 7807): `application/problem+json` with `type`, `title`, `status`, `detail` and, for a bad
parameter, `parameter`. Every 503 carries the same Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from tailor.core import logthrottle
from tailor_api import validation

log = logging.getLogger(__name__)
log.addFilter(logthrottle.RepeatThrottle())  # an outage fails every request: one line per cause per 10 s

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON: Final = b"application/json"
PROBLEM_JSON: Final = b"application/problem+json"
PROBLEM_BASE: Final = "https://tailor.dev/problems/"
# A request body must arrive whole within this: events and feedback are a few KiB, sent at once.
BODY_SECONDS: Final = 10.0
# Every 503 (no ruleset yet, Redis or Kafka away) asks clients to wait this long before retrying;
# tailor.js waits at least this, plus jitter, and backs off further while the outage lasts.
RETRY_AFTER_SECONDS: Final = 2
REQUEST_ID_HEADER: Final = b"x-request-id"
# An X-Request-Id taken as given: what proxies and tracers send (UUIDs, hex, base64), nothing that
# could break a log line or a header; anything else is replaced by one of ours.
_SANE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,128}")


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: bytes = JSON
    headers: Headers = field(default_factory=list)


class BodyRefused(Exception):
    """The request body cannot be taken; `reply()` says why, the message in its detail."""

    status, kind, title = 400, "bad-body", "Request body refused"

    def reply(self) -> Reply:
        return problem(self.status, self.kind, self.title, str(self))


class BodyTooLarge(BodyRefused):
    """The request body is over the route's limit; the message says by how much, for the 413."""

    status, kind, title = 413, "too-large", "Request too large"


class BodyTooSlow(BodyRefused):
    """The whole body did not arrive within BODY_SECONDS: a client trickling it (slowloris) would
    otherwise hold a connection and a task for as long as it likes."""

    status, kind, title = 408, "body-timeout", "Request body too slow"


class RequestIds:
    """This process' request ids: a random prefix and a counter (unique without a syscall per request)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def __call__(self, scope: Scope) -> str:
        """The request's id: its X-Request-Id when sane, else a new one."""
        given = header(scope, REQUEST_ID_HEADER)
        if given is not None and _SANE_REQUEST_ID.fullmatch(given):
            return given.decode()
        return f"{self._prefix}-{next(self._counter)}"


def json_reply(status: int, document: Any, headers: Headers | None = None) -> Reply:
    return Reply(status, orjson.dumps(document), JSON, headers or [])


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Reply:
    document = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail, **extra}
    headers: Headers = []
    if status == 503:
        headers.append((b"retry-after", b"%d" % RETRY_AFTER_SECONDS))
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="tailor-admin"'))
    return Reply(status, orjson.dumps(document), PROBLEM_JSON, headers)


_QUERY: Final = "tailor.query"  # the parsed query, kept in the request's scope


def query(scope: Scope) -> dict[str, list[str]]:
    """Query parameters; percent-decoding only where needed (parse_qsl costs several times more on the
    hot path: docs/performance.md). Parsed once per request: the rate limiter and the route both ask."""
    parsed: dict[str, list[str]] | None = scope.get(_QUERY)
    if parsed is not None:
        return parsed
    params: dict[str, list[str]] = {}
    scope[_QUERY] = params
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return params
    for part in raw.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name = urllib.parse.unquote_plus(name)
            value = urllib.parse.unquote_plus(value)
        params.setdefault(name, []).append(value)
    return params


def single(params: Mapping[str, list[str]], name: str) -> str | None:
    """The parameter's value; a parameter given twice is ambiguous and refused."""
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise validation.InvalidParameter(name, f"`{name}` was given {len(values)} times; give it once")
    return values[0]


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, seconds: float = BODY_SECONDS) -> bytes:
    """The request body, refused with BodyTooLarge as soon as it is known to be over `limit` bytes: by
    its Content-Length before reading, else as it arrives (a lying or absent length gains nothing), and
    with BodyTooSlow when it has not all arrived within `seconds`. A client that disconnects midway
    leaves what arrived, which no route accepts as JSON."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body has {int(declared)} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"the body is over {limit} bytes, the most this route accepts")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyTooSlow(f"the body did not arrive within {seconds:g} s ({size} bytes came)") from None
    return b"".join(chunks)


async def send_reply(
    send: Send, reply: Reply, extra: Sequence[tuple[bytes, bytes]] = (), request_id: str | None = None
) -> None:
    """`reply` as an ASGI response, with `extra` headers (the app's security and CORS headers) and the
    request's id in X-Request-Id."""
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", b"%d" % len(reply.body)),
        *reply.headers,
        *extra,
    ]
    if request_id is not None:
        headers.append((REQUEST_ID_HEADER, request_id.encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def too_large(detail: str) -> Reply:
    return BodyTooLarge(detail).reply()


def invalid_parameter(error: validation.InvalidParameter) -> Reply:
    return problem(400, "invalid-parameter", "Invalid parameter", str(error), parameter=error.parameter)


def not_ready() -> Reply:
    return problem(503, "not-ready", "Not ready", "no ruleset is loaded yet for this stack; retry shortly")


def redis_unavailable(error: Exception) -> Reply:
    """A 503 that names no address: the client learns to retry, the log says which Redis and why."""
    log.warning("answering 503: Redis did not answer: %s", error)
    detail = "Redis did not answer; retry after Retry-After (the reason is in the content API's log)"
    return problem(503, "redis-unavailable", "Redis unavailable", detail)
