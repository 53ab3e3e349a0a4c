"""The operator signs a stack's rulesets with the stack's own key (issue 14, item 3), as it does in a
pod: the key pair in a Secret it creates, only the public keys in the pods' environment, and a ruleset
someone else wrote into the stack's Redis reported on the stack with an Event and published over.
Against the real kube-apiserver and Redis."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import redis
from kubernetes import client as k8s_client
from test_operator import Operator, apply, crds, shop_documents, start_operator, wait_for

from tailor.core.rules import signing, versions

__all__ = ["crds", "start_operator"]  # fixtures, used by name
pytestmark = [pytest.mark.kube, pytest.mark.redis, pytest.mark.slow]
IN_A_POD = {"TAILOR_OPERATOR_RULESET_SIGNING": "stack", "TAILOR_OPERATOR_STATS_INTERVAL_SECONDS": "1"}


def test_a_stack_gets_its_own_key_and_a_ruleset_someone_else_wrote_is_reported_and_replaced(
    start_operator: Callable[..., Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
    kafka_bootstrap: str,
) -> None:
    apply(kubectl, namespace, shop_documents(redis_url, kafka_bootstrap=kafka_bootstrap))
    operator = start_operator("--namespace", namespace, "--standalone", env=IN_A_POD)
    core = k8s_client.CoreV1Api(kube_api)
    stack = f"{namespace}/shop"
    data = wait_for(
        "the signing Secret", lambda: core.read_namespaced_secret("shop-ruleset-signing", namespace).data
    )
    public = base64.b64decode(data["publicKeys"]).decode()
    stack_key = signing.Verifier.from_text(public)
    assert not stack_key.development
    client = redis.Redis.from_url(redis_url)

    first = wait_for("a ruleset signed by the stack's key",
                     lambda: versions.load_sync(client, stack, verifier=stack_key))  # fmt: skip
    with pytest.raises(versions.Unreadable) as refused:
        versions.load_sync(client, stack, verifier=signing.DEVELOPMENT.verifier())
    assert refused.value.reason == "signature"

    apps = k8s_client.AppsV1Api(kube_api)
    for deployment in ("shop-api", "shop-worker"):
        # The ruleset may be published before the children are applied.
        made = wait_for(
            f"Deployment {deployment}",
            lambda name=deployment: apps.read_namespaced_deployment(name, namespace),  # type: ignore[misc]
        )
        [container] = made.spec.template.spec.containers
        [keys] = [e for e in container.env if e.name == "TAILOR_RULESET_KEYS"]
        assert (keys.value_from.secret_key_ref.name, keys.value_from.secret_key_ref.key) == (
            "shop-ruleset-signing", "publicKeys")  # fmt: skip

    # Anyone who reaches the Redis, signing with the public development key.
    forged_version = int(client.incr(versions.seq_key(stack)))
    document = first.model_copy(update={"version": forged_version}).to_json()
    with client.pipeline(transaction=True) as pipe:
        pipe.set(versions.version_key(stack, forged_version), document)
        pipe.set(versions.signature_key(stack, forged_version), signing.DEVELOPMENT.sign(document))
        pipe.set(versions.current_key(stack), forged_version)
        pipe.publish(versions.channel(stack), forged_version)
        pipe.execute()

    def replaced() -> int | None:
        try:
            current = versions.load_sync(client, stack, verifier=stack_key)
        except versions.Unreadable:
            return None  # the forged version, still current
        return current.version if current is not None and current.version > forged_version else None

    wait_for("a signed version over the forged one", replaced, timeout=30)
    events = wait_for("a RulesetRefused Event", lambda: [
        e for e in core.list_namespaced_event(namespace).items
        if e.reason == "RulesetRefused" and e.involved_object.name == "shop"])  # fmt: skip
    assert f"version {forged_version}" in events[0].message
    assert operator.process.poll() is None, operator.output()
    client.close()
