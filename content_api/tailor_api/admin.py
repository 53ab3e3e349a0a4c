"""GET /v1/explain and GET /v1/profiles/{user}: what a reviewer needs to understand a decision.

Both need `Authorization: Bearer <TAILOR_ADMIN_TOKEN>` (compared in constant time); without a
configured token they are disabled. Explain reads the same state as /v1/decide and runs the same
decision with a trace, but counts nothing: caps are shown, not consumed.
"""

from __future__ import annotations

import hmac
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from tailor.core.decision import decide
from tailor.core.decision.engine import Engine
from tailor.core.profile import Profile
from tailor_api import decide_endpoint, resp, validation, web
from tailor_api.runtime import Runtime

NO_STORE = (b"cache-control", b"no-store")


def authorize(runtime: Runtime, scope: web.Scope) -> web.Reply | None:
    """None if the request carries the admin token, else the problem to answer."""
    token = runtime.settings.admin_token
    if token is None:
        detail = "set TAILOR_ADMIN_TOKEN (from a Secret) to enable /v1/explain and /v1/profiles"
        return web.problem(403, "admin-disabled", "Admin endpoints disabled", detail)
    given = web.header(scope, b"authorization") or b""
    scheme, _, credentials = given.partition(b" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), expected):
        return web.problem(401, "unauthorized", "Unauthorized", "send Authorization: Bearer <admin token>")
    return None


AdminHandler = Callable[[Runtime, Engine, web.Scope], Awaitable[web.Reply]]


def admin_only(handler: AdminHandler) -> Callable[[Runtime, web.Scope, web.Receive], Awaitable[web.Reply]]:
    """`handler` behind the admin token, called with the engine being served (503 before there is one)."""

    async def guarded(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
        denied = authorize(runtime, scope)
        if denied is not None:
            return denied
        served = runtime.engine
        if served is None:
            return web.not_ready()
        return await handler(runtime, served, scope)

    return guarded


@admin_only
async def explain(runtime: Runtime, served: Engine, scope: web.Scope) -> web.Reply:
    params = web.query(scope)
    try:
        user, session, plans = decide_endpoint.parse_request(params, served)
    except validation.InvalidParameter as error:
        return web.invalid_parameter(error)
    except LookupError as error:
        return decide_endpoint.unknown_slots(error.args[0], served)
    now = time.time()
    try:
        context = await decide_endpoint.read_context(runtime, served, user, session, plans, now)
    except (resp.RedisUnavailable, resp.ReplyError) as error:
        return web.redis_unavailable(error)
    cel = decide.CelActivation(served, context.profile)
    slots = []
    for plan in plans:
        trace: decide.Trace = []
        decision = decide.decide_slot(
            served, plan, context, now, runtime.bandit, cel, trace, segments=runtime.segments
        )
        slots.append({"slot": plan.name, "rules": trace, "decision": _outcome(decision)})
    document = {
        "user": user,
        "session": session,
        "rulesetVersion": served.version,
        "killSwitch": served.kill_switch,
        "state": {
            "memory": {slot: {"rule": r, "variant": v} for slot, (r, v) in context.memory.items()},
            "sessionCaps": dict(context.session_caps),
            "userCaps": dict(context.user_caps),
            "suppressed": sorted(context.suppressed),
            "roundRobin": dict(context.round_robin),
        },
        "profile": profile_document(context.profile),
        "slots": slots,
    }
    return web.json_reply(200, document, [NO_STORE])


def _outcome(decision: decide.SlotDecision) -> dict[str, Any]:
    candidates = [{"rule": c.rule.name, "variant": c.variant.name, "capped": c.rule.capped,
                   "remembered": c.remembered} for c in decision.candidates]  # fmt: skip
    if decision.candidates:
        first = decision.candidates[0]
        why = (
            "the session already saw it" if first.remembered else f"chosen by {first.rule.strategy} rotation"
        )
        if first.rule.capped:
            why += (
                "; its frequency cap is confirmed atomically when served, the next candidate follows if not"
            )
        outcome = {
            "rule": first.rule.name,
            "variant": first.variant.name,
            "reason": why,
            "candidates": candidates,
        }
        if first.segment is not None:  # a contextual bandit: the segment whose counts this one takes
            outcome["segment"] = first.segment
        return outcome
    fallback = decision.fallback
    return {
        "rule": None,
        "variant": fallback.name if fallback else None,
        "reason": "no rule applies: the slot's fallback"
        if fallback
        else "no rule applies and no fallback is visible",
        "candidates": [],
    }


def profile_document(profile: Profile) -> dict[str, Any]:
    session = profile.session
    return {
        "user": profile.user,
        "counts": {window: dict(counters) for window, counters in profile.counts.items()},
        "recent": {dimension: list(values) for dimension, values in profile.recent.items()},
        "session": None
        if session is None
        else {"id": session.id, "pageViews": session.page_views, "events": session.events,
              "startedAt": session.started_at, "lastSeenAt": session.last_seen_at},
    }  # fmt: skip


@admin_only
async def profile(runtime: Runtime, served: Engine, scope: web.Scope) -> web.Reply:
    raw_user = urllib.parse.unquote(scope["path"][len("/v1/profiles/") :])
    try:
        user = validation.user(raw_user)
        session = validation.session(web.single(web.query(scope), "session"))
    except validation.InvalidParameter as error:
        return web.invalid_parameter(error)
    now = time.time()
    try:
        context = await decide_endpoint.read_context(runtime, served, user, session, [], now)
    except (resp.RedisUnavailable, resp.ReplyError) as error:
        return web.redis_unavailable(error)
    document = profile_document(context.profile) | {"suppressed": sorted(context.suppressed)}
    return web.json_reply(200, document, [NO_STORE])
