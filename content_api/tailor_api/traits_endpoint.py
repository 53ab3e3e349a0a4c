"""PUT /v1/profiles/{user}/traits (admin port): a data pipeline or a back office sets a user's traits.

The body is an object of trait name -> value (null unsets one), checked against the traits the
stack declares (spec.traits; tailor.core.profile.traits): one bad trait refuses the whole write with
a 400 that names each bad trait and what was wrong. Valid values are written in one call of the
traits script, timed now, each kept its trait's TTL; decisions see them on their next read
(docs/traits.md). Needs the admin token, like the other admin routes.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, Final

import orjson

from tailor.core.profile import traits as profile_traits
from tailor_api import admin, metrics, resp, validation, web
from tailor_api.runtime import Runtime

SUFFIX: Final = "/traits"
MAX_BODY_BYTES: Final = 64 * 1024
EXAMPLE: Final = 'e.g. {"churnRisk": 0.82, "plan": "gold"}'


def _invalid(detail: str, errors: list[dict[str, str]] | None = None) -> web.Reply:
    extra: dict[str, Any] = {"errors": errors} if errors is not None else {}
    return web.problem(400, "invalid-traits", "Invalid traits", detail, **extra)


async def put(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    denied = admin.authorize(runtime, scope)
    if denied is not None:
        return denied
    served = runtime.engine
    if served is None:
        return web.not_ready()
    path: str = scope["path"]
    try:
        user = validation.user(urllib.parse.unquote(path[len("/v1/profiles/") : -len(SUFFIX)]))
    except validation.InvalidParameter as error:
        return web.invalid_parameter(error)
    declared = served.profile_reader.traits
    if not declared:
        return _invalid(f"stack {served.stack} declares no traits: add them to its spec.traits first")
    try:
        body = await web.read_body(scope, receive, MAX_BODY_BYTES)
    except web.BodyRefused as error:
        return error.reply()
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        metrics.traits_rejected.labels("admin", "invalid").inc()
        return _invalid(f"the body must be a JSON object of trait name -> value, {EXAMPLE}")
    try:
        values = profile_traits.validate(declared, document)
    except profile_traits.Problem as problem:
        metrics.traits_rejected.labels("admin", "invalid-trait").inc()
        return _invalid(f"nothing was written: {problem}", problem.problems)
    now = time.time()
    command = profile_traits.write_command(served.stack, user, declared, values, now, now)
    try:
        (reply,) = await runtime.connection.execute([command])
        if profile_traits.is_missing_script(reply):
            (reply,) = await runtime.connection.execute([profile_traits.with_source(command)])
        if isinstance(reply, resp.ReplyError):
            raise reply
    except (resp.RedisUnavailable, resp.ReplyError) as error:
        return web.redis_unavailable(error)
    written, stale, expired = (int(n) for n in reply)
    metrics.traits_written.labels("admin").inc(written)
    metrics.traits_expired.inc(expired)
    return web.json_reply(
        200, {"user": user, "written": written, "stale": stale, "traits": values}, [admin.NO_STORE]
    )
