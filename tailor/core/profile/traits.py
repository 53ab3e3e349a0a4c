"""Per-user traits written from outside (docs/traits.md): validated, stored, read.

A stack declares its traits (spec.traits: name, type, TTL, bounds; tailor.core.rules.ruleset.Trait).
Data pipelines write them through the traits topic (CloudEvents, consumed by the workers) or the
content API's admin `PUT /v1/profiles/{user}/traits`; both validate with `validate` here and write
with `write_command`. Decisions read them beside the profile, in the same round trip
(tailor.core.profile.store.ProfileReader), as `traits.<name>` in CEL and audience matchers.

Redis: one hash per user, `tailor:<ns>/<name>:{<user>}:traits` (the user is the hash tag, like the
profile's keys: slot-safe on Redis Cluster), field = trait name, value = `{"v": value, "e": expires
at, "t": written at}`. The write is one call of `traits.lua`: it keeps the newer of two writes of a
trait (by "t", so a replayed event never undoes a later one), drops fields past their TTL and lets the
key expire with its latest field. Readers ignore values past their TTL too, so a trait stops
applying the moment it expires, not when Redis gets round to it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Final, Literal

import orjson
import redis
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tailor.core import constants
from tailor.core.rules.ruleset import Trait

SCRIPT: Final = resources.files("tailor.core.profile").joinpath("traits.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()
# CloudEvents `type` of a traits event on the traits topic (schemas/traits-v1.json).
EVENT_TYPE: Final = "dev.tailor.traits.v1"
SCHEMA_PATH: Final = "schemas/traits-v1.json"
MAX_TRAITS_PER_WRITE: Final = 64
_ID = re.compile(constants.ID_PATTERN)

Command = tuple[Any, ...]


def key(stack: str, user: str) -> str:
    """The user's traits hash, beside its profile (tailor.core.profile.store.user_prefix)."""
    return f"tailor:{stack}:{{{user}}}:traits"


class Problem(ValueError):
    """What is wrong with a write, per trait: [{"trait": name, "error": what and what to do}]."""

    def __init__(self, problems: Sequence[Mapping[str, str]]) -> None:
        self.problems = [dict(p) for p in problems]
        super().__init__("; ".join(f"{p['trait']}: {p['error']}" for p in self.problems))


def declared(traits: Iterable[Trait]) -> dict[str, Trait]:
    return {trait.name: trait for trait in traits}


def _check(trait: Trait, value: Any) -> str | None:
    """None if `value` is a valid value of `trait` (None unsets it), else what is wrong."""
    if value is None:
        return None
    if trait.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"must be a number, got {_shown(value)}"
        if trait.minimum is not None and value < trait.minimum:
            return f"{value} is below the minimum {trait.minimum:g}"
        if trait.maximum is not None and value > trait.maximum:
            return f"{value} is above the maximum {trait.maximum:g}"
        return None
    if trait.type == "boolean":
        return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"
    if not isinstance(value, str):
        return f"must be a string, got {_shown(value)}"
    if len(value) > trait.max_length:
        return f"is {len(value)} characters long, at most {trait.max_length} allowed"
    if trait.values and value not in trait.values:
        return f"{value!r} is not one of {', '.join(trait.values)}"
    return None


def _shown(value: Any) -> str:
    text = orjson.dumps(value, default=repr).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def validate(traits: Mapping[str, Trait], values: Any) -> dict[str, Any]:
    """`values` (trait name -> value; null unsets it) checked against the stack's declared traits:
    the values to write, numbers as floats, or Problem naming each bad trait and what was wrong."""
    if not isinstance(values, Mapping) or not values:
        raise Problem([{"trait": "", "error": "traits must be a non-empty object of trait name -> value"}])
    if len(values) > MAX_TRAITS_PER_WRITE:
        raise Problem([{"trait": "", "error": f"at most {MAX_TRAITS_PER_WRITE} traits per write"}])
    problems: list[dict[str, str]] = []
    valid: dict[str, Any] = {}
    for name, value in values.items():
        trait = traits.get(name)
        if trait is None:
            known = ", ".join(sorted(traits)) or "none"
            problems.append(
                {"trait": str(name), "error": f"not a declared trait (the stack declares: {known})"}
            )
            continue
        wrong = _check(trait, value)
        if wrong is not None:
            problems.append({"trait": name, "error": f"{trait.type} trait {wrong}"})
        else:
            valid[name] = float(value) if trait.type == "number" and value is not None else value
    if problems:
        raise Problem(problems)
    return valid


def write_command(
    stack: str, user: str, traits: Mapping[str, Trait], values: Mapping[str, Any], at: float, now: float
) -> Command:
    """The EVALSHA that writes validated `values` for `user`, as written at `at` (the event's time,
    at most `now`), each kept its trait's TTL from then. Send `with_source` of it on NOSCRIPT."""
    at = min(at, now)
    args: list[Any] = []
    for name, value in values.items():
        expires = at + traits[name].ttl_seconds
        args += [name, orjson.dumps({"v": value, "e": expires, "t": at}), repr(at)]
    return ("EVALSHA", SCRIPT_SHA, 1, key(stack, user), repr(now), *args)


def with_source(command: Command) -> Command:
    """The same call as EVAL with the script's source, for a Redis that has not cached it yet."""
    return ("EVAL", SCRIPT, *command[2:])


def is_missing_script(error: BaseException | Any) -> bool:
    """A NOSCRIPT reply (redis-py raises it as NoScriptError, with another text)."""
    return isinstance(error, redis.exceptions.NoScriptError) or str(error).startswith("NOSCRIPT")


def read_command(stack: str, user: str) -> Command:
    return ("HGETALL", key(stack, user))


def parse(raw: Any, traits: Mapping[str, Trait], now: float) -> dict[str, Any]:
    """The user's traits from the HGETALL reply (a flat list or a dict, bytes or text): declared,
    set and unexpired, of the declared type (a value written under another declaration is ignored)."""
    if not raw:
        return {}
    pairs = raw.items() if isinstance(raw, Mapping) else zip(raw[::2], raw[1::2], strict=True)
    out: dict[str, Any] = {}
    for name, encoded in pairs:
        name = name.decode() if isinstance(name, bytes) else name
        trait = traits.get(name)
        if trait is None:
            continue
        try:
            doc = orjson.loads(encoded)
            value, expires = doc["v"], doc["e"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            continue
        if value is None or not isinstance(expires, int | float) or expires <= now:
            continue
        if _check(trait, value) is None:
            out[name] = float(value) if trait.type == "number" else value
    return out


def read(client: redis.Redis, stack: str, traits: Iterable[Trait], user: str, now: float) -> dict[str, Any]:
    """One user's traits, for callers that have nothing else to pipeline (the bandit's segment source,
    tools, tests). Decisions read them in their own round trip (ProfileReader.queue_read)."""
    return parse(client.hgetall(key(stack, user)), declared(traits), now)


def write(
    client: redis.Redis, stack: str, traits: Iterable[Trait], user: str, values: Any, at: float, now: float
) -> tuple[int, int, int]:
    """Validate and write one user's traits with a sync client: (written, stale, expired)."""
    by_name = declared(traits)
    valid = validate(by_name, values)
    command = write_command(stack, user, by_name, valid, at, now)
    try:
        reply = client.evalsha(SCRIPT_SHA, 1, *command[3:])
    except redis.ResponseError as error:
        if not is_missing_script(error):
            raise
        reply = client.eval(SCRIPT, 1, *command[3:])
    written, stale, expired = (int(n) for n in reply)
    return written, stale, expired


# -- the traits topic's CloudEvent ---------------------------------------------------------------------

UserId = Annotated[
    str, StringConstraints(min_length=1, max_length=constants.MAX_ID_LENGTH, pattern=constants.ID_PATTERN)
]


class TraitsData(BaseModel):
    """The event's `data`: whose traits, and their new values (null unsets one)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_id: UserId = Field(alias="userId", description="The user the traits are of (the decide's `user`).")
    traits: dict[str, float | bool | Annotated[str, StringConstraints(max_length=4096)] | None] = Field(
        min_length=1,
        max_length=MAX_TRAITS_PER_WRITE,
        description="Trait name -> value, checked against the stack's declared traits (spec.traits).",
    )


class TraitsEvent(BaseModel):
    """A traits CloudEvent 1.0 in structured JSON mode (content type application/cloudevents+json),
    one per message on the stack's traits topic, keyed by the user id (docs/traits.md)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, title="Tailor traits event v1")

    specversion: Literal["1.0"]
    type: Literal["dev.tailor.traits.v1"]
    source: str = Field(min_length=1, max_length=1024, description="The job that computed the traits.")
    id: str = Field(min_length=1, max_length=constants.MAX_ID_LENGTH)
    time: datetime = Field(description="When the traits were computed: their TTL runs from here.")
    datacontenttype: Literal["application/json"] | None = None
    data: TraitsData


def parse_event(raw: bytes) -> TraitsEvent:
    """A traits event from a message value; pydantic.ValidationError (or ValueError) says what is
    wrong with it."""
    return TraitsEvent.model_validate_json(raw)


def json_schema() -> dict[str, Any]:
    schema = TraitsEvent.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://tailor.dev/schemas/traits-v1.json"
    return schema


if __name__ == "__main__":  # `python -m tailor.core.profile.traits`: write schemas/traits-v1.json
    import json
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else SCHEMA_PATH)
    target.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {target}")
