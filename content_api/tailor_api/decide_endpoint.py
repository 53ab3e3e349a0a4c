"""GET /v1/decide: the hot path. One pipelined Redis read, pure decisions, at most one atomic cap check.

Per request: validate; read the user's profile and decision state in one round trip (user_context);
decide every slot with the engine the request started on (tailor.core.decision); confirm capped
candidates with tailor.core.decision.caps' script only when a capped rule is in play; send
session-memory and round-robin writes without waiting; sign a decisionId per slot; count impressions
in memory (flushed in the background). The response embeds each variant's content as pre-serialized
JSON.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tailor.core.decision import caps, decide
from tailor.core.decision.decide import Candidate, SlotDecision, UserContext
from tailor.core.decision.engine import Engine, LoadedVariant, SlotPlan
from tailor.core.profile import store
from tailor_api import identity, metrics, resp, tokens, user_context, validation, web
from tailor_api.runtime import Runtime

CACHE_PRIVATE = (b"cache-control", b"private, no-cache")


def parse_request(
    params: dict[str, list[str]], served: Engine, who: identity.Identity | None = None
) -> tuple[str, str, list[SlotPlan]]:
    """(user, session, slot plans) from decide's query; see `resolve`."""
    return resolve(
        served, who, web.single(params, "user"), web.single(params, "session"), params.get("slot", [])
    )


def resolve(
    served: Engine, who: identity.Identity | None, user: str | None, session: str | None, names: list[str]
) -> tuple[str, str, list[SlotPlan]]:
    """(user, session, slot plans), or InvalidParameter / LookupError / IdentityError for the problem
    reply. With a verified identity, user and session are the token's (and may be left out)."""
    user, session = identify(who, user, session)
    slots = validation.slots(names)
    unknown = [name for name in slots if name not in served.slots]
    if unknown:
        raise LookupError(unknown)
    return user, session, [served.slots[name] for name in slots]


def identify(
    who: identity.Identity | None, user: str | None, session: str | None, user_parameter: str = "user"
) -> tuple[str, str]:
    """The request's user and session, validated; the token's when it vouches (IdentityError when the
    request names others)."""
    if who is not None:
        user = identity.matched(who, user_parameter, user, who.user, "sub")
        session = identity.matched(who, "session", session, who.session, "sid")
    return validation.user(user, user_parameter), validation.session(session)


def unknown_slots(unknown: list[str], served: Engine) -> web.Reply:
    return web.problem(404, "unknown-slot", "Unknown slot", unknown_detail(unknown, served), parameter="slot")


def unknown_detail(unknown: list[str], served: Engine) -> str:
    known = ", ".join(sorted(served.slots)[:20]) or "none"
    asked = ", ".join(name[:70] for name in unknown)
    return f"no rule or variant serves slot {asked} in ruleset v{served.version}; known slots: {known}"


async def read_context(
    runtime: Runtime, served: Engine, user: str, session: str, plans: Sequence[SlotPlan], now: float
) -> UserContext:
    read = user_context.ContextRead(served, served.profile_reader, user, session, plans, now)
    replies = await runtime.connection.execute(read.commands)
    if isinstance(replies[0], resp.ReplyError) and "function" in str(replies[0]).lower():
        await store.install(runtime.redis)  # Redis restarted without its functions
        replies = await runtime.connection.execute(read.commands)
    return read.parse(replies, served.profile_reader)


async def confirm_caps(
    runtime: Runtime, served: Engine, context: UserContext, decisions: list[SlotDecision], now: float
) -> list[Candidate | None]:
    """The candidate served per slot: the first whose caps hold, checked and counted atomically."""
    capped = [d for d in decisions if d.needs_cap_check]
    chosen: dict[int, Candidate | None] = {}
    if capped:
        command = caps.confirm_command(
            served.stack, context.user, context.session,
            [(d.plan.name, [(c.rule, c.variant) for c in d.candidates]) for d in capped],
            now, served.config.features.session_timeout_seconds,
        )  # fmt: skip
        (reply,) = await runtime.connection.execute([command])
        if user_context.is_missing_script(reply):
            (reply,) = await runtime.connection.execute([caps.with_source(command)])
        if isinstance(reply, resp.ReplyError):
            raise reply
        for decision, index in zip(capped, reply, strict=True):
            chosen[id(decision)] = decision.candidates[index - 1] if index else None
    return [
        chosen[id(d)] if d.needs_cap_check else (d.candidates[0] if d.candidates else None) for d in decisions
    ]


@dataclass(frozen=True, slots=True)
class Served:
    """One slot's decision as served: REST and OFREP (tailor_api.ofrep) each write it their way."""

    slot: str
    rule: str | None  # None: no rule served; `variant` is then the slot's fallback, if any
    variant: LoadedVariant | None  # None: nothing to show (every fallback suppressed, or none)
    decision_id: str


async def decide_slots(
    runtime: Runtime, served: Engine, signer: tokens.Signer, user: str, session: str,
    plans: Sequence[SlotPlan], verified: bool, now: float,
) -> list[Served]:  # fmt: skip
    """Decide `plans` for the user: read, decide, confirm caps, remember, count, sign. Raises
    resp.RedisUnavailable or resp.ReplyError when Redis does not answer the read or the cap check."""
    context = await read_context(runtime, served, user, session, plans, now)
    cel = decide.CelActivation(served, context.profile)
    decisions = [
        decide.decide_slot(served, plan, context, now, runtime.bandit, cel, segments=runtime.segments)
        for plan in plans
    ]
    for stopped in cel.stopped:
        metrics.cel_budget_stops.labels(stopped).inc()
    served_candidates = await confirm_caps(runtime, served, context, decisions, now)
    writes: list[resp.Command] = []
    out: list[Served] = []
    version = served.version
    for decision, candidate in zip(decisions, served_candidates, strict=True):
        slot = decision.plan.name
        if candidate is not None:
            rule, variant = candidate.rule, candidate.variant
            if not candidate.remembered:
                if not rule.capped:  # caps.lua already remembered capped ones
                    writes += user_context.memory_writes(served, context, slot, rule.name, variant.name)
                if rule.strategy == "roundRobin":
                    writes += user_context.round_robin_writes(served, user, rule.name)
            runtime.count_impression(rule.name, variant.name, candidate.segment)
            metrics.decision_counter(slot, "rule").inc()
            token = signer.issue(
                version, slot, rule.name, variant.name, user, session, now, verified, candidate.segment
            )
            out.append(Served(slot, rule.name, variant, token))
        else:
            fallback = decision.fallback
            metrics.decision_counter(slot, "fallback" if fallback else "empty").inc()
            token = signer.issue(
                version, slot, None, fallback.name if fallback else None, user, session, now, verified
            )
            out.append(Served(slot, None, fallback, token))
    if writes:
        # If Redis is away the decision still stands; the session just is not remembered this time.
        with contextlib.suppress(resp.RedisUnavailable):
            await runtime.connection.send_nowait(writes)
    return out


async def handle(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    params = web.query(scope)
    try:
        user, session = web.single(params, "user"), web.single(params, "session")
    except validation.InvalidParameter as error:
        return web.invalid_parameter(error)
    made = await decisions(runtime, scope, user, session, params.get("slot", []))
    if isinstance(made, web.Reply):
        return made
    served, decided = made
    return web.Reply(
        200,
        orjson.dumps({"decisions": listed(served, decided)}),
        web.JSON,
        [(b"x-tailor-ruleset-version", served.version_header), CACHE_PRIVATE],
    )


def listed(served: Engine, decided: Sequence[Served]) -> list[dict[str, Any]]:
    """The decisions as /v1/decide lists them (GraphQL's Decision type has the same fields)."""
    version = served.version
    return [
        {"slot": d.slot, "variant": d.variant.name if d.rule and d.variant else None, "rule": d.rule,
         "content": d.variant.content if d.variant else None, "decisionId": d.decision_id,
         "rulesetVersion": version}
        for d in decided
    ]  # fmt: skip


async def decisions(
    runtime: Runtime,
    scope: web.Scope,
    user: str | None,
    session: str | None,
    slots: list[str],
    limit_route: str | None = None,
) -> tuple[Engine, list[Served]] | web.Reply:
    """Decide's whole request from its values (the query's, or GraphQL's arguments): the decisions and
    the engine that made them, or the problem reply (not ready, identity, validation, unknown slot,
    rate limit, Redis). `limit_route`: count the user against the per-user rate limit under this route
    label, once validated (REST's decide is counted by the router, which reads the user in the query)."""
    served = runtime.engine
    signer = runtime.signer
    if served is None or signer is None:
        return web.not_ready()
    started = time.perf_counter()
    now = time.time()
    try:
        who = runtime.identity.check(scope, now)
        user, session, plans = resolve(served, who, user, session, slots)
    except identity.IdentityError as error:
        return identity.refusal(error)
    except validation.InvalidParameter as error:
        return web.invalid_parameter(error)
    except LookupError as error:
        return unknown_slots(error.args[0], served)
    if limit_route is not None and runtime.limiter.per_user is not None:
        limited = await runtime.limiter.check(runtime.connection, limit_route, None, user)
        if limited is not None:
            return limited
    try:
        decided = await decide_slots(runtime, served, signer, user, session, plans, who is not None, now)
    except (resp.RedisUnavailable, resp.ReplyError) as error:
        return web.redis_unavailable(error)
    metrics.decide_duration.observe(time.perf_counter() - started)
    return served, decided
