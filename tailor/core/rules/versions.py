"""Where a stack's published rulesets live in Redis, and how they are published and followed.

Redis is the bus between the operator and the data plane (docs/architecture.md §10): workers and API replicas
need only a Redis URL and the stack's `namespace/name`. Every key of a stack shares one hash tag, so a
publish is one MULTI/EXEC even on Redis Cluster.

    tailor:{ns/name}:ruleset:seq       INCR gives the next version
    tailor:{ns/name}:ruleset:<N>       immutable ruleset documents; the newest HISTORY are kept
    tailor:{ns/name}:ruleset:<N>:signature   the publisher's Ed25519 signature of that document
    tailor:{ns/name}:ruleset:current   the version being served
    tailor:{ns/name}:ruleset           pub/sub channel; the message is the new current version

On a Redis Cluster (the client is redis-py's RedisCluster, tailor.core.redis_target) the channel is a
sharded one (SPUBLISH/SSUBSCRIBE, Redis 7): it lives in the stack's slot like the keys, so the publish
stays one MULTI/EXEC on one node, and the message travels only to that shard's primary and replicas,
not over the whole cluster's bus as PUBLISH would. Followers subscribe at the slot's owner and move
with it (redis-py follows MOVED and failovers); the periodic poll covers what a move drops.

Readers pass a `signing.Verifier` and get `Unreadable` for a version they must not serve: not signed by
a trusted key, not a ruleset, or of a newer format. Followers keep the last good one and say why
(`on_rejected`); they never stop following (docs/operating.md, "Who can publish a ruleset").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pydantic
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiorediscluster

from tailor.core import cancellation
from tailor.core.rules import signing
from tailor.core.rules.ruleset import FORMAT, Ruleset

HISTORY = 50
log = logging.getLogger(__name__)


def stack_prefix(stack: str) -> str:
    """`stack` is `namespace/name`; the braces make it the Redis Cluster hash tag."""
    return f"tailor:{{{stack}}}"


def current_key(stack: str) -> str:
    return f"{stack_prefix(stack)}:ruleset:current"


def version_key(stack: str, version: int) -> str:
    return f"{stack_prefix(stack)}:ruleset:{version}"


def signature_key(stack: str, version: int) -> str:
    return f"{version_key(stack, version)}:signature"


def seq_key(stack: str) -> str:
    return f"{stack_prefix(stack)}:ruleset:seq"


def channel(stack: str) -> str:
    return f"{stack_prefix(stack)}:ruleset"


async def current_version(client: aioredis.Redis, stack: str) -> int:
    raw = await client.get(current_key(stack))
    return int(raw) if raw else 0


REASONS = ("signature", "format", "invalid")
"""Why a reader refuses a version (Unreadable.reason)."""


class Unreadable(Exception):
    """A published version a reader must not serve. `reason` is a short fixed word for metrics:
    `signature` (unsigned, unknown key, or not matching), `format` (written for a newer reader), `invalid`
    (not a ruleset this reader can parse, or one of another stack or version)."""

    def __init__(self, stack: str, version: int, reason: str, detail: str) -> None:
        super().__init__(f"ruleset {stack} v{version} refused ({reason}): {detail}")
        self.stack, self.version, self.reason, self.detail = stack, version, reason, detail


def decode(
    stack: str,
    version: int,
    raw: bytes | str,
    signature: bytes | str | None,
    verifier: signing.Verifier | None,
) -> Ruleset:
    """The ruleset stored as `raw` under `version`, checked: signed by a key `verifier` trusts (None
    skips the signature, for tools that only display), parseable, and really `stack`'s `version`."""
    raw = raw.encode() if isinstance(raw, str) else raw
    signature = signature.encode() if isinstance(signature, str) else signature
    if verifier is not None:
        try:
            verifier.verify(raw, signature)
        except signing.SignatureError as error:
            raise Unreadable(stack, version, "signature", str(error)) from None
    try:
        ruleset = Ruleset.from_json(raw)
    except pydantic.ValidationError as error:
        written_for = _format_of(raw)
        if written_for is not None and written_for > FORMAT:
            detail = f"format {written_for}, this reader knows up to {FORMAT}: upgrade it"
            raise Unreadable(stack, version, "format", detail) from None
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top"
        detail = f"{error.error_count()} error(s), first at {where}: {first['msg']}"
        raise Unreadable(stack, version, "invalid", detail) from None
    if ruleset.stack != stack or ruleset.version != version:
        raise Unreadable(stack, version, "invalid", f"the document is {ruleset.stack} v{ruleset.version}")
    return ruleset


def _format_of(raw: bytes) -> int | None:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    written_for = document.get("format") if isinstance(document, dict) else None
    return written_for if isinstance(written_for, int) else None


async def load(
    client: aioredis.Redis,
    stack: str,
    version: int | None = None,
    *,
    verifier: signing.Verifier | None = None,
) -> Ruleset | None:
    """The ruleset `version` of `stack` (the current one by default), or None if none is published.
    Raises Unreadable when it must not be served (see `decode`)."""
    if version is None:
        version = await current_version(client, stack)
    if not version:
        return None
    raw, signature = await client.mget(version_key(stack, version), signature_key(stack, version))
    return decode(stack, version, raw, signature, verifier) if raw else None


def load_sync(
    client: redis.Redis, stack: str, version: int | None = None, *, verifier: signing.Verifier | None = None
) -> Ruleset | None:
    """`load` for the synchronous worker loop."""
    if version is None:
        version = current_version_sync(client, stack)
    if not version:
        return None
    raw, signature = client.mget(version_key(stack, version), signature_key(stack, version))
    return decode(stack, version, raw, signature, verifier) if raw else None


def current_version_sync(client: redis.Redis, stack: str) -> int:
    raw = client.get(current_key(stack))
    return int(raw) if raw else 0


async def publish(
    client: aioredis.Redis, ruleset: Ruleset, signer: signing.Signer = signing.DEVELOPMENT
) -> Ruleset:
    """Publish `ruleset`, signed by `signer`, as the next version of its stack, atomically, and notify
    followers. The operator passes its stack's key; the development key is for local tools and tests.

    A ruleset whose content equals the current one is not published again: the current one is
    returned, so re-running the operator never bumps versions for nothing. A current version that
    `signer` did not sign (someone else wrote it, or the key was rotated) is replaced even then.
    """
    ruleset = ruleset.sealed()
    try:
        current = await load(client, ruleset.stack, verifier=signer.verifier())
    except Unreadable as refused:
        log.warning("%s; publishing over it", refused)
        current = None
    if current is not None and current.checksum == ruleset.checksum:
        return current
    version = int(await client.incr(seq_key(ruleset.stack)))
    return await _make_current(client, ruleset.model_copy(update={"version": version}), signer)


async def rollback(
    client: aioredis.Redis, stack: str, to_version: int, signer: signing.Signer = signing.DEVELOPMENT
) -> Ruleset:
    """Serve an earlier version again, republished under a new version number (history stays linear)
    and signed by `signer`. The earlier version must verify with `signer`'s key: a rollback never
    launders a ruleset someone else wrote."""
    earlier = await load(client, stack, to_version, verifier=signer.verifier())
    if earlier is None:
        raise LookupError(f"{stack}: version {to_version} is not in the last {HISTORY} published")
    version = int(await client.incr(seq_key(stack)))
    return await _make_current(client, earlier.model_copy(update={"version": version}), signer)


async def _make_current(client: aioredis.Redis, ruleset: Ruleset, signer: signing.Signer) -> Ruleset:
    ruleset = ruleset.model_copy(update={"published_at": time.time()})
    stack, version = ruleset.stack, ruleset.version
    document = ruleset.to_json()
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(version_key(stack, version), document)
        pipe.set(signature_key(stack, version), signer.sign(document))
        pipe.set(current_key(stack), version)
        if version > HISTORY:
            pipe.delete(version_key(stack, version - HISTORY), signature_key(stack, version - HISTORY))
        if isinstance(client, aiorediscluster.RedisCluster):
            pipe.spublish(channel(stack), version)
        else:
            pipe.publish(channel(stack), version)
        await pipe.execute()
    return ruleset


async def follow(
    client: aioredis.Redis,
    stack: str,
    on_ruleset: Callable[[Ruleset], Awaitable[None] | None],
    *,
    poll_seconds: float = 5.0,
    verifier: signing.Verifier | None = None,
    on_rejected: Callable[[Unreadable], None] | None = None,
    on_published: Callable[[int], None] | None = None,
) -> None:
    """Call `on_ruleset` with the current ruleset, then with each newly published one, forever.

    Pub/sub gives sub-second updates; the periodic poll covers messages missed while disconnected.
    `on_ruleset` sees versions in increasing order only. A version that is Unreadable (with `verifier`
    given, also one not signed by a trusted key) goes to `on_rejected` once, and following goes on: the
    caller keeps serving what it has. `on_published` hears the current version at every look, served
    or not, so a caller can tell how far behind it is. Cancelling the task stops it even when redis-py
    swallowed the CancelledError (see tailor.core.cancellation): every round checks.
    """
    seen = 0

    async def refresh() -> None:
        nonlocal seen
        version = await current_version(client, stack)
        if on_published is not None and version:
            on_published(version)
        if version and version != seen:
            try:
                ruleset = await load(client, stack, version, verifier=verifier)
            except Unreadable as refused:
                seen = version  # versions are immutable: refused once, refused for good
                if on_rejected is not None:
                    on_rejected(refused)
                return
            if ruleset is not None:
                seen = version
                result = on_ruleset(ruleset)
                if result is not None:
                    await result

    while True:
        cancellation.checkpoint()
        try:
            async with _subscription(client, channel(stack)) as messages:
                await refresh()
                async for _ in messages(poll_seconds):
                    await refresh()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            log.warning("ruleset follow of %s lost Redis (%s); retrying", stack, error)
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def _subscription(
    client: aioredis.Redis, name: str
) -> AsyncIterator[Callable[[float], AsyncIterator[None]]]:
    if isinstance(client, aiorediscluster.RedisCluster):
        sharded = client.pubsub()
        await sharded.ssubscribe(name)

        async def sharded_ticks(poll_seconds: float) -> AsyncIterator[None]:
            while True:
                cancellation.checkpoint()
                await sharded.get_sharded_message(ignore_subscribe_messages=True, timeout=poll_seconds)
                yield None

        try:
            yield sharded_ticks
        finally:
            await sharded.aclose()
        return

    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(name)

    async def ticks(poll_seconds: float) -> AsyncIterator[None]:
        # One tick per message, and one per poll interval even when nothing arrives.
        while True:
            cancellation.checkpoint()  # before the wait: a swallowed cancel must not wait a poll
            await pubsub.get_message(timeout=poll_seconds)
            yield None

    try:
        yield ticks
    finally:
        await pubsub.aclose()
