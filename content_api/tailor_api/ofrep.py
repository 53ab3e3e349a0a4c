"""OpenFeature Remote Evaluation Protocol (OFREP) on the public port: each slot is a flag.

POST /ofrep/v1/evaluate/flags/{slot} evaluates one slot (OpenFeature's server providers), POST
/ofrep/v1/evaluate/flags every slot of the served ruleset at once (the web providers; an ETag, and 304
for an If-None-Match that still holds). A flag's value is the chosen variant's name, its content and
decisionId are in the flag's metadata (docs/openfeature.md). The evaluation context's `targetingKey`
is the user, its `session` the session. Every evaluation is a decision of GET /v1/decide, made by the
same functions (tailor_api.decide_endpoint: validation, caps, identity, memory, impressions, signed
ids), under the same rate limits: per client by the router, per user here once the body says who.

Errors in OFREP's shape ({key, errorCode, errorDetails}): 400 PARSE_ERROR, TARGETING_KEY_MISSING,
INVALID_CONTEXT; 404 FLAG_NOT_FOUND. 401 (identity), 429 and 503 are the API's problems, with
`errorCode: GENERAL` beside them for OFREP clients.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Final

import orjson

from tailor.core.decision.engine import Engine
from tailor_api import decide_endpoint, identity, metrics, resp, validation, web
from tailor_api.runtime import Runtime

BULK_PATH: Final = "/ofrep/v1/evaluate/flags"
FLAG_PREFIX: Final = BULK_PATH + "/"
FLAG_LABEL: Final = FLAG_PREFIX + "{key}"  # the route label of single evaluations (metrics, limits)
MAX_BODY_BYTES: Final = 4096  # a context is a few ids; targeting attributes are not used (see docs)
NOT_MODIFIED: Final = 304
ERROR_CODES: Final = ("PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "FLAG_NOT_FOUND", "GENERAL")


class Refused(Exception):
    """An evaluation refused in OFREP's shape: `status`, `code` (an OpenFeature error code)."""

    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.code = code

    def reply(self, key: str | None) -> web.Reply:
        document = {"key": key, "errorCode": self.code, "errorDetails": str(self)}
        if key is None:  # a bulk request fails as a whole: no key
            del document["key"]
        return web.json_reply(self.status, document)


def read_context(body: bytes) -> dict[str, Any]:
    """The request's evaluation context (empty when none is sent); Refused when it is not JSON."""
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        detail = f'the body must be JSON: {{"context": {{...}}}} ({error})'
        raise Refused(400, "PARSE_ERROR", detail) from None
    if not isinstance(document, dict):
        raise Refused(400, "PARSE_ERROR", 'the body must be a JSON object: {"context": {...}}')
    context = document.get("context", {})
    if not isinstance(context, dict):
        raise Refused(400, "INVALID_CONTEXT", "`context` must be an object")
    return context


def _text(context: dict[str, Any], name: str) -> str | None:
    value = context.get(name)
    if name in context and not isinstance(value, str):  # null too: absent is the way to say none
        raise Refused(400, "INVALID_CONTEXT", f"the context's `{name}` must be a string")
    return value


def slot_names(context: dict[str, Any], served: Engine) -> list[str]:
    """The slots a bulk evaluation decides: the context's `slots` (a page names its own), else every
    slot of the served ruleset, within decide's cap of slots per request."""
    if "slots" not in context:
        if len(served.slots) > validation.MAX_SLOTS_PER_REQUEST:
            raise Refused(
                400, "INVALID_CONTEXT",
                f"this stack serves {len(served.slots)} slots, more than the "
                f"{validation.MAX_SLOTS_PER_REQUEST} one evaluation decides: list the page's slots in the "
                "context's `slots`",
            )  # fmt: skip
        return sorted(served.slots)
    named = context["slots"]
    if not isinstance(named, list) or not all(isinstance(name, str) for name in named):
        raise Refused(400, "INVALID_CONTEXT", "the context's `slots` must be a list of slot names")
    return list(validation.slots(named)) if named else []  # decide's cap and grammar


async def _evaluate(
    runtime: Runtime, scope: web.Scope, receive: web.Receive, served: Engine, key: str | None
) -> tuple[list[decide_endpoint.Served], list[str]] | web.Reply:
    """The decisions of the slots asked (one `key`, or the bulk's), and the unknown slots named; or
    the reply that refuses the request."""
    now = time.time()
    try:
        who = runtime.identity.check(scope, now)
        context = read_context(await web.read_body(scope, receive, MAX_BODY_BYTES))
        user, session = _text(context, "targetingKey"), _text(context, "session")
        if not user and who is None:
            raise Refused(400, "TARGETING_KEY_MISSING", "the context needs a `targetingKey`: the user's id")
        names = [key] if key is not None else slot_names(context, served)
        unknown = [name for name in names if name not in served.slots]
        if key is not None and unknown:
            raise Refused(404, "FLAG_NOT_FOUND", decide_endpoint.unknown_detail(unknown, served))
        user, session = decide_endpoint.identify(who, user, session, "targetingKey")
        # Named slots were held to decide's grammar and cap by slot_names; a key is known or refused.
        plans = [served.slots[name] for name in names if name in served.slots]
        if not plans:  # nothing to decide: a ruleset without slots, or only unknown ones named
            return [], unknown
    except web.BodyRefused as error:
        return error.reply()
    except identity.IdentityError as error:
        return identity.refusal(error)
    except validation.InvalidParameter as error:
        return Refused(400, "INVALID_CONTEXT", str(error)).reply(key)
    except Refused as error:
        return error.reply(key)
    if runtime.limiter.per_user is not None:  # the user is known only now, from the body or the token
        limited = await runtime.limiter.check(runtime.connection, _label(key), None, user)
        if limited is not None:
            return _general(limited)
    signer = runtime.signer
    assert signer is not None  # checked by the caller with the engine
    try:
        decided = await decide_endpoint.decide_slots(
            runtime, served, signer, user, session, plans, who is not None, now
        )
    except (resp.RedisUnavailable, resp.ReplyError) as error:
        return _general(web.redis_unavailable(error))
    return decided, unknown


def _label(key: str | None) -> str:
    return BULK_PATH if key is None else FLAG_LABEL


def _general(reply: web.Reply) -> web.Reply:
    """An API problem (429, 503) that OFREP clients also read as errorCode GENERAL."""
    document = orjson.loads(reply.body)
    document |= {"errorCode": "GENERAL", "errorDetails": document.get("detail", "")}
    reply.body = orjson.dumps(document)
    return reply


def flag(decision: decide_endpoint.Served, version: int) -> dict[str, Any]:
    """One slot's decision as an OFREP evaluation: value and variant the variant's name; no value (the
    caller's code default) when there is nothing to show."""
    metadata: dict[str, Any] = {"decisionId": decision.decision_id, "rulesetVersion": version}
    variant = decision.variant
    if variant is None:
        return {"key": decision.slot, "reason": "DEFAULT", "metadata": metadata}
    # Flag metadata holds scalars: the content as its JSON text (dumping a Fragment copies its bytes).
    metadata["content"] = orjson.dumps(variant.content).decode()
    if decision.rule is not None:
        metadata["rule"] = decision.rule
    return {
        "key": decision.slot,
        "value": variant.name,
        "variant": variant.name,
        "reason": "TARGETING_MATCH" if decision.rule is not None else "DEFAULT",
        "metadata": metadata,
    }


async def evaluate_flag(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """POST /ofrep/v1/evaluate/flags/{key}: one slot."""
    served = runtime.engine
    if served is None or runtime.signer is None:
        return _general(web.not_ready())
    started = time.perf_counter()
    key = scope["path"][len(FLAG_PREFIX) :]
    outcome = await _evaluate(runtime, scope, receive, served, key)
    if isinstance(outcome, web.Reply):
        return outcome
    (decision,), _ = outcome
    metrics.decide_duration.observe(time.perf_counter() - started)
    return web.Reply(200, orjson.dumps(flag(decision, served.version)), web.JSON, _headers(served))


async def evaluate_flags(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """POST /ofrep/v1/evaluate/flags: every slot (or the context's `slots`), with an ETag."""
    served = runtime.engine
    if served is None or runtime.signer is None:
        return _general(web.not_ready())
    started = time.perf_counter()
    outcome = await _evaluate(runtime, scope, receive, served, None)
    if isinstance(outcome, web.Reply):
        return outcome
    decided, unknown = outcome
    version = served.version
    metrics.decide_duration.observe(time.perf_counter() - started)
    tag = etag(version, decided)
    headers = [*_headers(served), (b"etag", tag)]
    if _matches(web.header(scope, b"if-none-match"), tag):
        return web.Reply(NOT_MODIFIED, b"", web.JSON, headers)
    missing = [
        {"key": name, "errorCode": "FLAG_NOT_FOUND", "errorDetails": f"no slot {name[:70]!r} in v{version}"}
        for name in unknown
    ]
    flags = [flag(decision, version) for decision in decided] + missing
    body = {"flags": flags, "metadata": {"rulesetVersion": version}}
    return web.Reply(200, orjson.dumps(body), web.JSON, headers)


def etag(version: int, decided: list[decide_endpoint.Served]) -> bytes:
    """What the user is shown, as an entity tag: the ruleset version and each slot's rule and variant
    (not the decisionIds, new on every decision). The same tag means the same content on every slot."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(b"%d" % version)
    for decision in decided:
        variant = decision.variant.name if decision.variant else ""
        digest.update(f"\0{decision.slot}\0{decision.rule or ''}\0{variant}".encode())
    return b'"' + digest.hexdigest().encode() + b'"'


def _matches(condition: bytes | None, tag: bytes) -> bool:
    """RFC 9110 §13.1.2: If-None-Match holds (304) when any listed tag matches weakly, or it is `*`."""
    if condition is None:
        return False
    for candidate in condition.split(b","):
        candidate = candidate.strip().removeprefix(b"W/")
        if candidate in (b"*", tag):
            return True
    return False


def _headers(served: Engine) -> web.Headers:
    return [(b"x-tailor-ruleset-version", served.version_header), decide_endpoint.CACHE_PRIVATE]
