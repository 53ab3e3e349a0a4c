"""The local stack is real: a served API, scheduled Pods, a broker, a durable Redis.

Each test shows one thing a user of the stack relies on, through the same clients they
use (kubectl, the kubernetes client, confluent-kafka, kcat, redis-py, `tailor dev`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer
from kubernetes import client as k8s_client

from tailor import devstack
from tailor.core import redis_target
from tailor.devstack import procs
from tailor.devstack.components.redis_cluster import RedisClusterNode
from tailor.devstack.paths import StackPaths

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.stack-test.tailor.dev
spec:
  group: stack-test.tailor.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1}
                colors: {type: array, items: {type: string}}
"""


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout:.0f}s (last: {result!r})")
        time.sleep(0.2)


@pytest.mark.kube
def test_crd_applied_with_kubectl_is_served_and_a_resource_round_trips(
    kubectl: Runner, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=CRD)
    try:
        kubectl(
            "wait",
            "--for=condition=Established",
            "crd/gadgets.stack-test.tailor.dev",
            "--timeout=60s",
        )
        gadget = {
            "apiVersion": "stack-test.tailor.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1", "namespace": namespace},
            "spec": {"size": 3, "colors": ["red", "blue"]},
        }
        kubectl("apply", "-f", "-", input=json.dumps(gadget))
        served = k8s_client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            "stack-test.tailor.dev", "v1", namespace, "gadgets", "g1"
        )
        assert isinstance(served, dict)
        assert served["spec"] == {"size": 3, "colors": ["red", "blue"]}
        # The structural schema is enforced by the apiserver itself.
        bad = {**gadget, "metadata": {"name": "g2", "namespace": namespace}}
        bad["spec"] = {"size": 0}
        refused = kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
        assert refused.returncode != 0
        assert "spec.size" in refused.stderr
    finally:
        kubectl("delete", "crd", "gadgets.stack-test.tailor.dev", "--wait=false")


@pytest.mark.kube
@pytest.mark.slow
def test_deployment_becomes_ready_through_scheduler_controllers_and_kwok(
    kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    apps = k8s_client.AppsV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        k8s_client.V1Deployment(
            metadata=k8s_client.V1ObjectMeta(name="web"),
            spec=k8s_client.V1DeploymentSpec(
                replicas=2,
                selector=k8s_client.V1LabelSelector(match_labels=labels),
                template=k8s_client.V1PodTemplateSpec(
                    metadata=k8s_client.V1ObjectMeta(labels=labels),
                    spec=k8s_client.V1PodSpec(
                        containers=[k8s_client.V1Container(name="web", image="example/web:1")]
                    ),
                ),
            ),
        ),
    )

    def ready_replicas() -> int:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return (status.ready_replicas or 0) if status is not None else 0

    eventually(
        lambda: ready_replicas() == 2,
        timeout=60,
        what="Deployment web with 2 ready replicas",
    )
    pods = k8s_client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec is not None
        assert pod.status is not None
        assert pod.metadata is not None
        assert pod.metadata.owner_references is not None
        assert pod.spec.node_name == "kwok-node-0"  # bound by kube-scheduler
        assert pod.status.phase == "Running"  # made so by kwok
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"  # controller-manager


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    delivered: list[Any] = []
    producer.produce(topic, value=value, on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None], delivered


def _consume_one(bootstrap: str, topic: str, timeout: float = 30) -> bytes:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                pytest.fail(f"consume from {topic}: {error}")
            value = message.value()
            if value is not None:
                return bytes(value)
        pytest.fail(f"no message on {topic} within {timeout}s")
    finally:
        consumer.close()


@pytest.mark.kafka
def test_message_produced_is_read_back_by_confluent_kafka_and_by_kcat(
    stack: devstack.Stack, kafka_bootstrap: str
) -> None:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    value = f"hello {uuid.uuid4()}".encode()
    _produce(kafka_bootstrap, topic, value)
    assert _consume_one(kafka_bootstrap, topic) == value
    kcat = subprocess.run(
        [str(stack.kcat), "-C", "-b", kafka_bootstrap, "-t", topic, "-o", "beginning", "-c", "1", "-e", "-q"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert kcat.stdout.rstrip(b"\n") == value


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_broker_restart_keeps_acknowledged_messages(
    stack: devstack.Stack, kafka_bootstrap: str
) -> None:
    if "kafka" not in stack.state.components:
        pytest.fail("TAILOR_KAFKA_BOOTSTRAP points elsewhere: this test restarts our broker")
    topic = f"stack-restart-{uuid.uuid4().hex[:8]}"
    _produce(kafka_bootstrap, topic, b"before restart")
    stack.restart("kafka")
    assert stack.kafka_bootstrap == kafka_bootstrap  # clients keep their address
    assert _consume_one(kafka_bootstrap, topic) == b"before restart"


@pytest.mark.redis
def test_redis_keeps_acknowledged_writes_across_a_kill(
    stack: devstack.Stack, redis_client: redis.Redis
) -> None:
    if "redis" not in stack.state.components:
        pytest.fail("TAILOR_REDIS_URL points elsewhere: this test kills our Redis")
    key = f"stack-test:{uuid.uuid4().hex}"
    redis_client.set(key, "durable")
    redis_client.rpush(f"{key}:list", "a", "b")
    old_pid = stack.component("redis").pid()
    stack.kill("redis")  # SIGKILL: no shutdown save; only the fsynced AOF remains
    stack.start("redis")
    assert stack.component("redis").pid() != old_pid
    fresh = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        assert fresh.get(key) == "durable"
        assert fresh.lrange(f"{key}:list", 0, -1) == ["a", "b"]
    finally:
        fresh.close()


def _stack_processes(root: Path) -> list[str]:
    """Live processes whose command line mentions the stack's directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state not in ("Z", "X") and str(root) in argv:
            found.append(f"{entry.name}: {argv[:200]}")
    return found


@pytest.mark.kube
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_tailor_dev_down_leaves_no_process_of_its_stack(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBECONFIG", "TAILOR_KAFKA_BOOTSTRAP", "TAILOR_REDIS_URL")
    }
    env["TAILOR_HOME"] = str(tmp_path)
    tailor = [sys.executable, "-m", "tailor.cli.main", "dev", "--name", "down-test"]
    up = subprocess.run([*tailor, "up"], env=env, capture_output=True, text=True, timeout=300)
    root = tmp_path / "down-test"
    try:
        assert up.returncode == 0, up.stderr
        records = [procs.ProcessRecord.load(path) for path in StackPaths(root).pid_file("x").parent.iterdir()]
        assert len(records) == 7, records  # etcd, 3 kube, kwok, kafka, redis
        assert all(record is not None and procs.is_running(record) for record in records)
        assert _stack_processes(root)
        down = subprocess.run([*tailor, "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stderr
        assert not any(record is not None and procs.is_running(record) for record in records)
        assert _stack_processes(root) == []
        status = subprocess.run([*tailor, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 3  # "not up"
        assert "running" not in status.stdout
    finally:
        subprocess.run([*tailor, "down", "--purge"], env=env, capture_output=True, timeout=120)


@pytest.mark.kube
@pytest.mark.kafka
@pytest.mark.redis
def test_endpoints_given_in_the_environment_are_used_instead_of_starting_them(
    stack: devstack.Stack, tmp_path: Path
) -> None:
    given = {
        "KUBECONFIG": str(stack.kubeconfig),
        "TAILOR_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
    }
    partial = devstack.Stack("partial", tmp_path, environ=given)
    try:
        partial.up()
        assert partial.state.components == ["redis"]  # only what was not given
        assert partial.env()["KUBECONFIG"] == given["KUBECONFIG"]
        assert partial.env()["TAILOR_KAFKA_BOOTSTRAP"] == given["TAILOR_KAFKA_BOOTSTRAP"]
        assert partial.redis_url != stack.redis_url
        states = {row.name: row.state for row in partial.status()}
        assert states == {"redis": "running", "kubernetes": "external", "kafka": "external"}
        # What `eval "$(tailor dev env)"` exports counts as the stack's own next time.
        again = devstack.Stack("partial", tmp_path, environ={**given, **partial.env()})
        again.up()
        assert again.state.components == ["redis"]
        assert again.redis_url == partial.redis_url
    finally:
        partial.down(purge=True)


@pytest.mark.kube
@pytest.mark.kafka
@pytest.mark.redis
def test_up_redis_cluster_forms_six_nodes_once_and_restarts_the_same_cluster_after_down(
    stack: devstack.Stack, tmp_path: Path
) -> None:
    given = {"KUBECONFIG": str(stack.kubeconfig), "TAILOR_KAFKA_BOOTSTRAP": stack.kafka_bootstrap}
    clustered = devstack.Stack("clustered", tmp_path, environ=given)
    names = [f"redis-cluster-{index}" for index in range(6)]
    try:
        clustered.up(redis="cluster")
        assert clustered.state.components == names  # only the cluster: the rest was given
        env = clustered.env()
        assert env["TAILOR_REDIS_MODE"] == "cluster"
        assert {row.name: row.state for row in clustered.status()} == {
            **dict.fromkeys(names, "running"),
            "kubernetes": "external",
            "kafka": "external",
        }
        components = [clustered.component(name) for name in names]
        nodes = [component.node() for component in components if isinstance(component, RedisClusterNode)]
        info = nodes[0].info("cluster")
        assert (info["cluster_state"], info["cluster_size"], info["cluster_known_nodes"]) == ("ok", "3", "6")
        assert sorted(node.info("replication")["role"] for node in nodes) == ["master"] * 3 + ["slave"] * 3
        keys = {f"tailor:test:{{user-{i}}}:n": str(i) for i in range(30)}
        with redis_target.RedisTarget.from_environment(env).client(decode_responses=True) as client:
            for key, value in keys.items():
                client.set(key, value)
        for primary in nodes[:3]:  # the keys are spread: every primary holds some
            with primary.client() as plain:
                assert plain.dbsize() > 0
        identities = [node.node_id() for node in nodes]
        with pytest.raises(devstack.DevstackError, match="run `tailor dev down` first"):
            clustered.up(redis="single")

        records = [component.record() for component in components]
        assert sorted(clustered.down()) == names
        assert not any(record is not None and procs.is_running(record) for record in records)

        clustered.up(redis="cluster")  # restarted from nodes.conf, not formed anew
        assert [node.node_id() for node in nodes] == identities
        with redis_target.RedisTarget.from_environment(clustered.env()).client(
            decode_responses=True
        ) as client:
            assert {key: client.get(key) for key in keys} == keys
    finally:
        clustered.down(purge=True)
    assert not (tmp_path / "clustered").exists()
