"""Decision ids: signed, stateless tokens that carry what feedback needs to attribute a click.

A decision id is `base64url(json) "." base64url(hmac-sha256[:16])`. The payload names the stack's
ruleset version, slot, rule, variant, user, session and issue time, so POST /v1/feedback needs no
lookup and a forged or altered id is refused. The key is created once per stack in Redis (SET NX), so
every replica signs and verifies alike and no secret has to be distributed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import os
import secrets
from dataclasses import dataclass
from typing import Final

import orjson
import redis.asyncio as aioredis

from tailor.core.rules import versions

FORMAT: Final = 1
_MAC_BYTES: Final = 16


def key_name(stack: str) -> str:
    return f"{versions.stack_prefix(stack)}:api:decision-key"


async def stack_key(client: aioredis.Redis, stack: str) -> bytes:
    """The stack's signing key, created by whichever replica asks first. Read first: a full Redis
    (noeviction) refuses the SET even when the key exists, and a replica must still start then."""
    key = await client.get(key_name(stack))
    if key:
        return key if isinstance(key, bytes) else key.encode()
    await client.set(key_name(stack), secrets.token_bytes(32), nx=True)
    key = await client.get(key_name(stack))
    if not key:
        raise RuntimeError(f"{stack}: the decision signing key vanished from Redis right after creation")
    return key if isinstance(key, bytes) else key.encode()


class InvalidToken(ValueError):
    """Not a decision id this stack issued, or altered since."""


@dataclass(frozen=True, slots=True)
class DecisionRef:
    version: int
    slot: str
    rule: str | None
    variant: str | None
    user: str
    session: str
    issued_at: int
    nonce: str


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class Signer:
    __slots__ = ("_counter", "_key", "_prefix")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._prefix = os.urandom(6).hex()  # per process: nonces never repeat across replicas
        self._counter = itertools.count()

    def _nonce(self) -> str:
        """Unique per decision (feedback is counted once per nonce) without a syscall per request."""
        return f"{self._prefix}{next(self._counter):x}"

    def issue(
        self,
        version: int,
        slot: str,
        rule: str | None,
        variant: str | None,
        user: str,
        session: str,
        now: float,
    ) -> str:
        payload = _b64(
            orjson.dumps([FORMAT, version, slot, rule, variant, user, session, int(now), self._nonce()])
        )
        mac = hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]
        return (payload + b"." + _b64(mac)).decode()

    def verify(self, token: str) -> DecisionRef:
        payload, dot, mac = token.partition(".")
        if not dot:
            raise InvalidToken("a decisionId has two parts separated by '.'")
        try:
            signature = _unb64(mac)
            expected = hmac.digest(self._key, payload.encode(), "sha256")[:_MAC_BYTES]
        except (binascii.Error, ValueError) as error:
            raise InvalidToken("the decisionId is not well-formed") from error
        if not hmac.compare_digest(expected, signature):
            raise InvalidToken("the decisionId's signature does not match: not issued here, or altered")
        try:
            fields = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError) as error:
            raise InvalidToken("the decisionId is not well-formed") from error
        if not isinstance(fields, list) or len(fields) != 9 or fields[0] != FORMAT:
            raise InvalidToken("the decisionId has an unknown format")
        _, version, slot, rule, variant, user, session, issued_at, nonce = fields
        return DecisionRef(version, slot, rule, variant, user, session, issued_at, nonce)
