"""spec.contentApi.identity against a real API server: bad settings are refused with our messages, and
the operator mounts the identity Secret whole into the content API (so a key added or removed
reaches the running pods without a roll) and says which Secret is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from test_operator import Operator, apply, crds, get, shop_documents, start_operator, the_stack, wait_for

__all__ = ["crds", "start_operator"]  # fixtures, used by name
pytestmark = [pytest.mark.kube, pytest.mark.redis]
IDENTITY = {"mode": "required", "secretRef": {"name": "shop-identity"}, "algorithms": ["HS256"],
            "maxTokenLifetime": "15m"}  # fmt: skip


def test_the_api_server_refuses_identity_settings_that_cannot_work(
    crds: None, kubectl: Callable[..., Any], namespace: str
) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"mode": "required"}, "contentApi.identity.secretRef is required when mode is optional or required"),
        ({"mode": "optional"}, "contentApi.identity.secretRef is required when mode is optional or required"),
        ({"mode": "on"}, 'supported values: "off", "optional", "required"'),
        ({**IDENTITY, "algorithms": ["RS256"]}, 'supported values: "HS256", "ES256", "EdDSA"'),
        ({**IDENTITY, "algorithms": []}, "should have at least 1 items"),
        ({**IDENTITY, "maxTokenLifetime": "30s"}, "maxTokenLifetime must be a number of minutes or hours"),
        ({**IDENTITY, "secretRef": {"name": "Shop_Keys"}}, "spec.contentApi.identity.secretRef.name"),
    ]  # fmt: skip
    for identity, message in bad:
        stack = the_stack(shop_documents())
        stack["spec"]["contentApi"]["identity"] = identity
        result = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(stack), check=False)
        assert result.returncode != 0, identity
        assert message in result.stderr, (identity, result.stderr)
    good = the_stack(shop_documents())
    good["spec"]["contentApi"]["identity"] = IDENTITY
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(good))
    kubectl("delete", "-n", namespace, "personalizationstack", "shop")


def test_the_operator_mounts_the_identity_secret_whole_and_names_it_while_missing(
    start_operator: Callable[..., Operator],
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
    kafka_bootstrap: str,
) -> None:
    documents = shop_documents(redis_url, kafka_bootstrap=kafka_bootstrap)
    the_stack(documents)["spec"]["contentApi"]["identity"] = IDENTITY
    apply(kubectl, namespace, documents)
    start_operator("--namespace", namespace, "--standalone")

    def reconciled() -> dict[str, Any] | None:
        status = get(kube_api, namespace, "personalizationstacks", "shop").get("status") or {}
        return next((c for c in status.get("conditions") or () if c["type"] == "Reconciled"), None)

    missing = wait_for(
        "the missing Secret named", lambda: (c := reconciled()) and c["status"] == "False" and c
    )
    assert missing["reason"] == "SecretMissing"
    assert "shop-identity (contentApi.identity.secretRef)" in missing["message"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-identity"},
              "stringData": {"shop-1.hs256": "k" * 32}}  # fmt: skip
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(secret))
    apps = k8s_client.AppsV1Api(kube_api)
    api = wait_for("shop-api", lambda: apps.read_namespaced_deployment("shop-api", namespace), timeout=30)
    pod = api.spec.template.spec
    (volume,) = [v for v in pod.volumes if v.name == "identity-keys"]
    assert (volume.secret.secret_name, volume.secret.items) == (
        "shop-identity",
        None,
    )  # whole: updated in place
    container = pod.containers[0]
    assert [(m.mount_path, m.read_only) for m in container.volume_mounts if m.name == "identity-keys"] == [
        ("/etc/tailor/identity", True)
    ]
    env = {e.name: e.value for e in container.env}
    assert env["TAILOR_IDENTITY_MODE"] == "required"
    assert env["TAILOR_IDENTITY_KEYS_DIR"] == "/etc/tailor/identity"
    assert env["TAILOR_IDENTITY_ALGORITHMS"] == '["HS256"]'
    assert env["TAILOR_IDENTITY_MAX_LIFETIME_SECONDS"] == "900"
    # Rotation: a key added to the Secret changes no pod template (the files change in place).
    checksum = api.spec.template.metadata.annotations
    secret["stringData"]["shop-2.hs256"] = "n" * 32
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(secret))
    kubectl("annotate", "-n", namespace, "personalizationstack", "shop", "poke=1")  # a reconcile
    wait_for(
        "a reconcile after the annotation",
        lambda: get(kube_api, namespace, "personalizationstacks", "shop")["metadata"]["annotations"].get(
            "poke"
        ),
    )
    assert (
        apps.read_namespaced_deployment("shop-api", namespace).spec.template.metadata.annotations == checksum
    )
