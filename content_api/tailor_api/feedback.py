"""POST /v1/feedback: what the user did with a decision — click, dismiss, notInterested, conversion.

The decisionId is verified (it is signed, see tokens.py) and carries rule, variant, user and session,
so nothing is looked up. Each (decision, type) counts once: a retried request is acknowledged and not
counted again. Clicks feed the per-variant statistics the bandit and the operator read; conversions and
dismissals are counted beside them; notInterested hides the variant and its tags from that user for
`config.api.suppressionSeconds`.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson
import redis

from tailor.core import stats
from tailor.core.decision import keys
from tailor_api import identity, metrics, resp, tokens, validation, web
from tailor_api.runtime import Runtime

TYPES: Final = ("click", "dismiss", "notInterested", "conversion")
MEASURE: Final = {"click": stats.CLICKS, "conversion": "conversions", "dismiss": "dismissals"}
MAX_BODY_BYTES: Final = 4096


def _invalid(field: str, detail: str) -> web.Reply:
    return web.problem(400, "invalid-feedback", "Invalid feedback", detail, parameter=field)


def parse(body: bytes) -> tuple[str, str] | web.Reply:
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _invalid("body", 'the body must be JSON: {"decisionId": "...", "type": "click"}')
    return check(document)


def check(document: Any) -> tuple[str, str] | web.Reply:
    """(decisionId, type) from a feedback document, or the 400 that says what is wrong with it."""
    if not isinstance(document, dict):
        return _invalid("body", 'the body must be a JSON object: {"decisionId": "...", "type": "click"}')
    decision_id, kind = document.get("decisionId"), document.get("type")
    try:
        decision_id = validation.decision_id(decision_id)
    except validation.InvalidParameter as error:
        return _invalid("decisionId", str(error))
    if kind not in TYPES:
        return _invalid("type", f"`type` must be one of {', '.join(TYPES)}")
    return decision_id, kind


async def handle(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    if runtime.signer is None:
        return web.not_ready()
    try:
        runtime.identity.check(scope, time.time())  # refused before the body is read
    except identity.IdentityError as error:
        return identity.refusal(error)
    try:
        body = await web.read_body(scope, receive, MAX_BODY_BYTES)
    except web.BodyRefused as error:
        return error.reply()
    parsed = parse(body)
    if isinstance(parsed, web.Reply):
        return parsed
    outcome = await give(runtime, scope, *parsed)
    return outcome if isinstance(outcome, web.Reply) else web.json_reply(202, {"status": outcome})


async def give(
    runtime: Runtime, scope: web.Scope, decision_id: str, kind: str, route: str = "/v1/feedback"
) -> str | web.Reply:
    """Count one checked feedback: "accepted", "duplicate", or the problem reply (identity, a decision
    not ours, too old, rate limit, Redis). Shared by REST and GraphQL; `route` labels a 429."""
    signer = runtime.signer
    if signer is None:
        return web.not_ready()
    now = time.time()
    try:
        who = runtime.identity.check(scope, now)  # cached: a second check costs a dict lookup
    except identity.IdentityError as error:
        return identity.refusal(error)
    try:
        try:
            ref = signer.verify(decision_id)
        except tokens.UnknownKey as unknown:  # an older period's key, or a replica that has not seen it
            older = await runtime.decision_key(unknown.kid)
            if older is None:
                raise
            ref = older.verify(decision_id)
    except tokens.InvalidToken as error:  # well-formed but not ours (or altered): refused, not malformed
        return web.problem(
            403, "decision-not-verified", "Decision not verified", str(error), parameter="decisionId"
        )
    except (resp.RedisUnavailable, redis.RedisError) as error:
        return web.redis_unavailable(error)
    refused = not_for(who, ref) if runtime.identity.mode != "off" else None
    if refused is not None:
        return identity.refusal(refused)
    if runtime.limiter.per_user is not None:  # its user is known only now, from the verified id
        limited = await runtime.limiter.check(runtime.connection, route, None, ref.user)
        if limited is not None:
            return limited
    max_age = runtime.settings.feedback_max_age_seconds
    if now - ref.issued_at > max_age:
        return _invalid(
            "decisionId", f"the decision is older than {max_age} seconds; feedback is no longer taken"
        )
    stack = runtime.stack
    # Once per session and rule, not per decision: every decide issues a new id, so per decision one
    # session could click its remembered variant again and again and poison the bandit (issue 14).
    once = f"r:{ref.session}:{ref.rule}" if ref.rule else ref.nonce
    once_key = f"{keys.api_prefix(stack, ref.user)}fb:{once}:{kind}"
    try:
        (first,) = await runtime.connection.execute([("SET", once_key, 1, "NX", "EX", max_age)])
        if first is None:
            return "duplicate"
        commands: list[resp.Command] = []
        if ref.rule and ref.variant and kind in MEASURE:
            commands.append(
                ("HINCRBY", stats.key(stack, ref.rule), stats.field(ref.variant, MEASURE[kind]), 1)
            )
            if ref.segment is not None and kind == "click":  # a contextual bandit's segment learns too
                field = stats.segment_field(ref.segment, ref.variant, stats.CLICKS)
                commands.append(("HINCRBY", stats.segment_key(stack, ref.rule), field, 1))
        if kind == "notInterested" and ref.variant:
            commands += suppression_writes(runtime, ref.user, ref.variant, now)
        if commands:
            for reply in await runtime.connection.execute(commands):
                if isinstance(reply, resp.ReplyError):
                    raise reply
    except (resp.RedisUnavailable, resp.ReplyError) as error:
        return web.redis_unavailable(error)
    metrics.feedback.labels(kind).inc()
    if kind == "click" and ref.rule and ref.variant:
        metrics.clicks.labels(ref.rule, ref.variant).inc()
    return "accepted"


def not_for(who: identity.Identity | None, ref: tokens.DecisionRef) -> identity.IdentityError | None:
    """Why this caller may not give feedback on the decision, if it may not: feedback counts only for
    the user and session the decision was made for, once a token says who the caller is, and a
    decision made for a vouched-for user takes feedback only with their token (while identity is on:
    a stack that turned it off takes feedback as before)."""
    if who is None:
        if ref.verified:
            return identity.IdentityError(
                "missing", "this decision was made for a signed-in user: send their identity token"
            )
        return None
    if (who.user, who.session) != (ref.user, ref.session):
        return identity.IdentityError(
            "mismatch", "the decision was made for another user or session than the identity token's"
        )
    return None


def suppression_writes(runtime: Runtime, user: str, variant: str, now: float) -> list[resp.Command]:
    """Hide `variant`, and every variant sharing one of its tags, from `user` for the configured time."""
    served = runtime.engine
    seconds = served.config.api.suppression_seconds if served else 7 * 86400
    marks = [f"v:{variant}"]
    if served is not None:
        for plan in served.slots.values():
            for known in (*plan.fallbacks, *(v for rule in plan.rules for v in rule.variants)):
                if known.name == variant:
                    marks = list(known.suppression_marks)
    key = keys.suppression_key(runtime.stack, user)
    until = now + seconds
    return [
        ("ZREMRANGEBYSCORE", key, "-inf", now),
        ("ZADD", key, *[part for mark in marks for part in (until, mark)]),
        ("EXPIRE", key, seconds + 60),
    ]
