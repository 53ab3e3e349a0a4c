"""The three endpoints clients need, their environment variables, and which are external.

``eval "$(tailor dev env)"`` exports exactly these variables, so a later ``tailor dev up``
sees them again: a value that points at this stack's own components is not "external"
(otherwise the stack would stop starting itself after the first eval).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

KUBECONFIG = "KUBECONFIG"
KAFKA_BOOTSTRAP = "TAILOR_KAFKA_BOOTSTRAP"
REDIS_URL = "TAILOR_REDIS_URL"
#: "cluster" when TAILOR_REDIS_URL is a seed node of a Redis Cluster (`tailor dev up --redis cluster`);
#: absent for one Redis, as before.
REDIS_MODE = "TAILOR_REDIS_MODE"
VARIABLES = (KUBECONFIG, KAFKA_BOOTSTRAP, REDIS_URL, REDIS_MODE)


@dataclass(frozen=True)
class Endpoints:
    """Where the stack's clients connect; any of them may be None when not (yet) known."""

    kubeconfig: str | None = None
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    #: "cluster" for a Redis Cluster's seed node; None for one Redis.
    redis_mode: str | None = None

    def as_env(self) -> dict[str, str]:
        pairs = {
            KUBECONFIG: self.kubeconfig,
            KAFKA_BOOTSTRAP: self.kafka_bootstrap,
            REDIS_URL: self.redis_url,
            REDIS_MODE: self.redis_mode if self.redis_url else None,
        }
        return {key: value for key, value in pairs.items() if value}


def render_exports(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines, quoted for POSIX shells, in a stable order."""
    return "".join(f"export {name}={shlex.quote(env[name])}\n" for name in VARIABLES if name in env)


def _normal_hostport(hostport: str) -> str:
    host, _, port = hostport.strip().rpartition(":")
    if host in ("localhost", "[::1]", "::1", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _same_bootstrap(a: str, b: str) -> bool:
    def normal(value: str) -> set[str]:
        return {_normal_hostport(part) for part in value.split(",") if part.strip()}

    return normal(a) == normal(b)


def _same_redis(a: str, b: str) -> bool:
    def normal(value: str) -> tuple[str, str]:
        parts = urlsplit(value)
        database = parts.path.strip("/") or "0"
        return _normal_hostport(parts.netloc.rsplit("@", 1)[-1]), database

    return normal(a) == normal(b)


def _same_path(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def external(environ: Mapping[str, str], own: Endpoints, stack_root: Path) -> Endpoints:
    """The endpoints the user provides in ``environ`` that are not this stack's own.

    ``own`` is what this stack served last time (from its state file); a kubeconfig inside
    the stack's own directory is always its own, even before any state exists.
    """
    kubeconfig = environ.get(KUBECONFIG, "").strip() or None
    if kubeconfig is not None and (
        (own.kubeconfig is not None and _same_path(kubeconfig, own.kubeconfig))
        or _same_path(os.path.dirname(kubeconfig) or ".", str(stack_root))
    ):
        kubeconfig = None
    bootstrap = environ.get(KAFKA_BOOTSTRAP, "").strip() or None
    if bootstrap is not None and own.kafka_bootstrap and _same_bootstrap(bootstrap, own.kafka_bootstrap):
        bootstrap = None
    redis_url = environ.get(REDIS_URL, "").strip() or None
    if redis_url is not None and own.redis_url and _same_redis(redis_url, own.redis_url):
        redis_url = None
    # A given Redis keeps the mode given with it (a cluster of the user's own).
    redis_mode = (environ.get(REDIS_MODE, "").strip() or None) if redis_url is not None else None
    return Endpoints(
        kubeconfig=kubeconfig, kafka_bootstrap=bootstrap, redis_url=redis_url, redis_mode=redis_mode
    )
