"""Pod templates and disruption budgets as the operator builds them from a stack's `template`, and the
autoscalers it builds from `autoscaling`: no API server (the CRD's refusals are tested against the real
one in tests/integration/test_operator_pods.py)."""

from __future__ import annotations

from typing import Any

import pytest
from tailor_operator import autoscaling, builders, templates
from tailor_operator.reconcile import children

from tailor.core.rules import specs

SELECTOR = {
    "app.kubernetes.io/name": "tailor",
    "app.kubernetes.io/instance": "shop",
    "app.kubernetes.io/component": "worker",
}


def stack(**spec: Any) -> builders.Stack:
    base: dict[str, Any] = {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"managed": True}}
    base.update(spec)
    return builders.Stack("shop", "shop", "uid-1", specs.StackSpec.model_validate(base))


def pod_template(manifest: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = manifest["spec"]["template"]
    return template


TEMPLATE = {
    "pod": {
        "metadata": {"labels": {"team": "growth"}, "annotations": {"sidecar.istio.io/inject": "false"}},
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"pool": "tailor"},
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": "pool", "operator": "In", "values": ["tailor"]}]}}]}},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tailor", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "priorityClassName": "tailor-high",
        "serviceAccountName": "tailor-workers",
        "volumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
    },
    "container": {
        "env": [{"name": "TAILOR_WORKER_BATCH_SIZE", "value": "2000"}],
        "volumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    },
}  # fmt: skip


def test_a_template_reaches_the_worker_pod_beside_everything_the_operator_sets() -> None:
    built = pod_template(builders.worker_deployment(stack(workers={"template": TEMPLATE}), "c"))
    plain = pod_template(builders.worker_deployment(stack(), "c"))
    pod, container = built["spec"], built["spec"]["containers"][0]
    assert built["metadata"]["labels"] == {**plain["metadata"]["labels"], "team": "growth"}
    assert built["metadata"]["annotations"] == {
        "sidecar.istio.io/inject": "false",
        "tailor.dev/config-checksum": "c",
    }
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["nodeSelector"] == {"pool": "tailor"}
    assert pod["affinity"] == TEMPLATE["pod"]["affinity"]
    assert pod["tolerations"] == TEMPLATE["pod"]["tolerations"]
    assert pod["priorityClassName"] == "tailor-high"
    assert pod["serviceAccountName"] == "tailor-workers"
    assert pod["automountServiceAccountToken"] is False, "a cloud identity needs no Kubernetes API token"
    assert pod["securityContext"] == plain["spec"]["securityContext"]
    # A spread constraint without a selector would count no pods: the component's own are meant.
    assert pod["topologySpreadConstraints"] == [
        {**TEMPLATE["pod"]["topologySpreadConstraints"][0], "labelSelector": {"matchLabels": SELECTOR}}
    ]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "ca"]
    assert (
        container["env"][: len(plain["spec"]["containers"][0]["env"])]
        == plain["spec"]["containers"][0]["env"]
    )
    assert container["env"][-1] == {"name": "TAILOR_WORKER_BATCH_SIZE", "value": "2000"}
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True},
    ]
    assert (
        builders.worker_deployment(stack(workers={"template": TEMPLATE}), "c")["spec"]["selector"]
        == (builders.worker_deployment(stack(), "c")["spec"]["selector"])
    )


def test_each_component_takes_its_own_template() -> None:
    spec = stack(
        redis={"managed": True, "template": {"pod": {"nodeSelector": {"disk": "ssd"}}}},
        contentApi={"template": {"pod": {"priorityClassName": "serving"}}},
    )
    redis = pod_template(builders.redis_statefulset(spec, "c"))["spec"]
    api = pod_template(builders.api_deployment(spec, "c"))["spec"]
    worker = pod_template(builders.worker_deployment(spec, "c"))["spec"]
    assert redis["nodeSelector"] == {"disk": "ssd"}
    assert "priorityClassName" not in redis
    assert api["priorityClassName"] == "serving"
    assert "nodeSelector" not in api
    assert "nodeSelector" not in worker
    assert "priorityClassName" not in worker


def test_a_spread_constraints_own_selector_is_kept() -> None:
    own = {"matchLabels": {"app.kubernetes.io/instance": "shop"}}
    constraint = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                  "labelSelector": own}  # fmt: skip
    spec = stack(contentApi={"template": {"pod": {"topologySpreadConstraints": [constraint]}}})
    [built] = pod_template(builders.api_deployment(spec, "c"))["spec"]["topologySpreadConstraints"]
    assert built["labelSelector"] == own


@pytest.mark.parametrize(
    ("component", "template", "clash"),
    [
        ("workers", {"container": {"env": [{"name": "TAILOR_REDIS_URL", "value": "redis://evil"}]}},
         "workers.template.container.env: TAILOR_REDIS_URL is set by the operator"),
        ("contentApi", {"pod": {"volumes": [{"name": "tmp", "emptyDir": {}}]}},
         "contentApi.template.pod.volumes: tmp is set by the operator"),
        ("workers", {"pod": {"volumes": [{"name": "scratch", "emptyDir": {}}]},
                     "container": {"volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]}},
         "workers.template.container.volumeMounts: /tmp is set by the operator"),
        ("redis", {"pod": {"volumes": [{"name": "data", "emptyDir": {}}]}},
         "redis.template.pod.volumes: data is set by the operator"),
    ],
)  # fmt: skip
def test_a_template_that_clashes_with_the_operator_is_refused_by_name(
    component: str, template: dict[str, Any], clash: str
) -> None:
    section = (
        {"redis": {"managed": True, "template": template}}
        if component == "redis"
        else {component: {"template": template}}
    )
    with pytest.raises(children.InvalidStack) as refused:
        children.wanted_children(stack(**section), ("c", "r"))
    assert str(refused.value).startswith(clash)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, {"maxUnavailable": 1}),
        ({"maxUnavailable": "25%"}, {"maxUnavailable": "25%"}),
        ({"maxUnavailable": 2}, {"maxUnavailable": 2}),
        ({"minAvailable": 1}, {"minAvailable": 1}),
    ],
)
def test_a_disruption_budget_takes_what_the_stack_says(
    settings: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = stack(workers={"replicas": 3, "template": {"podDisruptionBudget": settings}})
    budget = builders.disruption_budget(spec, "worker")
    assert budget is not None
    assert budget["spec"] == {
        **expected,
        "selector": {"matchLabels": SELECTOR},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_a_budget_turned_off_is_not_built_and_is_deleted() -> None:
    spec = stack(workers={"template": {"podDisruptionBudget": {"enabled": False}}})
    assert builders.disruption_budget(spec, "worker") is None
    kinds = [(m["kind"], m["metadata"]["name"]) for m in builders.children(spec, "c")]
    assert ("PodDisruptionBudget", "shop-worker") not in kinds
    assert ("PodDisruptionBudget", "shop-api") in kinds
    # The worker's budget goes; so do the children of a collector that is not run apart.
    budgets = [gone for gone in builders.unwanted(spec) if gone[1] == "PodDisruptionBudget"]
    assert budgets == [("policy/v1", "PodDisruptionBudget", n) for n in ("shop-worker", "shop-collector")]


def test_templates_module_merges_without_touching_its_inputs() -> None:
    template = specs.PodTemplate.model_validate(TEMPLATE)
    base = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "env": []}]}}
    templates.apply(base, template, SELECTOR, "x")
    base["spec"]["volumes"][0]["configMap"]["name"] = "changed"
    assert template.pod.volumes[0]["configMap"]["name"] == "corporate-ca"


# --- autoscaling -------------------------------------------------------------------------------------


def test_without_autoscaling_the_operator_sets_replicas_and_owns_no_autoscaler() -> None:
    plain = stack(workers={"replicas": 3})
    assert builders.worker_deployment(plain, "c")["spec"]["replicas"] == 3
    assert builders.api_deployment(plain, "c")["spec"]["replicas"] == 2
    assert autoscaling.manifests(plain, keda_served=True) == []
    assert autoscaling.unwanted(plain, keda_served=True) == [
        ("keda.sh/v1alpha1", "ScaledObject", "shop-worker"),
        ("keda.sh/v1alpha1", "TriggerAuthentication", "shop-worker"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", "shop-worker"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", "shop-api"),
    ]


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler() -> None:
    scaled = stack(
        workers={"replicas": 3, "autoscaling": {"enabled": True, "maxReplicas": 6}},
        contentApi={"autoscaling": {"enabled": True, "maxReplicas": 10}},
    )
    assert "replicas" not in builders.worker_deployment(scaled, "c")["spec"]
    assert "replicas" not in builders.api_deployment(scaled, "c")["spec"]
    # Replicas are not configuration: an autoscaler's changes never roll the pods.
    assert builders.config_checksum(scaled, {}) == builders.config_checksum(
        stack(workers={"replicas": 3}), {}
    )


def test_workers_scale_on_lag_with_keda_where_it_is_served_else_on_cpu() -> None:
    spec = stack(
        kafka={"bootstrapServers": "k:9092", "topics": {"events": "shop.events", "deadLetter": "shop.dead"}},
        workers={"autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 6, "mode": "Auto",
                                 "lagThreshold": 500, "authenticationRef": {"name": "kafka-auth"}}},
    )  # fmt: skip
    [scaled_object] = autoscaling.manifests(spec, keda_served=True)
    assert scaled_object["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled_object["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert scaled_object["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-worker"},
        "minReplicaCount": 0,
        "maxReplicaCount": 6,
        "triggers": [
            {
                "type": "kafka",
                "metadata": {
                    "bootstrapServers": "k:9092",
                    "consumerGroup": "tailor-worker.shop.shop",
                    "topic": "shop.events",
                    "lagThreshold": "500",
                    "offsetResetPolicy": "earliest",
                },
                "authenticationRef": {"name": "kafka-auth", "kind": "TriggerAuthentication"},
            }
        ],
    }
    assert ("autoscaling/v2", "HorizontalPodAutoscaler", "shop-worker") in autoscaling.unwanted(spec, True)

    [hpa] = autoscaling.manifests(spec, keda_served=False)
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "shop-worker"
    assert hpa["spec"]["minReplicas"] == 1  # an HPA cannot scale to zero
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    assert ("keda.sh/v1alpha1", "ScaledObject", "shop-worker") in autoscaling.unwanted(spec, False)


def test_the_worker_consumer_group_is_the_one_keda_watches() -> None:
    from tailor.core.rules import compiler

    config = compiler.stack_config("shop", "shop", stack().spec)
    assert config.worker_group == "tailor-worker.shop.shop"


def test_mode_keda_without_keda_is_an_error_that_names_the_way_out() -> None:
    spec = stack(workers={"autoscaling": {"enabled": True, "maxReplicas": 4, "mode": "KEDA"}})
    with pytest.raises(autoscaling.KedaMissing, match="install KEDA, or set mode Auto or HPA"):
        autoscaling.manifests(spec, keda_served=False)
    hpa_only = stack(workers={"autoscaling": {"enabled": True, "maxReplicas": 4, "mode": "HPA"}})
    assert [m["kind"] for m in autoscaling.manifests(hpa_only, keda_served=True)] == [
        "HorizontalPodAutoscaler"
    ]


def test_the_content_api_scales_on_cpu() -> None:
    spec = stack(contentApi={"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12,
                                             "targetCPUUtilizationPercentage": 60}})  # fmt: skip
    [hpa] = autoscaling.manifests(spec, keda_served=True)
    assert hpa["metadata"]["name"] == "shop-api"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_replica_ownership_is_read_from_managed_fields() -> None:
    def body(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        entry = {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": fields}}
        return {"metadata": {"managedFields": [entry]}}

    assert children.owns_replicas(body("tailor-operator", "Apply", {"f:replicas": {}, "f:template": {}}))
    assert not children.owns_replicas(body("tailor-operator", "Apply", {"f:template": {}}))
    assert not children.owns_replicas(body("kube-controller-manager", "Update", {"f:replicas": {}}))
    assert not children.owns_replicas({"metadata": {}})
