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
TRIGGER_AUTHENTICATION: Final = "TriggerAuthentication"
# KEDA's kafka scaler's `sasl` for each of our mechanisms (its parameter names: KEDA's
# docs/scalers/apache-kafka.md, "Authentication Parameters").
KEDA_SASL: Final = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
}
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
        authentication = trigger_authentication(stack)
        if authentication is not None:
            wanted.append(authentication)  # before the ScaledObject that refers to it
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
    if scaler != "KEDA" or trigger_authentication(stack) is None:
        gone.append((KEDA_API_VERSION, TRIGGER_AUTHENTICATION, worker))
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
    trigger["metadata"].update(_security_metadata(stack))
    if autoscaling.authentication_ref is not None:
        trigger["authenticationRef"] = {
            "name": autoscaling.authentication_ref.name,
            "kind": autoscaling.authentication_ref.kind,
        }
    elif trigger_authentication(stack) is not None:
        trigger["authenticationRef"] = {
            "name": builders.child_name(stack, names.WORKER),
            "kind": TRIGGER_AUTHENTICATION,
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


# --- KEDA's login to a secured Kafka -----------------------------------------------------------------


def _security_metadata(stack: builders.Stack) -> dict[str, str]:
    """The trigger's plain security settings (KEDA reads `tls` and `sasl` from the trigger too): TLS on
    or off, the SASL mode, and for MSK IAM the token provider and region."""
    security = stack.spec.kafka_security
    if security is None or security.protocol == "PLAINTEXT":
        return {}
    metadata: dict[str, str] = {}
    if security.protocol in ("SSL", "SASL_SSL"):
        metadata["tls"] = "enable"
    sasl = security.sasl
    if sasl is not None and security.protocol.startswith("SASL_"):
        metadata["sasl"] = KEDA_SASL[sasl.mechanism]
        if sasl.aws_msk_iam is not None:
            metadata["saslTokenProvider"] = "aws_msk_iam"
            metadata["awsRegion"] = sasl.aws_msk_iam.region
    return metadata


def trigger_authentication(stack: builders.Stack) -> Manifest | None:
    """The TriggerAuthentication that logs KEDA's kafka scaler in as the workers log in, from the same
    Secrets; None when Kafka is plaintext or the stack names its own (workers.autoscaling.
    authenticationRef). Secrets map by secretTargetRef (password or OIDC client secret; tls ca, cert,
    key); the plain settings by `env`, from the worker container (builders.keda_kafka_env). MSK IAM:
    KEDA's `aws` pod identity with identityOwner workload, so KEDA assumes the IAM role of the workers'
    service account (its eks.amazonaws.com/role-arn annotation): KEDA's own role must be trusted to
    assume it (docs/install.md, EKS). What KEDA cannot take: the OIDC token endpoint's own CA, and
    tls.verifyHostname false (KEDA then fails hostname verification: set authenticationRef yourself)."""
    security = stack.spec.kafka_security
    if stack.spec.workers.autoscaling.authentication_ref is not None or security is None:
        return None
    if security.protocol == "PLAINTEXT":
        return None
    secrets: list[dict[str, str]] = []
    env: list[dict[str, str]] = []
    spec: dict[str, Any] = {}

    def secret(parameter: str, name: str, key: str) -> None:
        secrets.append({"parameter": parameter, "name": name, "key": key})

    tls = security.tls
    if tls is not None and security.protocol in ("SSL", "SASL_SSL"):
        if tls.ca_secret_ref is not None:
            secret("ca", tls.ca_secret_ref.name, tls.ca_secret_ref.key)
        pair = tls.client_certificate_secret_ref
        if pair is not None:
            secret("cert", pair.name, pair.certificate)
            secret("key", pair.name, pair.key)
    sasl = security.sasl
    if sasl is not None and security.protocol.startswith("SASL_"):
        if sasl.aws_msk_iam is not None:
            spec["podIdentity"] = {"provider": "aws", "identityOwner": "workload"}
        else:
            for variable in builders.keda_kafka_env(stack):
                parameter = _ENV_PARAMETERS[variable["name"]]
                env.append({"parameter": parameter, "name": variable["name"], "containerName": names.WORKER})
            password = sasl.oidc.client_secret_ref if sasl.oidc is not None else sasl.password_secret_ref
            if password is not None:
                secret("password", password.name, password.key)
    if not secrets and not env and not spec:
        return None  # TLS with the system's CAs and no client certificate: the trigger's tls suffices
    if secrets:
        spec["secretTargetRef"] = secrets
    if env:
        spec["env"] = env
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": TRIGGER_AUTHENTICATION,
        "metadata": builders.metadata(stack, names.WORKER),
        "spec": spec,
    }


_ENV_PARAMETERS: Final = {
    names.ENV_KEDA_KAFKA_USERNAME: "username",
    names.ENV_KEDA_KAFKA_TOKEN_ENDPOINT: "oauthTokenEndpointUri",
    names.ENV_KEDA_KAFKA_SCOPES: "scopes",
    names.ENV_KEDA_KAFKA_EXTENSIONS: "oauthExtensions",
}
