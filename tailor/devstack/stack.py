"""The local real stack: ``Stack(name, home).up() / .down() / .status() / .env()``.

Orchestration only: which components run (the user may provide Kubernetes, Kafka or Redis
through the environment instead), their ports, starting them in parallel in dependency
order, and stopping exactly what was started. Each component's recipe lives in
``components/``; builds in ``artifacts``.

``up(redis="cluster")`` runs six redis-server cluster nodes (3 primaries, 3 replicas) instead of
one Redis, forms them into a Redis Cluster the first time and restarts that cluster from its
nodes.conf after; TAILOR_REDIS_URL is then a seed node and TAILOR_REDIS_MODE=cluster.

``up(node="real")`` adds a real node beside kwok's fake one: a registry, containerd, the
kubelet and kube-proxy, on a bridge of their own (``nodenet``). `down` then also removes the
pods' sandboxes, the bridge and the host settings the node changed, and fails if anything of
the node is left (mounts, interfaces, processes, firewall rules).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import redis

from tailor.devstack import (
    certs,
    endpoints,
    kubeconfig,
    nodecheck,
    nodenet,
    paths,
    ports,
    probes,
    procs,
    redis_cluster,
)
from tailor.devstack.artifacts import Toolbox
from tailor.devstack.components.apiserver import ApiServer
from tailor.devstack.components.base import Component, StackContext
from tailor.devstack.components.containerd import Containerd
from tailor.devstack.components.controllers import ControllerManager, Scheduler
from tailor.devstack.components.coredns import CoreDns
from tailor.devstack.components.etcd import Etcd
from tailor.devstack.components.kafka import Kafka, SecureEndpoints
from tailor.devstack.components.kubelet import Kubelet
from tailor.devstack.components.kubeproxy import KubeProxy
from tailor.devstack.components.kwok import Kwok
from tailor.devstack.components.redis import Redis
from tailor.devstack.components.redis_cluster import NODE_CLASSES, RedisClusterNode
from tailor.devstack.components.registry import HELLO_PORT, Registry
from tailor.devstack.components.storage import Storage
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
#: The real node, in start order (each after what it depends on).
NODE_COMPONENTS: tuple[type[Component], ...] = (Registry, Containerd, CoreDns, Storage, Kubelet, KubeProxy)
ALL_COMPONENTS: tuple[type[Component], ...] = (
    *KUBE_COMPONENTS,
    *NODE_COMPONENTS,
    Kafka,
    Redis,
    *NODE_CLASSES,
)
NODE_KINDS = ("kwok", "real")
#: `tailor dev up --redis`: one redis-server, or a Redis Cluster of six nodes.
REDIS_KINDS = ("single", "cluster")
#: How long the six nodes may take to form a cluster, or to agree again after a restart.
CLUSTER_TIMEOUT = 60.0
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
            real_node=self.state.node == "real",
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

    def kafka_secure(self) -> SecureEndpoints:
        """The stack's own broker's SASL_SSL and mutual-TLS listeners, with their CA and users."""
        if "kafka" not in self.state.components:
            raise DevstackError(f"stack {self.name!r} does not run its own Kafka (TAILOR_KAFKA_BOOTSTRAP)")
        return self._kafka().secure()

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
        """KUBECONFIG, TAILOR_KAFKA_BOOTSTRAP, TAILOR_REDIS_URL (and TAILOR_REDIS_MODE for a
        cluster) of the running stack."""
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

    def up(self, node: str | None = None, redis: str | None = None) -> Endpoints:
        """Start every component that is not provided externally, and wait for health.

        ``node``: "kwok" (fake node only) or "real" (a kubelet, containerd and kube-proxy
        beside it); None keeps a running stack's choice, else kwok. ``redis``: "single" (one
        redis-server) or "cluster" (a Redis Cluster of six nodes); None keeps a running stack's
        choice, else single.
        """
        with exclusive(self.paths.lock_file):
            node = self._choose_node(node)
            redis_kind = self._choose_redis(redis)
            external = endpoints.external(self.environ, self.state.own, self.paths.root)
            if redis_kind == "cluster" and node == "real" and external.redis_url is None:
                raise DevstackError(
                    "--redis cluster serves on loopback only, where pods on a real node cannot reach "
                    "it: use --redis single with --node real"
                )
            if node == "real" and external.kubeconfig is not None:
                raise DevstackError(
                    f"KUBECONFIG={external.kubeconfig} points at another cluster: a real node joins "
                    "the stack's own apiserver; unset KUBECONFIG to use --node real."
                )
            selected = self._select(external, node, redis_kind)
            # Build (or find in the cache) first: builds use both cores, starts are cheap.
            self._prepare_tools(selected)
            self.state.node = node
            self.state.redis = redis_kind
            self._context.real_node = node == "real"
            if self._context.real_node:
                self._take_over_stale_node()
                nodenet.setup(self._node_owner, self._host_snapshot)
            self._context.certs = certs.ensure(self._context.certs, self._node_identity())
            self._allocate_ports(selected)
            own = Endpoints(
                kubeconfig=str(self.paths.kubeconfig) if "kube-apiserver" in selected else None,
                kafka_bootstrap=self._kafka().bootstrap() if "kafka" in selected else None,
                redis_url=self._redis_url(selected),
                redis_mode="cluster" if self._cluster_nodes(selected) else None,
            )
            self.state.own = own
            self.state.external = external
            self.state.components = list(selected)
            self.state.ports = self._context.ports
            self.state.save(self.paths.state_file)  # before starting: `down` can clean up
            if "kube-apiserver" in selected:
                kubeconfig.write(self.paths.kubeconfig, self._apiserver().url(), self._context.certs)
            try:
                self._start_parallel([self._components[name] for name in selected])
                cluster = self._cluster_nodes(selected)
                if cluster:
                    self._form_cluster(cluster)
                if self._context.real_node:
                    registry = Registry(self._context)
                    took = nodecheck.run(self._context.api, registry.hello_image(), HELLO_PORT)
                    self.report(f"real node: a pod ran, got Ready and served its Service in {took:.1f}s")
            except ComponentFailed:
                if self._context.real_node:  # stop what the check left running; put the host back
                    with contextlib.suppress(DevstackError):
                        self._stop_everything()
                raise
            self._check_external(external)
            return self.endpoints

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process this stack started; with ``purge`` delete its directory too.

        Returns the names of components that were running. Only processes recorded in this
        stack's pid files (and still the same processes) are signalled.
        """
        with exclusive(self.paths.lock_file):
            running = self._stop_everything()
        if purge:
            shutil.rmtree(self.paths.root, ignore_errors=True)
        return running

    def _stop_everything(self) -> list[str]:
        """Stop every component, then undo what a real node changed on the machine; return
        what was running. Raises when a process or anything of the node is left."""
        running = [c.name for c in self._components.values() if c.is_running()]
        # Stop groups in parallel; within Kubernetes, dependents before dependencies
        # (the kubelet before containerd, which removes the pods' sandboxes as it stops).
        kube_order = [self._components[cls.name] for cls in reversed((*KUBE_COMPONENTS, *NODE_COMPONENTS))]
        # A Redis cluster's replicas before its primaries: a replica never sees its primary gone and
        # takes over in the moment between their stops.
        groups = [kube_order, [self._kafka()], [self._redis(), *reversed(self._cluster_nodes())]]
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            for _ in pool.map(lambda group: [c.stop() for c in group], groups):
                pass
        left = [c.name for c in self._components.values() if c.is_running()]
        if left:
            raise ComponentFailed(f"still running after stop: {', '.join(left)}")
        # What the kubelet mounted (its root dir, pods' volumes) once no container uses it.
        nodenet.unmount_all(nodenet.mounts_under([self.paths.root]))
        undone = nodenet.teardown(self._node_owner, self._host_snapshot)
        if undone:
            self.report(f"real node: {'; '.join(undone)}")
        leftovers = self.node_leftovers()
        if leftovers:
            raise ComponentFailed(f"the real node left behind: {'; '.join(leftovers)}")
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
        if self.state.node == "real":
            containerd = self._components[Containerd.name]
            assert isinstance(containerd, Containerd)
            shims, processes = containerd.shims(), containerd.pod_processes()
            rows.append(
                ComponentStatus(
                    name="pods",
                    state="running" if shims else "stopped",
                    endpoint=f"{len(shims)} sandboxes, {len(processes) - len(shims)} processes",
                    pid=None,
                    log="",
                    rss_kib=sum(procs.rss_kib(pid) for pid in processes),
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

    # --- the real node ------------------------------------------------------------------

    @property
    def node(self) -> str:
        """ "kwok" or "real": the node this stack was last started with."""
        return self.state.node

    @property
    def _node_owner(self) -> str:
        """What the node's bridge records as its owner: this stack's directory."""
        return str(self.paths.root.resolve())

    @property
    def _host_snapshot(self) -> Path:
        return self.paths.data_dir("node") / "host-before.json"

    def _take_over_stale_node(self) -> None:
        """Clean up the real node of another stack that no longer runs (a crashed session,
        a stack stopped without `down`), so it does not block this machine's node forever."""
        owner = nodenet.bridge_owner()
        if owner is None or owner == self._node_owner:
            return
        root = Path(owner)
        if root.is_dir():
            other = Stack(root.name, root.parent, report=self.report)
            if any(component.is_running() for component in other._components.values()):
                return  # alive: nodenet.setup says whose it is
            self.report(f"real node: cleaning up what the stopped stack in {owner} left")
            other.down()
        elif not nodenet.processes_mentioning(owner):  # its directory is gone, and nothing of it runs
            self.report(f"real node: removing the bridge of the deleted stack in {owner}")
            nodenet.teardown(owner, root / "none")

    def _node_identity(self) -> certs.NodeIdentity | None:
        if not self._context.real_node:
            return None
        return certs.NodeIdentity(name=nodenet.NODE_NAME, address=nodenet.GATEWAY)

    def _choose_node(self, node: str | None) -> str:
        if node is not None and node not in NODE_KINDS:
            raise DevstackError(f"unknown node {node!r}: choose one of {', '.join(NODE_KINDS)}")
        running = [c.name for c in self._components.values() if c.is_running()]
        if node is None:
            return self.state.node if running else "kwok"
        if running and node != self.state.node:
            raise DevstackError(
                f"stack {self.name!r} runs with --node {self.state.node}: "
                f"run `tailor dev down` first, then `tailor dev up --node {node}`"
            )
        return node

    def _choose_redis(self, redis_kind: str | None) -> str:
        """Like `_choose_node`: a running stack keeps its Redis until `tailor dev down`."""
        if redis_kind is not None and redis_kind not in REDIS_KINDS:
            raise DevstackError(f"unknown Redis {redis_kind!r}: choose one of {', '.join(REDIS_KINDS)}")
        running = [c.name for c in self._components.values() if c.is_running()]
        if redis_kind is None:
            return self.state.redis if running else "single"
        if running and redis_kind != self.state.redis:
            raise DevstackError(
                f"stack {self.name!r} runs with --redis {self.state.redis}: "
                f"run `tailor dev down` first, then `tailor dev up --redis {redis_kind}`"
            )
        return redis_kind

    def _redis_url(self, selected: list[str]) -> str | None:
        if Redis.name in selected:
            return self._redis().url()
        cluster = self._cluster_nodes(selected)
        return cluster[0].url() if cluster else None  # a seed: clients discover the other nodes

    def _cluster_nodes(self, selected: list[str] | None = None) -> list[RedisClusterNode]:
        """The Redis Cluster's node components (of `selected` only, when given), in index order."""
        found = []
        for cls in NODE_CLASSES:
            if selected is None or cls.name in selected:
                component = self._components[cls.name]
                assert isinstance(component, RedisClusterNode)
                found.append(component)
        return found

    def _form_cluster(self, components: list[RedisClusterNode]) -> None:
        """Form the six running nodes into a cluster the first time; after that they restart as
        one from their nodes.conf, and this only waits until they agree again."""
        nodes = [component.node() for component in components]
        try:
            if not redis_cluster.formed(nodes):
                redis_cluster.form(nodes, CLUSTER_TIMEOUT)
                self.report("redis cluster: formed (3 primaries, 3 replicas)")
        except redis.RedisError as error:
            raise ComponentFailed(f"the Redis cluster could not be formed: {error}") from error
        probes.wait_until(
            lambda: redis_cluster.settled(nodes),
            what="the Redis cluster to be ok (`tailor dev down --purge` starts it afresh)",
            timeout=CLUSTER_TIMEOUT,
            log=components[0].log,
        )

    def registry(self) -> str:
        """host:port of the stack's OCI registry (push images there; pods pull them by reference)."""
        if self.state.node != "real":
            raise DevstackError(f"stack {self.name!r} has no registry: run `tailor dev up --node real`.")
        return Registry(self._context).address()

    def hello_image(self) -> str:
        """The test workload's image in the stack's registry (an HTTP server on port 8080 that
        answers its pod's name on / and 200 on /healthz; see gosrc/hello)."""
        return Registry(self._context).hello_image()

    def pod_endpoints(self) -> dict[str, str]:
        """Where pods on the real node reach the stack's services (the node's address).

        Kubernetes is reached in-cluster (the `kubernetes` Service); Kafka and Redis listen on
        the node's address as well as on loopback.
        """
        if self.state.node != "real":
            raise DevstackError(f"stack {self.name!r} has no real node: run `tailor dev up --node real`.")
        found = {}
        if "kafka" in self.state.components:
            found[endpoints.KAFKA_BOOTSTRAP] = self._kafka().pod_bootstrap()
        if "redis" in self.state.components:
            found[endpoints.REDIS_URL] = self._redis().pod_url()
        return found

    def node_leftovers(self) -> list[str]:
        """What of a real node is still on the machine: mounts under this stack's home,
        the bridge and its veths, shims or containers of its containerd, kube-proxy's tables."""
        found = [f"mount {point}" for point in nodenet.mounts_under([self.paths.root])]
        if nodenet.bridge_owner() == self._node_owner:
            found += [f"interface {name}" for name in nodenet.node_interfaces()]
        containerd = self._components[Containerd.name]
        assert isinstance(containerd, Containerd)
        found += [f"process {pid}" for pid in nodenet.processes_mentioning(str(containerd.socket))]
        ran_a_node = self._host_snapshot.exists() or containerd.config.exists()
        if ran_a_node and nodenet.bridge_owner() in (None, self._node_owner):
            found += [f"nftables table {t}" for t in nodenet.nft_tables() if t.endswith(" kube-proxy")]
        if self._host_snapshot.exists():  # kept by teardown only when chains could not be removed
            found += [f"iptables chain {chain}" for chain in nodenet.new_chains(self._host_snapshot)]
        return found

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

    def _select(self, external: Endpoints, node: str, redis_kind: str = "single") -> list[str]:
        selected: list[str] = []
        if external.kubeconfig is None:
            selected += [cls.name for cls in KUBE_COMPONENTS]
            if node == "real":
                selected += [cls.name for cls in NODE_COMPONENTS]
        if external.kafka_bootstrap is None:
            selected.append(Kafka.name)
        if external.redis_url is None:
            if redis_kind == "cluster":
                selected += [cls.name for cls in NODE_CLASSES]
            else:
                selected.append(Redis.name)
        return selected

    def _prepare_tools(self, selected: list[str]) -> None:
        if "kube-apiserver" in selected:
            _ = self.tools.kube
        if "kubelet" in selected:
            _ = self.tools.node
        if "kafka" in selected:
            _ = self.tools.java
            _ = self.tools.kafka_libs
        if "redis" in selected or self._cluster_nodes(selected):
            _ = self.tools.redis_server
        _ = self.tools.kubectl
        _ = self.tools.helm

    def _allocate_ports(self, selected: list[str]) -> None:
        """Keep ports of running components; reuse previous ones when free; else new."""
        previous = dict(self._context.ports)
        chosen: dict[str, int] = {}
        for node in self._cluster_nodes(selected):
            chosen.update(self._recorded_cluster_ports(node))
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

    def _recorded_cluster_ports(self, node: RedisClusterNode) -> dict[str, int]:
        """A formed cluster node's ports, which must not change: every node's nodes.conf records
        the others' addresses. redis-server binds with SO_REUSEADDR, so TIME_WAIT is no obstacle."""
        recorded = node.recorded_ports()
        taken = [port for port in recorded.values() if not ports.is_free(port, reuse_address=True)]
        if taken and not node.is_running():
            raise DevstackError(
                f"{node.name} of stack {self.name!r} cannot get its port {taken[0]} back: the nodes "
                "of a Redis cluster know each other by address; free it, or run "
                "`tailor dev down --purge` to start a new cluster"
            )
        return recorded

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
