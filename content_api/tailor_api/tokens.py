"""Decision ids: signed, stateless tokens that carry what feedback needs to attribute a click.

A decision id is `base64url(json) "." base64url(hmac-sha256[:16])`. The payload names the key that
signed it (`kid`), the stack's ruleset version, slot, rule, variant, user, session, issue time, a nonce
and whether the user was vouched for by an identity token (tailor_api.identity), so POST /v1/feedback
needs no lookup and a forged or altered id is refused.

Keys rotate by themselves: the clock is cut into periods (TAILOR_DECISION_KEY_ROTATION_SECONDS, a day
by default) and period n signs with kid n, a random key created in Redis by whichever replica asks
first (SET NX), so every replica signs and verifies alike and no secret has to be distributed. A key
expires from Redis a period after its own ends plus the feedback window, so the ids it signed verify
for as long as feedback is taken. Deleting the keys revokes every id they signed: each replica
notices at its next refresh (docs/identity.md, "Decision keys"). Ids of the first format (no kid,
one key made once) still verify with that key while it exists.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis
import redis.asyncio as aioredis

from tailor.core.rules import versions

FORMAT: Final = 2
LEGACY_FORMAT: Final = 1
_MAC_BYTES: Final = 16


def legacy_key_name(stack: str) -> str:
    """The one key of the first format: read, never created any more."""
    return f"{versions.stack_prefix(stack)}:api:decision-key"


def key_name(stack: str, kid: str) -> str:
    return f"{versions.stack_prefix(stack)}:api:decision-key:{kid}"


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class StackKeys:
    """The stack's decision keys in Redis: the current period's and the next one's made ahead, and
    older ones fetched when a decision id names them."""

    def __init__(
        self, client: aioredis.Redis, stack: str, period_seconds: int, feedback_seconds: int
    ) -> None:
        self.client = client
        self.stack = stack
        self.period_seconds = period_seconds
        # Made up to a period ahead, used for its own, and verified for the feedback window after.
        self.keep_seconds = 2 * period_seconds + feedback_seconds + 60
        self.keys: dict[str, bytes] = {}
        self.legacy: bytes | None = None

    def kid_at(self, now: float) -> str:
        return str(int(now // self.period_seconds))

    async def refresh(self, now: float) -> Signer:
        """Make (if no replica has) and read the current and next period's keys; read again every key
        known here, dropping those deleted from Redis. A Signer for the current period."""
        current, following = self.kid_at(now), str(int(now // self.period_seconds) + 1)
        kids = sorted({current, following, *self.keys})
        async with self.client.pipeline(transaction=False) as pipe:
            for kid in (current, following):
                # A full Redis (noeviction) refuses the SET even when the key exists: the GET decides.
                pipe.set(key_name(self.stack, kid), secrets.token_bytes(32), nx=True, ex=self.keep_seconds)
            for kid in kids:
                pipe.get(key_name(self.stack, kid))
            pipe.get(legacy_key_name(self.stack))
            replies = await pipe.execute(raise_on_error=False)
        values = replies[2:]
        found = {
            kid: _bytes(value)
            for kid, value in zip(kids, values[:-1], strict=True)
            if isinstance(value, bytes | str)
        }
        if current not in found:
            # A RedisError, as the start retries on (a full Redis refuses the SET: -OOM).
            if isinstance(replies[0], redis.RedisError):
                raise replies[0]
            raise redis.RedisError(
                f"{self.stack}: the decision signing key {current} is not in Redis after SET NX"
            )
        self.keys = found
        legacy = values[-1]
        self.legacy = _bytes(legacy) if isinstance(legacy, bytes | str) else None
        return Signer(self.keys, current, self.legacy)

    async def fetch(self, kid: str) -> bytes | None:
        """An older key a decision id names, when Redis still has it (remembered until it goes)."""
        if not kid.isdigit() or len(kid) > 16:
            return None
        value = await self.client.get(key_name(self.stack, kid))
        if value is None:
            return None
        self.keys[kid] = _bytes(value)
        return self.keys[kid]


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
    verified: bool  # made for a user an identity token vouched for
    segment: str | None = None  # a contextual bandit's segment of the user (its click counts there)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class UnknownKey(InvalidToken):
    """Signed with a key this replica does not hold (yet): `kid` may be fetched and tried again."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"the decisionId's key {kid} is unknown or expired: feedback is no longer taken")
        self.kid = kid


class Signer:
    """Issues decision ids with the current key; verifies them with any key it holds."""

    __slots__ = ("_counter", "_current", "_key", "_keys", "_legacy", "_prefix")

    def __init__(self, keys: Mapping[str, bytes], current: str, legacy: bytes | None = None) -> None:
        self._keys = dict(keys)
        self._current = current
        self._key = self._keys[current]
        self._legacy = legacy
        self._prefix = os.urandom(6).hex()  # per process: nonces never repeat across replicas
        self._counter = itertools.count()

    @property
    def kid(self) -> str:
        return self._current

    def with_key(self, kid: str, key: bytes) -> Signer:
        """Also verifying with `kid` (fetched from Redis); same nonces, same current key."""
        signer = Signer({**self._keys, kid: key}, self._current, self._legacy)
        signer._prefix, signer._counter = self._prefix, self._counter
        return signer

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
        verified: bool = False,
        segment: str | None = None,
    ) -> str:
        fields = [FORMAT, self._current, version, slot, rule, variant, user, session, int(now), self._nonce(),
                  1 if verified else 0]  # fmt: skip
        if segment is not None:  # only contextual bandit rules' ids carry it (a 12th field)
            fields.append(segment)
        payload = _b64(orjson.dumps(fields))
        mac = hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]
        return (payload + b"." + _b64(mac)).decode()

    def verify(self, token: str) -> DecisionRef:
        payload, dot, mac = token.partition(".")
        if not dot:
            raise InvalidToken("a decisionId has two parts separated by '.'")
        try:
            signature = _unb64(mac)
            fields = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError) as error:
            raise InvalidToken("the decisionId is not well-formed") from error
        # The payload is read before its MAC is checked only to learn which key to check it with.
        if (
            isinstance(fields, list)
            and len(fields) in (11, 12)
            and fields[0] == FORMAT
            and isinstance(fields[1], str)
        ):
            key = self._keys.get(fields[1])
            if key is None:
                raise UnknownKey(fields[1])
        elif isinstance(fields, list) and len(fields) == 9 and fields[0] == LEGACY_FORMAT:
            if self._legacy is None:
                raise InvalidToken(
                    "the decisionId's key (of the first format) is gone: feedback is no longer taken"
                )
            key = self._legacy
        else:
            raise InvalidToken("the decisionId has an unknown format")
        expected = hmac.digest(key, payload.encode(), "sha256")[:_MAC_BYTES]
        if not hmac.compare_digest(expected, signature):
            raise InvalidToken("the decisionId's signature does not match: not issued here, or altered")
        if fields[0] == LEGACY_FORMAT:
            _, version, slot, rule, variant, user, session, issued_at, nonce = fields
            return DecisionRef(version, slot, rule, variant, user, session, issued_at, nonce, False)
        _, _, version, slot, rule, variant, user, session, issued_at, nonce, verified, *rest = fields
        segment = rest[0] if rest and isinstance(rest[0], str) else None
        return DecisionRef(
            version, slot, rule, variant, user, session, issued_at, nonce, bool(verified), segment
        )
