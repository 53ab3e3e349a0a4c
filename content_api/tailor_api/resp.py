"""A lean, multiplexed, pipelined Redis connection for the decision hot path.

Measured (docs/content-api.md): redis-py's asyncio pipeline costs several times this connection's CPU
per five-command read under concurrency, and that difference is the budget of a decision. Concurrent
requests share one connection: each writes its commands in one go and waits for as many replies,
which Redis returns in order, parsed in C by hiredis. Commands sent without waiting (`send_nowait`)
are still ordered before every later command of this replica, so its next read sees them.
Everything off the hot path uses redis-py. Both are built from one tailor.core.redis_target.RedisTarget:
the same login (AUTH on every connect and reconnect) and the same TLS settings (asyncio's ssl, with
the context built once: after the handshake TLS costs this path only the encryption of its bytes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import typing
from collections.abc import Callable, Sequence
from typing import Any

import hiredis

from tailor.core import logthrottle, redis_target

# A command and its arguments, packed by hiredis.pack_command (as tailor.core.profile.store packs its
# own): the one RESP encoder of the Python code. A tuple, as hiredis requires; floats are written
# exactly (repr), which Redis parses.
Command = tuple[bytes | str | int | float, ...]
log = logging.getLogger(__name__)
# A full Redis (noeviction) refuses every background write of every decision: one line per message
# every 10 s, with the count, instead of one per decision.
log.addFilter(logthrottle.RepeatThrottle())


class Pipelined(typing.Protocol):
    """What the hot path needs of Redis: this module's Connection (one Redis), or
    tailor_api.resp_cluster.ClusterConnection (a Redis Cluster, routed by hash slot)."""

    async def execute(self, commands: Sequence[Command]) -> list[Any]: ...
    async def send_nowait(self, commands: Sequence[Command]) -> None: ...
    async def close(self) -> None: ...


class RedisUnavailable(ConnectionError):
    """Redis could not be reached or did not answer in time."""


ReplyError = hiredis.ReplyError
# hiredis's stub types the argument as a tuple of one item; it takes any number.
pack_command = typing.cast(Callable[[Command], bytes], hiredis.pack_command)


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

    def __init__(self, target: redis_target.RedisTarget, *, timeout_seconds: float = 2.0) -> None:
        self.target = target
        self.timeout_seconds = timeout_seconds
        self._ssl = target.ssl_context()
        # Sent first on every connection, before any request's commands.
        self._setup: list[Command] = []
        if target.password is not None:
            if target.username:
                self._setup.append(("AUTH", target.username, target.password))
            else:
                self._setup.append(("AUTH", target.password))
        if target.db:
            self._setup.append(("SELECT", target.db))
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None

    async def _connect(self) -> _Protocol:
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            loop = asyncio.get_running_loop()
            target = self.target
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(_Protocol, target.host, target.port, ssl=self._ssl),
                    self.timeout_seconds,
                )
            except (OSError, TimeoutError) as error:
                raise RedisUnavailable(
                    f"cannot connect to Redis at {target.address}: {error or type(error).__name__}"
                ) from error
            self._protocol = protocol
            if self._setup:
                for reply in await self._roundtrip(protocol, self._setup):
                    if isinstance(reply, ReplyError):
                        if protocol.transport is not None:
                            protocol.transport.abort()  # refused: no TLS goodbye to wait for
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

    async def submit(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Send `commands` now and return the future of their replies, to await or watch later (the
        cluster connection watches its writes sent without waiting for redirections)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.pending.append((future, len(commands), [], time.monotonic()))
        protocol.write(b"".join([pack_command(c) for c in commands]))
        return future

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
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None and not protocol.lost:
            # A TLS transport closes after its close_notify went out: give it a moment, then cut it.
            protocol.transport.close()
            for _ in range(20):
                if protocol.lost:
                    return
                await asyncio.sleep(0.01)
            protocol.transport.abort()
