"""Operational routes: /healthz, /readyz, /metrics, /openapi.json and /sdk/tailor.js."""

from __future__ import annotations

import pathlib
from importlib import resources

import prometheus_client

from tailor_api import web
from tailor_api.runtime import Runtime

JAVASCRIPT = b"text/javascript; charset=utf-8"


async def healthz(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    return web.json_reply(200, {"status": "ok"})


async def readyz(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """Ready when a ruleset is served, Redis answers, the collector runs and (unless turned off)
    Kafka's brokers answer."""
    served = runtime.engine
    checks: dict[str, dict[str, object]] = {
        "ruleset": {"ok": served is not None, "version": served.version if served else None}
    }
    if served is None and runtime.last_load_error:
        checks["ruleset"]["detail"] = runtime.last_load_error
    ok, detail = await runtime.redis_ready()
    checks["redis"] = {"ok": ok, "detail": detail}
    if runtime.settings.collector_enabled:
        # POST /v1/events answers 503 until the collector runs with the served ruleset's Kafka settings.
        running = runtime.collector is not None and runtime.collector_config is not None
        checks["collector"] = {"ok": running, "detail": "running" if running else "starting"}
        if runtime.settings.readiness_checks_kafka:
            ok, detail = await runtime.kafka_ready()
            checks["kafka"] = {"ok": ok, "detail": detail}
    ready = all(check["ok"] for check in checks.values())
    return web.json_reply(
        200 if ready else 503, {"ready": ready, "checks": checks}, [(b"cache-control", b"no-store")]
    )


async def metrics(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    return web.Reply(200, body, prometheus_client.CONTENT_TYPE_LATEST.encode())


def find_sdk(configured: str | None) -> pathlib.Path | None:
    """tailor.js: the configured path, else the copy packaged in tailor_api/static (a symlink to
    sdk/tailor.js in the repository, which setuptools copies into wheels), else None."""
    if configured:
        path = pathlib.Path(configured)
        return path if path.is_file() else None
    packaged = pathlib.Path(str(resources.files("tailor_api").joinpath("static", "tailor.js")))
    return packaged if packaged.is_file() else None


class Sdk:
    """Serves tailor.js, read once (the file is part of the release)."""

    def __init__(self, configured: str | None) -> None:
        self.configured = configured
        self.body: bytes | None = None

    async def __call__(self, runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
        if self.body is None:
            path = find_sdk(self.configured)
            if path is None:
                where = self.configured or "tailor_api/static/tailor.js (from sdk/tailor.js)"
                detail = f"tailor.js is not part of this installation: expected at {where}"
                return web.problem(404, "sdk-missing", "SDK not installed", detail)
            self.body = path.read_bytes()
        return web.Reply(200, self.body, JAVASCRIPT, [(b"cache-control", b"public, max-age=300")])
