"""The operator's Kubernetes facade (tailor_operator.kube, on kubernetes_asyncio) against the real
kube-apiserver: every verb the reconcilers use, with the outcomes they rely on."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from tailor_operator import kube

from tailor.core import constants

pytestmark = [pytest.mark.kube]


def config_map(namespace: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "facade", "namespace": namespace},
        "data": data,
    }


async def test_apply_creates_restores_drift_and_deletes(
    kubeconfig: Path, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    client = await kube.Kube.connect(str(kubeconfig))
    try:
        created = await client.apply(config_map(namespace, {"a": "1"}))
        assert created["data"] == {"a": "1"}
        # Someone else edits the child: the next apply takes the field back (force, one field manager).
        k8s_client.CoreV1Api(kube_api).patch_namespaced_config_map(
            "facade", namespace, {"data": {"a": "edited"}}
        )
        restored = await client.apply(config_map(namespace, {"a": "1"}))
        assert restored["data"]["a"] == "1"
        managers = {entry["manager"] for entry in restored["metadata"]["managedFields"]}
        assert "tailor-operator" in managers

        read = await client.get("v1", "ConfigMap", namespace, "facade")
        assert read is not None
        assert read["metadata"]["uid"] == created["metadata"]["uid"]
        assert await client.delete("v1", "ConfigMap", namespace, "facade") is True
        assert await client.delete("v1", "ConfigMap", namespace, "facade") is False
        assert await client.get("v1", "ConfigMap", namespace, "facade") is None
    finally:
        await client.close()


async def test_secrets_events_and_refusals(
    kubeconfig: Path, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    client = await kube.Kube.connect(str(kubeconfig))
    try:
        assert await client.read_secret(namespace, "absent") is None
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pw", "namespace": namespace},
            "data": {"password": base64.b64encode(b"s3cret").decode()},
        }
        await client.apply(secret)
        assert await client.read_secret(namespace, "pw") == {"password": base64.b64encode(b"s3cret").decode()}

        involved = await client.get("v1", "Secret", namespace, "pw")
        assert involved is not None
        await client.post_event({**involved, "apiVersion": "v1", "kind": "Secret"}, "Tested", "a message")
        listed = k8s_client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
        assert [(e.reason, e.message, e.involved_object.name) for e in listed] == [
            ("Tested", "a message", "pw")
        ]

        # A kind the server does not serve is a 404 that names it; a refused body keeps the server's words.
        with pytest.raises(kube.ApiError) as unknown:
            await client.get("v1", "Gadget", namespace, "x")
        assert unknown.value.status == 404
        assert "Gadget" in str(unknown.value)
        with pytest.raises(kube.ApiError) as refused:
            await client.apply(
                {**config_map(namespace, {}), "metadata": {"name": "Not_A_Name", "namespace": namespace}}
            )
        assert refused.value.status == 422
        assert "Not_A_Name" in str(refused.value)

        # A status patch on a stack that was deleted meanwhile is not an error.
        await client.patch_status(constants.STACK_KIND, namespace, "gone", {"phase": "Ready"})
    finally:
        await client.close()


async def test_create_unless_exists_reports_whether_it_created(kubeconfig: Path, namespace: str) -> None:
    client = await kube.Kube.connect(str(kubeconfig))
    try:
        manifest = config_map(namespace, {"first": "yes"})
        assert await client.create_unless_exists(manifest) is True
        assert await client.create_unless_exists(config_map(namespace, {"second": "no"})) is False
        kept = await client.get("v1", "ConfigMap", namespace, "facade")
        assert kept is not None
        assert kept["data"] == {"first": "yes"}
    finally:
        await client.close()


async def test_optional_kinds_are_asked_once_and_another_manager_applies_without_force(
    kubeconfig: Path, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    client = await kube.Kube.connect(str(kubeconfig))
    try:
        assert await client.serves("autoscaling/v2", "HorizontalPodAutoscaler") is True
        # No such CRD here: a no, remembered (a miss re-reads all of discovery, so the next answers
        # must not ask it again), and nothing to delete.
        assert await client.serves("example.tailor.dev/v1", "Gadget") is False

        async def no_discovery(*args: object) -> str:
            raise AssertionError(f"discovery asked again for {args}")

        asked = client.path
        client.path = no_discovery  # type: ignore[method-assign]
        assert await client.serves("example.tailor.dev/v1", "Gadget") is False
        assert await client.delete("example.tailor.dev/v1", "Gadget", namespace, "x") is False
        client.path = asked  # type: ignore[method-assign]

        await client.apply(config_map(namespace, {"a": "1"}))
        # The same value under a second manager: shared, no conflict (the replicas hand-over's step).
        shared = await client.apply(config_map(namespace, {"a": "1"}), field_manager="second", force=False)
        assert {"tailor-operator", "second"} <= {e["manager"] for e in shared["metadata"]["managedFields"]}
        # A different value without force: the owner's field is not taken.
        with pytest.raises(kube.ApiError) as conflict:
            await client.apply(config_map(namespace, {"a": "2"}), field_manager="third", force=False)
        assert conflict.value.status == 409
        live = k8s_client.CoreV1Api(kube_api).read_namespaced_config_map("facade", namespace)
        assert live.data == {"a": "1"}
    finally:
        await client.close()


async def test_a_kind_the_server_does_not_serve_never_breaks_lookups_running_beside_it(
    kubeconfig: Path, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    """A miss makes the library rebuild its discovery cache (invalidate_cache, two requests); lookups
    that load an API group meanwhile (another handler applying a child or posting an Event while the
    topics reconciler looks for Strimzi's KafkaTopic) must wait for it, not write into a cache that
    is half rebuilt (KeyError: 'resources')."""
    groups = k8s_client.ApisApi(kube_api).get_api_versions().groups
    versions = [group.preferred_version.group_version for group in groups]
    for _ in range(10):
        client = await kube.Kube.connect(str(kubeconfig))
        try:
            await client.path("v1", "ConfigMap", namespace)  # discovery done, the groups not loaded yet
            # Every group's resources in flight, then a miss in the middle of them.
            loads = [client.path(version, "NoSuchKind", namespace) for version in versions]
            half = len(loads) // 2
            missing = client.path("kafka.strimzi.io/v1", "KafkaTopic", namespace)
            results = await asyncio.gather(*loads[:half], missing, *loads[half:], return_exceptions=True)
        finally:
            await client.close()
        broken = [r for r in results if not (isinstance(r, kube.ApiError) and r.status == 404)]
        assert broken == [], broken
