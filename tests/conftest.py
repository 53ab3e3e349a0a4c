"""Session fixtures on the local real stack (tailor.devstack), shared by every test.

The first test that needs Kubernetes, Kafka or Redis starts a dedicated stack under a
temporary TAILOR_HOME on free ports (built artifacts come from the shared cache); it is
torn down at the end of the session. Endpoints given in the environment (KUBECONFIG,
TAILOR_KAFKA_BOOTSTRAP, TAILOR_REDIS_URL) are used instead of starting those parts.
If the stack cannot start, the tests that need it fail with the reason; nothing skips.

Tests that use a stack fixture get the matching marker (kube, kafka, redis) added
automatically, so `pytest -m "not kube"` deselects them even when a marker was forgotten.
session_guards.py keeps one test's leftovers (environment, event loops, processes) out of the others.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import session_guards
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tailor import devstack
from tailor.devstack import kinesis_emulator
from tailor.devstack import redis_cluster as redis_cluster_servers
from tailor.devstack import secure_redis as secure_redis_server

#: Fixture name -> marker it implies.
_FIXTURE_MARKERS = {
    "kubeconfig": "kube",
    "kube_api": "kube",
    "kubectl": "kube",
    "helm": "kube",
    "namespace": "kube",
    "kafka_bootstrap": "kafka",
    "redis_url": "redis",
    "redis_client": "redis",
    "secure_redis": "redis",
    "redis_cluster": "redis",
    "real_node_stack": "realnode",
}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(session_guards, "tailor-session-guards")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def _report(message: str) -> None:
    sys.stderr.write(f"[devstack] {message}\n")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """A running stack for this test session; stopped and deleted afterwards."""
    home = tmp_path_factory.mktemp("tailor-home")
    test_stack = devstack.Stack("test", home, report=_report)
    try:
        test_stack.up()
    except devstack.DevstackError as error:
        test_stack.down(purge=False)  # keep the logs the message points at
        pytest.fail(f"the local stack did not start:\n{error}", pytrace=False)
    try:
        yield test_stack
    finally:
        test_stack.down(purge=True)


@pytest.fixture(scope="session")
def real_node_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """A second stack with a real node (kubelet, containerd, kube-proxy, registry) beside kwok's,
    for tests that run real pods; its own apiserver, Kafka and Redis, so kwok-based tests never
    see it. Pods reach Kafka and Redis at ``stack.pod_endpoints()``; images are pushed to
    ``stack.registry()``. One real node per machine: stopped (nothing left behind) at the end."""
    home = tmp_path_factory.mktemp("tailor-real-node-home")
    real = devstack.Stack("realnode", home, report=_report)
    try:
        _up_when_the_node_is_free(real)
    except devstack.DevstackError as error:
        with contextlib.suppress(devstack.DevstackError):
            real.down(purge=False)  # keep the logs the message points at
        pytest.fail(f"the stack with a real node did not start:\n{error}", pytrace=False)
    try:
        yield real
    finally:
        real.down(purge=True)


def _up_when_the_node_is_free(real: devstack.Stack, wait: float = 300) -> None:
    """Another session on this machine may hold its one real node for a while: wait for it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            real.up(node="real")
            return
        except devstack.NodeBusy as busy:
            if time.monotonic() > deadline:
                raise
            _report(f"waiting for the machine's real node: {busy}")
            time.sleep(10)


@pytest.fixture(scope="session")
def kubeconfig(stack: devstack.Stack) -> Path:
    return stack.kubeconfig


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: devstack.Stack) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(stack: devstack.Stack) -> str:
    return stack.redis_url


@pytest.fixture(scope="session")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secure_redis_server.SecureRedis]:
    """A second redis-server, TLS only, whose one login is an ACL user with a password holding
    @ : / % (tailor.devstack.secure_redis); the dev stack's Redis stays plain for every other test."""
    try:
        server = secure_redis_server.start(tmp_path_factory.mktemp("secure-redis"))
    except RuntimeError as error:
        pytest.fail(f"the Redis with TLS did not start:\n{error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_cluster_servers.RedisCluster]:
    """A Redis Cluster of 3 primaries and 3 replicas (tailor.devstack.redis_cluster), started by the
    first test that asks for it (about 6 s) and shared by the session. A test that kills or moves
    something leaves the cluster ok again (restart what it killed; `wait_ok`) and finds nodes by role
    and slot (`owner`, `replica_of`), never by index: an earlier test may have failed one over."""
    try:
        cluster = redis_cluster_servers.start(tmp_path_factory.mktemp("redis-cluster"))
    except devstack.DevstackError as error:
        pytest.fail(f"the Redis cluster did not start:\n{error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kinesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kinesis_emulator.KinesisEmulator]:
    """A Kinesis Data Streams emulator (moto's server mode, tailor.devstack.kinesis_emulator), started
    by the first test that asks for it (about 2 s) and shared by the session; each test makes its own
    stream. boto3 needs credentials to sign with (moto takes any): a test sets
    kinesis_emulator.ENVIRONMENT with monkeypatch and passes it to its processes."""
    try:
        emulator = kinesis_emulator.start(tmp_path_factory.mktemp("kinesis"))
    except RuntimeError as error:
        pytest.fail(f"the Kinesis emulator did not start:\n{error}", pytrace=False)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client per test (a test may restart the server under it); text replies."""
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="session")
def kube_api(kubeconfig: Path) -> Iterator[k8s_client.ApiClient]:
    """A kubernetes ApiClient for the stack's apiserver as the system:masters admin."""
    api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _runner(binary: Path, kubeconfig: Path) -> Runner:
    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        result = subprocess.run(
            [str(binary), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{binary.name} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def kubectl(stack: devstack.Stack, kubeconfig: Path) -> Runner:
    """``kubectl("get", "pods", "-n", ns)`` -> CompletedProcess; raises on failure
    unless ``check=False``; ``input=`` feeds stdin (e.g. ``apply -f -``)."""
    return _runner(stack.kubectl, kubeconfig)


@pytest.fixture(scope="session")
def helm(stack: devstack.Stack, kubeconfig: Path) -> Runner:
    """``helm("install", ...)`` with the stack's kubeconfig; same contract as ``kubectl``."""
    return _runner(stack.helm, kubeconfig)


@pytest.fixture
def namespace(kube_api: k8s_client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (deletion is not awaited).

    Yielded once its ``default`` ServiceAccount exists: the ServiceAccount admission
    plugin refuses Pods until kube-controller-manager has created it, as in a real cluster.
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = k8s_client.CoreV1Api(kube_api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except k8s_client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        core.delete_namespace(name)
