"""`tailor api --stack NS/NAME [--port P] [--admin-port A] [--routes all|decide|collect]`: the content API.

It needs only TAILOR_REDIS_URL (with TAILOR_REDIS_USERNAME, _PASSWORD and _TLS_CA_FILE, _TLS_CERT_FILE,
_TLS_KEY_FILE where Redis asks for them): the rules, variants and Kafka settings come from the ruleset the
operator publishes for the stack, and are followed live. TAILOR_ADMIN_TOKEN enables the admin endpoints.
--routes: all (decisions, events, feedback, explain); decide (all but events, no Kafka client);
collect (POST /v1/events only: a collector Deployment of its own).
--port serves the public API (decide, feedback, events, openapi.json, sdk/tailor.js); --admin-port
(default 9464) serves /v1/explain, /v1/profiles, /metrics, /healthz and /readyz: keep it off the
shoppers' Service (docs/operating.md#the-admin-port).
The server is granian (chosen by measurement, docs/content-api.md) running the ASGI app with uvloop.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import pydantic

from tailor.core import constants, logs

DEFAULT_PORT = 8080


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve the content API for one PersonalizationStack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", required=True, metavar="NS/NAME", help="the PersonalizationStack to serve")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--admin-port",
        type=int,
        default=int(os.environ.get("TAILOR_ADMIN_PORT", constants.DEFAULT_ADMIN_PORT)),
        help="port of explain, profiles, metrics, health and readiness (default "
        f"{constants.DEFAULT_ADMIN_PORT}); env TAILOR_ADMIN_PORT",
    )
    parser.add_argument(
        "--admin-host", default=None, help="address the admin port listens on (default: as --host)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (default 1: scale with replicas)"
    )
    parser.add_argument(
        "--task-impl",
        choices=["asyncio", "rust"],
        default=os.environ.get("TAILOR_API_TASK_IMPL", "asyncio"),
        help="how granian drives request coroutines: asyncio's tasks (default), or its own Rust tasks "
        "(granian calls them experimental; Python 3.11 only; a shorter latency tail, "
        "docs/content-api.md); env TAILOR_API_TASK_IMPL",
    )
    parser.add_argument(
        "--routes",
        choices=["all", "decide", "collect"],
        default=os.environ.get("TAILOR_API_ROUTES", "all"),
        help="what to serve: all (default); decide (decisions, feedback, admin; no Kafka client); collect "
        "(POST /v1/events and health, readiness, metrics); env TAILOR_API_ROUTES",
    )
    parser.add_argument(
        "--graphql-introspection",
        action="store_true",
        default=os.environ.get("TAILOR_GRAPHQL_INTROSPECTION", "").lower() in ("1", "true", "yes"),
        help="answer introspection (__schema, __type) on /v1/graphql (default off: the schema is in "
        "docs/content-api.md); env TAILOR_GRAPHQL_INTROSPECTION",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, TaskImpl
    from granian.log import LogLevels
    from tailor_api import settings

    namespace, slash, name = args.stack.partition("/")
    if not slash or not namespace or not name:
        print(f"tailor api: --stack {args.stack!r} must be NAMESPACE/NAME", file=sys.stderr)
        return 2
    # The app factory runs in the server's worker processes: it reads these from the environment.
    os.environ["TAILOR_STACK"] = args.stack
    os.environ["TAILOR_API_ROUTES"] = args.routes
    os.environ["TAILOR_ADMIN_PORT"] = str(args.admin_port)
    os.environ["TAILOR_ADMIN_HOST"] = args.admin_host or args.host
    os.environ["TAILOR_ADMIN_PORT_SHARED"] = "true" if args.workers > 1 else "false"
    os.environ["TAILOR_GRAPHQL_INTROSPECTION"] = "true" if args.graphql_introspection else "false"
    if args.admin_port and args.admin_port == args.port:
        print(
            f"tailor api: --admin-port {args.admin_port} is the public --port; give another", file=sys.stderr
        )
        return 2
    try:
        settings.from_environment()
    except pydantic.ValidationError as error:
        for problem in error.errors(include_url=False):
            where = ".".join(map(str, problem["loc"]))
            if problem["type"] == "missing":
                print(f"tailor api: set {constants.ENV_REDIS_URL} ({where} is missing)", file=sys.stderr)
            else:
                print(f"tailor api: {where + ': ' if where else ''}{problem['msg']}", file=sys.stderr)
        return 2
    component = "collector" if args.routes == "collect" else "content-api"
    Granian(
        "tailor_api.app:app_from_environment",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        task_impl=TaskImpl(args.task_impl),
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels(args.log_level),
        # Text: granian's own configuration, as ever. JSON: every logger of the server and the app.
        log_dictconfig=(
            logs.granian_config(component, args.stack, args.log_level) if args.log_format == "json" else None
        ),
        log_access=False,
        respawn_failed_workers=True,  # a crashed worker comes back; the pod stays up
    ).serve()
    return 0
