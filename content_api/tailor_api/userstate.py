"""The user's state for one decision: read in one pipelined round trip, and written back cheaply.

The read carries the profile (tailor.core.profile.store's read function) and the API's own per-user
keys: session memory and per-session cap counts (one hash), per-user cap windows (a sorted set per
capped rule), notInterested suppressions and round-robin positions. Writes that need no answer
(session memory, round-robin) are sent without waiting; frequency caps are checked and counted by
commit.lua, atomically. The API's keys sit under the user's hash tag, beside the profile's:

    tailor:<ns>/<name>:{<user>}:api:s:<session>  hash   m:<slot> -> rule␟variant, c:<rule> -> count
    tailor:<ns>/<name>:{<user>}:api:cap:<rule>   zset   one member per impression, scored by time
    tailor:<ns>/<name>:{<user>}:api:sup          zset   v:<variant> | t:<tag> -> suppressed until
    tailor:<ns>/<name>:{<user>}:api:rr           hash   rule -> variants served so far
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final

import orjson

from tailor.core.profile import Profile, store
from tailor_api import resp
from tailor_api.decide import SlotDecision, UserState
from tailor_api.engine import Engine, SlotPlan

log = logging.getLogger(__name__)
MEMORY_SEPARATOR: Final = "\x1f"
ROUND_ROBIN_TTL_SECONDS: Final = 30 * 86400
COMMIT_SCRIPT: Final = resources.files("tailor_api").joinpath("commit.lua").read_text()
COMMIT_SHA: Final = hashlib.sha1(COMMIT_SCRIPT.encode()).hexdigest()


def api_prefix(stack: str, user: str) -> str:
    return f"{store.user_prefix(stack, user)}api:"


def session_key(stack: str, user: str, session: str) -> str:
    return f"{api_prefix(stack, user)}s:{session}"


def cap_key(stack: str, user: str, rule: str) -> str:
    return f"{api_prefix(stack, user)}cap:{rule}"


def suppression_key(stack: str, user: str) -> str:
    return f"{api_prefix(stack, user)}sup"


def round_robin_key(stack: str, user: str) -> str:
    return f"{api_prefix(stack, user)}rr"


class _Collect:
    """Stands in for a pipeline so the profile store can queue its read into our own command list."""

    def __init__(self, commands: list[resp.Command]) -> None:
        self.commands = commands

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StateRead:
    """The commands of one user's read and, once answered, their parse into a UserState."""

    __slots__ = ("commands", "now", "per_user_rules", "round_robin", "session", "user")

    def __init__(
        self, engine: Engine, reader: store.ProfileReader, user: str, session: str,
        plans: Sequence[SlotPlan], now: float,
    ) -> None:  # fmt: skip
        stack = engine.stack
        self.user, self.session, self.now = user, session, now
        self.commands: list[resp.Command] = []
        reader.queue_read(_Collect(self.commands), user, session, now)
        self.commands.append(("HGETALL", session_key(stack, user, session)))
        self.commands.append(("ZRANGEBYSCORE", suppression_key(stack, user), now, "+inf"))
        self.round_robin = any(r.strategy == "roundRobin" for plan in plans for r in plan.rules)
        if self.round_robin:
            self.commands.append(("HGETALL", round_robin_key(stack, user)))
        self.per_user_rules = [rule for plan in plans for rule in plan.capped_rules if rule.per_user > 0]
        for rule in self.per_user_rules:
            since = now - rule.per_user_window_seconds
            self.commands.append(("ZCOUNT", cap_key(stack, user, rule.name), f"({since}", "+inf"))

    def parse(self, replies: Sequence[Any], reader: store.ProfileReader) -> UserState:
        for reply in replies:
            if isinstance(reply, resp.ReplyError):
                raise reply
        try:
            profile = reader.parse_read(replies[0], self.user, self.session or None, now=self.now)
        except Exception as error:  # an unreadable profile must not take decisions down with it
            log.warning("profile of %s unreadable, deciding on an empty one: %r", self.user, error)
            profile = Profile(user=self.user)
        memory: dict[str, tuple[str, str]] = {}
        session_caps: dict[str, int] = {}
        fields = replies[1]
        for i in range(0, len(fields), 2):
            name, value = _text(fields[i]), _text(fields[i + 1])
            if name.startswith("m:"):
                rule, _, variant = value.partition(MEMORY_SEPARATOR)
                memory[name[2:]] = (rule, variant)
            elif name.startswith("c:"):
                session_caps[name[2:]] = int(value)
        suppressed = frozenset(_text(member) for member in replies[2])
        index = 3
        round_robin: dict[str, int] = {}
        if self.round_robin:
            pairs = replies[index]
            round_robin = {_text(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
            index += 1
        user_caps = {rule.name: int(n) for rule, n in zip(self.per_user_rules, replies[index:], strict=True)}
        return UserState(
            profile=profile,
            session=self.session,
            memory=memory,
            session_caps=session_caps,
            user_caps=user_caps,
            suppressed=suppressed,
            round_robin=round_robin,
        )


def memory_value(rule: str, variant: str) -> str:
    return f"{rule}{MEMORY_SEPARATOR}{variant}"


def commit_command(
    engine: Engine, state: UserState, decisions: Sequence[SlotDecision], now: float
) -> resp.Command:
    """The commit.lua call that confirms the capped candidates of `decisions` (see commit.lua)."""
    stack, user = engine.stack, state.user
    keys = [session_key(stack, user, state.session)]
    plan = []
    for decision in decisions:
        candidates = []
        for candidate in decision.candidates:
            rule = candidate.rule
            key_index = 0
            if rule.per_user > 0:
                keys.append(cap_key(stack, user, rule.name))
                key_index = len(keys)
            candidates.append(
                [rule.name, rule.per_session, rule.per_user, rule.per_user_window_seconds, key_index,
                 memory_value(rule.name, candidate.variant.name), f"{now:.6f}:{os.urandom(4).hex()}"]
            )  # fmt: skip
        plan.append([f"m:{decision.plan.name}", candidates])
    ttl = engine.config.features.session_timeout_seconds
    return ("EVALSHA", COMMIT_SHA, len(keys), *keys, now, ttl, orjson.dumps(plan))


def is_missing_script(reply: Any) -> bool:
    return isinstance(reply, resp.ReplyError) and str(reply).startswith("NOSCRIPT")


def with_script_source(command: resp.Command) -> resp.Command:
    """The same call as EVAL with the source, for a Redis that has not cached the script yet."""
    return ("EVAL", COMMIT_SCRIPT, *command[2:])


def memory_writes(engine: Engine, state: UserState, slot: str, rule: str, variant: str) -> list[resp.Command]:
    key = session_key(engine.stack, state.user, state.session)
    ttl = engine.config.features.session_timeout_seconds
    return [("HSET", key, f"m:{slot}", memory_value(rule, variant)), ("EXPIRE", key, ttl)]


def round_robin_writes(engine: Engine, user: str, rule: str) -> list[resp.Command]:
    key = round_robin_key(engine.stack, user)
    return [("HINCRBY", key, rule, 1), ("EXPIRE", key, ROUND_ROBIN_TTL_SECONDS)]
