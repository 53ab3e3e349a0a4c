"""The partition leader of the events topic SIGKILLed mid-stream on a three-node KRaft cluster
(tailor.devstack.kafka_cluster; docs/operating.md#durability): a real collector (`tailor api --routes
collect`) takes events from clients pacing up to 3,000 a second that resend a batch with the same ids
until it gets a 202, a real `tailor worker` counts them, and every event the collector acknowledged is
counted exactly once in Redis — none lost, none twice — after the killed node is started again.

Topics have replication factor 3 and `min.insync.replicas=2`, unclean leader election off. Two faults:
the leader killed while its two followers are paused (SIGSTOP), so that it is ahead of both when it
dies — what a leader acknowledged alone is then gone — which CI runs; and the leader killed as it is.
The control is the first with a collector whose producer uses acks=1 (not idempotent): it must lose
events, which shows the measurement can fail. The second and the control run with TAILOR_FAULTS_ALL=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fault_harness
import pytest
from pipeline_harness import running_pipeline, wait_until
from tailor_operator.reconcile import topics as operator_topics

from tailor.core import topics
from tailor.core.rules import specs
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import kafka_cluster, scratch

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 1  # one leader: every event of a batch waits for it alone
FOLLOWERS_PAUSED_SECONDS = 1.5

#: Loaded into the control's collector (PYTHONPATH): its producer acknowledges on the leader's word
#: alone. The product's producer is idempotent with acks=all (content_api/tailor_api/producer.py).
ACKS_1_SITECUSTOMIZE = """\
from tailor_api import producer

_original = producer.AsyncProducer.__init__


def _acks_1(self, *args, extra=None, **kwargs):
    _original(self, *args, extra={**(extra or {}), "acks": 1, "enable.idempotence": False}, **kwargs)


producer.AsyncProducer.__init__ = _acks_1
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka_cluster.KafkaCluster]:
    """Three KRaft nodes for this module's tests; started once, stopped at the end."""
    running = kafka_cluster.KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        took = running.start()
    except Exception as error:
        running.stop()
        pytest.fail(f"the three-node Kafka cluster did not start:\n{error}\n{running.logs()}", pytrace=False)
    print(f"\n[kafka cluster] three nodes up in {took:.1f}s at {running.bootstrap}")
    try:
        yield running
    finally:
        running.stop()


def replicated_stack(cluster: kafka_cluster.KafkaCluster) -> StackConfig:
    """A fresh stack whose topics the operator's own code makes for `spec.kafka.topics:
    {replicationFactor: 3, minInSyncReplicas: 2}` (docs/topics.md)."""
    config = scratch.stack_config(cluster.bootstrap, "faults-test", partitions=PARTITIONS)
    spec = specs.KafkaSpec.model_validate(
        {
            "bootstrapServers": cluster.bootstrap,
            "partitions": PARTITIONS,
            "topics": {"replicationFactor": 3, "minInSyncReplicas": 2},
        }
    )
    wanted = operator_topics.wanted_topics(spec, config.kafka)
    assert topics.reconcile({"bootstrap.servers": cluster.bootstrap}, wanted).created
    return config


@dataclass(frozen=True)
class Fault:
    followers_paused: bool  # the leader ahead of both followers when it is killed
    acks_1: bool = False  # the control: a collector whose producer does not wait for the replicas


# Killed ahead of its followers is a leader killed mid-stream, and the worst moment for it: CI runs that.
FAULTS = {"leader-killed-ahead-of-its-followers": Fault(followers_paused=True)}
if fault_harness.ALL_CASES:
    FAULTS["leader-killed"] = Fault(followers_paused=False)
    FAULTS["control-acks-1-leader-killed-ahead-of-its-followers"] = Fault(followers_paused=True, acks_1=True)


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_the_partition_leader_sigkilled_mid_stream_loses_no_acknowledged_event_and_counts_none_twice(
    cluster: kafka_cluster.KafkaCluster,
    redis_url: str,
    fault: Fault,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    config = replicated_stack(cluster)
    api_env: dict[str, str] = {}
    if fault.acks_1:
        (tmp_path / "sitecustomize.py").write_text(ACKS_1_SITECUSTOMIZE)
        api_env["PYTHONPATH"] = str(tmp_path)
    events_topic = config.kafka.events_topic
    timings: dict[str, float] = {}
    worker_env = {"TAILOR_WORKER_SESSION_TIMEOUT_MS": "6000"}
    with running_pipeline(
        config, redis_url, worker_env, api_args=("--routes", "collect"), api_env=api_env
    ) as pipeline:
        posting_from = time.monotonic()
        with fault_harness.posting(pipeline.api_url) as posters:
            wait_until(lambda: pipeline.worker_metric(fault_harness.COUNTED) > 3000, 60, pipeline.outputs)
            leader = cluster.leader(events_topic, 0)
            followers = [node.node_id for node in cluster.nodes if node.node_id != leader]
            if fault.followers_paused:
                for node_id in followers:
                    cluster.pause(node_id)
                time.sleep(FOLLOWERS_PAUSED_SECONDS)
            killed_at = time.monotonic()
            cluster.kill(leader)
            if fault.followers_paused:
                for node_id in followers:
                    cluster.resume(node_id)
            timings["new leader elected (s)"] = wait_until(
                lambda: cluster.leader(events_topic, 0) in followers, 60, lambda: cluster.logs()
            )
            wait_until(lambda: fault_harness.acknowledged_since(posters, killed_at), 60, pipeline.outputs)
            timings["collector acknowledging again (s)"] = time.monotonic() - killed_at
            cluster.node(leader).start()
            cluster.wait_brokers(kafka_cluster.SIZE)
            timings["killed node back (s)"] = time.monotonic() - killed_at
            time.sleep(3.0)  # and streams on with all three
        stopped_at = time.monotonic()
        rate = sum(len(p.acknowledged) for p in posters) / (stopped_at - posting_from)
        report = fault_harness.measure(redis_url, config, posters, stopped_at, timings)
    print(f"\n[{request.node.callspec.id}] leader {leader} killed: {report}, ~{rate:.0f} events/s")
    if fault.acks_1:
        assert report.lost > 0, f"the control lost nothing: {report}"
    else:
        assert (report.lost, report.twice) == (0, 0), f"{report}\n{pipeline.outputs()}"
        assert report.missing_from_topic == 0, report
        assert sum(p.abandoned for p in posters) == 0
