"""The content API as one ASGI application: `create_app(settings)`.

Every route, POST /v1/events included, is a handler `(runtime, scope, receive) -> web.Reply` found by
a dict lookup, not a framework router: Starlette's application, router and one middleware, measured
against it on the decide path, cost more than the 5 % issue 16 allowed (docs/content-api.md, "Server
stack"), and every route here is fixed. What middleware would add is done inline, once:
security headers (strict CSP, nosniff) on every response, CORS from the served ruleset's
`config.api.corsOrigins`, request metrics, the request's id (X-Request-Id, taken when sane or made,
returned, and in every log line of the request: tailor.core.logs), and a problem+json 500 for
anything unexpected.

Two listeners: the public port (granian) serves the API shoppers and the shop call — /v1/decide,
/v1/feedback, /v1/events, /v1/graphql, /openapi.json, /sdk/tailor.js — and the admin port
(tailor_api.adminserver, `settings.admin_port`) serves /v1/explain, /v1/profiles/{user}, /metrics,
/healthz, /readyz and /readyz/collector, with its own /openapi.json; both through this one router
(`TailorApp` and `TailorApp.admin`). An admin path asked on the public port is a 404 that names the
admin port.

`settings.api_routes` says what this replica serves: `all`; `decide` (everything but POST /v1/events:
no Kafka client); `collect` (POST /v1/events and the operational routes, for a collector Deployment
of its own). A route served elsewhere answers 503 with a problem that says where, so that misrouted
events stay queued in the browsers and the 5xx alerts name the route (docs/operating.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from tailor.core import logs
from tailor.core.decision.engine import Engine
from tailor_api import (
    admin,
    adminserver,
    decide_endpoint,
    feedback,
    graphql_endpoint,
    identity,
    metrics,
    ofrep,
    openapi,
    ops,
    traits_endpoint,
    validation,
    web,
)
from tailor_api import settings as settings_module
from tailor_api.runtime import Collector, Runtime, load_collector
from tailor_api.settings import ApiSettings

log = logging.getLogger(__name__)

Handler = Callable[[Runtime, web.Scope, web.Receive], Awaitable[web.Reply]]
SECURITY_HEADERS: web.Headers = [
    (
        b"content-security-policy",
        b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
PROFILES_PREFIX = "/v1/profiles/"
CORS_METHODS = b"GET, POST, OPTIONS"
# authorization: identity tokens (docs/identity.md); if-none-match: OFREP's bulk evaluation
CORS_HEADERS = b"content-type, authorization, if-none-match"
CORS_EXPOSED = (b"access-control-expose-headers", b"etag, retry-after")  # read by OFREP web providers
# The `method` label's values: any other method name (clients send what they like) is counted as
# "other", so that no request can add a series to /metrics. Paths are bounded alike: a route's
# template, or "unmatched".
METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# What a collector of its own (`--routes collect`) serves beside POST /v1/events.
COLLECT_ROUTES = frozenset(
    {"/v1/events", "/healthz", "/readyz", "/readyz/collector", "/metrics", "/openapi.json"}
)
PUBLIC_PATHS = ("/v1/decide", "/v1/feedback", "/v1/events", "/v1/graphql", "/openapi.json", "/sdk/tailor.js",
                ofrep.BULK_PATH, ofrep.FLAG_LABEL)  # fmt: skip
ADMIN_PATHS = ("/v1/explain", "/v1/profiles/{user}", "/v1/profiles/{user}/traits", "/healthz", "/readyz",
               "/readyz/collector", "/metrics", "/openapi.json")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Route:
    label: str  # the `route` label of the request metrics
    methods: frozenset[str]
    handler: Handler
    # Counted against the rate limits (tailor_api.ratelimit): per client, and per user where the user
    # is in the query (decide; feedback counts its decision's user itself, once verified).
    limited: bool = False
    user_in_query: bool = False


class TailorApp:
    """The ASGI callable. `runtime` is reachable for tests and the CLI."""

    def __init__(self, settings: ApiSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        get, post = frozenset({"GET"}), frozenset({"POST"})
        graphql = graphql_endpoint.Endpoint(introspection=settings.graphql_introspection)
        self.routes: dict[str, Route] = {
            "/v1/decide": Route("/v1/decide", get, decide_endpoint.handle, limited=True, user_in_query=True),
            "/v1/feedback": Route("/v1/feedback", post, feedback.handle, limited=True),
            "/v1/events": Route("/v1/events", post, collect, limited=True),
            "/v1/graphql": Route("/v1/graphql", post, graphql, limited=True),  # REST's functions, in GraphQL
            "/openapi.json": Route("/openapi.json", get, self._openapi, limited=True),
            "/sdk/tailor.js": Route("/sdk/tailor.js", get, ops.Sdk(settings.sdk_path), limited=True),
            ofrep.BULK_PATH: Route(ofrep.BULK_PATH, post, ofrep.evaluate_flags, limited=True),
        }
        self.ofrep_flag = Route(ofrep.FLAG_LABEL, post, ofrep.evaluate_flag, limited=True)
        self.admin_routes: dict[str, Route] = {
            "/v1/explain": Route("/v1/explain", get, admin.explain),
            "/healthz": Route("/healthz", get, ops.healthz),
            "/readyz": Route("/readyz", get, ops.readyz),
            "/readyz/collector": Route("/readyz/collector", get, ops.collector_readyz),
            "/metrics": Route("/metrics", get, ops.metrics),
            "/openapi.json": Route("/openapi.json", get, self._admin_openapi),
        }
        self.profiles = Route("/v1/profiles/{user}", get, admin.profile)
        self.traits = Route("/v1/profiles/{user}/traits", frozenset({"PUT"}), traits_endpoint.put)
        mode = settings.api_routes
        if mode == "decide":
            del self.admin_routes["/readyz/collector"]
            self.routes["/v1/events"] = Route("/v1/events", post, served_elsewhere)
        elif mode == "collect":
            for table in (self.routes, self.admin_routes):
                for path, route in table.items():
                    if path not in COLLECT_ROUTES:
                        table[path] = Route(route.label, route.methods, served_elsewhere)
            self.profiles = Route(self.profiles.label, get, served_elsewhere)
            self.traits = Route(self.traits.label, self.traits.methods, served_elsewhere)
            self.ofrep_flag = Route(self.ofrep_flag.label, post, served_elsewhere)
        self.admin = AdminApp(self)
        self._admin_server: asyncio.Server | None = None
        self.request_ids = web.RequestIds()
        self.cors_origins: frozenset[bytes] = frozenset()
        self.cors_any = False
        self.openapi_body = orjson.dumps(openapi.document((), PUBLIC_PATHS))
        self.admin_openapi_body = orjson.dumps(openapi.document((), ADMIN_PATHS))
        runtime.on_engine(self._on_engine)

    def _on_engine(self, served: Engine) -> None:
        origins = served.config.api.cors_origins
        self.cors_any = "*" in origins
        self.cors_origins = frozenset(origin.rstrip("/").encode() for origin in origins if origin != "*")
        self.openapi_body = orjson.dumps(openapi.document(tuple(served.slots), PUBLIC_PATHS))
        self.admin_openapi_body = orjson.dumps(
            openapi.document(tuple(served.slots), ADMIN_PATHS, served.config.features.traits)
        )
        self.runtime.limiter.configure(served.config.api.rate_limits)

    async def _openapi(self, runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
        return web.Reply(200, self.openapi_body, web.JSON)

    async def _admin_openapi(self, runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
        return web.Reply(200, self.admin_openapi_body, web.JSON)

    async def __call__(self, scope: web.Scope, receive: web.Receive, send: web.Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: web.Receive, send: web.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                    await self.start_admin()
                except Exception as error:
                    log.exception("content API failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_admin()
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start_admin(self) -> None:
        """Listen on the admin port (settings.admin_port; 0: none, for tests that drive `admin` directly)."""
        settings = self.settings
        if settings.admin_port:
            self._admin_server = await adminserver.start(
                self.admin, settings.admin_host, settings.admin_port, shared=settings.admin_port_shared
            )
            log.info("admin port (explain, profiles, metrics, health, readiness): %s:%d",
                     settings.admin_host, settings.admin_port)  # fmt: skip

    async def stop_admin(self) -> None:
        server, self._admin_server = self._admin_server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def _cors(self, origin: bytes | None) -> web.Headers:
        if origin is None:
            return []
        if self.cors_any:
            return [(b"access-control-allow-origin", b"*"), CORS_EXPOSED]
        if origin in self.cors_origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), CORS_EXPOSED]
        return []

    async def _http(
        self, scope: web.Scope, receive: web.Receive, send: web.Send, *, admin_port: bool = False
    ) -> None:
        started = time.perf_counter()
        request_id = self.request_ids(scope)
        # Each request runs in a task of its own, which has its own copy of the context: the id set
        # here is seen by every line logged beneath, and by no other request.
        logs.REQUEST_ID.set(request_id)
        path: str = scope["path"]
        method: str = scope["method"]
        routes = self.admin_routes if admin_port else self.routes
        route = routes.get(path)
        if route is None and admin_port and path.startswith(PROFILES_PREFIX):
            route = self.traits if path.endswith(traits_endpoint.SUFFIX) else self.profiles
        elif route is None and not admin_port and path.startswith(ofrep.FLAG_PREFIX):
            route = self.ofrep_flag
        cors_on = not admin_port and (self.cors_any or self.cors_origins)
        origin = web.header(scope, b"origin") if cors_on else None
        cors = self._cors(origin)
        label = route.label if route is not None else "unmatched"
        if route is None:
            reply = self._not_found(path, admin_port)
        elif method == "OPTIONS" and origin is not None:
            reply = self._preflight(route, cors)
        elif method not in route.methods:
            allow = ", ".join(sorted(route.methods))
            reply = web.problem(405, "method-not-allowed", "Method not allowed", f"{path} takes {allow}")
            reply.headers.append((b"allow", allow.encode()))
        else:
            try:
                limited = await self._limit(route, scope) if route.limited else None
                reply = limited or await route.handler(self.runtime, scope, receive)
            except Exception:
                log.exception("%s %s failed", method, path)
                reply = web.problem(
                    500, "internal", "Internal error", "the server failed; it has been logged"
                )
        extra = SECURITY_HEADERS + cors if cors else SECURITY_HEADERS
        await web.send_reply(send, reply, extra, request_id)
        self._observe(label, method, reply.status, started)

    def _not_found(self, path: str, admin_port: bool) -> web.Reply:
        detail = f"no route {path[:100]}; see /openapi.json"
        if not admin_port and (path in self.admin_routes or path.startswith(PROFILES_PREFIX)):
            detail = (
                f"{path[:100]} is served on the admin port (tailor api --admin-port, default "
                f"{settings_module.DEFAULT_ADMIN_PORT}), not on the public one "
                "(docs/operating.md#the-admin-port)"
            )
        return web.problem(404, "not-found", "Not found", detail)

    async def _limit(self, route: Route, scope: web.Scope) -> web.Reply | None:
        """The 429 when this request is over a rate limit, else None (docs/content-api.md#rate-limits)."""
        limiter = self.runtime.limiter
        if not limiter.active:
            return None
        client = limiter.client_address(scope) if limiter.per_client is not None else None
        user = None
        if route.user_in_query and limiter.per_user is not None:
            # An invalid user gets the route's own 400: there is nothing to count it under.
            with contextlib.suppress(validation.InvalidParameter):
                user = validation.user(web.single(web.query(scope), "user"))
            if user is None:  # left out for an identity token's `sub` (docs/identity.md); cached check
                with contextlib.suppress(identity.IdentityError):
                    who = self.runtime.identity.check(scope, time.time())
                    user = who.user if who is not None else None
        return await limiter.check(self.runtime.connection, route.label, client, user)

    def _preflight(self, route: Route, cors: web.Headers) -> web.Reply:
        if not cors:
            return web.problem(
                403, "cors-origin", "Origin not allowed", "this origin is not in config.api.corsOrigins"
            )
        return web.Reply(
            204,
            b"",
            b"text/plain",
            [
                (b"access-control-allow-methods", CORS_METHODS),
                (b"access-control-allow-headers", CORS_HEADERS),
                (b"access-control-max-age", b"600"),
            ],
        )

    def _observe(self, label: str, method: str, status: int, started: float) -> None:
        metrics.request_counter(label, method if method in METHOD_LABELS else "other", status).inc()
        metrics.request_duration(label).observe(time.perf_counter() - started)


class AdminApp:
    """The admin port's ASGI callable: the same router, with the admin routes."""

    def __init__(self, app: TailorApp) -> None:
        self.app = app

    async def __call__(self, scope: web.Scope, receive: web.Receive, send: web.Send) -> None:
        if scope["type"] == "http":
            await self.app._http(scope, receive, send, admin_port=True)


async def collect(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """POST /v1/events: the collector's, once it runs with the served ruleset's Kafka settings."""
    gate = runtime.events_gate(scope)
    if isinstance(gate, web.Reply):
        return gate
    collector, who = gate
    return await collector.handle(scope, receive, who)


async def served_elsewhere(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """A route of the content API that this replica does not serve (`--routes decide|collect`)."""
    name = runtime.stack.partition("/")[2]
    mode = runtime.settings.api_routes
    if mode == "decide":
        where = (
            f"events are collected by the stack's collector (Service {name}-collector, "
            "spec.contentApi.collector.separate): route POST /v1/events there"
        )
    else:
        where = f"it is served by the stack's content API (Service {name}-api): route it there"
    detail = f"this replica serves `tailor api --routes {mode}`, not {scope['path'][:100]}; {where}"
    return web.problem(503, "served-elsewhere", "Route served elsewhere", detail)


def create_app(settings: ApiSettings, *, collector: Collector | None = None) -> TailorApp:
    """The app for `settings.stack`; the collector defaults to tailor_api.collector's where it serves."""
    if settings.api_routes == "decide":
        collector = None
    elif collector is None:
        collector = load_collector()
    return TailorApp(settings, Runtime(settings, collector))


def app_from_environment() -> TailorApp:
    """The factory the server calls in each worker process (`tailor api` sets TAILOR_STACK)."""
    return create_app(settings_module.from_environment())
