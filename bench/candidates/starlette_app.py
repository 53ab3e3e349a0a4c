"""The content API on Starlette: the candidate bench/decide.py measures against the hand-made router.

Issue 16 asked for one HTTP stack for every route, and for Starlette everywhere if it keeps ≥ 0.95 of
the hand-made router's decide throughput and p99. This is Starlette at its most favourable: the same
handlers, Runtime, problems and bodies (tailor_api.web), behind Starlette's application, router,
exception handlers and one pure-ASGI middleware (security headers, CORS, request metrics) — the
middleware style Starlette recommends where speed matters, and cheaper than its BaseHTTPMiddleware
or a CORSMiddleware that cannot follow a ruleset's origins. A full port (Request.query_params,
per-handler Responses) could only cost more, so if this candidate misses the bar, Starlette does.

    .venv/bin/python bench/decide.py --app starlette_app:app_from_environment
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tailor_api import app as lean
from tailor_api import metrics, settings, web

Asgi = Callable[[web.Scope, web.Receive, web.Send], Awaitable[None]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _response(reply: web.Reply) -> Response:
    response = Response(reply.body, reply.status, media_type=reply.content_type.decode())
    response.raw_headers.extend(reply.headers)
    return response


def _endpoint(tailor: lean.TailorApp, handler: lean.Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return _response(await handler(tailor.runtime, request.scope, request.receive))

    return endpoint


def _collect(tailor: lean.TailorApp) -> Endpoint:
    async def collect(request: Request) -> Response:
        collector = tailor.runtime.collector
        if collector is None or tailor.runtime.collector_config is None:
            return _response(web.problem(503, "collector-unavailable", "Collector unavailable", "off"))
        return _response(await collector.handle(request.scope, request.receive))

    return collect


class Headers:
    """Security headers and CORS on every response, request metrics, preflights: what app.py inlines."""

    def __init__(self, app: Asgi, tailor: lean.TailorApp) -> None:
        self.app, self.tailor = app, tailor

    async def __call__(self, scope: web.Scope, receive: web.Receive, send: web.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        tailor = self.tailor
        origin = web.header(scope, b"origin") if (tailor.cors_any or tailor.cors_origins) else None
        cors = tailor._cors(origin)
        if scope["method"] == "OPTIONS" and origin is not None:
            route = tailor.routes.get(scope["path"], tailor.profiles)
            reply = tailor._preflight(route, cors)
            await _response(reply)(scope, receive, self._with(send, cors, [0]))
            return
        status = [500]
        await self.app(scope, receive, self._with(send, cors, status))
        route = scope.get("route")
        label = route.path if route is not None else "unmatched"
        metrics.request_counter(label, scope["method"], status[0]).inc()
        metrics.request_duration(label).observe(time.perf_counter() - started)

    @staticmethod
    def _with(send: web.Send, cors: web.Headers, status: list[int]) -> web.Send:
        async def send_with_headers(message: web.Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), *lean.SECURITY_HEADERS, *cors]
            await send(message)

        return send_with_headers


def create_app(config: settings.ApiSettings) -> Starlette:
    tailor = lean.create_app(config)
    routes = []
    for path, route in {**tailor.routes, tailor.profiles.label: tailor.profiles}.items():
        if route.handler is None:  # the collector (off in bench/decide.py)
            routes.append(Route(path, _collect(tailor), methods=list(route.methods)))
        else:
            routes.append(Route(path, _endpoint(tailor, route.handler), methods=list(route.methods)))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 405:
            return _response(web.problem(405, "method-not-allowed", "Method not allowed", request.url.path))
        return _response(web.problem(error.status_code, "not-found", "Not found", "see /openapi.json"))

    async def internal(request: Request, error: Exception) -> Response:
        detail = "the server failed; it has been logged"
        return _response(web.problem(500, "internal", "Internal error", detail))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await tailor.runtime.start()
        yield
        await tailor.runtime.stop()

    return Starlette(
        routes=routes,
        middleware=[Middleware(Headers, tailor=tailor)],
        exception_handlers={HTTPException: http_error, Exception: internal},
        lifespan=lifespan,
    )


def app_from_environment() -> Starlette:
    return create_app(settings.from_environment())
