"""What every component of the stack shares: its context, start/stop/restart, and health.

A component is a recipe (files to prepare, argv, a probe) plus the bookkeeping of one
process (its pid file). Subclasses fill in the recipe; the lifecycle lives here once.
"""

from __future__ import annotations

import abc
import json
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailor.devstack import nodenet, probes, procs
from tailor.devstack.artifacts import Toolbox
from tailor.devstack.certs import CertPaths
from tailor.devstack.paths import StackPaths


@dataclass
class StackContext:
    """What components need from the stack: paths, certificates, programs and ports."""

    paths: StackPaths
    certs: CertPaths
    tools: Toolbox
    ports: dict[str, int] = field(default_factory=dict)
    #: With a real node (`tailor dev up --node real`), the apiserver, Kafka and Redis also
    #: serve on the node's address, where pods reach the host.
    real_node: bool = False

    def port(self, key: str) -> int:
        return self.ports[key]

    def apiserver_host(self) -> str:
        """Where the apiserver listens: loopback, or the node's address when pods need it."""
        return nodenet.GATEWAY if self.real_node else "127.0.0.1"

    def apiserver_url(self) -> str:
        return f"https://{self.apiserver_host()}:{self.port('apiserver')}"

    def api(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        """One request to the apiserver as the admin; the body is decoded JSON ({} when empty)."""
        status, raw = probes.https_request(
            self.port("apiserver"),
            path,
            probes.client_tls(self.certs),
            method=method,
            body=body,
            host=self.apiserver_host(),
            content_type=content_type,
        )
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:  # /readyz and friends answer text
            return status, {}


class Component(abc.ABC):
    """One process of the stack."""

    #: Unique name: file names of its log, pid file and data dir derive from it.
    name: str = ""
    #: Names of components that must be healthy before this one starts.
    depends_on: tuple[str, ...] = ()
    #: Port keys this component listens on (allocated by the stack, kept across restarts).
    port_keys: tuple[str, ...] = ()
    #: Seconds to wait for health after start: generous for JVM and apiserver on 2 cores.
    start_timeout: float = 60.0
    #: Seconds between SIGTERM and SIGKILL on stop.
    stop_timeout: float = 15.0

    def __init__(self, context: StackContext) -> None:
        self.context = context

    # --- the recipe -------------------------------------------------------------------

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command line that runs this component in the foreground."""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """One probe; may raise while the component boots."""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Write config files, format storage: idempotent, run before every start."""

    def after_healthy(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Work that needs the component up (e.g. registering a fake node)."""

    def env(self) -> Mapping[str, str] | None:
        """Environment for the process; None inherits ours."""
        return None

    def endpoint(self) -> str:
        """Where clients reach it, for `tailor dev status`."""
        return ", ".join(f"127.0.0.1:{self.context.port(key)}" for key in self.port_keys)

    # --- bookkeeping ------------------------------------------------------------------

    @property
    def log(self) -> Path:
        return self.context.paths.log(self.name)

    @property
    def data_dir(self) -> Path:
        return self.context.paths.data_dir(self.name)

    @property
    def pid_file(self) -> Path:
        return self.context.paths.pid_file(self.name)

    def record(self) -> procs.ProcessRecord | None:
        return procs.ProcessRecord.load(self.pid_file)

    def is_running(self) -> bool:
        record = self.record()
        return record is not None and procs.is_running(record)

    def pid(self) -> int | None:
        record = self.record()
        return record.pid if record is not None and procs.is_running(record) else None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start (unless already running) and wait until healthy."""
        if not self.is_running():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.prepare()
            record = procs.spawn(self.argv(), log=self.log, env=self.env(), cwd=self.data_dir)
            record.save(self.pid_file)
        self.wait_healthy()
        self.after_healthy()

    def wait_healthy(self, timeout: float | None = None) -> None:
        record = self.record()
        probes.wait_until(
            self.healthy,
            what=f"{self.name} on {self.endpoint()}",
            timeout=self.start_timeout if timeout is None else timeout,
            log=self.log,
            alive=(lambda: procs.is_running(record)) if record is not None else None,
        )

    def stop(self) -> None:
        record = self.record()
        if record is not None:
            procs.stop(record, timeout=self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, no grace: what a crash looks like (for reliability tests)."""
        record = self.record()
        if record is not None:
            procs.stop(record, timeout=0.0, sig=signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()
