"""Operational routes: /healthz, /readyz, /readyz/collector, /metrics, /openapi.json and /sdk/tailor.js."""

from __future__ import annotations

import gzip
import pathlib
from importlib import resources

import prometheus_client

from tailor_api import web
from tailor_api.runtime import Runtime

JAVASCRIPT = b"text/javascript; charset=utf-8"


async def healthz(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    return web.json_reply(200, {"status": "ok"})


async def readyz(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """Ready when this replica can answer what it serves. Serving decisions takes a loaded ruleset and
    Redis; a collector of its own (`--routes collect`) takes a ruleset and a running collector. Kafka
    is reported, never required: while it is away, POST /v1/events answers 503 with Retry-After, and a
    Kafka outage must not take decisions, or the collector's own answers, out of their Services."""
    needed = ("ruleset", "redis") if runtime.decides else ("ruleset", "collector")
    return await _readiness(runtime, needed)


async def collector_readyz(runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
    """Can events be collected now: a ruleset, the collector running, and Kafka reachable. For
    monitors and dashboards; no probe should use it (a Kafka outage would empty the Service)."""
    return await _readiness(runtime, ("ruleset", "collector", runtime.source_check))


async def _readiness(runtime: Runtime, needed: tuple[str, ...]) -> web.Reply:
    """`{"ready", "routes", "checks": {name: {ok, detail, required}}}`; 200 when every needed check is ok."""
    served = runtime.engine
    checks: dict[str, dict[str, object]] = {
        "ruleset": {"ok": served is not None, "version": served.version if served else None}
    }
    if served is None and runtime.last_load_error:
        checks["ruleset"]["detail"] = runtime.last_load_error
    behind, seconds = runtime.ruleset_lag()
    if behind:
        # Stale but ready: the version served was good when it came, and taking every replica out of
        # its Service over a ruleset none of them will take would turn a bad publish into an outage.
        # The gap is a metric and an alert instead (docs/operating.md, "A replica serves a stale ruleset").
        checks["ruleset"]["published"] = runtime.published_version
        checks["ruleset"]["stale"] = seconds >= runtime.settings.ruleset_stale_seconds
        checks["ruleset"]["detail"] = (
            f"serving an older version for {seconds:.0f}s; the published one was refused: "
            f"{runtime.last_load_error or 'not loaded yet'}"
        )
    ok, detail = await runtime.redis_ready()
    checks["redis"] = {"ok": ok, "detail": detail}
    if runtime.collector is not None:
        # POST /v1/events answers 503 until the collector runs with the served ruleset's Kafka settings.
        running = runtime.collector_config is not None
        error = runtime.collector_error
        if running:
            detail = f"running on earlier settings; the latest failed: {error}" if error else "running"
        else:
            detail = f"not running: {error}" if error else "starting"
        checks["collector"] = {"ok": running, "detail": detail}
        ok, detail = runtime.kafka_state()
        checks[runtime.source_check] = {"ok": ok, "detail": detail}
    keys = runtime.identity_keys
    if keys is not None and runtime.decides:
        # Reported, never required: with no usable key every signed request gets a 401, and taking
        # every replica out of its Service over a bad Secret would only turn those into 503s.
        detail = "keys: " + ", ".join(keys.kids) if keys.kids else "no usable key: every token is refused"
        checks["identity"] = {"ok": bool(keys.kids), "detail": "; ".join([detail, *keys.problems])}
    for name, check in checks.items():
        check["required"] = name in needed
    ready = all(name in checks and checks[name]["ok"] for name in needed)
    document = {"ready": ready, "routes": runtime.settings.api_routes, "checks": checks}
    return web.json_reply(200 if ready else 503, document, [(b"cache-control", b"no-store")])


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


def accepts_gzip(accept_encoding: bytes | None) -> bool:
    """Whether an Accept-Encoding header takes gzip (`gzip`, `x-gzip` or `*`, with a q above 0)."""
    for item in (accept_encoding or b"").lower().split(b","):
        coding, _, parameters = item.strip().partition(b";")
        if coding.strip() not in (b"gzip", b"x-gzip", b"*"):
            continue
        quality = parameters.strip().removeprefix(b"q=")
        try:
            return not parameters.strip() or float(quality) > 0
        except ValueError:
            return False
    return False


class Sdk:
    """Serves tailor.js, read and gzipped once (the file is part of the release); gzipped to every
    client that accepts it (65 kB become 19 kB: sdk/README.md#installing)."""

    def __init__(self, configured: str | None) -> None:
        self.configured = configured
        self.body: bytes | None = None
        self.gzipped = b""

    async def __call__(self, runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
        if self.body is None:
            path = find_sdk(self.configured)
            if path is None:
                where = self.configured or "tailor_api/static/tailor.js (from sdk/tailor.js)"
                detail = f"tailor.js is not part of this installation: expected at {where}"
                return web.problem(404, "sdk-missing", "SDK not installed", detail)
            body = path.read_bytes()
            self.gzipped = gzip.compress(body, compresslevel=9, mtime=0)
            self.body = body
        headers = [(b"cache-control", b"public, max-age=300"), (b"vary", b"accept-encoding")]
        if accepts_gzip(web.header(scope, b"accept-encoding")):
            return web.Reply(200, self.gzipped, JAVASCRIPT, [*headers, (b"content-encoding", b"gzip")])
        return web.Reply(200, self.body, JAVASCRIPT, headers)
