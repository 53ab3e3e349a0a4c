"""Pod templates, disruption budgets and autoscaling against the real kube-apiserver (and
kube-controller-manager, whose HPA controller acts on the HPAs the operator owns), with the operator
run as users run it (`tailor operator`, a subprocess; tests/integration/test_operator.py)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from test_operator import (  # noqa: F401 (crds and start_operator are fixtures)
    Operator,
    apply,
    crds,
    get,
    shop_documents,
    start_operator,
    the_stack,
    wait_for,
)

from tailor.devstack import keda, probes

pytestmark = [pytest.mark.kube, pytest.mark.redis, pytest.mark.slow]

GROUP, VERSION = "tailor.dev", "v1alpha1"
# Resyncs every second (the drift timer), so "across resyncs" is seconds, not minutes.
QUICK_DRIFT = {"TAILOR_OPERATOR_DRIFT_INTERVAL_SECONDS": "1"}
# The example's Kafka address does not resolve here, and the operator looks at a stack's topics after
# its children on every change, so each change waited out the 10 s Kafka timeout before the next was
# taken. A 1 s look (TopicsReady=False, KafkaUnavailable either way; no test here reads it) lets a
# change through in about a second.
QUICK_KAFKA = {"TAILOR_OPERATOR_KAFKA_TIMEOUT_SECONDS": "1"}


def stack_manifest(redis_url: str, **spec: Any) -> dict[str, Any]:
    stack = copy.deepcopy(the_stack(shop_documents(redis_url)))
    for key, value in spec.items():
        stack["spec"][key] = value
    return stack


def refusal(kube_api: k8s_client.ApiClient, namespace: str, stack: dict[str, Any]) -> str:
    """The API server's answer to creating `stack` (a dry run, with kubectl's strict field validation):
    its message, or "" when it accepts it."""
    try:
        k8s_client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "personalizationstacks",
            stack,
            dry_run="All",
            field_validation="Strict",
        )
    except k8s_client.ApiException as error:
        return str(json.loads(error.body).get("message"))
    return ""


def condition(kube_api: k8s_client.ApiClient, namespace: str, type_: str) -> dict[str, Any]:
    status = get(kube_api, namespace, "personalizationstacks", "shop").get("status") or {}
    return next((dict(c) for c in status.get("conditions") or () if c["type"] == type_), {})


def deployment(kube_api: k8s_client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = k8s_client.ApiClient().sanitize_for_serialization(
        k8s_client.AppsV1Api(kube_api).read_namespaced_deployment(name, namespace)
    )
    return body


def replica_managers(body: dict[str, Any]) -> set[str]:
    """The field managers that own spec.replicas."""
    return {
        entry["manager"]
        for entry in body["metadata"].get("managedFields") or ()
        if "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    }


def resyncs(operator: Operator, count: int) -> None:
    """Wait until the operator has re-applied the stack's children `count` more times."""
    start = operator.reconciles("PersonalizationStack")
    wait_for(
        f"{count} resyncs",
        lambda: operator.reconciles("PersonalizationStack") >= start + count,
        timeout=30,
    )


# --- what the API server refuses ---------------------------------------------------------------------

GOOD_TEMPLATE = {
    "pod": {
        "metadata": {"labels": {"team": "growth"}, "annotations": {"example.com/owner": "growth"}},
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                "matchLabels": {"app.kubernetes.io/component": "worker"}}}}]}},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tailor", "effect": "NoSchedule"},
                        {"operator": "Exists"}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "tailor",
        "serviceAccountName": "tailor-workers",
        "volumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
    },
    "container": {
        "env": [{"name": "TAILOR_WORKER_BATCH_SIZE", "value": "2000"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "volumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    },
    "podDisruptionBudget": {"maxUnavailable": "25%"},
}  # fmt: skip


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The workers section with `value` at the dotted `path` (under a copy of the good template)."""
    workers: dict[str, Any] = {"replicas": 2, "template": copy.deepcopy(GOOD_TEMPLATE), **(base or {})}
    node = workers
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return workers


REFUSED = [
    ("template.pod.metadata.labels", {"app.kubernetes.io/component": "x"},
     "pod labels under app.kubernetes.io/ are the operator's"),
    ("template.pod.metadata.annotations", {"tailor.dev/config-checksum": "x"},
     "pod annotations under tailor.dev/ are the operator's"),
    ("template.pod.tolerations", [{"value": "x"}], "a toleration without a key must have operator Exists"),
    ("template.pod.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}],
     "a toleration with operator Exists takes no value"),
    ("template.pod.tolerations", [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
     "tolerationSeconds applies only to effect NoExecute"),
    ("template.pod.topologySpreadConstraints",
     [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}],
     "minDomains applies only to whenUnsatisfiable DoNotSchedule"),
    ("template.pod.topologySpreadConstraints",
     [{"maxSkew": 0, "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}], "maxSkew"),
    ("template.pod.affinity", {"nodeAfinity": {}},
     'unknown field "spec.workers.template.pod.affinity.nodeAfinity"'),
    ("template.pod.affinity", {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 101, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}, "weight"),
    ("template.pod.priorityClassName", "High Priority", "priorityClassName"),
    ("template.pod.volumes", [{"name": "Bad_Name", "emptyDir": {}}], "volumes[0].name"),
    ("template.container.env", [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
     "an env variable takes value or valueFrom, not both"),
    ("template.container.env", [{"name": "A", "valueFrom": {}}],
     "env valueFrom takes exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef"),
    ("template.container.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}], "Duplicate value"),
    ("template.container.volumeMounts", [{"name": "nowhere", "mountPath": "/x"}],
     "every container.volumeMounts[].name must be the name of one of pod.volumes"),
    ("template.podDisruptionBudget", {"maxUnavailable": 0}, "maxUnavailable"),
    ("template.podDisruptionBudget", {"maxUnavailable": "0%"}, "maxUnavailable"),
    ("template.podDisruptionBudget", {"maxUnavailable": 1, "minAvailable": 1},
     "set at most one of podDisruptionBudget.maxUnavailable and podDisruptionBudget.minAvailable"),
    ("template.podDisruptionBudget", {"minAvailable": 2},
     "workers.template.podDisruptionBudget.minAvailable must be below replicas"),
    ("autoscaling", {"enabled": True},
     "workers.autoscaling.maxReplicas is required when autoscaling is enabled"),
    ("autoscaling", {"enabled": True, "minReplicas": 5, "maxReplicas": 2},
     "workers.autoscaling.minReplicas must not exceed maxReplicas"),
    ("autoscaling", {"enabled": True, "minReplicas": 0, "maxReplicas": 2},
     "minReplicas 0 (scale to zero) needs mode: KEDA"),
    ("autoscaling", {"enabled": True, "maxReplicas": 2, "mode": "Keda"}, "mode"),
    ("autoscaling", {"enabled": True, "maxReplicas": 2, "lagThreshold": 0}, "lagThreshold"),
    ("limits", {"eventsPerUserPerMinute": 0}, "spec.workers.limits.eventsPerUserPerMinute"),
    ("limits", {"dedupMarksPerUser": 10}, "spec.workers.limits.dedupMarksPerUser"),
    ("limits", {"dedupMarksPerUser": 10**7}, "spec.workers.limits.dedupMarksPerUser"),
    ("limits", {"eventsPerMinute": 10}, 'unknown field "spec.workers.limits.eventsPerMinute"'),
    ("autoscaling", {"enabled": True, "maxReplicas": 2, "targetCPUUtilizationPercentage": 0},
     "targetCPUUtilizationPercentage"),
    ("autoscaling", {"enabled": True, "maxReplicas": 2, "authenticationRef": {"name": "a", "kind": "Secret"}},
     "authenticationRef.kind"),
    ("template.pod.imagePullSecrets", [{"name": ""}], "imagePullSecrets[0].name"),
    ("template.pod.nodeSelector", {"pool": "x" * 64}, "nodeSelector.pool"),
    ("template.pod.metadata.labels", {"team": "growth team"}, "labels.team"),
    ("template.pod.serviceAccountName", "Tailor_Workers", "serviceAccountName"),
    ("template.pod.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": []}}}, "nodeSelectorTerms"),
    ("template.container.env", [{"name": "1BAD", "value": "x"}], "env[0].name"),
    ("template.container.volumeMounts", [{"name": "ca", "mountPath": "relative/path"}], "mountPath"),
]  # fmt: skip


def test_the_api_server_refuses_bad_templates_and_autoscaling_with_our_messages(
    crds: None,  # noqa: F811 (the fixture, imported)
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
) -> None:
    # Controls: the full template passes, and so do the other components' templates, autoscaling
    # with a budget by minAvailable below minReplicas, and a minAvailable with 0 replicas.
    assert refusal(kube_api, namespace, stack_manifest(redis_url, workers=_with("replicas", 2))) == ""
    limits = {"eventsPerUserPerMinute": 60, "dedupMarksPerUser": 2000}
    assert refusal(kube_api, namespace, stack_manifest(redis_url, workers=_with("limits", limits))) == ""
    fine = stack_manifest(
        redis_url,
        redis={"managed": True, "template": {**GOOD_TEMPLATE, "podDisruptionBudget": {"minAvailable": 0}}},
        contentApi={"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9},
                    "template": {**GOOD_TEMPLATE, "podDisruptionBudget": {"minAvailable": 2}}},
        workers={"replicas": 0, "template": {"podDisruptionBudget": {"minAvailable": 1}}},
    )  # fmt: skip
    assert refusal(kube_api, namespace, fine) == ""
    for path, value, message in REFUSED:
        answer = refusal(kube_api, namespace, stack_manifest(redis_url, workers=_with(path, value)))
        assert message in answer, f"{path}={value!r}: {answer or 'accepted'}"
    # The other components share the template's shape and its rules, and have their own bounds.
    over = {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4},
            "template": {"podDisruptionBudget": {"minAvailable": 2}}}  # fmt: skip
    assert "contentApi.template.podDisruptionBudget.minAvailable must be below replicas" in refusal(
        kube_api, namespace, stack_manifest(redis_url, contentApi=over)
    )
    assert "contentApi.autoscaling.maxReplicas is required when autoscaling is enabled" in refusal(
        kube_api, namespace, stack_manifest(redis_url, contentApi={"autoscaling": {"enabled": True}})
    )
    assert "minReplicas" in refusal(
        kube_api, namespace, stack_manifest(redis_url, contentApi={"autoscaling": {"minReplicas": 0}})
    )
    kept = {"managed": True, "template": {"podDisruptionBudget": {"minAvailable": 1}}}
    assert "redis.template.podDisruptionBudget.minAvailable must be 0" in refusal(
        kube_api, namespace, stack_manifest(redis_url, redis=kept)
    )
    labelled = {
        "managed": True,
        "template": {"pod": {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}}},
    }
    assert "pod labels under app.kubernetes.io/ are the operator's" in refusal(
        kube_api, namespace, stack_manifest(redis_url, redis=labelled)
    )


# --- templates on running stacks ---------------------------------------------------------------------


def test_templates_reach_the_pods_and_what_the_operator_cannot_apply_is_reported(
    start_operator: Callable[..., Operator],  # noqa: F811 (the fixture, imported)
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
) -> None:
    template = copy.deepcopy(GOOD_TEMPLATE)
    stack = stack_manifest(redis_url, workers={"replicas": 2, "template": template})
    apply(kubectl, namespace, [stack])
    operator = start_operator("--namespace", namespace, "--standalone", env={**QUICK_DRIFT, **QUICK_KAFKA})
    policy = k8s_client.PolicyV1Api(kube_api)
    budget = wait_for("the workers' budget", lambda: policy.read_namespaced_pod_disruption_budget(
        "shop-worker", namespace))  # fmt: skip
    assert budget.spec.max_unavailable == "25%"
    assert budget.spec.unhealthy_pod_eviction_policy == "AlwaysAllow"
    budget = wait_for(
        "the API's budget", lambda: policy.read_namespaced_pod_disruption_budget("shop-api", namespace)
    )
    assert budget.spec.max_unavailable == 1

    pod = deployment(kube_api, namespace, "shop-worker")["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "growth"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert pod["spec"]["serviceAccountName"] == "tailor-workers"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["tolerations"] == template["pod"]["tolerations"]
    assert (
        pod["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"][
            "app.kubernetes.io/component"
        ]
        == "worker"
    )
    assert {"name": "ca", "configMap": {"name": "corporate-ca", "defaultMode": 420}} in pod["spec"]["volumes"]
    assert pod["spec"]["containers"][0]["env"][-1]["name"] == "NODE"
    assert "team" not in deployment(kube_api, namespace, "shop-api")["spec"]["template"]["metadata"]["labels"]

    # The budget turned off: deleted.
    stack["spec"]["workers"]["template"]["podDisruptionBudget"] = {"enabled": False}
    apply(kubectl, namespace, [stack])
    wait_for("the workers' budget gone", lambda: not policy.list_namespaced_pod_disruption_budget(
        namespace, field_selector="metadata.name=shop-worker").items)  # fmt: skip

    # An env variable the operator sets: refused by name, nothing applied.
    clash = copy.deepcopy(stack)
    clash["spec"]["workers"]["template"]["container"]["env"].append(
        {"name": "TAILOR_REDIS_URL", "value": "x"}
    )
    apply(kubectl, namespace, [clash])
    refused = wait_for(
        "Reconciled=False",
        lambda: (c := condition(kube_api, namespace, "Reconciled")).get("status") == "False" and c,
    )
    assert refused["reason"] == "InvalidSpec"
    assert "workers.template.container.env: TAILOR_REDIS_URL is set by the operator" in refused["message"]

    # A volume the CRD lets through (its source is not checked there) but the API server refuses in
    # the Deployment: reported with the API server's own words.
    two_sources = copy.deepcopy(stack)
    two_sources["spec"]["workers"]["template"]["pod"]["volumes"] = [
        {"name": "ca", "emptyDir": {}, "configMap": {"name": "corporate-ca"}}
    ]
    apply(kubectl, namespace, [two_sources])
    refused = wait_for(
        "ChildRefused",
        lambda: (c := condition(kube_api, namespace, "Reconciled")).get("reason") == "ChildRefused" and c,
    )
    assert "the API server refused Deployment shop-worker" in refused["message"]
    assert "may not specify more than 1 volume type" in refused["message"]

    apply(kubectl, namespace, [stack])
    wait_for("Reconciled again", lambda: condition(kube_api, namespace, "Reconciled").get("status") == "True")
    assert operator.process.poll() is None, operator.output()


# --- autoscaling -------------------------------------------------------------------------------------


def test_dropping_replicas_from_an_apply_resets_them_which_is_why_the_operator_hands_them_over(
    kubectl: Callable[..., Any], kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    """The hazard the hand-over exists for, on this API server: a manager that stops applying a field
    it alone owns removes it, and the Deployment's default (1) comes back."""
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "scratch", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "scratch"}},
            "template": {
                "metadata": {"labels": {"app": "scratch"}},
                "spec": {"containers": [{"name": "c", "image": "scratch:1"}]},
            },
        },
    }

    def server_side_apply(body: dict[str, Any]) -> None:
        kubectl("apply", "--server-side", "--field-manager=one", "-f", "-", input=yaml.safe_dump(body))

    server_side_apply(manifest)
    assert deployment(kube_api, namespace, "scratch")["spec"]["replicas"] == 3
    without = copy.deepcopy(manifest)
    del without["spec"]["replicas"]
    server_side_apply(without)
    assert deployment(kube_api, namespace, "scratch")["spec"]["replicas"] == 1


def _scale(kube_api: k8s_client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Write replicas through the scale subresource, as an autoscaler's controller does."""
    k8s_client.AppsV1Api(kube_api).patch_namespaced_deployment_scale(
        name, namespace, {"spec": {"replicas": replicas}}, field_manager="test-autoscaler"
    )


def test_an_hpa_takes_over_replicas_without_a_reset_and_resyncs_leave_them_alone(
    start_operator: Callable[..., Operator],  # noqa: F811 (the fixture, imported)
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
) -> None:
    autoscaling_api = k8s_client.AutoscalingV2Api(kube_api)
    stack = stack_manifest(redis_url, workers={"replicas": 3})
    apply(kubectl, namespace, [stack])
    operator = start_operator("--namespace", namespace, "--standalone", env={**QUICK_DRIFT, **QUICK_KAFKA})
    wait_for("3 workers", lambda: deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 3)
    assert replica_managers(deployment(kube_api, namespace, "shop-worker")) == {"tailor-operator"}

    # Autoscaling on (an HPA: no KEDA here): the replicas stay 3, now held by the hand-over manager.
    stack["spec"]["workers"]["autoscaling"] = {
        "enabled": True,
        "mode": "Auto",
        "minReplicas": 1,
        "maxReplicas": 5,
    }
    apply(kubectl, namespace, [stack])
    hpa = wait_for("the workers' HPA", lambda: autoscaling_api.read_namespaced_horizontal_pod_autoscaler(
        "shop-worker", namespace))  # fmt: skip
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 5)
    assert hpa.metadata.owner_references[0].kind == "PersonalizationStack"
    assert hpa.spec.metrics[0].resource.target.average_utilization == 70
    wait_for("Reconciled", lambda: condition(kube_api, namespace, "Reconciled").get("status") == "True")
    resyncs(operator, 3)
    live = deployment(kube_api, namespace, "shop-worker")
    assert live["spec"]["replicas"] == 3
    assert "tailor-operator" not in replica_managers(live)
    assert "tailor-operator-replicas-handover" in replica_managers(live)

    # Scaling through the HPA: its floor raised in the stack, the HPA controller (in
    # kube-controller-manager) scales the Deployment, and resyncs keep what it chose.
    stack["spec"]["workers"]["autoscaling"]["minReplicas"] = 4
    apply(kubectl, namespace, [stack])
    wait_for(
        "the HPA controller scaling to 4",
        lambda: deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 4,
        timeout=60,
    )
    resyncs(operator, 3)
    assert deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 4
    # As an autoscaler writes: through the scale subresource, within the HPA's bounds.
    _scale(kube_api, namespace, "shop-worker", 5)
    resyncs(operator, 3)
    live = deployment(kube_api, namespace, "shop-worker")
    assert live["spec"]["replicas"] == 5
    assert "tailor-operator" not in replica_managers(live)

    # Off again: the HPA goes and the stack's replicas are the operator's once more.
    del stack["spec"]["workers"]["autoscaling"]
    apply(kubectl, namespace, [stack])
    wait_for(
        "3 workers again", lambda: deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 3
    )
    wait_for("the HPA gone", lambda: not autoscaling_api.list_namespaced_horizontal_pod_autoscaler(
        namespace, field_selector="metadata.name=shop-worker").items)  # fmt: skip
    assert "tailor-operator" in replica_managers(deployment(kube_api, namespace, "shop-worker"))

    # mode KEDA on a cluster without KEDA: refused with the way out, nothing changed. Last, because
    # the refusal is retried after 30 s (kopf's TemporaryError), which would hold up any later step.
    stack["spec"]["workers"]["autoscaling"] = {"enabled": True, "mode": "KEDA", "maxReplicas": 5}
    apply(kubectl, namespace, [stack])
    refused = wait_for(
        "KedaNotInstalled",
        lambda: (c := condition(kube_api, namespace, "Reconciled")).get("reason") == "KedaNotInstalled" and c,
    )
    assert "install KEDA, or set mode Auto or HPA" in refused["message"]
    assert deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 3
    assert operator.process.poll() is None, operator.output()


@pytest.fixture
def keda_crds(kubectl: Callable[..., Any], tmp_path: Path) -> Iterator[None]:
    """KEDA's own ScaledObject and TriggerAuthentication CRDs (from its Go module, pinned in
    tailor.devstack.versions), removed afterwards so other tests see a cluster without KEDA."""
    paths = keda.crd_paths(log=tmp_path / "keda-download.log")
    for path in paths:
        kubectl("apply", "--server-side", "-f", str(path))
    probes.until_conditions_set(
        kubectl, "wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=30s"
    )
    yield
    for path in paths:
        kubectl("delete", "-f", str(path), "--ignore-not-found", "--wait=false")


def test_with_keda_installed_workers_scale_by_a_scaled_object_on_their_lag(
    keda_crds: None,
    start_operator: Callable[..., Operator],  # noqa: F811 (the fixture, imported)
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
) -> None:
    objects = k8s_client.CustomObjectsApi(kube_api)
    stack = stack_manifest(redis_url, workers={"replicas": 2})
    stack["spec"]["workers"]["autoscaling"] = {
        "enabled": True, "minReplicas": 0, "maxReplicas": 6, "mode": "KEDA", "lagThreshold": 500,
        "authenticationRef": {"name": "kafka-auth"},
    }  # fmt: skip
    stack["spec"]["contentApi"]["autoscaling"] = {"enabled": True, "maxReplicas": 4}
    apply(kubectl, namespace, [stack])
    operator = start_operator("--namespace", namespace, "--standalone", env={**QUICK_DRIFT, **QUICK_KAFKA})

    def scaled_object() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects", "shop-worker"
        )
        return found

    # Accepted by KEDA's own schema.
    found = wait_for("the ScaledObject", scaled_object)
    [trigger] = found["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == f"tailor-worker.{namespace}.shop"
    assert trigger["metadata"]["topic"] == "shop.events"
    assert trigger["metadata"]["lagThreshold"] == "500"
    assert trigger["authenticationRef"] == {"name": "kafka-auth", "kind": "TriggerAuthentication"}
    assert (found["spec"]["minReplicaCount"], found["spec"]["maxReplicaCount"]) == (0, 6)
    assert found["metadata"]["ownerReferences"][0]["name"] == "shop"
    # The ScaledObject may be applied before the API's HPA: look once the whole stack is reconciled.
    wait_for("Reconciled", lambda: condition(kube_api, namespace, "Reconciled").get("status") == "True")
    hpas = k8s_client.AutoscalingV2Api(kube_api).list_namespaced_horizontal_pod_autoscaler(namespace).items
    assert [h.metadata.name for h in hpas] == ["shop-api"], "KEDA runs the workers' HPA, not the operator"

    # KEDA scales the Deployment through its scale subresource; the operator leaves that alone.
    _scale(kube_api, namespace, "shop-worker", 4)
    resyncs(operator, 3)
    assert deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 4

    del stack["spec"]["workers"]["autoscaling"]
    apply(kubectl, namespace, [stack])
    wait_for("the ScaledObject gone", lambda: not objects.list_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects")["items"])  # fmt: skip
    wait_for(
        "2 workers again", lambda: deployment(kube_api, namespace, "shop-worker")["spec"]["replicas"] == 2
    )
    assert operator.process.poll() is None, operator.output()


def _secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def test_keda_logs_in_to_a_secured_kafka_from_the_stacks_own_secrets(
    keda_crds: None,
    start_operator: Callable[..., Operator],  # noqa: F811 (the fixture, imported)
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
) -> None:
    objects = k8s_client.CustomObjectsApi(kube_api)
    secrets = [
        _secret("kafka-login", password="p4ss"),
        _secret("kafka-ca", **{"ca.crt": "-----BEGIN CERTIFICATE-----"}),
        _secret("kafka-client", **{"tls.crt": "cert", "tls.key": "key"}),
    ]
    stack = stack_manifest(redis_url, workers={"replicas": 2})
    stack["spec"]["kafka"]["security"] = {
        "protocol": "SASL_SSL",
        "tls": {"caSecretRef": {"name": "kafka-ca"}, "clientCertificateSecretRef": {"name": "kafka-client"}},
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "shop-worker",
                 "passwordSecretRef": {"name": "kafka-login"}},
    }  # fmt: skip
    stack["spec"]["workers"]["autoscaling"] = {"enabled": True, "maxReplicas": 6, "mode": "KEDA"}
    apply(kubectl, namespace, [*secrets, stack])
    operator = start_operator("--namespace", namespace, "--standalone", env={**QUICK_DRIFT, **QUICK_KAFKA})

    def keda_object(plural: str) -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, plural, "shop-worker"
        )
        return found

    # Accepted by KEDA's own schema; the trigger says TLS and SCRAM and points at it.
    authentication = wait_for("the TriggerAuthentication", lambda: keda_object("triggerauthentications"))
    [trigger] = wait_for("the ScaledObject", lambda: keda_object("scaledobjects"))["spec"]["triggers"]
    assert {k: trigger["metadata"].get(k) for k in ("tls", "sasl")} == {
        "tls": "enable",
        "sasl": "scram_sha512",
    }
    assert trigger["authenticationRef"] == {"name": "shop-worker", "kind": "TriggerAuthentication"}
    assert authentication["metadata"]["ownerReferences"][0]["name"] == "shop"
    assert sorted(authentication["spec"]["secretTargetRef"], key=lambda r: r["parameter"]) == [
        {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"},
        {"parameter": "cert", "name": "kafka-client", "key": "tls.crt"},
        {"parameter": "key", "name": "kafka-client", "key": "tls.key"},
        {"parameter": "password", "name": "kafka-login", "key": "password"},
    ]
    # What KEDA resolves: every env parameter from the worker container named, every Secret key present.
    worker = deployment(kube_api, namespace, "shop-worker")["spec"]["template"]["spec"]["containers"][0]
    env = {variable["name"]: variable.get("value") for variable in worker["env"]}
    resolved = {ref["parameter"]: env[ref["name"]] for ref in authentication["spec"]["env"]
                if ref["containerName"] == worker["name"]}  # fmt: skip
    assert resolved == {"username": "shop-worker"}
    for ref in authentication["spec"]["secretTargetRef"]:
        stored = k8s_client.CoreV1Api(kube_api).read_namespaced_secret(ref["name"], namespace)
        assert ref["key"] in stored.data, ref

    # MSK IAM: no Secrets, KEDA assumes the workers' own IAM role (their service account's).
    stack["spec"]["kafka"]["security"] = {
        "protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER", "awsMskIam": {"region": "eu-west-1"}},
    }  # fmt: skip
    apply(kubectl, namespace, [stack])
    wait_for("the pod identity", lambda: "podIdentity" in keda_object("triggerauthentications")["spec"])
    assert keda_object("triggerauthentications")["spec"] == {
        "podIdentity": {"provider": "aws", "identityOwner": "workload"}
    }
    [trigger] = keda_object("scaledobjects")["spec"]["triggers"]
    assert {k: trigger["metadata"].get(k) for k in ("tls", "sasl", "saslTokenProvider", "awsRegion")} == {
        "tls": "enable",
        "sasl": "oauthbearer",
        "saslTokenProvider": "aws_msk_iam",
        "awsRegion": "eu-west-1",
    }

    # A TriggerAuthentication of the user's own wins: ours goes.
    stack["spec"]["workers"]["autoscaling"]["authenticationRef"] = {"name": "platform-kafka"}
    apply(kubectl, namespace, [stack])
    wait_for("the trigger on theirs", lambda: keda_object("scaledobjects")["spec"]["triggers"][0][
        "authenticationRef"] == {"name": "platform-kafka", "kind": "TriggerAuthentication"})  # fmt: skip
    assert not objects.list_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "triggerauthentications")["items"]  # fmt: skip
    assert operator.process.poll() is None, operator.output()


# --- the image allowlist -----------------------------------------------------------------------------


def _no_deployment(kube_api: k8s_client.ApiClient, namespace: str, name: str) -> bool:
    try:
        k8s_client.AppsV1Api(kube_api).read_namespaced_deployment(name, namespace)
    except k8s_client.ApiException as error:
        return error.status == 404
    return False


def test_a_stack_whose_image_is_not_allowed_gets_no_pods_and_says_why(
    start_operator: Callable[..., Operator],  # noqa: F811 (the fixture, imported)
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    redis_url: str,
) -> None:
    allowlist = {"TAILOR_OPERATOR_IMAGE_ALLOWLIST": json.dumps(["registry.example.com/tailor/*"])}
    operator = start_operator(
        "--namespace", namespace, "--standalone", env={**QUICK_DRIFT, **QUICK_KAFKA, **allowlist}
    )
    stack = stack_manifest(redis_url, image="ghcr.io/someone/miner:1")
    apply(kubectl, namespace, [stack])

    def refused() -> dict[str, Any] | None:
        ready = condition(kube_api, namespace, "Ready")
        return ready if ready.get("reason") == "ImageNotAllowed" else None

    ready = wait_for("Ready=False, ImageNotAllowed", refused)
    assert ready["status"] == "False"
    assert "spec.image ghcr.io/someone/miner:1 is not in the operator's image allowlist" in ready["message"]
    assert "registry.example.com/tailor/*" in ready["message"]
    resyncs(operator, 3)
    assert _no_deployment(kube_api, namespace, "shop-worker")
    assert _no_deployment(kube_api, namespace, "shop-api")

    # The control: an allowed image is run.
    stack["spec"]["image"] = "registry.example.com/tailor/tailor:0.1.0"
    apply(kubectl, namespace, [stack])
    workers = wait_for("the workers", lambda: deployment(kube_api, namespace, "shop-worker"))
    assert workers["spec"]["template"]["spec"]["containers"][0]["image"] == stack["spec"]["image"]
    wait_for("Reconciled", lambda: condition(kube_api, namespace, "Reconciled").get("status") == "True")

    # Switched to a disallowed image: refused again, and the running pods are left as they were, also
    # when one of them is deleted (not restored with the new image).
    stack["spec"]["image"] = "registry.example.com/tailor-evil/tailor:0.1.0"
    apply(kubectl, namespace, [stack])
    wait_for("Ready=False, ImageNotAllowed again", refused)
    k8s_client.AppsV1Api(kube_api).delete_namespaced_deployment("shop-api", namespace)
    resyncs(operator, 3)
    live = deployment(kube_api, namespace, "shop-worker")
    assert (
        live["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.example.com/tailor/tailor:0.1.0"
    )
    assert _no_deployment(kube_api, namespace, "shop-api")
    assert operator.process.poll() is None, operator.output()
