"""A lean, multiplexed, pipelined Redis connection for the decision hot path.

Measured (docs/content-api.md): redis-py's asyncio pipeline costs several times this connection's CPU
per five-command read under concurrency, and that difference is the budget of a decision. Concurrent
requests share one connection: each writes its commands in one go and waits for as many replies,
which Redis returns in order, parsed in C by hiredis. Commands sent without waiting (`send_nowait`)
are still ordered before every later command of this replica, so its next read sees them.
Everything off the hot path uses redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
import typing
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis

# A command and its arguments, packed by hiredis.pack_command (as tailor.core.profile.store packs its
# own): the one RESP encoder of the Python code. A tuple, as hiredis requires; floats are written
# exactly (repr), which Redis parses.
Command = tuple[bytes | str | int | float, ...]
log = logging.getLogger(__name__)


class RedisUnavailable(ConnectionError):
    """Redis could not be reached or did not answer in time."""


ReplyError = hiredis.ReplyError
# hiredis's stub types the argument as a tuple of one item; it takes any number.
pack_command = typing.cast(Callable[[Command], bytes], hiredis.pack_command)


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Address:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"{url!r}: a Redis URL starts with redis:// or rediss://")
        path = parts.path.lstrip("/")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(path) if path else 0,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # (future or None for fire-and-forget, replies expected, replies so far, sent at)
        self.pending: collections.deque[tuple[asyncio.Future[list[Any]] | None, int, list[Any], float]] = (
            collections.deque()
        )
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._outgoing: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue `data`; everything queued in one event-loop turn goes out in one send. A syscall per
        request was a third of a decision's CPU: concurrent requests now share it (and so does Redis)."""
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while (reply := self.reader.gets()) is not False:
            future, expected, replies, _ = pending[0]
            replies.append(reply)
            if len(replies) == expected:
                pending.popleft()
                if future is None:
                    for item in replies:
                        if isinstance(item, ReplyError):
                            log.warning("Redis refused a background write: %s", item)
                elif not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = RedisUnavailable(f"Redis connection lost: {exc or 'closed'}")
        while self.pending:
            future = self.pending.popleft()[0]
            if future is not None and not future.done():
                future.set_exception(error)


class Connection:
    """One multiplexed connection; reconnects on the next call after a loss."""

    def __init__(self, url: str, *, timeout_seconds: float = 2.0) -> None:
        self.address = Address.from_url(url)
        self.timeout_seconds = timeout_seconds
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None

    async def _connect(self) -> _Protocol:
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            loop = asyncio.get_running_loop()
            context = ssl.create_default_context() if self.address.tls else None
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(_Protocol, self.address.host, self.address.port, ssl=context),
                    self.timeout_seconds,
                )
            except (OSError, TimeoutError) as error:
                raise RedisUnavailable(
                    f"cannot connect to Redis at {self.address.host}:{self.address.port}"
                ) from error
            hello: list[Command] = []
            if self.address.password is not None:
                if self.address.username:
                    hello.append(("AUTH", self.address.username, self.address.password))
                else:
                    hello.append(("AUTH", self.address.password))
            if self.address.db:
                hello.append(("SELECT", self.address.db))
            self._protocol = protocol
            if hello:
                for reply in await self._roundtrip(protocol, hello):
                    if isinstance(reply, ReplyError):
                        if protocol.transport is not None:
                            protocol.transport.close()
                        raise RedisUnavailable(f"Redis refused the connection setup: {reply}")
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch(), name="redis-watchdog")
            return protocol

    async def _roundtrip(self, protocol: _Protocol, commands: Sequence[Command]) -> list[Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.pending.append((future, len(commands), [], time.monotonic()))
        protocol.write(b"".join([pack_command(c) for c in commands]))
        return await future

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to `commands`, sent as one pipeline; error replies come back as ReplyError."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        return await self._roundtrip(protocol, commands)

    async def send_nowait(self, commands: Sequence[Command]) -> None:
        """Send `commands` without waiting for their replies (which are checked and logged)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        protocol.pending.append((None, len(commands), [], time.monotonic()))
        protocol.write(b"".join([pack_command(c) for c in commands]))

    async def _watch(self) -> None:
        """Drop a connection whose oldest request waits longer than the timeout: it fails fast."""
        while True:
            await asyncio.sleep(min(0.5, self.timeout_seconds / 2))
            protocol = self._protocol
            if protocol is None or protocol.lost or not protocol.pending:
                continue
            if time.monotonic() - protocol.pending[0][3] > self.timeout_seconds and protocol.transport:
                log.warning("Redis did not answer within %.1fs; reconnecting", self.timeout_seconds)
                protocol.transport.abort()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
