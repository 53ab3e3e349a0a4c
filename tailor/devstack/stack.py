"""The local real stack: ``Stack(name, home).up() / .down() / .status() / .env()``.

Orchestration only: which components run (the user may provide Kubernetes, Kafka or Redis
through the environment instead), their ports, starting them in parallel in dependency
order, and stopping exactly what was started. Each component's recipe lives in
``components/``; builds in ``artifacts``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import redis

from tailor.devstack import certs, endpoints, kubeconfig, paths, ports, probes, procs
from tailor.devstack.artifacts import Toolbox
from tailor.devstack.components.apiserver import ApiServer
from tailor.devstack.components.base import Component, StackContext
from tailor.devstack.components.controllers import ControllerManager, Scheduler
from tailor.devstack.components.etcd import Etcd
from tailor.devstack.components.kafka import Kafka
from tailor.devstack.components.kwok import Kwok
from tailor.devstack.components.redis import Redis
from tailor.devstack.endpoints import Endpoints
from tailor.devstack.errors import ComponentFailed, DevstackError
from tailor.devstack.runner import exclusive
from tailor.devstack.state import StackState

KUBE_COMPONENTS: tuple[type[Component], ...] = (
    Etcd,
    ApiServer,
    ControllerManager,
    Scheduler,
    Kwok,
)
ALL_COMPONENTS: tuple[type[Component], ...] = (*KUBE_COMPONENTS, Kafka, Redis)
#: How long to wait for an external endpoint to answer.
EXTERNAL_TIMEOUT = 10.0

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default report: say nothing."""


@dataclass(frozen=True)
class ComponentStatus:
    """One line of `tailor dev status`."""

    name: str
    state: str  # "running", "stopped" or "external"
    endpoint: str
    pid: int | None
    log: str
    #: Resident memory of the component's process group, KiB (0 when not running).
    rss_kib: int = 0


class Stack:
    """One named local stack whose runtime state lives in ``<home>/<name>``."""

    def __init__(
        self,
        name: str = paths.DEFAULT_STACK_NAME,
        home: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        report: Report = _quiet,
    ) -> None:
        if not name or "/" in name or name.startswith("."):
            raise DevstackError(f"invalid stack name {name!r}: use letters, digits, - or _")
        self.name = name
        self.paths = paths.StackPaths((home or paths.state_root()) / name)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.report = report
        self.tools = Toolbox(report)
        self.state = StackState.load(self.paths.state_file, name)
        self._context = StackContext(
            paths=self.paths,
            certs=certs.CertPaths(self.paths.certs),
            tools=self.tools,
            ports=self.state.ports,
        )
        self._components = {cls.name: cls(self._context) for cls in ALL_COMPONENTS}

    # --- endpoints and tools ----------------------------------------------------------

    @property
    def endpoints(self) -> Endpoints:
        return self.state.endpoints()

    @property
    def kubeconfig(self) -> Path:
        return Path(self._require(self.endpoints.kubeconfig, "kubeconfig"))

    @property
    def kafka_bootstrap(self) -> str:
        return self._require(self.endpoints.kafka_bootstrap, "Kafka bootstrap servers")

    @property
    def redis_url(self) -> str:
        return self._require(self.endpoints.redis_url, "Redis URL")

    def _require(self, value: str | None, what: str) -> str:
        if value is None:
            raise DevstackError(f"stack {self.name!r} has no {what} yet: run `tailor dev up`.")
        return value

    @property
    def kubectl(self) -> Path:
        return self.tools.kubectl

    @property
    def helm(self) -> Path:
        return self.tools.helm

    @property
    def kcat(self) -> Path:
        return self.tools.kcat

    @property
    def promtool(self) -> Path:
        return self.tools.promtool

    def env(self) -> dict[str, str]:
        """KUBECONFIG, TAILOR_KAFKA_BOOTSTRAP, TAILOR_REDIS_URL of the running stack."""
        return self.endpoints.as_env()

    def component(self, name: str) -> Component:
        try:
            return self._components[name]
        except KeyError:
            known = ", ".join(self._components)
            raise DevstackError(f"no component {name!r}; known: {known}") from None

    # --- whole stack ------------------------------------------------------------------

    def build(self) -> None:
        """Build or fetch everything (cached by version; a second call does nothing)."""
        self.tools.build_all()

    def up(self) -> Endpoints:
        """Start every component that is not provided externally, and wait for health."""
        with exclusive(self.paths.lock_file):
            external = endpoints.external(self.environ, self.state.own, self.paths.root)
            selected = self._select(external)
            # Build (or find in the cache) first: builds use both cores, starts are cheap.
            self._prepare_tools(selected)
            self._context.certs = certs.ensure(self._context.certs)
            self._allocate_ports(selected)
            own = Endpoints(
                kubeconfig=str(self.paths.kubeconfig) if "kube-apiserver" in selected else None,
                kafka_bootstrap=self._kafka().bootstrap() if "kafka" in selected else None,
                redis_url=self._redis().url() if "redis" in selected else None,
            )
            self.state.own = own
            self.state.external = external
            self.state.components = list(selected)
            self.state.ports = self._context.ports
            self.state.save(self.paths.state_file)  # before starting: `down` can clean up
            if "kube-apiserver" in selected:
                kubeconfig.write(self.paths.kubeconfig, self._apiserver().url(), self._context.certs)
            self._start_parallel([self._components[name] for name in selected])
            self._check_external(external)
            return self.endpoints

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process this stack started; with ``purge`` delete its directory too.

        Returns the names of components that were running. Only processes recorded in this
        stack's pid files (and still the same processes) are signalled.
        """
        with exclusive(self.paths.lock_file):
            running = [c.name for c in self._components.values() if c.is_running()]
            # Stop groups in parallel; within Kubernetes, dependents before dependencies.
            kube_order = [self._components[cls.name] for cls in reversed(KUBE_COMPONENTS)]
            groups = [kube_order, [self._kafka()], [self._redis()]]
            with ThreadPoolExecutor(max_workers=len(groups)) as pool:
                for _ in pool.map(lambda group: [c.stop() for c in group], groups):
                    pass
            left = [c.name for c in self._components.values() if c.is_running()]
            if left:
                raise ComponentFailed(f"still running after stop: {', '.join(left)}")
        if purge:
            shutil.rmtree(self.paths.root, ignore_errors=True)
        return running

    def status(self) -> list[ComponentStatus]:
        """What runs where: own components, then the external endpoints."""
        rows = []
        for component in self._components.values():
            if not self.state.ports.keys() >= set(component.port_keys):
                continue  # never configured in this stack (e.g. Kubernetes is external)
            pid = component.pid()
            rows.append(
                ComponentStatus(
                    name=component.name,
                    state="running" if pid is not None else "stopped",
                    endpoint=component.endpoint(),
                    pid=pid,
                    log=str(component.log),
                    rss_kib=procs.group_rss_kib(pid) if pid is not None else 0,
                )
            )
        ext = self.state.external
        for name, value in (
            ("kubernetes", ext.kubeconfig),
            ("kafka", ext.kafka_bootstrap),
            ("redis", ext.redis_url),
        ):
            if value:
                rows.append(ComponentStatus(name, "external", value, None, ""))
        return rows

    def is_up(self) -> bool:
        """True when every component this stack runs is running (all-external: True)."""
        if not self.state.components:
            return bool(self.state.external.as_env())
        return all(self._components[name].is_running() for name in self.state.components)

    # --- single components (tests restart Redis and the Kafka broker) -----------------

    def start(self, name: str) -> None:
        self.component(name).start()

    def stop(self, name: str) -> None:
        self.component(name).stop()

    def restart(self, name: str) -> None:
        self.component(name).restart()

    def kill(self, name: str) -> None:
        """SIGKILL a component, as a crash would."""
        self.component(name).kill()

    # --- internals --------------------------------------------------------------------

    def _apiserver(self) -> ApiServer:
        component = self._components[ApiServer.name]
        assert isinstance(component, ApiServer)
        return component

    def _kafka(self) -> Kafka:
        component = self._components[Kafka.name]
        assert isinstance(component, Kafka)
        return component

    def _redis(self) -> Redis:
        component = self._components[Redis.name]
        assert isinstance(component, Redis)
        return component

    def _select(self, external: Endpoints) -> list[str]:
        selected: list[str] = []
        if external.kubeconfig is None:
            selected += [cls.name for cls in KUBE_COMPONENTS]
        if external.kafka_bootstrap is None:
            selected.append(Kafka.name)
        if external.redis_url is None:
            selected.append(Redis.name)
        return selected

    def _prepare_tools(self, selected: list[str]) -> None:
        if "kube-apiserver" in selected:
            _ = self.tools.kube
        if "kafka" in selected:
            _ = self.tools.java
            _ = self.tools.kafka_libs
        if "redis" in selected:
            _ = self.tools.redis_server
        _ = self.tools.kubectl
        _ = self.tools.helm

    def _allocate_ports(self, selected: list[str]) -> None:
        """Keep ports of running components; reuse previous ones when free; else new."""
        previous = dict(self._context.ports)
        chosen: dict[str, int] = {}
        for name in selected:
            component = self._components[name]
            for key in component.port_keys:
                if component.is_running() and key in previous:
                    chosen[key] = previous[key]
        for name in selected:
            for key in self._components[name].port_keys:
                if key not in chosen:
                    chosen[key] = ports.pick(previous.get(key), chosen.values())
        self._context.ports.clear()
        self._context.ports.update(chosen)

    def _start_parallel(self, components: list[Component]) -> None:
        """Start each component once its dependencies are healthy; all in threads."""
        if not components:
            self.report(f"stack {self.name!r}: every part is external, nothing to start")
            return
        futures: dict[str, Future[None]] = {}
        names = {c.name for c in components}
        started_at = time.monotonic()

        def run(component: Component) -> None:
            for dependency in component.depends_on:
                if dependency in names:
                    futures[dependency].result()  # raises if the dependency failed
            begin = time.monotonic()
            component.start()
            self.report(
                f"{component.name} healthy after {time.monotonic() - begin:.1f}s ({component.endpoint()})"
            )

        with ThreadPoolExecutor(max_workers=len(components)) as pool:
            for component in components:  # ordered: dependencies before dependents
                futures[component.name] = pool.submit(run, component)
        errors = []
        for name, future in futures.items():
            error = future.exception()
            if error is not None and not _caused_by_dependency(error, futures, name):
                errors.append(error)
        if errors:
            for component in components:
                component.stop()
            messages = "\n\n".join(str(error) for error in errors)
            raise ComponentFailed(f"stack {self.name!r} did not come up:\n{messages}")
        self.report(f"stack {self.name!r} up in {time.monotonic() - started_at:.1f}s")

    def _check_external(self, external: Endpoints) -> None:
        """Fail clearly when an endpoint the user provided does not answer."""
        if external.kubeconfig:
            result = subprocess.run(
                [
                    str(self.tools.kubectl),
                    "--kubeconfig",
                    external.kubeconfig,
                    "get",
                    "--raw",
                    "/readyz",
                    f"--request-timeout={EXTERNAL_TIMEOUT:.0f}s",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ComponentFailed(
                    f"KUBECONFIG={external.kubeconfig} does not reach a ready apiserver "
                    f"({result.stderr.strip()}); unset KUBECONFIG to use the local stack."
                )
        if external.kafka_bootstrap:
            bootstrap = external.kafka_bootstrap
            probes.wait_until(
                lambda: probes.kafka_metadata(bootstrap),
                what=f"TAILOR_KAFKA_BOOTSTRAP={bootstrap} (unset it to use the local stack)",
                timeout=EXTERNAL_TIMEOUT,
            )
        if external.redis_url:
            url = external.redis_url
            probes.wait_until(
                lambda: bool(redis.Redis.from_url(url, socket_timeout=2).ping()),
                what=f"TAILOR_REDIS_URL={url} (unset it to use the local stack)",
                timeout=EXTERNAL_TIMEOUT,
            )


def _caused_by_dependency(error: BaseException, futures: Mapping[str, Future[None]], name: str) -> bool:
    """True when ``error`` is just a dependency's failure re-raised (reported once)."""
    return any(other != name and future.exception() is error for other, future in futures.items())
