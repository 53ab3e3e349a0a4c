"""The user's context for one decision: read in one pipelined round trip, and written back cheaply.

The read carries the profile (tailor.core.profile.store's read) and the user's decision state
(tailor.core.decision.keys): session memory and per-session cap counts (one hash), the per-user cap
windows (tailor.core.decision.caps), notInterested suppressions and round-robin positions; `parse`
makes a `UserContext` of the replies. Writes that need no answer (session memory, round-robin) are
sent without waiting; caps are confirmed by tailor.core.decision.caps' script.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from tailor.core.decision import caps, keys
from tailor.core.decision.decide import UserContext
from tailor.core.decision.engine import Engine, SlotPlan
from tailor.core.profile import Profile, store
from tailor_api import resp

log = logging.getLogger(__name__)
ROUND_ROBIN_TTL_SECONDS: Final = 30 * 86400


class _Collect:
    """Stands in for a pipeline so the profile store can queue its read into our own command list."""

    def __init__(self, commands: list[resp.Command]) -> None:
        self.commands = commands

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ContextRead:
    """The commands of one user's read and, once answered, their parse into a UserContext."""

    __slots__ = ("commands", "now", "per_user_rules", "round_robin", "session", "user")

    def __init__(
        self, engine: Engine, reader: store.ProfileReader, user: str, session: str,
        plans: Sequence[SlotPlan], now: float,
    ) -> None:  # fmt: skip
        stack = engine.stack
        self.user, self.session, self.now = user, session, now
        self.commands: list[resp.Command] = []
        reader.queue_read(_Collect(self.commands), user, session, now)
        self.commands.append(("HGETALL", keys.session_key(stack, user, session)))
        self.commands.append(("ZRANGEBYSCORE", keys.suppression_key(stack, user), now, "+inf"))
        self.round_robin = any(r.strategy == "roundRobin" for plan in plans for r in plan.rules)
        if self.round_robin:
            self.commands.append(("HGETALL", keys.round_robin_key(stack, user)))
        self.per_user_rules = caps.user_capped(plans)
        self.commands += [caps.count_command(stack, user, rule, now) for rule in self.per_user_rules]

    def parse(self, replies: Sequence[Any], reader: store.ProfileReader) -> UserContext:
        for reply in replies:
            if isinstance(reply, resp.ReplyError):
                raise reply
        reads = reader.commands  # the profile's, and its traits' when the stack declares any
        try:
            profile = reader.parse_reads(replies[:reads], self.user, self.session or None, now=self.now)
        except Exception as error:  # an unreadable profile must not take decisions down with it
            log.warning("profile of %s unreadable, deciding on an empty one: %r", self.user, error)
            profile = Profile(user=self.user)
        memory: dict[str, tuple[str, str]] = {}
        session_caps: dict[str, int] = {}
        fields = replies[reads]
        for i in range(0, len(fields), 2):
            name, value = _text(fields[i]), _text(fields[i + 1])
            if name.startswith(keys.MEMORY_FIELD_PREFIX):
                rule, _, variant = value.partition(keys.MEMORY_SEPARATOR)
                memory[name[len(keys.MEMORY_FIELD_PREFIX) :]] = (rule, variant)
            elif name.startswith(caps.SESSION_COUNT_PREFIX):
                session_caps[name[len(caps.SESSION_COUNT_PREFIX) :]] = int(value)
        suppressed = frozenset(_text(member) for member in replies[reads + 1])
        index = reads + 2
        round_robin: dict[str, int] = {}
        if self.round_robin:
            pairs = replies[index]
            round_robin = {_text(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
            index += 1
        user_caps = {rule.name: int(n) for rule, n in zip(self.per_user_rules, replies[index:], strict=True)}
        return UserContext(
            profile=profile,
            session=self.session,
            memory=memory,
            session_caps=session_caps,
            user_caps=user_caps,
            suppressed=suppressed,
            round_robin=round_robin,
        )


def is_missing_script(reply: Any) -> bool:
    return isinstance(reply, resp.ReplyError) and str(reply).startswith("NOSCRIPT")


def memory_writes(
    engine: Engine, context: UserContext, slot: str, rule: str, variant: str
) -> list[resp.Command]:
    key = keys.session_key(engine.stack, context.user, context.session)
    ttl = engine.config.features.session_timeout_seconds
    return [("HSET", key, keys.memory_field(slot), keys.memory_value(rule, variant)), ("EXPIRE", key, ttl)]


def round_robin_writes(engine: Engine, user: str, rule: str) -> list[resp.Command]:
    key = keys.round_robin_key(engine.stack, user)
    return [("HINCRBY", key, rule, 1), ("EXPIRE", key, ROUND_ROBIN_TTL_SECONDS)]
