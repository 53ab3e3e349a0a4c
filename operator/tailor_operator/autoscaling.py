"""The autoscalers a stack owns: a KEDA ScaledObject (workers, on their consumer group's lag) or a
HorizontalPodAutoscaler (workers on CPU where KEDA is not installed; the content API on CPU). Pure
functions, no API calls: whether KEDA is served is the caller's question (reconcile/children.py).

While a component autoscales, its Deployment leaves `replicas` out (builders._deployment) and the
autoscaler's controller owns the field; reconcile/children.py hands it over without a reset.

Why CPU for workers without KEDA: an HPA on consumer lag needs an external-metrics adapter that
serves the lag (KEDA is exactly that, and the maintained one); CPU needs only metrics-server, which
nearly every cluster runs, and a worker behind on its partitions runs at its CPU limit while a caught-up
one idles, so CPU follows lag closely enough. docs/operator.md#autoscaling.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from tailor.core.rules import compiler
from tailor_operator import builders
from tailor_operator import constants as names

Manifest = dict[str, Any]
Scaler = Literal["KEDA", "HPA"]

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
SCALED_OBJECT: Final = "ScaledObject"
HPA_API_VERSION: Final = "autoscaling/v2"
HPA: Final = "HorizontalPodAutoscaler"


class KedaMissing(Exception):
    """The stack asks for KEDA (mode: KEDA) and the cluster does not serve ScaledObjects."""


def worker_scaler(stack: builders.Stack, keda_served: bool) -> Scaler | None:
    """What scales the workers: None (autoscaling off), KEDA or HPA; KedaMissing for mode KEDA
    without KEDA."""
    autoscaling = stack.spec.workers.autoscaling
    if not autoscaling.enabled:
        return None
    if autoscaling.mode == "HPA":
        return "HPA"
    if keda_served:
        return "KEDA"
    if autoscaling.mode == "KEDA":
        raise KedaMissing(
            f"workers.autoscaling.mode is KEDA, but the cluster serves no {SCALED_OBJECT} in "
            f"{KEDA_API_VERSION}: install KEDA, or set mode Auto or HPA"
        )
    return "HPA"


def manifests(stack: builders.Stack, keda_served: bool) -> list[Manifest]:
    """The autoscalers the stack wants."""
    wanted = []
    workers = stack.spec.workers.autoscaling
    scaler = worker_scaler(stack, keda_served)
    if scaler == "KEDA":
        wanted.append(scaled_object(stack))
    elif scaler == "HPA":
        wanted.append(
            horizontal_autoscaler(
                stack,
                names.WORKER,
                workers.min_replicas,
                _max(workers.max_replicas, workers.min_replicas),
                workers.target_cpu_utilization_percentage,
            )
        )
    api = stack.spec.content_api.autoscaling
    if api.enabled:
        wanted.append(
            horizontal_autoscaler(
                stack,
                names.CONTENT_API,
                api.min_replicas,
                _max(api.max_replicas, api.min_replicas),
                api.target_cpu_utilization_percentage,
            )
        )
    return wanted


def unwanted(stack: builders.Stack, keda_served: bool) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of autoscalers the stack does not want (any more)."""
    scaler = worker_scaler(stack, keda_served)
    worker, api = builders.child_name(stack, names.WORKER), builders.child_name(stack, names.CONTENT_API)
    gone = []
    if scaler != "KEDA":
        gone.append((KEDA_API_VERSION, SCALED_OBJECT, worker))
    if scaler != "HPA":
        gone.append((HPA_API_VERSION, HPA, worker))
    if not stack.spec.content_api.autoscaling.enabled:
        gone.append((HPA_API_VERSION, HPA, api))
    return gone


def _max(maximum: int | None, minimum: int) -> int:
    # The CRD requires maxReplicas when autoscaling is enabled; a spec read offline may lack it.
    return maximum if maximum is not None else max(minimum, 1)


def _target(stack: builders.Stack, component: str) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": builders.child_name(stack, component)}


def horizontal_autoscaler(
    stack: builders.Stack, component: str, minimum: int, maximum: int, cpu_percent: int
) -> Manifest:
    """An HPA on the component's Deployment, on the average CPU use relative to its request."""
    return {
        "apiVersion": HPA_API_VERSION,
        "kind": HPA,
        "metadata": builders.metadata(stack, component),
        "spec": {
            "scaleTargetRef": _target(stack, component),
            "minReplicas": max(minimum, 1),
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_percent},
                    },
                }
            ],
        },
    }


def scaled_object(stack: builders.Stack) -> Manifest:
    """A KEDA ScaledObject on the workers' Deployment: KEDA's kafka scaler reads the consumer group's
    lag on the events topic and runs its own HPA (keda-hpa-<name>) towards lag / lagThreshold workers,
    at most one per partition."""
    autoscaling = stack.spec.workers.autoscaling
    kafka = compiler.stack_config(stack.namespace, stack.name, stack.spec)
    trigger: dict[str, Any] = {
        "type": "kafka",
        "metadata": {
            "bootstrapServers": kafka.kafka.bootstrap_servers,
            "consumerGroup": kafka.worker_group,
            "topic": kafka.kafka.events_topic,
            "lagThreshold": str(autoscaling.lag_threshold),
            # As the workers' consumer: a partition without a committed offset is read from its start.
            "offsetResetPolicy": "earliest",
        },
    }
    if autoscaling.authentication_ref is not None:
        trigger["authenticationRef"] = {
            "name": autoscaling.authentication_ref.name,
            "kind": autoscaling.authentication_ref.kind,
        }
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": SCALED_OBJECT,
        "metadata": builders.metadata(stack, names.WORKER),
        "spec": {
            "scaleTargetRef": _target(stack, names.WORKER),
            "minReplicaCount": autoscaling.min_replicas,
            "maxReplicaCount": _max(autoscaling.max_replicas, autoscaling.min_replicas),
            "triggers": [trigger],
        },
    }
