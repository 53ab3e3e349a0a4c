"""The operator and a stack's Redis security, against the real kube-apiserver: it publishes over TLS as
an ACL user whose credentials and CA come from Secrets (the TLS redis-server of
tailor.devstack.secure_redis), names a wrong password or an untrusted CA in RedisReady without
crashing, generates a managed Redis' password Secret once and keeps it, and the API server refuses
Redis settings that cannot work."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from test_operator import Operator, apply, crds, get, shop_documents, start_operator, the_stack, wait_for

from tailor.core.rules import versions
from tailor.devstack import secure_redis as tls_redis

__all__ = ["crds", "start_operator"]  # fixtures, used by name
pytestmark = [pytest.mark.kube, pytest.mark.redis, pytest.mark.slow]
DRIFT = {"TAILOR_OPERATOR_DRIFT_INTERVAL_SECONDS": "1"}  # the check of Redis runs with every drift pass


def condition(kube_api: k8s_client.ApiClient, namespace: str, type_: str) -> dict[str, Any]:
    body = get(kube_api, namespace, "personalizationstacks", "shop")
    for found in (body.get("status") or {}).get("conditions") or ():
        if found["type"] == type_:
            return dict(found)
    return {}


def secret(name: str, data: dict[str, str], type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": type_,
        "stringData": data,
    }


@pytest.fixture
def operator_for(kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    """An operator that reaches each stack's Redis where the stack says (no --redis-url)."""
    started: list[Operator] = []

    def start(namespace: str) -> Operator:
        log = tmp_path / f"operator-{len(started)}.log"
        operator = Operator(kubeconfig, log, "--namespace", namespace, "--standalone", env=DRIFT)
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()


def test_the_operator_publishes_over_tls_as_the_acl_user_and_names_a_wrong_password_or_ca(
    crds: None,
    operator_for: Callable[..., Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    secure_redis: tls_redis.SecureRedis,
    kafka_bootstrap: str,
) -> None:
    server = secure_redis
    documents = shop_documents(kafka_bootstrap=kafka_bootstrap)  # topics made there
    the_stack(documents)["spec"]["redis"] = {
        "url": server.url,
        "usernameSecretRef": {"name": "redis-login"},
        "passwordSecretRef": {"name": "redis-login"},
        "tls": {"caSecretRef": {"name": "redis-ca"}, "clientCertificateSecretRef": {"name": "redis-client"}},
    }
    login = secret("redis-login", {"username": tls_redis.USER, "password": tls_redis.PASSWORD})
    ca = secret("redis-ca", {"ca.crt": server.ca.read_text()})
    pair = {"tls.crt": server.client_cert.read_text(), "tls.key": server.client_key.read_text()}
    apply(kubectl, namespace, [login, ca, secret("redis-client", pair, "kubernetes.io/tls"), *documents])
    operator = operator_for(namespace)

    key = f"{namespace}/shop"
    with server.target().client() as client:
        published = wait_for("the ruleset published over TLS", lambda: versions.load_sync(client, key))
    assert len(published.rules) == 5
    redis_ready = wait_for("RedisReady", lambda: condition(kube_api, namespace, "RedisReady") or None)
    assert (redis_ready.get("status"), redis_ready.get("reason")) == ("True", "Ready"), redis_ready

    api = k8s_client.AppsV1Api(kube_api).read_namespaced_deployment("shop-api", namespace).to_dict()
    pod = api["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["TAILOR_REDIS_URL"]["value"] == server.url  # nothing secret in it
    assert env["TAILOR_REDIS_PASSWORD"]["value_from"]["secret_key_ref"]["name"] == "redis-login"
    assert env["TAILOR_REDIS_TLS_CA_FILE"]["value"] == "/etc/tailor/redis-tls/ca.crt"
    volume = next(v for v in pod["volumes"] if v["name"] == "redis-tls")
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == ["redis-ca", "redis-client"]
    checksum = api["spec"]["template"]["metadata"]["annotations"]["tailor.dev/config-checksum"]

    # A wrong password: RedisReady and Ready say so by name; the pods roll to the new Secret.
    wrong = secret("redis-login", {"username": tls_redis.USER, "password": "p@ss:w/rd%41;x"})
    apply(kubectl, namespace, [wrong])

    def ready_says(reason: str) -> dict[str, Any] | None:
        redis_condition = condition(kube_api, namespace, "RedisReady")
        ready = condition(kube_api, namespace, "Ready")
        matched = redis_condition.get("reason") == reason and ready.get("reason") == reason
        return redis_condition if matched and ready["status"] == "False" else None

    refused = wait_for(
        "RedisReady=False RedisAuthenticationFailed", lambda: ready_says("RedisAuthenticationFailed")
    )
    assert "passwordSecretRef" in refused["message"]
    rolled = k8s_client.AppsV1Api(kube_api).read_namespaced_deployment("shop-api", namespace)
    assert rolled.spec.template.metadata.annotations["tailor.dev/config-checksum"] != checksum

    # The right password, but a CA that did not sign the server's certificate.
    other = secret("redis-ca", {"ca.crt": server.other_ca.read_text()})
    apply(kubectl, namespace, [login, other])
    untrusted = wait_for(
        "RedisReady=False RedisCertificateUntrusted", lambda: ready_says("RedisCertificateUntrusted")
    )
    assert "caSecretRef" in untrusted["message"]

    # Fixed: Ready again, and the operator never restarted on the way.
    apply(kubectl, namespace, [ca])
    wait_for("Ready again", lambda: condition(kube_api, namespace, "Ready").get("status") == "True")
    assert operator.process.poll() is None, operator.output()


def test_a_managed_redis_gets_one_generated_password_and_production_settings(
    start_operator: Callable[..., Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
) -> None:
    # A volume of the class the claim asks for, bound to it (the test cluster has no provisioner).
    core, apps = k8s_client.CoreV1Api(kube_api), k8s_client.AppsV1Api(kube_api)
    volume = f"pv-{namespace}"
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                "hostPath": {"path": f"/tmp/{volume}"},
                "claimRef": {"namespace": namespace, "name": "data-shop-redis-0"},
            },
        }
    )  # fmt: skip
    try:
        documents = shop_documents(kafka_bootstrap=kafka_bootstrap)  # topics made there
        the_stack(documents)["spec"]["redis"] = {
            "managed": True, "storage": "2Gi", "storageClassName": "fast", "appendfsync": "everysec",
            "resources": {"limits": {"memory": "2Gi"}},
        }  # fmt: skip
        apply(kubectl, namespace, documents)
        # Through --redis-url, at the dev stack's Redis (no password): the generated password still
        # logs in there as the `default` user, as the pods would at the managed Redis.
        operator = start_operator("--namespace", namespace, "--standalone", env=DRIFT)
        wait_for("the stack Ready", lambda: condition(kube_api, namespace, "Ready").get("status") == "True")

        generated = core.read_namespaced_secret("shop-redis-auth", namespace)
        password = base64.b64decode(generated.data["password"]).decode()
        assert len(password) >= 32
        owner = generated.metadata.owner_references[0]
        assert (owner.kind, owner.name) == ("PersonalizationStack", "shop")

        redis = apps.read_namespaced_stateful_set("shop-redis", namespace).to_dict()
        container = redis["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        flags = {args[i]: args[i + 1] for i in range(0, len(args), 2)}
        assert flags["--maxmemory"] == str(int(2 * 2**30 * 0.8))  # below the 2Gi limit
        assert flags["--maxmemory-policy"] == "noeviction"
        assert flags["--protected-mode"] == "yes"
        assert flags["--appendfsync"] == "everysec"
        assert flags["--requirepass"] == "$(REDIS_PASSWORD)"
        assert container["env"][0]["value_from"]["secret_key_ref"]["name"] == "shop-redis-auth"
        assert container["resources"]["limits"]["memory"] == "2Gi"
        claim = redis["spec"]["volume_claim_templates"][0]["spec"]
        assert (claim["storage_class_name"], claim["resources"]["requests"]["storage"]) == ("fast", "2Gi")
        for deployment in ("shop-api", "shop-worker"):
            pod = apps.read_namespaced_deployment(deployment, namespace).spec.template.spec
            env = {e.name: e for e in pod.containers[0].env}
            assert env["TAILOR_REDIS_PASSWORD"].value_from.secret_key_ref.name == "shop-redis-auth"
            assert env["TAILOR_REDIS_USERNAME"].value == "default"

        # Kept: edits of the stack and an operator restart do not make another password.
        kept = generated.metadata.resource_version
        edited = copy.deepcopy(the_stack(documents))
        edited["spec"]["workers"]["replicas"] = 3
        apply(kubectl, namespace, [edited])
        wait_for(
            "3 workers", lambda: apps.read_namespaced_deployment("shop-worker", namespace).spec.replicas == 3
        )
        operator.kill()
        start_operator("--namespace", namespace, "--standalone", env=DRIFT)
        wait_for("the stack Ready", lambda: condition(kube_api, namespace, "Ready").get("status") == "True")
        again = core.read_namespaced_secret("shop-redis-auth", namespace)
        assert again.metadata.resource_version == kept
        assert base64.b64decode(again.data["password"]).decode() == password
    finally:
        core.delete_persistent_volume(volume)


def test_the_api_server_refuses_redis_settings_that_cannot_work(
    crds: None, kubectl: Callable[..., Any], namespace: str
) -> None:
    cases = {
        "rediss://app:p%40ss@redis.example:6380/0": "redis.url must hold no credentials",
        "redis://redis.example:6379/0?password=x": "redis.url must hold no credentials",
    }
    for url, message in cases.items():
        stack = the_stack(shop_documents(url))
        result = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(stack), check=False)
        assert result.returncode != 0, url
        assert message in result.stderr, (url, result.stderr)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"url": "redis://r:6379/0", "username": "a", "usernameSecretRef": {"name": "s"}},
         "set at most one of redis.username and redis.usernameSecretRef"),
        ({"managed": True, "username": "app"}, "are for your own Redis (url)"),
        ({"managed": True, "tls": {"caSecretRef": {"name": "ca"}}}, "are for your own Redis (url)"),
        ({"url": "redis://r:6379/0", "tls": {"caSecretRef": {"name": "ca"}}},
         "redis.tls needs a rediss:// url"),
        ({"managed": True, "maxmemory": "lots"}, "redis.maxmemory must be a size like 800Mi or 2Gi"),
        ({"managed": True, "storage": "big"}, "redis.storage must be a size like 1Gi or 500Mi"),
        ({"managed": True, "appendfsync": "sometimes"}, 'Unsupported value: "sometimes"'),
        ({"managed": True, "storageClassName": "Fast_SSD"}, "storageClassName"),
        ({"url": "redis://r:6379/0", "mode": "sharded"}, 'Unsupported value: "sharded"'),
        ({"managed": True, "mode": "cluster"}, "redis.mode cluster needs redis.url"),
        ({"url": "redis://r:7000/2", "mode": "cluster"}, "redis.mode cluster takes database 0 only"),
        ({"url": "redis://r:7000/0", "waitReplicas": 6}, "should be less than or equal to 5"),
    ]  # fmt: skip
    for redis_spec, message in bad:
        stack = the_stack(shop_documents())
        stack["spec"]["redis"] = redis_spec
        result = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(stack), check=False)
        assert result.returncode != 0, redis_spec
        assert message in result.stderr, (redis_spec, result.stderr)
    good = the_stack(shop_documents())
    good["spec"]["redis"] = {
        "managed": True,
        "maxmemory": "800Mi",
        "appendfsync": "no",
        "storageClassName": "",
    }
    kubectl("apply", "-n", namespace, "-f", "-", "--dry-run=server", input=yaml.safe_dump(good))
    cluster = the_stack(shop_documents())
    cluster["spec"]["redis"] = {"url": "redis://node-0.redis-cluster:7000", "mode": "cluster"}
    kubectl("apply", "-n", namespace, "-f", "-", "--dry-run=server", input=yaml.safe_dump(cluster))
