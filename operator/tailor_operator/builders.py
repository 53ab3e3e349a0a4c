"""The Kubernetes objects a PersonalizationStack owns, as plain dicts: pure functions, no API calls.

Every child has a fixed name (so a restarted operator finds, never duplicates, it), an owner reference
to the stack (so deleting the stack deletes it), the app.kubernetes.io labels, and pods that run as
non-root on a read-only root filesystem with every capability dropped. Worker and content-API pods
need no Kubernetes API access: they take everything from the ruleset published in Redis.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tailor.core import constants, durations, kinesis, redis_target
from tailor.core.rules import compiler, ruleset, signing, specs
from tailor_operator import constants as names
from tailor_operator import templates

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
# A managed Redis keeps data in this share of its memory limit unless spec.redis.maxmemory says
# otherwise: the rest is for what Redis needs beside its data (client buffers, fragmentation, the copy-
# on-write pages of the AOF rewrite's fork), so reaching maxmemory makes writes fail (noeviction)
# instead of the kernel killing the pod.
MAXMEMORY_SHARE = 0.8
REDIS_TLS_DIR = "/etc/tailor/redis-tls"  # where worker and API pods find the Redis CA and client pair
GENERATED_PASSWORD_KEY = "password"
# The stack's ruleset signing Secret (reconcile/ruleset_keys.py): the operator reads the private key,
# the pods get only the public keys (TAILOR_RULESET_KEYS).
RULESET_PRIVATE_KEY = "privateKey"
RULESET_PUBLIC_KEYS = "publicKeys"
# The content API's pod, on its way out, keeps serving this long before it gets SIGTERM: a deleted
# pod leaves its Service's endpoints at once (EndpointSlice ready=false), but every node's proxy
# takes a moment to stop sending it new connections. Within terminationGracePeriodSeconds (30 s).
API_DRAIN_SECONDS = 5
KAFKA_SECRETS_VOLUME = "kafka-secrets"


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
    suffix = {
        names.WORKER: "worker",
        names.CONTENT_API: "api",
        names.COLLECTOR: "collector",
        names.REDIS: "redis",
    }[component]
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


def template_of(stack: Stack, component: str) -> tuple[specs.PodTemplate, str]:
    """The component's pod template in the stack spec, and where it is (for error messages)."""
    spec = stack.spec
    return {
        names.WORKER: (spec.workers.template, "workers.template"),
        names.CONTENT_API: (spec.content_api.template, "contentApi.template"),
        # The separate collector's pods are the content API's, serving one route.
        names.COLLECTOR: (spec.content_api.template, "contentApi.template"),
        names.REDIS: (spec.redis.template, "redis.template"),
    }[component]


def _templated(stack: Stack, component: str, manifest: Manifest, claims: tuple[str, ...] = ()) -> Manifest:
    """`manifest` (a Deployment or StatefulSet) with the component's template laid over its pods."""
    template, where = template_of(stack, component)
    templates.apply(manifest["spec"]["template"], template, selector_labels(stack, component), where, claims)
    return manifest


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
    """The URL pods use: never credentials (they come from Secrets, docs/operating.md#redis-security)."""
    return managed_redis_url(stack) if stack.spec.redis.managed else str(stack.spec.redis.url)


# --- Redis credentials and TLS -----------------------------------------------------------------------


def generated_password_name(stack: Stack) -> str:
    return f"{stack.name}-redis-auth"


def redis_password_ref(stack: Stack) -> specs.PasswordSecretRef | None:
    """Where the Redis password comes from: the spec's Secret, or for a managed Redis without one the
    Secret the operator generates (generated_password_secret)."""
    redis = stack.spec.redis
    if redis.password_secret_ref is not None:
        return redis.password_secret_ref
    if redis.managed:
        return specs.PasswordSecretRef(name=generated_password_name(stack), key=GENERATED_PASSWORD_KEY)
    return None


def generated_password_secret(stack: Stack, password: str) -> Manifest | None:
    """The managed Redis' password Secret, when the operator makes it: created once (never applied
    again, so never regenerated while it exists), owned by the stack, read by every component."""
    redis = stack.spec.redis
    if not redis.managed or redis.password_secret_ref is not None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(stack, names.REDIS, generated_password_name(stack)),
        "data": {GENERATED_PASSWORD_KEY: base64.b64encode(password.encode()).decode()},
    }


def ruleset_signing_name(stack: Stack) -> str:
    return f"{stack.name}-ruleset-signing"


def ruleset_keys_ref(stack: Stack) -> specs.SecretKeyRef:
    """The public keys the stack's pods verify rulesets with (docs/operating.md, "Who can publish")."""
    return specs.SecretKeyRef(name=ruleset_signing_name(stack), key=RULESET_PUBLIC_KEYS)


def ruleset_signing_secret(stack: Stack, signer: signing.Signer) -> Manifest:
    """The stack's signing key pair, created once by the operator (never applied again, so never
    replaced while it exists; rotating it is editing it: docs/operating.md)."""
    data = {RULESET_PRIVATE_KEY: signer.encode_private(), RULESET_PUBLIC_KEYS: signer.encode_public()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(stack, "ruleset-signing", ruleset_signing_name(stack)),
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def redis_secret_refs(stack: Stack) -> list[specs.SecretKeyRef]:
    """Every Secret key the stack's Redis clients read (password, username, CA, client pair)."""
    redis = stack.spec.redis
    refs: list[specs.SecretKeyRef] = []
    password = redis_password_ref(stack)
    if password is not None:
        refs.append(password)
    if redis.username_secret_ref is not None:
        refs.append(redis.username_secret_ref)
    if redis.tls is not None and redis.tls.ca_secret_ref is not None:
        refs.append(redis.tls.ca_secret_ref)
    if redis.tls is not None and redis.tls.client_certificate_secret_ref is not None:
        name = redis.tls.client_certificate_secret_ref.name
        refs += [specs.SecretKeyRef(name=name, key="tls.crt"), specs.SecretKeyRef(name=name, key="tls.key")]
    return refs


def _redis_tls_volume(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the Redis CA and client pair: files, as TLS libraries load them."""
    tls = stack.spec.redis.tls
    sources: list[dict[str, Any]] = []
    if tls is not None and tls.ca_secret_ref is not None:
        ca = tls.ca_secret_ref
        sources.append({"secret": {"name": ca.name, "items": [{"key": ca.key, "path": "ca.crt"}]}})
    if tls is not None and tls.client_certificate_secret_ref is not None:
        pair = [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]
        sources.append({"secret": {"name": tls.client_certificate_secret_ref.name, "items": pair}})
    if not sources:
        return [], []
    # Readable by the pod's group (fsGroup) only: the key is a credential.
    volume = {"name": "redis-tls", "projected": {"sources": sources, "defaultMode": 0o440}}
    return [volume], [{"name": "redis-tls", "mountPath": REDIS_TLS_DIR, "readOnly": True}]


# --- memory quantities -------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|[eE][-+]?[0-9]+)?$")
_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 10**-3,
}  # fmt: skip


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes quantity (`1Gi`, `800M`, `1e9`, `1073741824`) in bytes; ValueError otherwise."""
    match = _QUANTITY.match(str(quantity).strip())
    if match is None:
        raise ValueError(f"{quantity!r} is not a quantity like 1Gi or 800Mi")
    number, suffix = float(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return int(number * 10 ** int(suffix[1:]))
    return int(number * _SUFFIX.get(suffix, 1))


def redis_resources(stack: Stack) -> dict[str, Any]:
    """The managed Redis' resources: spec.redis.resources over the defaults, key by key, so that a
    memory limit is always there for maxmemory to stay below."""
    given = stack.spec.redis.resources or {}
    merged = {key: value for key, value in given.items() if key not in ("requests", "limits")}
    for part in ("requests", "limits"):
        merged[part] = {**REDIS_RESOURCES[part], **(given.get(part) or {})}
    return merged


def redis_maxmemory(stack: Stack) -> int:
    """Bytes the managed Redis keeps data in: spec.redis.maxmemory, else MAXMEMORY_SHARE of the memory
    limit; ValueError when it would not stay below the limit."""
    limit_text = redis_resources(stack)["limits"]["memory"]
    limit = quantity_bytes(limit_text)
    given = stack.spec.redis.maxmemory
    if given is None:
        return int(limit * MAXMEMORY_SHARE)
    wanted = quantity_bytes(given)
    if not 0 < wanted < limit:
        raise ValueError(
            f"spec.redis.maxmemory {given} must be above 0 and below the managed Redis' memory limit "
            f"{limit_text}: Redis needs room beside its data, or the kernel kills it when it fills up"
        )
    return wanted


# --- checksums ---------------------------------------------------------------------------------------


def config_checksum(stack: Stack, secret_digests: Mapping[str, str]) -> str:
    """Changes when anything the pods read at start changes, including the referenced Secrets'
    content (`secret_digests`: name -> digest), which does not change the pod template by itself."""
    spec = stack.spec
    material = {
        "image": spec.image,
        "redis": redis_url(stack),
        "redisRefs": [ref.model_dump() for ref in redis_secret_refs(stack)],
        "redisUser": spec.redis.username,
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
    ref = redis_password_ref(stack)
    material = {
        "passwordRef": ref.model_dump() if ref else None,
        "secret": secret_digests.get(ref.name) if ref else None,
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def secret_digest(data: Mapping[str, str] | None) -> str:
    return hashlib.sha256(orjson.dumps(data or {}, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _redis_env(stack: Stack) -> list[dict[str, Any]]:
    """TAILOR_REDIS_* (tailor.core.redis_target): the URL, and the credentials from their Secrets,
    never inside the URL, so a password may hold any character."""
    redis = stack.spec.redis
    env: list[dict[str, Any]] = [{"name": constants.ENV_REDIS_URL, "value": redis_url(stack)}]
    if redis.mode == redis_target.CLUSTER:
        env.append({"name": constants.ENV_REDIS_MODE, "value": redis_target.CLUSTER})
    if redis.username is not None:
        env.append({"name": constants.ENV_REDIS_USERNAME, "value": redis.username})
    elif redis.username_secret_ref is not None:
        env.append(_from_secret(constants.ENV_REDIS_USERNAME, redis.username_secret_ref))
    elif redis.managed:
        # The user named, as Redis 6+ takes it (the managed Redis is ours: 7.x); a Redis whose default
        # user has no password (an operator given --redis-url to a local one) accepts it too.
        env.append({"name": constants.ENV_REDIS_USERNAME, "value": "default"})
    password = redis_password_ref(stack)
    if password is not None:
        env.append(_from_secret(constants.ENV_REDIS_PASSWORD, password))
    tls = redis.tls
    if tls is not None and tls.ca_secret_ref is not None:
        env.append({"name": constants.ENV_REDIS_TLS_CA_FILE, "value": f"{REDIS_TLS_DIR}/ca.crt"})
    if tls is not None and tls.client_certificate_secret_ref is not None:
        env.append({"name": constants.ENV_REDIS_TLS_CERT_FILE, "value": f"{REDIS_TLS_DIR}/tls.crt"})
        env.append({"name": constants.ENV_REDIS_TLS_KEY_FILE, "value": f"{REDIS_TLS_DIR}/tls.key"})
    return env


def _ruleset_keys_env(stack: Stack) -> dict[str, Any]:
    return _from_secret(signing.ENV_KEYS, ruleset_keys_ref(stack))


def _from_secret(variable: str, ref: specs.SecretKeyRef) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


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


def _logging_env(stack: Stack) -> list[dict[str, Any]]:
    """TAILOR_LOG_FORMAT when the stack asks for JSON logs (text is every command's default)."""
    if stack.spec.logging.format == "text":
        return []
    return [{"name": "TAILOR_LOG_FORMAT", "value": stack.spec.logging.format}]


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


def kafka_secret_files(stack: Stack) -> tuple[ruleset.SecretFile, ...]:
    """The Secret keys the stack's Kafka clients read (CA, client certificate and key, password...)."""
    return compiler.kafka_security(stack.spec.kafka_security).secret_files()


def _kafka_secrets(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volume and mount that put each Kafka Secret key at <KAFKA_SECRETS_DIR>/<secret>/<key>, where
    tailor.core.kafkaclient reads it: files in the pod, never values in the ruleset (which every pod
    can read) nor in the environment (which `kubectl describe` and crash reports show)."""
    keys: dict[str, list[str]] = {}
    for file in kafka_secret_files(stack):
        keys.setdefault(file.secret, []).append(file.key)
    if not keys:
        return [], []
    sources = [
        {"secret": {"name": name, "items": [{"key": key, "path": f"{name}/{key}"} for key in wanted]}}
        for name, wanted in keys.items()
    ]
    # Readable by the pod's group (fsGroup) only.
    volume = {"name": KAFKA_SECRETS_VOLUME, "projected": {"defaultMode": 0o440, "sources": sources}}
    mount = {"name": KAFKA_SECRETS_VOLUME, "mountPath": constants.KAFKA_SECRETS_DIR, "readOnly": True}
    return [volume], [mount]


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
    replicas: int | None,
    container: dict[str, Any],
    checksum: str,
    pod: Mapping[str, Any] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> Manifest:
    """`replicas` None: an autoscaler owns them, and the manifest leaves them out (see
    reconcile/children.py for the hand-over)."""
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(stack, component),
        "spec": {
            **({} if replicas is None else {"replicas": replicas}),
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
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        *_redis_tls_volume(stack)[0],
                        *(volumes or ()),
                    ],
                    **(pod or {}),
                },
            },
        },
    }
    return _templated(stack, component, manifest)


def _worker_env(stack: Stack) -> list[dict[str, Any]]:
    """The per-user caps, and the container's memory limit (the downward API), which sizes the worker's
    cache of users (docs/operating.md, "Worker memory")."""
    limits = stack.spec.workers.limits
    return [
        {"name": "TAILOR_WORKER_EVENTS_PER_USER_PER_MINUTE", "value": str(limits.events_per_user_per_minute)},
        {"name": "TAILOR_WORKER_DEDUP_MARKS_PER_USER", "value": str(limits.dedup_marks_per_user)},
        {"name": "TAILOR_WORKER_REDIS_WAIT_REPLICAS", "value": str(stack.spec.redis.wait_replicas)},
        {
            "name": "TAILOR_WORKER_MEMORY_LIMIT_BYTES",
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": names.WORKER,
                    "resource": "limits.memory",
                    "divisor": "1",
                },
            },
        },
    ]


def source_env(stack: Stack) -> list[dict[str, Any]]:
    """With `spec.source.kind: kinesis`, what the pods that put or read events need to use the stream
    (tailor.core.kinesis.KinesisSettings), and the access key from its Secret when the stack names one
    (else boto3's chain finds the pod's own identity, IRSA). Nothing with Kafka: the ruleset says it all."""
    source = stack.spec.kinesis
    if source is None:
        return []
    env: list[dict[str, Any]] = [
        {"name": kinesis.ENV_SOURCE, "value": kinesis.KINESIS},
        {"name": kinesis.ENV_STREAM, "value": source.stream},
        {"name": kinesis.ENV_REGION, "value": source.region},
    ]
    if source.endpoint:
        env.append({"name": kinesis.ENV_ENDPOINT_URL, "value": source.endpoint})
    ref = source.credentials_secret_ref
    if ref is not None:
        env += [
            _from_secret(
                kinesis.ENV_AWS_ACCESS_KEY_ID, specs.SecretKeyRef(name=ref.name, key=ref.access_key_id_key)
            ),
            _from_secret(
                kinesis.ENV_AWS_SECRET_ACCESS_KEY,
                specs.SecretKeyRef(name=ref.name, key=ref.secret_access_key_key),
            ),
        ]
    return env


def kinesis_secret_keys(stack: Stack) -> list[tuple[str, str]]:
    """(Secret, key) of the stack's Kinesis access key, if it names one."""
    source = stack.spec.kinesis
    ref = source.credentials_secret_ref if source is not None else None
    if ref is None:
        return []
    return [(ref.name, ref.access_key_id_key), (ref.name, ref.secret_access_key_key)]


def keda_kafka_env(stack: Stack) -> list[dict[str, Any]]:
    """The worker's plain SASL login settings (user name; OIDC client id, token endpoint, scope,
    extensions) as env variables, where KEDA's TriggerAuthentication can read them
    (autoscaling.trigger_authentication). The workers themselves do not read them."""
    security = stack.spec.kafka_security
    sasl = security.sasl if security is not None else None
    if sasl is None:
        return []
    if sasl.oidc is not None:
        oidc = sasl.oidc
        env = [
            {"name": names.ENV_KEDA_KAFKA_USERNAME, "value": oidc.client_id},
            {"name": names.ENV_KEDA_KAFKA_TOKEN_ENDPOINT, "value": oidc.token_endpoint},
        ]
        if oidc.scope:
            env.append({"name": names.ENV_KEDA_KAFKA_SCOPES, "value": oidc.scope})
        if oidc.extensions:
            extensions = ",".join(f"{key}={value}" for key, value in sorted(oidc.extensions.items()))
            env.append({"name": names.ENV_KEDA_KAFKA_EXTENSIONS, "value": extensions})
        return env
    if sasl.username is not None:
        return [{"name": names.ENV_KEDA_KAFKA_USERNAME, "value": sasl.username}]
    return []


def worker_deployment(stack: Stack, checksum: str) -> Manifest:
    spec = stack.spec
    kafka_volumes, kafka_mounts = _kafka_secrets(stack)
    container = {
        "name": names.WORKER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tailor"],
        "args": ["worker", "--stack", stack.key],
        "env": [
            *_redis_env(stack),
            _ruleset_keys_env(stack),
            *_logging_env(stack),
            *_worker_env(stack),
            *keda_kafka_env(stack),
            *source_env(stack),
        ],
        "ports": [{"name": "metrics", "containerPort": names.WORKER_METRICS_PORT, "protocol": "TCP"}],
        # /healthz fails once the consume loop has made no progress for a minute (a Redis write hung
        # or failing; an idle topic is progress): docs/operating.md, "Worker liveness".
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10,
            "failureThreshold": 2,
        },
        # Ready while it reads the stack's Kafka: a worker whose password or certificate is refused
        # stays unready (and a rollout with a bad Secret stops there) instead of restarting in a loop.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10},
        "resources": spec.workers.resources or dict(WORKER_RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *_redis_tls_volume(stack)[1], *kafka_mounts],
    }
    replicas = None if spec.workers.autoscaling.enabled else spec.workers.replicas
    return _deployment(stack, names.WORKER, replicas, container, checksum, volumes=kafka_volumes)


def _http_container(
    stack: Stack,
    component: str,
    routes: str | None,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> Manifest:
    """A `tailor api` container: the content API, or (routes "collect") the collector of its own."""
    spec = stack.spec
    args = [
        "api",
        "--stack",
        stack.key,
        "--port",
        str(names.API_PORT),
        "--admin-port",
        str(names.API_ADMIN_PORT),
    ]
    if routes is not None:
        args += ["--routes", routes]
    resources = spec.content_api.resources
    if component == names.COLLECTOR:
        resources = spec.content_api.collector.resources
    return {
        "name": component,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tailor"],
        "args": args,
        "env": [*env, _ruleset_keys_env(stack), *_logging_env(stack)],
        # The public port (the Service's target) and the admin port (probes, Prometheus, operators).
        "ports": [
            {"name": "http", "containerPort": names.API_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": names.API_ADMIN_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10},
        # Serve on while the endpoint removal reaches every proxy; then SIGTERM, and the server
        # finishes the requests it has. (`sleep` of the image, not the preStop sleep action, which
        # needs Kubernetes 1.30.)
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(API_DRAIN_SECONDS)]}}},
        "resources": resources or dict(API_RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *_redis_tls_volume(stack)[1], *mounts],
    }


IDENTITY_VOLUME = "identity-keys"


def _identity(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts, env) of signed user identity (docs/identity.md). The whole Secret is mounted,
    never `items` or `subPath`: Kubernetes then updates the files in place when keys are added or
    removed, and the API reads them again, so rotating keys restarts nothing."""
    identity = stack.spec.content_api.identity
    if identity.mode == "off" or identity.secret_ref is None:
        return [], [], []
    lifetime = durations.parse_seconds(identity.max_token_lifetime)
    env = [
        {"name": "TAILOR_IDENTITY_MODE", "value": identity.mode},
        {"name": "TAILOR_IDENTITY_KEYS_DIR", "value": constants.IDENTITY_KEYS_DIR},
        {"name": "TAILOR_IDENTITY_ALGORITHMS", "value": orjson.dumps(list(identity.algorithms)).decode()},
        {"name": "TAILOR_IDENTITY_MAX_LIFETIME_SECONDS", "value": str(lifetime)},
    ]
    # Readable by the pod's group (fsGroup) only: a shared secret is a credential.
    volume = {
        "name": IDENTITY_VOLUME,
        "secret": {"secretName": identity.secret_ref.name, "defaultMode": 0o440},
    }
    mount = {"name": IDENTITY_VOLUME, "mountPath": constants.IDENTITY_KEYS_DIR, "readOnly": True}
    return [volume], [mount], env


def _http_pod(stack: Stack) -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": 30,
        **({"initContainers": [_wait_for_redis(stack)]} if stack.spec.redis.managed else {}),
    }


def api_deployment(stack: Stack, checksum: str) -> Manifest:
    """The content API; with a separate collector it serves everything but POST /v1/events."""
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
    routes = "decide" if spec.content_api.collector.separate else None
    if routes is None:
        env += source_env(stack)  # it collects events
    # The Kafka Secrets go only where a Kafka client runs: not to a content API whose collector is apart.
    kafka_volumes, kafka_mounts = ([], []) if routes == "decide" else _kafka_secrets(stack)
    identity_volumes, identity_mounts, identity_env = _identity(stack)
    container = _http_container(
        stack, names.CONTENT_API, routes, env + identity_env, kafka_mounts + identity_mounts
    )
    replicas = None if spec.content_api.autoscaling.enabled else spec.content_api.replicas
    return _deployment(
        stack, names.CONTENT_API, replicas, container, checksum, pod=_http_pod(stack),
        volumes=kafka_volumes + identity_volumes,
    )  # fmt: skip


def collector_deployment(stack: Stack, checksum: str) -> Manifest:
    """The collector of its own (spec.contentApi.collector.separate): POST /v1/events, health,
    readiness and metrics; it reads the stack's Kafka settings from the published ruleset in Redis.
    Its pods take the content API's template (contentApi.template)."""
    kafka_volumes, kafka_mounts = _kafka_secrets(stack)
    identity_volumes, identity_mounts, identity_env = _identity(stack)
    container = _http_container(
        stack,
        names.COLLECTOR,
        "collect",
        _redis_env(stack) + source_env(stack) + identity_env,
        kafka_mounts + identity_mounts,
    )
    replicas = stack.spec.content_api.collector.replicas
    return _deployment(
        stack, names.COLLECTOR, replicas, container, checksum, pod=_http_pod(stack),
        volumes=kafka_volumes + identity_volumes,
    )  # fmt: skip


def disruption_budget(stack: Stack, component: str) -> Manifest | None:
    """The component's PodDisruptionBudget as its template says (templates.disruption_budget: by
    default one pod evicted at a time, and a drain is never blocked), or None when turned off."""
    template, _ = template_of(stack, component)
    return templates.disruption_budget(
        metadata(stack, component), selector_labels(stack, component), template.pod_disruption_budget
    )


def api_service(stack: Stack, component: str = names.CONTENT_API) -> Manifest:
    """The content API's Service (`<stack>-api`), or the separate collector's (`<stack>-collector`)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(stack, component),
        "spec": {
            "type": stack.spec.content_api.service_type,
            "selector": selector_labels(stack, component),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def redis_statefulset(stack: Stack, checksum: str) -> Manifest:
    spec = stack.spec.redis
    args = [
        "--appendonly", "yes", "--appendfsync", spec.appendfsync, "--dir", "/data", "--save", "60 1000",
        # Full: writes fail with -OOM (workers hold their batch, decisions go on) rather than counts
        # being evicted silently, and never the kernel's OOM kill.
        "--maxmemory", str(redis_maxmemory(stack)), "--maxmemory-policy", "noeviction",
        "--protected-mode", "yes",
    ]  # fmt: skip
    env: list[dict[str, Any]] = []
    password = redis_password_ref(stack)
    if password is not None:  # always, for a managed Redis: given or generated
        env.append(_from_secret("REDIS_PASSWORD", password))
        # The kubelet expands $(REDIS_PASSWORD) into one argument: no shell, any character.
        args += ["--requirepass", "$(REDIS_PASSWORD)"]
    name = child_name(stack, names.REDIS)
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage}},
    }
    if spec.storage_class_name is not None:
        claim["storageClassName"] = spec.storage_class_name
    manifest: Manifest = {
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
                            "resources": redis_resources(stack),
                            "securityContext": _container_security(),
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels(stack, names.REDIS)},
                    "spec": claim,
                }
            ],
        },
    }
    return _templated(stack, names.REDIS, manifest, claims=("data",))


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
    owned: list[Manifest | None] = []
    if stack.spec.redis.managed:
        owned += [
            redis_service(stack),
            redis_statefulset(stack, for_redis or checksum),
            disruption_budget(stack, names.REDIS),
        ]
    owned += [
        worker_deployment(stack, checksum),
        disruption_budget(stack, names.WORKER),
        api_deployment(stack, checksum),
        disruption_budget(stack, names.CONTENT_API),
        api_service(stack),
    ]
    if stack.spec.content_api.collector.separate:
        owned += [
            collector_deployment(stack, checksum),
            disruption_budget(stack, names.COLLECTOR),
            api_service(stack, names.COLLECTOR),
        ]
    return [manifest for manifest in owned if manifest is not None]


# --- NetworkPolicies ---------------------------------------------------------------------------------

NETWORK_POLICY_API = "networking.k8s.io/v1"


def _network_policy(stack: Stack, component: str, ingress: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": NETWORK_POLICY_API,
        "kind": "NetworkPolicy",
        "metadata": metadata(stack, component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(stack, component)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _port_from(port: str, peers: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """One ingress rule: `port` from `peers`, or from anyone when there are none."""
    return {"ports": [{"port": port, "protocol": "TCP"}], **({"from": list(peers)} if peers else {})}


def _http_ingress(stack: Stack, pods: Manifest) -> list[dict[str, Any]]:
    """The content API's or collector's rules, one per port of its pods: `http` (the Service's) from
    contentApiFrom, any other (an admin port: metrics, probes, explain) from metricsFrom."""
    spec = stack.spec.network_policies
    container = pods["spec"]["template"]["spec"]["containers"][0]  # ours; a template adds no other
    return [
        _port_from(port["name"], spec.content_api_from if port["name"] == "http" else spec.metrics_from)
        for port in container.get("ports", [])
    ]


def network_policies(stack: Stack) -> list[Manifest]:
    """The stack's NetworkPolicies (spec.networkPolicies, on by default). Ingress only: the pods call
    out to Kafka, Redis and (the operator) the API server, whose addresses a policy cannot name.
    Kubelet probes are not subject to NetworkPolicy."""
    spec = stack.spec.network_policies
    if not spec.enabled:
        return []
    policies = []
    if stack.spec.redis.managed:
        stack_pods = {
            "podSelector": {
                "matchLabels": {constants.LABEL_NAME: names.APP_NAME, constants.LABEL_INSTANCE: stack.name},
                "matchExpressions": [{"key": constants.LABEL_COMPONENT, "operator": "In",
                                      "values": [names.WORKER, names.CONTENT_API, names.COLLECTOR]}],
            }
        }  # fmt: skip
        # The operator publishes rulesets and checks Redis; it runs in a namespace of its own.
        operator = {
            "namespaceSelector": {},
            "podSelector": {
                "matchLabels": {constants.LABEL_NAME: names.APP_NAME, constants.LABEL_COMPONENT: "operator"}
            },
        }
        redis_rule = {"ports": [{"port": "redis", "protocol": "TCP"}], "from": [stack_pods, operator]}
        policies.append(_network_policy(stack, names.REDIS, [redis_rule]))
    policies.append(_network_policy(stack, names.WORKER, [_port_from("metrics", spec.metrics_from)]))
    api = _http_ingress(stack, api_deployment(stack, ""))
    policies.append(_network_policy(stack, names.CONTENT_API, api))
    if stack.spec.content_api.collector.separate:
        collector = _http_ingress(stack, collector_deployment(stack, ""))
        policies.append(_network_policy(stack, names.COLLECTOR, collector))
    return policies


def unwanted_network_policies(stack: Stack) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of the stack's NetworkPolicies it no longer wants."""
    wanted = {manifest["metadata"]["name"] for manifest in network_policies(stack)}
    every = (names.REDIS, names.WORKER, names.CONTENT_API, names.COLLECTOR)
    return [
        (NETWORK_POLICY_API, "NetworkPolicy", child_name(stack, component))
        for component in every
        if child_name(stack, component) not in wanted
    ]


def unwanted(stack: Stack) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of children the stack no longer wants: a managed Redis switched off,
    a PodDisruptionBudget turned off, the separate collector folded back into the content API."""
    gone = []
    if not stack.spec.redis.managed:
        name = child_name(stack, names.REDIS)
        gone += [("apps/v1", "StatefulSet", name), ("v1", "Service", name)]
    for component in (names.REDIS, names.WORKER, names.CONTENT_API, names.COLLECTOR):
        if (
            (component == names.REDIS and not stack.spec.redis.managed)
            or (component == names.COLLECTOR and not stack.spec.content_api.collector.separate)
            or disruption_budget(stack, component) is None
        ):
            gone.append(("policy/v1", "PodDisruptionBudget", child_name(stack, component)))
    if not stack.spec.content_api.collector.separate:
        name = child_name(stack, names.COLLECTOR)
        gone += [("apps/v1", "Deployment", name), ("v1", "Service", name)]
    return gone
