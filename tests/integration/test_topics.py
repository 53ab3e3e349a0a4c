"""A stack's topics as the operator makes and reports them (docs/topics.md): `tailor operator` (a real
subprocess) against the real kube-apiserver and the real Kafka broker (one broker: replication 1).

Topic names are qualified by each test's fresh namespace, so tests never see each other's topics.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from confluent_kafka import admin as kafka_admin
from confluent_kafka.cimpl import NewTopic
from kubernetes import client as k8s_client

from tailor import devstack
from tailor.devstack import ports

pytestmark = [pytest.mark.kube, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STACK_CRD = ROOT / "crds" / "tailor.dev_personalizationstacks.yaml"
GROUP, VERSION, STACKS = "tailor.dev", "v1alpha1", "personalizationstacks"
STRIMZI_CRD = "kafkatopics.kafka.strimzi.io"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except k8s_client.ApiException as error:
            last = error
        if last is not None and last is not False and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def crds(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    established(kubectl, f"{STACKS}.{GROUP}")


def established(kubectl: Callable[..., Any], crd: str) -> None:
    """kubectl wait fails at once on a CRD so new that it has no conditions yet: ask until it is."""
    wait = ("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    wait_for(f"{crd} established", lambda: kubectl(*wait, check=False).returncode == 0)


class Operator:
    """`tailor operator` for one namespace, topics looked at every second."""

    def __init__(self, kubeconfig: Path, redis_url: str, namespace: str, log: Path) -> None:
        self.log = log
        self._sink = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tailor.cli.main", "operator", "--namespace", namespace, "--standalone",
             "--redis-url", redis_url, "--metrics-port", str(ports.pick(None)), "--liveness", "off"],
            stdout=self._sink, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "TAILOR_OPERATOR_TOPICS_INTERVAL_SECONDS": "1"},
        )  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._sink.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def start_operator(
    crds: None, kubeconfig: Path, redis_url: str, tmp_path: Path
) -> Iterator[Callable[[str], Operator]]:
    started: list[Operator] = []

    def start(namespace: str) -> Operator:
        operator = Operator(kubeconfig, redis_url, namespace, tmp_path / f"operator-{len(started)}.log")
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()


@pytest.fixture
def admin(kafka_bootstrap: str) -> kafka_admin.AdminClient:
    return kafka_admin.AdminClient({"bootstrap.servers": kafka_bootstrap})


def stack_manifest(kafka_bootstrap: str, redis_url: str, **kafka: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PersonalizationStack",
        "metadata": {"name": "shop"},
        "spec": {
            "kafka": {"bootstrapServers": kafka_bootstrap, **kafka},
            "redis": {"url": redis_url},
            "workers": {"replicas": 0},
            "contentApi": {"replicas": 0},
        },
    }


def apply(kubectl: Callable[..., Any], namespace: str, manifest: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(manifest),
    )


def get_stack(kube_api: k8s_client.ApiClient, namespace: str, name: str = "shop") -> dict[str, Any]:
    body: dict[str, Any] = k8s_client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, STACKS, name
    )
    return body


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == type_]
    return found[0] if found else {}


def wait_topics_ready(
    kube_api: k8s_client.ApiClient,
    namespace: str,
    operator: Operator,
    status: str,
    reason: str | None = None,
    generation: int | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The stack's TopicsReady once it has `status` (and `reason`, for the `generation` given)."""

    def probe() -> dict[str, Any] | None:
        assert operator.process.poll() is None, operator.output()
        body = get_stack(kube_api, namespace)
        found = condition(body, "TopicsReady")
        if found.get("status") != status or (reason is not None and found.get("reason") != reason):
            return None
        if generation is not None and found.get("observedGeneration") != generation:
            return None
        return found

    try:
        return wait_for(f"TopicsReady={status} {reason or ''}", probe, timeout)
    except AssertionError as error:
        body = get_stack(kube_api, namespace)
        raise AssertionError(
            f"{error}\nstatus: {body.get('status')}\noperator:\n{operator.output()}"
        ) from None


def ready_says(kube_api: k8s_client.ApiClient, namespace: str, reason: str) -> None:
    """Ready=False names the topics' reason once the stack's other parts are ready (pods: kwok)."""
    ready = lambda: condition(get_stack(kube_api, namespace), "Ready")  # noqa: E731
    wait_for(
        f"Ready=False {reason}", lambda: ready().get("reason") == reason and ready()["status"] == "False"
    )


def describe(admin: kafka_admin.AdminClient, topic: str) -> tuple[int, int, dict[str, str]]:
    """(partitions, replicas, configs) of a topic as the broker has it."""
    found = admin.list_topics(topic, timeout=10).topics[topic]
    assert found.error is None, found.error
    resource = kafka_admin.ConfigResource(kafka_admin.ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    replicas = max(len(p.replicas) for p in found.partitions.values())
    return len(found.partitions), replicas, {key: entry.value for key, entry in entries.items()}


def set_partitions(kubectl: Callable[..., Any], namespace: str, partitions: int) -> None:
    patch = f'{{"spec":{{"kafka":{{"partitions":{partitions}}}}}}}'
    kubectl("patch", "pstack", "shop", "-n", namespace, "--type=merge", "-p", patch)


def existing(admin: kafka_admin.AdminClient, *topics: str) -> set[str]:
    return set(admin.list_topics(timeout=10).topics) & set(topics)


# --- names -------------------------------------------------------------------------------------------


def test_two_stacks_of_the_same_name_on_one_kafka_get_topics_of_their_own(
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    admin: kafka_admin.AdminClient,
) -> None:
    other = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", other)
    try:
        for each in (namespace, other):
            apply(kubectl, each, stack_manifest(kafka_bootstrap, redis_url))
            operator = start_operator(each)
            ready = wait_topics_ready(kube_api, each, operator, "True", "Ready")
            topics = get_stack(kube_api, each)["status"]["topics"]
            assert topics == {
                "events": f"tailor.{each}.shop.events",
                "deadLetter": f"tailor.{each}.shop.deadletter",
            }
            assert f"created tailor.{each}.shop.events" in ready["message"]
        names = [
            f"tailor.{each}.shop.{role}" for each in (namespace, other) for role in ("events", "deadletter")
        ]
        assert existing(admin, *names) == set(names)
        assert describe(admin, names[0])[0] == 6  # the CRD's default partitions
    finally:
        kubectl("delete", "namespace", other, "--wait=false")


# --- settings ----------------------------------------------------------------------------------------


def test_settings_are_applied_when_the_operator_creates_the_topics(
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    admin: kafka_admin.AdminClient,
) -> None:
    topics = {
        "replicationFactor": 1, "minInSyncReplicas": 1, "retention": "2h", "deadLetterRetention": "720h",
    }  # fmt: skip
    apply(kubectl, namespace, stack_manifest(kafka_bootstrap, redis_url, partitions=3, topics=topics))
    operator = start_operator(namespace)
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready")
    partitions, replicas, configs = describe(admin, f"tailor.{namespace}.shop.events")
    assert (partitions, replicas) == (3, 1)
    assert configs["retention.ms"] == str(2 * 3600 * 1000)
    assert configs["min.insync.replicas"] == "1"
    partitions, _, configs = describe(admin, f"tailor.{namespace}.shop.deadletter")
    assert partitions == 3
    assert configs["retention.ms"] == str(720 * 3600 * 1000)


def test_an_existing_topic_that_differs_is_reported_and_partitions_only_ever_grow(
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    admin: kafka_admin.AdminClient,
) -> None:
    events = f"tailor.{namespace}.shop.events"
    made = admin.create_topics(
        [NewTopic(events, num_partitions=2, replication_factor=1, config={"retention.ms": "60000"})]
    )
    made[events].result(timeout=10)
    apply(
        kubectl,
        namespace,
        stack_manifest(kafka_bootstrap, redis_url, partitions=4, topics={"retention": "2h"}),
    )
    operator = start_operator(namespace)

    differs = wait_topics_ready(kube_api, namespace, operator, "False", "TopicSettingsDiffer")
    assert f"{events} has retention.ms=60000, the spec asks 7200000" in differs["message"]
    assert describe(admin, events)[0] == 4, "the partitions the spec asks for are added"
    assert describe(admin, events)[2]["retention.ms"] == "60000", "the configuration is left as it is"
    ready_says(kube_api, namespace, "TopicSettingsDiffer")
    assert f"topics of {namespace}/shop: False TopicSettingsDiffer" in operator.output()
    wait_for(  # posted right after the log line
        "an Event on the stack",
        lambda: kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=TopicSettingsDiffer", "-o", "name"
        ).stdout.strip(),
        timeout=10,
    )

    # Aligning the topic clears the condition on the operator's next look.
    resource = kafka_admin.ConfigResource(
        kafka_admin.ResourceType.TOPIC, events,
        incremental_configs=[kafka_admin.ConfigEntry("retention.ms", "7200000",
                                                     incremental_operation=kafka_admin.AlterConfigOpType.SET)],
    )  # fmt: skip
    admin.incremental_alter_configs([resource])[resource].result(timeout=10)
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready")

    set_partitions(kubectl, namespace, 6)
    wait_for("6 partitions", lambda: describe(admin, events)[0] == 6)
    generation = get_stack(kube_api, namespace)["metadata"]["generation"]
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready", generation)

    set_partitions(kubectl, namespace, 3)
    fewer = wait_topics_ready(kube_api, namespace, operator, "False", "TopicSettingsDiffer")
    assert f"{events} has 6 partitions, the spec asks 3 (Kafka cannot remove partitions" in fewer["message"]
    assert describe(admin, events)[0] == 6


def test_a_replication_factor_above_the_brokers_is_refused_naming_the_broker_count(
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    admin: kafka_admin.AdminClient,
) -> None:
    topics = {"replicationFactor": 3, "minInSyncReplicas": 2}
    apply(kubectl, namespace, stack_manifest(kafka_bootstrap, redis_url, topics=topics))
    operator = start_operator(namespace)
    refused = wait_topics_ready(kube_api, namespace, operator, "False", "ReplicationFactorTooHigh")
    assert "topics.replicationFactor is 3, but the Kafka cluster has 1 broker up" in refused["message"]
    assert existing(admin, f"tailor.{namespace}.shop.events", f"tailor.{namespace}.shop.deadletter") == set()
    ready_says(kube_api, namespace, "ReplicationFactorTooHigh")


def test_with_management_none_missing_topics_are_reported_until_someone_makes_them(
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    admin: kafka_admin.AdminClient,
) -> None:
    events, dead = f"{namespace}.mine.events", f"{namespace}.mine.dead"
    topics = {"management": "none", "events": events, "deadLetter": dead}
    apply(kubectl, namespace, stack_manifest(kafka_bootstrap, redis_url, partitions=2, topics=topics))
    operator = start_operator(namespace)
    missing = wait_topics_ready(kube_api, namespace, operator, "False", "TopicsMissing")
    assert f"{events} and {dead} missing" in missing["message"]
    time.sleep(2)  # two more looks by the operator: it still creates nothing
    assert existing(admin, events, dead) == set()
    made = admin.create_topics(
        [NewTopic(name, num_partitions=2, replication_factor=1) for name in (events, dead)]
    )
    for future in made.values():
        future.result(timeout=10)
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready")


# --- validation by the API server --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        (
            {"replicationFactor": 2, "minInSyncReplicas": 3},
            "topics.minInSyncReplicas needs topics.replicationFactor and must be at most it",
        ),
        ({"minInSyncReplicas": 2}, "topics.minInSyncReplicas needs topics.replicationFactor"),
        ({"replicationFactor": 0}, "spec.kafka.topics.replicationFactor: Invalid value: 0"),
        ({"retention": "7d"}, "topics.retention must be a duration of at least 1m"),
        ({"deadLetterRetention": "30s"}, "topics.deadLetterRetention must be a duration of at least 1m"),
        ({"management": "strimzi"}, "topics.management: strimzi needs topics.strimzi.cluster"),
        ({"management": "auto"}, 'spec.kafka.topics.management: Unsupported value: "auto"'),
        ({"events": "my events"}, "topics.events must be a Kafka topic name"),
        ({"deadLetter": ".."}, "topics.deadLetter must be a Kafka topic name"),
        (
            {"events": "same", "deadLetter": "same"},
            "topics.events and topics.deadLetter must be different topics",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_the_api_server_refuses_bad_topic_settings(
    crds: None, kubectl: Callable[..., Any], namespace: str, topics: dict[str, Any], message: str
) -> None:
    manifest = stack_manifest("kafka:9092", "redis://redis:6379/0", topics=topics)
    result = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, "accepted"
    assert message in result.stderr


# --- upgrading from global names ---------------------------------------------------------------------


def old_crd() -> dict[str, Any]:
    """The stack CRD as it was before names were qualified: the same schema, but `topics` defaulted
    to the global names (the old CRD's only difference that matters here)."""
    crd = yaml.safe_load(STACK_CRD.read_text())
    kafka = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "kafka"
    ]
    topics = kafka["properties"]["topics"]
    topics["default"] = {"events": "tailor.events", "deadLetter": "tailor.events.deadletter"}
    topics["properties"]["events"]["default"] = "tailor.events"
    topics["properties"]["deadLetter"]["default"] = "tailor.events.deadletter"
    return crd


def test_a_stack_made_under_the_old_crd_keeps_its_global_topics_after_the_upgrade(
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    # What the API server stored for a stack applied without names under the old CRD.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(old_crd()))
    try:
        manifest = stack_manifest(kafka_bootstrap, redis_url)
        dry_run = ("apply", "--dry-run=server", "-n", namespace, "-o", "yaml", "-f", "-")

        def defaulted() -> bool:
            return kubectl(*dry_run, input=yaml.safe_dump(manifest)).stdout.count("tailor.events") == 2

        wait_for("the old CRD's default", defaulted)
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    finally:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(STACK_CRD))
    stored = get_stack(kube_api, namespace)["spec"]["kafka"]["topics"]
    assert (stored["events"], stored["deadLetter"]) == ("tailor.events", "tailor.events.deadletter")

    # The new CRD in place: a client-side apply of the same manifest (names never in it) keeps them,
    # and the operator uses them.
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    operator = start_operator(namespace)
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready")
    assert get_stack(kube_api, namespace)["status"]["topics"] == {
        "events": "tailor.events", "deadLetter": "tailor.events.deadletter",
    }  # fmt: skip

    # Removing the names on purpose moves the stack to its own topics.
    removal = [{"op": "remove", "path": f"/spec/kafka/topics/{role}"} for role in ("events", "deadLetter")]
    kubectl("patch", "pstack", "shop", "-n", namespace, "--type=json", "-p", json.dumps(removal))
    generation = get_stack(kube_api, namespace)["metadata"]["generation"]
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready", generation)
    assert get_stack(kube_api, namespace)["status"]["topics"]["events"] == f"tailor.{namespace}.shop.events"


# --- Strimzi -----------------------------------------------------------------------------------------


@pytest.fixture
def strimzi_crd(stack: devstack.Stack, kubectl: Callable[..., Any]) -> Iterator[Callable[[bool], None]]:
    """install(v1_served): Strimzi's own KafkaTopic CRD (0.51: v1 and v1beta2 served), or, with False,
    as a Strimzi before 0.49 serves it (v1 not served). Uninstalled first and afterwards."""
    original = yaml.safe_load(stack.tools.strimzi_kafka_topic_crd.read_text())

    def uninstall() -> None:
        kubectl("delete", "crd", STRIMZI_CRD, "--ignore-not-found", "--wait=true", timeout=60)

    def install(v1_served: bool) -> None:
        crd = copy.deepcopy(original)
        for version in crd["spec"]["versions"]:
            if version["name"] == "v1":
                version["served"] = v1_served
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(crd))
        established(kubectl, STRIMZI_CRD)

    uninstall()
    yield install
    uninstall()


@pytest.mark.parametrize("v1_served", [True, False], ids=["strimzi-0.51", "strimzi-before-0.49"])
def test_with_management_strimzi_the_operator_owns_kafka_topics_and_reports_their_status(
    strimzi_crd: Callable[[bool], None],
    start_operator: Callable[[str], Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    admin: kafka_admin.AdminClient,
    v1_served: bool,
) -> None:
    topics = {
        "management": "strimzi", "strimzi": {"cluster": "my-cluster"},
        "replicationFactor": 1, "minInSyncReplicas": 1, "retention": "2h",
    }  # fmt: skip
    apply(kubectl, namespace, stack_manifest(kafka_bootstrap, redis_url, partitions=3, topics=topics))
    operator = start_operator(namespace)
    absent = wait_topics_ready(kube_api, namespace, operator, "False", "StrimziNotInstalled")
    assert "the API server serves no KafkaTopic" in absent["message"]

    # Installed later: an operator notices within kube.NOT_SERVED_SECONDS, a restarted one at once.
    strimzi_crd(v1_served)
    operator.stop()
    operator = start_operator(namespace)
    version = "v1" if v1_served else "v1beta2"
    waiting = wait_topics_ready(kube_api, namespace, operator, "Unknown", "WaitingForStrimzi")
    assert "KafkaTopic shop-events is not reconciled by Strimzi's topic operator yet" in waiting["message"]
    custom = k8s_client.CustomObjectsApi(kube_api)
    uid = get_stack(kube_api, namespace)["metadata"]["uid"]
    for role, retention in (("events", "7200000"), ("deadletter", None)):
        body = custom.get_namespaced_custom_object(
            "kafka.strimzi.io", version, namespace, "kafkatopics", f"shop-{role}"
        )
        assert body["metadata"]["labels"]["strimzi.io/cluster"] == "my-cluster"
        owner = body["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "PersonalizationStack",
            "shop",
            uid,
            True,
        )
        expected_config = {"min.insync.replicas": "1"} | ({"retention.ms": retention} if retention else {})
        topic = f"tailor.{namespace}.shop.{role}"
        assert body["spec"] == {"topicName": topic, "partitions": 3, "replicas": 1, "config": expected_config}
    assert existing(admin, f"tailor.{namespace}.shop.events") == set(), (
        "Strimzi's to create, not the operator's"
    )

    # A spec change reaches the KafkaTopics.
    set_partitions(kubectl, namespace, 6)

    def kafka_topic(name: str) -> dict[str, Any]:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            "kafka.strimzi.io", version, namespace, "kafkatopics", name
        )
        return found

    wait_for("KafkaTopic partitions 6", lambda: kafka_topic("shop-events")["spec"]["partitions"] == 6)

    # The status Strimzi's topic operator would write becomes the stack's condition.
    def strimzi_says(name: str, status: str, reason: str = "", message: str = "") -> None:
        body = custom.get_namespaced_custom_object(
            "kafka.strimzi.io", version, namespace, "kafkatopics", name
        )
        ready = {"type": "Ready", "status": status, "reason": reason, "message": message}
        body["status"] = {"observedGeneration": body["metadata"]["generation"], "conditions": [ready]}
        custom.replace_namespaced_custom_object_status(
            "kafka.strimzi.io", version, namespace, "kafkatopics", name, body
        )

    strimzi_says("shop-events", "False", "NotSupported", "Decreasing partitions not supported")
    strimzi_says("shop-deadletter", "True")
    not_ready = wait_topics_ready(kube_api, namespace, operator, "False", "KafkaTopicNotReady")
    assert "KafkaTopic shop-events: NotSupported: Decreasing partitions not supported" in not_ready["message"]
    strimzi_says("shop-events", "True")
    wait_topics_ready(kube_api, namespace, operator, "True", "Ready")
