"""The Kubernetes objects a PersonalizationStack owns, as plain dicts: pure functions, no API calls.

Every child has a fixed name (so a restarted operator finds, never duplicates, it), an owner reference
to the stack (so deleting the stack deletes it), the app.kubernetes.io labels, and pods that run as
non-root on a read-only root filesystem with every capability dropped. Worker and content-API pods
need no Kubernetes API access: they take everything from the ruleset published in Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tailor.core import constants
from tailor.core.rules import specs
from tailor_operator import constants as names

Manifest = dict[str, Any]

WORKER_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
API_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "200m", "memory": "192Mi"},
    "limits": {"memory": "512Mi"},
}
REDIS_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
RUN_AS_USER = 10001
REDIS_USER = 999  # the official redis image's user
# The content API's pod, on its way out, keeps serving this long before it gets SIGTERM: a deleted
# pod leaves its Service's endpoints at once (EndpointSlice ready=false), but every node's proxy
# takes a moment to stop sending it new connections. Within terminationGracePeriodSeconds (30 s).
API_DRAIN_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Stack:
    """A stack as the builders need it."""

    namespace: str
    name: str
    uid: str
    spec: specs.StackSpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def child_name(stack: Stack, component: str) -> str:
    suffix = {names.WORKER: "worker", names.CONTENT_API: "api", names.REDIS: "redis"}[component]
    return f"{stack.name}-{suffix}"


def selector_labels(stack: Stack, component: str) -> dict[str, str]:
    """Never change these: a Deployment's selector is immutable."""
    return {
        constants.LABEL_NAME: names.APP_NAME,
        constants.LABEL_INSTANCE: stack.name,
        constants.LABEL_COMPONENT: component,
    }


def labels(stack: Stack, component: str) -> dict[str, str]:
    return {
        **selector_labels(stack, component),
        constants.LABEL_PART_OF: names.APP_NAME,
        constants.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def owner_reference(stack: Stack) -> dict[str, Any]:
    return {
        "apiVersion": f"{constants.API_GROUP}/{constants.API_VERSION}",
        "kind": constants.STACK_KIND,
        "name": stack.name,
        "uid": stack.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(stack: Stack, component: str, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or child_name(stack, component),
        "namespace": stack.namespace,
        "labels": labels(stack, component),
        "ownerReferences": [owner_reference(stack)],
    }


def managed_redis_url(stack: Stack) -> str:
    return f"redis://{child_name(stack, names.REDIS)}.{stack.namespace}.svc:{names.REDIS_PORT}/0"


def redis_url(stack: Stack) -> str:
    """The URL pods use (without the password, which comes from the Secret)."""
    return managed_redis_url(stack) if stack.spec.redis.managed else str(stack.spec.redis.url)


def config_checksum(stack: Stack, secret_digests: Mapping[str, str]) -> str:
    """Changes when anything the pods read at start changes, including the referenced Secrets'
    content (`secret_digests`: name -> digest), which does not change the pod template by itself."""
    spec = stack.spec
    material = {
        "image": spec.image,
        "redis": redis_url(stack),
        "passwordRef": spec.redis.password_secret_ref.model_dump()
        if spec.redis.password_secret_ref
        else None,
        "tokenRef": (
            spec.content_api.admin_token_secret_ref.model_dump()
            if spec.content_api.admin_token_secret_ref
            else None
        ),
        "secrets": dict(sorted(secret_digests.items())),
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def redis_checksum(stack: Stack, secret_digests: Mapping[str, str]) -> str:
    """What a managed Redis reads at start: its password. Not the Tailor image, so upgrading Tailor
    does not restart the stack's Redis under the content API (which would fail decisions meanwhile)."""
    ref = stack.spec.redis.password_secret_ref
    material = {
        "passwordRef": ref.model_dump() if ref else None,
        "secret": secret_digests.get(ref.name) if ref else None,
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def secret_digest(data: Mapping[str, str] | None) -> str:
    return hashlib.sha256(orjson.dumps(data or {}, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _redis_env(stack: Stack) -> list[dict[str, Any]]:
    ref = stack.spec.redis.password_secret_ref
    if ref is None:
        return [{"name": constants.ENV_REDIS_URL, "value": redis_url(stack)}]
    # Kubernetes expands $(VAR) from variables defined earlier in the list, so the password stays in
    # the Secret and the components read one URL, as docs/architecture.md §10 promises.
    scheme, _, rest = redis_url(stack).partition("://")
    return [
        {"name": "TAILOR_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}},
        {"name": constants.ENV_REDIS_URL, "value": f"{scheme}://:$(TAILOR_REDIS_PASSWORD)@{rest}"},
    ]


# The content API's start reads from Redis (its signing key, the scripts), and its process exits
# when Redis refuses (granian stops after a crash loop): beside a managed Redis that starts with it,
# every new stack's API pods restarted once. This init container waits until Redis answers PING
# (+PONG, or -NOAUTH when a password is set; -LOADING is not ready yet), five minutes at most.
_WAIT_FOR_REDIS = """\
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 300
while True:
    try:
        with socket.create_connection((host, port), timeout=2) as connection:
            connection.sendall(b"PING\\r\\n")
            answer = connection.recv(64)
        if answer.startswith((b"+PONG", b"-NOAUTH")):
            break
    except OSError as error:
        answer = str(error).encode()
    if time.monotonic() > deadline:
        sys.exit(f"Redis at {host}:{port} did not answer PING: {answer!r}")
    time.sleep(0.5)
"""


def _wait_for_redis(stack: Stack) -> dict[str, Any]:
    return {
        "name": "wait-for-redis",
        "image": stack.spec.image,
        "imagePullPolicy": stack.spec.image_pull_policy,
        "command": ["python", "-c", _WAIT_FOR_REDIS],
        "args": [f"{child_name(stack, names.REDIS)}.{stack.namespace}.svc", str(names.REDIS_PORT)],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": _container_security(),
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security(user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _deployment(
    stack: Stack,
    component: str,
    replicas: int,
    container: dict[str, Any],
    checksum: str,
    pod: Mapping[str, Any] | None = None,
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(stack, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(stack, component)},
            # A new pod is Ready before an old one goes: an upgrade never runs below the replicas.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(stack, component),
                    "annotations": {constants.ANNOTATION_CONFIG_CHECKSUM: checksum},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(RUN_AS_USER),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    **(pod or {}),
                },
            },
        },
    }


def worker_deployment(stack: Stack, checksum: str) -> Manifest:
    spec = stack.spec
    container = {
        "name": names.WORKER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tailor"],
        "args": ["worker", "--stack", stack.key],
        "env": _redis_env(stack),
        "ports": [{"name": "metrics", "containerPort": names.WORKER_METRICS_PORT, "protocol": "TCP"}],
        # The metrics server runs on its own thread beside the consume loop: alive while the process is.
        "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 20},
        "resources": spec.workers.resources or dict(WORKER_RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return _deployment(stack, names.WORKER, spec.workers.replicas, container, checksum)


def api_deployment(stack: Stack, checksum: str) -> Manifest:
    spec = stack.spec
    env = _redis_env(stack)
    token = spec.content_api.admin_token_secret_ref
    if token is not None:
        env.append(
            {
                "name": constants.ENV_ADMIN_TOKEN,
                "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}},
            }
        )
    container = {
        "name": names.CONTENT_API,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tailor"],
        "args": ["api", "--stack", stack.key, "--port", str(names.API_PORT)],
        "env": env,
        "ports": [{"name": "http", "containerPort": names.API_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        # Serve on while the endpoint removal reaches every proxy; then SIGTERM, and the server
        # finishes the requests it has. (`sleep` of the image, not the preStop sleep action, which
        # needs Kubernetes 1.30.)
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(API_DRAIN_SECONDS)]}}},
        "resources": spec.content_api.resources or dict(API_RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return _deployment(
        stack,
        names.CONTENT_API,
        spec.content_api.replicas,
        container,
        checksum,
        pod={
            "terminationGracePeriodSeconds": 30,
            **({"initContainers": [_wait_for_redis(stack)]} if spec.redis.managed else {}),
        },
    )


def disruption_budget(stack: Stack, component: str) -> Manifest:
    """At most one pod of the component evicted at a time (node drains, cluster upgrades); with one
    replica the drain may still proceed, a budget that blocks it would need a human."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(stack, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(stack, component)}},
    }


def api_service(stack: Stack) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(stack, names.CONTENT_API),
        "spec": {
            "type": stack.spec.content_api.service_type,
            "selector": selector_labels(stack, names.CONTENT_API),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def redis_statefulset(stack: Stack, checksum: str) -> Manifest:
    spec = stack.spec.redis
    args = ["--appendonly", "yes", "--dir", "/data", "--save", "60 1000", "--protected-mode", "no"]
    env: list[dict[str, Any]] = []
    if spec.password_secret_ref is not None:
        ref = spec.password_secret_ref
        env.append(
            {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
        args += ["--requirepass", "$(REDIS_PASSWORD)"]
    name = child_name(stack, names.REDIS)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(stack, names.REDIS),
        "spec": {
            "replicas": 1,
            "serviceName": name,
            # The volume goes with the StatefulSet, and so with the stack (owner references): a deleted
            # stack or `helm uninstall` leaves no claim behind. Scaling never deletes it.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "selector": {"matchLabels": selector_labels(stack, names.REDIS)},
            "template": {
                "metadata": {
                    "labels": labels(stack, names.REDIS),
                    "annotations": {constants.ANNOTATION_CONFIG_CHECKSUM: checksum},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(REDIS_USER),
                    "containers": [
                        {
                            "name": names.REDIS,
                            "image": spec.image,
                            "command": ["redis-server"],
                            "args": args,
                            "env": env,
                            "ports": [
                                {"name": "redis", "containerPort": names.REDIS_PORT, "protocol": "TCP"}
                            ],
                            "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
                            "resources": dict(REDIS_RESOURCES),
                            "securityContext": _container_security(),
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels(stack, names.REDIS)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": spec.storage}},
                    },
                }
            ],
        },
    }


def redis_service(stack: Stack) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(stack, names.REDIS),
        "spec": {
            "selector": selector_labels(stack, names.REDIS),
            "ports": [{"name": "redis", "port": names.REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
        },
    }


def children(stack: Stack, checksum: str, for_redis: str | None = None) -> list[Manifest]:
    """Everything the stack owns, in the order to apply it (Redis first: the others connect to it).
    `for_redis` (redis_checksum; default `checksum`) goes on the managed Redis' pods."""
    owned: list[Manifest] = []
    if stack.spec.redis.managed:
        owned += [redis_service(stack), redis_statefulset(stack, for_redis or checksum)]
    owned += [
        worker_deployment(stack, checksum),
        disruption_budget(stack, names.WORKER),
        api_deployment(stack, checksum),
        disruption_budget(stack, names.CONTENT_API),
        api_service(stack),
    ]
    return owned


def unwanted(stack: Stack) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of children the stack no longer wants (managed Redis switched off)."""
    if stack.spec.redis.managed:
        return []
    name = child_name(stack, names.REDIS)
    return [("apps/v1", "StatefulSet", name), ("v1", "Service", name)]
