"""The NetworkPolicies the operator makes for each stack (issue 14, item 3), against the real
kube-apiserver: on by default, the selectors a user relies on, updated and removed with the spec, and
bad peers refused by the API server. No network plugin here enforces NetworkPolicy: these tests check
the objects, not the packets (docs/operating.md, "Network policies")."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s_client
from test_operator import Operator, apply, crds, shop_documents, start_operator, the_stack, wait_for
from test_operator_pods import refusal, stack_manifest

__all__ = ["crds", "start_operator"]  # fixtures, used by name
pytestmark = [pytest.mark.kube, pytest.mark.redis, pytest.mark.slow]
STACK_PODS = ["worker", "content-api", "collector"]


def by_port(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy's peers by port name (None: anyone)."""
    return {rule["ports"][0]["port"]: rule.get("from") for rule in policy["ingress"]}


def policies(kube_api: k8s_client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    found = k8s_client.NetworkingV1Api(kube_api).list_namespaced_network_policy(namespace).items
    return {
        item.metadata.name: k8s_client.ApiClient().sanitize_for_serialization(item)["spec"] for item in found
    }


@pytest.mark.parametrize(
    ("network_policies", "message"),
    [
        ({"enabled": "yes"}, "spec.networkPolicies.enabled"),
        ({"contentApiFrom": [{}]}, "a peer needs podSelector, namespaceSelector or ipBlock"),
        (
            {"metricsFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]},
            "either an ipBlock or selectors",
        ),
        ({"metricsFrom": [{"ipBlock": {}}]}, "spec.networkPolicies.metricsFrom[0].ipBlock.cidr"),
    ],
)
def test_bad_network_policy_settings_are_refused_by_the_api_server(
    crds: None, kube_api: k8s_client.ApiClient, namespace: str, redis_url: str,
    network_policies: dict[str, Any], message: str,
) -> None:  # fmt: skip
    assert message in refusal(
        kube_api, namespace, stack_manifest(redis_url, networkPolicies=network_policies)
    )


def test_good_network_policy_settings_are_accepted(
    crds: None, kube_api: k8s_client.ApiClient, namespace: str, redis_url: str
) -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
             {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]  # fmt: skip
    settings = {"enabled": True, "contentApiFrom": peers, "metricsFrom": peers[:1]}
    assert refusal(kube_api, namespace, stack_manifest(redis_url, networkPolicies=settings)) == ""


def test_each_stack_gets_network_policies_that_follow_its_spec(
    start_operator: Callable[..., Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
) -> None:
    documents = shop_documents(kafka_bootstrap=kafka_bootstrap)  # a managed Redis, as the example has
    apply(kubectl, namespace, documents)
    operator = start_operator("--namespace", namespace, "--standalone")

    def three() -> dict[str, dict[str, Any]] | None:
        now = policies(kube_api, namespace)
        return now if len(now) == 3 else None

    found = wait_for("the stack's NetworkPolicies", three)

    redis = found["shop-redis"]
    assert redis["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert redis["policyTypes"] == ["Ingress"]
    [rule] = redis["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    stack_pods, operator_pods = rule["from"]
    assert stack_pods["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "tailor",
                                                        "app.kubernetes.io/instance": "shop"}  # fmt: skip
    assert stack_pods["podSelector"]["matchExpressions"][0]["values"] == STACK_PODS
    assert "namespaceSelector" not in stack_pods, "only this namespace's pods of the stack"
    assert operator_pods == {"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "tailor", "app.kubernetes.io/component": "operator"}}}  # fmt: skip
    assert by_port(found["shop-api"])["http"] is None, "anyone may call the content API"
    assert all(peers is None for peers in by_port(found["shop-api"]).values()), (
        "its admin port too, by default"
    )
    assert found["shop-worker"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]

    # Narrowed to the ingress controller and monitoring, with a collector of its own.
    ingress = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    stack = copy.deepcopy(the_stack(documents))
    stack["spec"]["networkPolicies"] = {"contentApiFrom": ingress, "metricsFrom": monitoring}
    stack["spec"].setdefault("contentApi", {})["collector"] = {"separate": True}
    apply(kubectl, namespace, [stack])

    def narrowed() -> dict[str, dict[str, Any]] | None:
        now = policies(kube_api, namespace)
        done = "shop-collector" in now and by_port(now["shop-api"])["http"] == ingress
        return now if done else None

    found = wait_for("the narrowed policies", narrowed)
    for name in ("shop-api", "shop-collector"):
        ports = by_port(found[name])
        assert ports.pop("http") == ingress
        # An admin port (metrics, probes, explain), where the content API has one, is monitoring's.
        assert all(peers == monitoring for peers in ports.values()), found[name]
    assert found["shop-worker"]["ingress"][0]["from"] == monitoring
    assert found["shop-redis"] == redis, "Redis' policy does not depend on these settings"

    stack["spec"]["networkPolicies"] = {"enabled": False}
    apply(kubectl, namespace, [stack])
    wait_for("no policies once disabled", lambda: policies(kube_api, namespace) == {})
    assert operator.process.poll() is None, operator.output()
