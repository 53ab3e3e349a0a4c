"""The admin listener: a second port for /v1/explain, /v1/profiles, /metrics, /healthz and /readyz.

The public port (granian) serves only what browsers and the shop call; what reveals profiles, rules
or internals is answered here, on a port the Service for shoppers never exposes (docs/operating.md,
"The admin port"). Granian listens on one address, so this port is served inside each server process
by asyncio, beside the app and with the same routing (tailor_api.app drives both): requests are
small GETs from probes, Prometheus and operators, one per connection (`Connection: close`), so
HTTP/1.1's request line and headers are all it reads, and a body only where the route reads one
(PUT /v1/profiles/{user}/traits), by its Content-Length: the route refuses a length over its limit
before anything is read, and `web.read_body` bounds the time. With `tailor api --workers N` (N > 1) the socket
is bound with SO_REUSEPORT, so every worker process listens and the kernel spreads connections (each
worker's /metrics is its own, as on the public port); with one worker a port already taken fails the
start, rather than sharing it with another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from tailor_api import web

log = logging.getLogger(__name__)

App = Callable[[web.Scope, web.Receive, web.Send], Awaitable[None]]
# A request's head must arrive whole within this, and be at most this large: no slow or huge heads.
HEAD_TIMEOUT_SECONDS = 10.0
HEAD_LIMIT_BYTES = 16 * 1024
# A body is read only by its Content-Length (no chunked bodies here), and never more than this.
BODY_LIMIT_BYTES = 1024 * 1024


async def start(app: App, host: str, port: int, *, shared: bool = False) -> asyncio.Server:
    """Listen on host:port and serve `app` (an ASGI callable) until the server is closed; `shared`:
    beside the other worker processes of one `tailor api` (SO_REUSEPORT)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_one(app, reader, writer)
        except Exception:  # one connection's trouble is never the listener's
            log.exception("admin port: a request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        return await asyncio.start_server(handle, host, port, reuse_port=shared, limit=HEAD_LIMIT_BYTES)
    except OSError as error:
        raise OSError(
            f"cannot listen on the admin port {host}:{port} ({error.strerror or error}): "
            "give a free one with --admin-port (env TAILOR_ADMIN_PORT)"
        ) from error


async def _serve_one(app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_SECONDS)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return  # gone, too large or too slow: nothing worth answering
    scope = _scope(head, writer)
    if scope is None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        return
    started: dict[str, Any] = {}
    declared = web.header(scope, b"content-length") or b"0"
    length = int(declared) if declared.isdigit() else 0
    unread = [min(length, BODY_LIMIT_BYTES)]

    async def receive() -> web.Message:
        body = b""
        if unread[0]:
            try:
                body = await reader.readexactly(unread[0])
            except asyncio.IncompleteReadError as partial:  # the client left midway: what arrived
                body = partial.partial
            unread[0] = 0
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: web.Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
            return
        status = int(started["status"])
        reason = HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b""
        lines = [b"HTTP/1.1 %d %s" % (status, reason)]
        lines += [name + b": " + value for name, value in started.get("headers", [])]
        lines.append(b"connection: close")
        body = b"" if scope["method"] == "HEAD" else message.get("body", b"")
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()

    await app(scope, receive, send)


def _scope(head: bytes, writer: asyncio.StreamWriter) -> web.Scope | None:
    """The ASGI scope of a request head, or None when it is not HTTP/1.x."""
    request_line, *header_lines = head[:-4].split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return None
    method, target, _ = parts
    headers = []
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name.lower(), value.strip()))
    raw_path, _, query = target.partition(b"?")
    peer = writer.get_extra_info("peername")
    own = writer.get_extra_info("sockname")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method.decode("latin-1"),
        "scheme": "http",
        "path": urllib.parse.unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(own[:2]) if own else None,
    }
