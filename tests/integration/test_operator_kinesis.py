"""A PersonalizationStack whose `spec.source` is a Kinesis data stream, against the real kube-apiserver:
the API server refuses sources that cannot work, the operator renders the stream's variables (and its
access key from a Secret) into the worker and collector pods, the stack goes Ready with no Kafka at all,
and a real `tailor worker` and `tailor api` run with exactly the environment the operator rendered count
posted events through moto's Kinesis (docs/kinesis.md)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import api_process
import httpx
import pytest
import redis
import yaml
from kubernetes import client as k8s_client
from test_operator import (
    Operator,
    apply,
    crds,
    get,
    served,
    shop_documents,
    start_operator,
    the_stack,
    wait_for,
)
from test_worker import WorkerProcess, views, wait_until

from tailor.core import kinesis as kinesis_settings
from tailor.devstack import kinesis_emulator

__all__ = ["crds", "start_operator"]  # fixtures, used by name
pytestmark = [pytest.mark.kube, pytest.mark.redis, pytest.mark.slow]

USERS = [f"kin{i}" for i in range(5)]


def kinesis_stack(redis_url: str, source: dict[str, Any]) -> list[dict[str, Any]]:
    """The shop example on `source` instead of Kafka (no spec.kafka), with one worker."""
    documents = shop_documents(redis_url)
    spec = the_stack(documents)["spec"]
    del spec["kafka"]
    spec["source"] = source
    spec["workers"]["replicas"] = 1
    return documents


def test_the_api_server_refuses_sources_that_cannot_work(
    crds: None, kubectl: Callable[..., Any], namespace: str
) -> None:
    stream = {"stream": "events", "region": "eu-west-1"}

    def kinesis(**change: Any) -> dict[str, Any]:
        return {"source": {"kind": "kinesis", "kinesis": {**stream, **change}}}

    required = "source.kinesis is required with source.kind kinesis"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"source": {"kind": "pulsar"}}, 'Unsupported value: "pulsar"'),
        ({"source": {"kind": "kinesis"}}, required),
        ({"source": {"kind": "kafka", "kinesis": stream}}, required),
        (kinesis(stream="a/b"), "spec.source.kinesis.stream"),
        (kinesis(region="Europe"), "spec.source.kinesis.region"),
        (kinesis(endpoint="kinesis.local"), "spec.source.kinesis.endpoint"),
        (kinesis(credentialsSecretRef={}), "spec.source.kinesis.credentialsSecretRef.name: Required value"),
        ({**kinesis(), "kafka": {"bootstrapServers": "k:9092"}},
         "spec.kafka is not used with source.kind kinesis"),
        ({**kinesis(), "workers": {"autoscaling": {"enabled": True}}},
         "workers.autoscaling scales on Kafka's consumer lag"),
        ({}, "spec.kafka is required unless spec.source.kind is kinesis"),
    ]  # fmt: skip
    for change, message in bad:
        stack = the_stack(shop_documents())
        del stack["spec"]["kafka"]
        stack["spec"]["workers"] = {}
        stack["spec"].update(change)
        result = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(stack), check=False)
        assert result.returncode != 0, change
        assert message in result.stderr, (change, result.stderr)
    good = kinesis_stack("redis://r:6379/0", {"kind": "kinesis", "kinesis": {
        **stream, "endpoint": "https://vpce-1.kinesis.eu-west-1.vpce.amazonaws.com",
        "credentialsSecretRef": {"name": "aws"}}})  # fmt: skip
    kubectl("apply", "-n", namespace, "-f", "-", "--dry-run=server", input=yaml.safe_dump(the_stack(good)))


@pytest.fixture
def stream(kinesis: kinesis_emulator.KinesisEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A one-shard stream of its own in moto."""
    for name, value in kinesis_emulator.ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TAILOR_KINESIS_ENDPOINT_URL", kinesis.endpoint)
    name = f"events-{uuid.uuid4().hex[:8]}"
    client = kinesis_settings.KinesisSettings().client()
    client.create_stream(StreamName=name, ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    yield name
    client.delete_stream(StreamName=name)


def rendered_env(kube_api: k8s_client.ApiClient, namespace: str, deployment: str) -> dict[str, str]:
    """The container's environment as its pod would see it: values, and Secret keys read from the
    API server (the downward API's memory limit left out: no pod here)."""
    apps, core = k8s_client.AppsV1Api(kube_api), k8s_client.CoreV1Api(kube_api)
    container = apps.read_namespaced_deployment(deployment, namespace).spec.template.spec.containers[0]
    env: dict[str, str] = {}
    for item in container.env:
        if item.value_from is None:
            env[item.name] = item.value
        elif item.value_from.secret_key_ref is not None:
            ref = item.value_from.secret_key_ref
            data = core.read_namespaced_secret(ref.name, namespace).data
            env[item.name] = base64.b64decode(data[ref.key]).decode()
    return env


def test_a_kinesis_stack_goes_ready_without_kafka_and_its_rendered_pods_count_events_through_the_stream(
    start_operator: Callable[..., Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
    redis_client: redis.Redis,
    kinesis: kinesis_emulator.KinesisEmulator,
    stream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the rendered variables name the endpoint and the key (moto takes any key; without one boto3
    # finds no credentials and the collector stays unready).
    for name in (*kinesis_emulator.ENVIRONMENT, "TAILOR_KINESIS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    key = {"access": "AKIATAILORTEST", "secret": "from-the-stack-secret"}
    credentials = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "aws-kinesis"},
        "stringData": key,
    }
    source = {"kind": "kinesis", "kinesis": {
        "stream": stream, "region": "us-east-1", "endpoint": kinesis.endpoint,
        "credentialsSecretRef": {"name": "aws-kinesis", "accessKeyIdKey": "access",
                                 "secretAccessKeyKey": "secret"}}}  # fmt: skip
    apply(kubectl, namespace, [credentials, *kinesis_stack(redis_url, source)])
    operator = start_operator("--namespace", namespace, "--standalone")

    def stack_ready() -> dict[str, str] | None:
        status = get(kube_api, namespace, "personalizationstacks", "shop").get("status") or {}
        found = {c["type"]: c for c in status.get("conditions") or ()}
        return found if found.get("Ready", {}).get("status") == "True" else None

    conditions = wait_for("the Kinesis stack Ready", stack_ready, timeout=60)
    assert "KafkaConnected" not in conditions, conditions  # nothing to probe
    assert conditions["TopicsReady"]["reason"] == "KinesisSource", conditions["TopicsReady"]

    wanted = {"TAILOR_EVENTS_SOURCE": "kinesis", "TAILOR_KINESIS_STREAM": stream,
              "TAILOR_KINESIS_REGION": "us-east-1", "TAILOR_KINESIS_ENDPOINT_URL": kinesis.endpoint,
              "AWS_ACCESS_KEY_ID": key["access"], "AWS_SECRET_ACCESS_KEY": key["secret"]}  # fmt: skip
    worker_env = rendered_env(kube_api, namespace, "shop-worker")
    api_env = rendered_env(kube_api, namespace, "shop-api")
    for env in (worker_env, api_env):
        assert {name: env.get(name) for name in wanted} == wanted

    # The pods as rendered, for real: the API's collector puts into the stream, the worker counts.
    stack_key = f"{namespace}/shop"
    worker = WorkerProcess(stack_key, redis_url, **worker_env, TAILOR_KINESIS_IDLE_POLL_SECONDS="0.05")
    try:
        with api_process.serve(
            redis_url, "127.0.0.1:9", tmp_path / "api.log", stack=stack_key, **api_env
        ) as api:
            batch = [{"id": uuid.uuid4().hex, "type": "page_view", "userId": USERS[i % len(USERS)],
                      "properties": {"category": "shoes"}} for i in range(50)]  # fmt: skip
            reply = httpx.post(f"{api.url}/v1/events", json={"events": batch}, timeout=10)
            assert reply.status_code == 202, reply.text
        config = served(redis_url, stack_key).config
        wait_until(
            lambda: [views(redis_client, config, user) for user in USERS] == [10] * len(USERS),
            30,
            worker.output,
        )
        with httpx.Client(timeout=5) as http:
            assert http.get(f"http://127.0.0.1:{worker.metrics_port}/readyz").status_code == 200
    finally:
        worker.close()
    assert operator.process.poll() is None, operator.output()
