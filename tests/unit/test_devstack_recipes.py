"""Config files and objects the components are started with."""

from __future__ import annotations

from pathlib import Path

import yaml

from tailor.devstack import kafka_cluster, kwokstages, redis_cluster
from tailor.devstack.components import kafka, kwok, redis


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def test_kafka_is_one_combined_node_with_single_replica_internal_topics(tmp_path: object) -> None:
    props = properties(kafka.server_properties(19092, 19093, tmp_path))  # type: ignore[arg-type]
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "PLAINTEXT://127.0.0.1:19092" in props["listeners"]
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_a_fault_test_cluster_node_knows_all_three_voters_and_replicates_internal_topics_three_times(
    tmp_path: object,
) -> None:
    voters = "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3"
    props = properties(kafka_cluster.node_properties(2, 19092, 19093, voters, tmp_path))  # type: ignore[arg-type]
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == voters
    assert "controller.quorum.bootstrap.servers" not in props  # static: formatted without --standalone
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"


def test_kafka_cluster_ids_are_22_url_safe_characters_never_a_flag() -> None:
    ids = {kafka.new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_redis_fsyncs_every_write_before_acknowledging_it(tmp_path: object) -> None:
    lines = redis.redis_conf(16379, tmp_path).splitlines()  # type: ignore[arg-type]
    assert "appendonly yes" in lines
    assert "appendfsync always" in lines
    assert "bind 127.0.0.1" in lines
    assert "port 16379" in lines


def test_kwok_stage_documents_join_into_valid_multi_document_yaml() -> None:
    joined = kwokstages.join(["kind: Stage\nmetadata: {name: a}\n", "kind: Stage\nmetadata: {name: b}"])
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(joined)]
    assert names == ["a", "b"]


def test_fake_node_is_untainted_and_ready_only_with_a_true_ready_condition() -> None:
    node = kwok.fake_node()
    assert "taints" not in node["spec"]
    assert not kwok.node_ready(node)
    node["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert not kwok.node_ready(node)
    node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert kwok.node_ready(node)


def test_a_stack_cluster_node_logs_to_its_component_log_and_names_its_bus_port(tmp_path: Path) -> None:
    lines = redis_cluster.node_conf(17000, 17001, tmp_path, log_to_stdout=True).splitlines()
    assert {
        "port 17000",
        "cluster-port 17001",
        "cluster-enabled yes",
        'logfile ""',
        "appendfsync always",
    } <= set(lines)
    fixture_lines = redis_cluster.node_conf(17000, 17001, tmp_path).splitlines()
    assert f"logfile {tmp_path / 'redis.log'}" in fixture_lines
