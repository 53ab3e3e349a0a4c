"""A stack's children: apply them all, restore one that drifted, report each component's readiness.

Autoscaled Deployments: the manifest then leaves `replicas` out, and server-side apply removes a
field from the object when the one manager that owned it stops applying it, so the first apply
without it would reset the Deployment to 1 replica. Before that apply the live replicas are applied
once under a second field manager (names.REPLICAS_FIELD_MANAGER), which keeps them until the
autoscaler's controller writes its own value through the scale subresource and takes them over.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import pydantic

from tailor.core import constants
from tailor.core.rules import compiler, specs
from tailor_operator import autoscaling, builders, conditions, images, kube, metrics, redis_access, templates
from tailor_operator import constants as names
from tailor_operator.reconcile import kafka_probe, ruleset_keys, stack_status

log = logging.getLogger(__name__)


class InvalidStack(Exception):
    """The stack's spec cannot be acted on; retrying will not help until it is edited."""


class ImageNotAllowed(InvalidStack):
    """An image of the stack is not in the operator's image allowlist (images.py)."""


class MissingSecret(Exception):
    """A referenced Secret does not exist (yet); retrying may help."""


class SecretForbidden(MissingSecret):
    """The operator may not read a Secret the stack names (the chart's rbac.secretNames lacks it)."""


class MissingApi(Exception):
    """The spec needs a kind the cluster does not serve (KEDA's ScaledObject); installing it helps."""


def _forbidden(namespace: str, name: str) -> SecretForbidden:
    return SecretForbidden(
        f"the operator may not read Secret {name} in {namespace}: add it to the chart's "
        "rbac.secretNames (docs/install.md#security)"
    )


def parse_stack(source: specs.Source) -> builders.Stack:
    try:
        spec = specs.StackSpec.model_validate(source.spec)
    except pydantic.ValidationError as error:
        raise InvalidStack(compiler.describe(error)) from None
    stack = builders.Stack(namespace=source.namespace, name=source.name, uid=source.uid, spec=spec)
    if spec.redis.managed:
        try:
            builders.redis_maxmemory(stack)
        except ValueError as error:  # a maxmemory at or above the memory limit
            raise InvalidStack(str(error)) from None
    return stack


def wanted_children(stack: builders.Stack, checksums: tuple[str, str]) -> list[builders.Manifest]:
    """builders.children, with a template that clashes with the operator's settings as InvalidStack."""
    try:
        return builders.children(stack, *checksums)
    except templates.TemplateConflict as error:
        raise InvalidStack(str(error)) from None


def owns_replicas(body: Mapping[str, Any], manager: str = names.FIELD_MANAGER) -> bool:
    """Whether `manager` applied spec.replicas of this object (its managedFields say so)."""
    for entry in (body.get("metadata") or {}).get("managedFields") or ():
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and "f:replicas" in fields:
            return True
    return False


def is_paused(source: specs.Source) -> bool:
    return source.annotations.get(names.PAUSED_ANNOTATION, "").lower() in ("true", "1", "yes")


def component_of(body: Mapping[str, Any]) -> str | None:
    return ((body.get("metadata") or {}).get("labels") or {}).get(constants.LABEL_COMPONENT)


def component_condition(body: Mapping[str, Any], generation: int) -> conditions.Condition | None:
    """WorkersReady / ContentApiReady / RedisReady from a Deployment's or StatefulSet's status."""
    kind = body.get("kind")
    component = component_of(body)
    if kind not in ("Deployment", "StatefulSet") or component not in names.COMPONENT_CONDITIONS:
        return None
    type_ = names.COMPONENT_CONDITIONS[component]
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    name = meta.get("name")
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return conditions.make(
            type_, False, "Progressing", f"{kind} {name}: change not yet observed", generation
        )
    if wanted == 0:
        return conditions.make(type_, True, "ScaledToZero", f"{kind} {name} has 0 replicas", generation)
    if ready >= wanted and updated >= wanted:
        return conditions.make(type_, True, "Ready", f"{kind} {name}: {ready}/{wanted} ready", generation)
    return conditions.make(
        type_, False, "Progressing", f"{kind} {name}: {ready}/{wanted} ready, {updated} updated", generation
    )


def _autoscalers(stack: builders.Stack, keda: bool) -> list[builders.Manifest]:
    try:
        return autoscaling.manifests(stack, keda)
    except ValueError as error:  # the spec's Kafka settings, read as the data plane reads them
        raise InvalidStack(str(error)) from None


class ChildrenReconciler:
    def __init__(
        self,
        client: kube.Kube,
        book: stack_status.StackStatusBook,
        redis: redis_access.RedisConnections,
        prober: kafka_probe.KafkaProber,
        keys: ruleset_keys.RulesetKeys,
        image_allowlist: tuple[str, ...] = (),
    ) -> None:
        self._kube = client
        self._keys = keys
        self._image_allowlist = image_allowlist
        self._book = book
        self._redis = redis
        self._prober = prober
        # stack key -> (config checksum, Redis checksum) last applied
        self._checksums: dict[str, tuple[str, str]] = {}
        # (namespace, Deployment) -> whether our last apply owned its replicas (unknown: assume so)
        self._own_replicas: dict[tuple[str, str], bool] = {}

    async def reconcile(self, source: specs.Source, status: Mapping[str, Any]) -> None:
        """Apply every child of the stack (creating, updating or restoring it) and report readiness."""
        self._book.seed(source.namespace, source.name, status)
        with metrics.reconciling(constants.STACK_KIND):
            if is_paused(source):
                message = (
                    f"annotation {names.PAUSED_ANNOTATION} is set: children and rulesets are left as they are"
                )
                paused = conditions.make(
                    names.RECONCILIATION_PAUSED, True, "Paused", message, source.generation
                )
                await self._book.update(source.namespace, source.name, source.generation, [paused])
                return
            try:
                stack = self._allowed_stack(source)
                await self._ensure_generated_password(stack)
                await self._signer(stack)  # its Secret exists before the pods that read it
                digests = await self._secret_digests(stack)
                checksums = (
                    builders.config_checksum(stack, digests),
                    builders.redis_checksum(stack, digests),
                )
                keda = await self._keda_wanted(stack)
                wanted = [
                    *wanted_children(stack, checksums),
                    *_autoscalers(stack, keda),
                    *builders.network_policies(stack),
                ]
            except (InvalidStack, MissingSecret, MissingApi, ruleset_keys.SigningKeyError) as error:
                reason = {
                    InvalidStack: "InvalidSpec",
                    ImageNotAllowed: "ImageNotAllowed",
                    MissingSecret: "SecretMissing",
                    SecretForbidden: "SecretForbidden",
                    ruleset_keys.SigningKeyError: "SigningKeyInvalid",
                }.get(type(error), "KedaNotInstalled")
                await self._book.update(
                    source.namespace,
                    source.name,
                    source.generation,
                    [conditions.make(names.RECONCILED, False, reason, str(error), source.generation)],
                )
                raise
            self._checksums[stack.key] = checksums
            # An autoscaler being replaced goes first: KEDA refuses a ScaledObject for a Deployment
            # that another HPA scales.
            for api_version, kind, name in autoscaling.unwanted(stack, keda):
                if await self._kube.delete(api_version, kind, stack.namespace, name):
                    log.info("deleted %s %s/%s: the stack no longer wants it", kind, stack.namespace, name)
            collecting_apart = stack.spec.content_api.collector.separate
            if collecting_apart and not self._book.has_condition(
                stack.namespace, stack.name, names.COLLECTOR_READY
            ):
                # The other children's events may report them ready before the collector's Deployment
                # exists: until it reports, the stack is not Ready.
                waiting = conditions.make(
                    names.COLLECTOR_READY, False, "Progressing", "creating the collector", source.generation
                )
                await self._book.update(stack.namespace, stack.name, source.generation, [waiting])
            updates = []
            from_statefulset = None
            for manifest in wanted:
                try:
                    applied = await self._apply(manifest)
                except kube.ApiError as error:
                    if error.status in (400, 422):  # the API server refused what the spec asked for
                        await self._refused(source, manifest, error)
                    raise
                condition = component_condition(applied, source.generation)
                if condition is not None and condition["type"] == names.REDIS_READY:
                    from_statefulset = condition
                elif condition is not None:
                    updates.append(condition)
            updates.append(await self._redis_ready(stack, from_statefulset, source.generation))
            for api_version, kind, name in [
                *builders.unwanted(stack),
                *builders.unwanted_network_policies(stack),
            ]:
                if await self._kube.delete(api_version, kind, stack.namespace, name):
                    log.info("deleted %s %s/%s: the stack no longer wants it", kind, stack.namespace, name)
            updates.append(
                conditions.make(
                    names.RECONCILED, True, "Applied", "every child is applied", source.generation
                )
            )
            removed = [names.RECONCILIATION_PAUSED]
            if stack.spec.kafka is None:
                removed.append(names.KAFKA_CONNECTED)  # from before the source became Kinesis
            if not collecting_apart:
                removed.append(names.COLLECTOR_READY)
            await self._book.update(stack.namespace, stack.name, source.generation, updates, remove=removed)
            if stack.spec.kafka is not None:  # a Kinesis stack has no Kafka to probe
                self._prober.request(stack, source.generation)  # reports KafkaConnected when it is done

    async def on_child(
        self, source: specs.Source, status: Mapping[str, Any], child: Mapping[str, Any], event: str | None
    ) -> None:
        """A child changed or vanished: re-apply it (a no-op when it is as we want it) and report."""
        if is_paused(source):
            return
        stack = self._allowed_stack(source)
        checksums = self._checksums.get(stack.key)
        if checksums is None:
            await self.reconcile(source, status)
            return
        wanted = {
            (manifest["kind"], manifest["metadata"]["name"]): manifest
            for manifest in wanted_children(stack, checksums)
        }
        meta = child.get("metadata") or {}
        manifest = wanted.get((str(child.get("kind")), str(meta.get("name"))))
        if manifest is None:
            return  # a child the stack no longer wants; reconcile deletes it
        with metrics.reconciling(str(child.get("kind"))):
            if event == "DELETED":
                log.info("restoring deleted %s %s/%s", child.get("kind"), stack.namespace, meta.get("name"))
            applied = await self._apply(manifest)
        condition = component_condition(applied, source.generation)
        if condition is not None and condition["type"] == names.REDIS_READY:
            condition = await self._redis_ready(stack, condition, source.generation)
        if condition is not None:
            self._book.seed(source.namespace, source.name, status)
            await self._book.update(stack.namespace, stack.name, source.generation, [condition])

    def _allowed_stack(self, source: specs.Source) -> builders.Stack:
        """parse_stack, refusing a stack whose images the allowlist does not allow: checked before
        anything is created or changed, and before a drifted child is restored."""
        stack = parse_stack(source)
        try:
            images.check(stack.spec, self._image_allowlist)
        except images.ImageNotAllowed as error:
            raise ImageNotAllowed(str(error)) from None
        return stack

    async def _redis_ready(
        self, stack: builders.Stack, from_statefulset: conditions.Condition | None, generation: int
    ) -> conditions.Condition:
        """RedisReady: a managed Redis' pod must be ready, and then (as for your own Redis) answer the
        operator logged in as the stack's pods are; else the reason names the cause (a wrong password,
        an untrusted certificate, …) and the message what to do."""
        if from_statefulset is not None and from_statefulset["status"] != "True":
            return from_statefulset
        failure = await self._redis.check(stack)
        if failure is not None:
            return conditions.make(names.REDIS_READY, False, failure.reason, failure.message, generation)
        if from_statefulset is not None:
            return from_statefulset
        where = builders.redis_url(stack)
        return conditions.make(
            names.REDIS_READY,
            True,
            "Ready",
            f"{where} answers, logged in as the stack's pods are",
            generation,
        )

    async def _ensure_generated_password(self, stack: builders.Stack) -> None:
        """A managed Redis without a password Secret gets one generated, once: an existing Secret is
        never replaced (its password is the one Redis and every pod have)."""
        manifest = builders.generated_password_secret(stack, secrets.token_urlsafe(32))
        if manifest is None:
            return
        name = manifest["metadata"]["name"]
        if await self._read_secret(stack.namespace, name) is not None:
            return
        if await self._kube.create_unless_exists(manifest):
            log.info("generated the password of %s's managed Redis into Secret %s", stack.key, name)

    async def _secret_digests(self, stack: builders.Stack) -> dict[str, str]:
        """Digest of each referenced Secret's content: in the pods' checksum, so a changed password,
        token or certificate rolls them (they read it at start)."""
        digests = {}
        # The signing Secret too: pods restart when its public keys change (a rotation).
        refs = [
            *builders.redis_secret_refs(stack),
            stack.spec.content_api.admin_token_secret_ref,
            builders.ruleset_keys_ref(stack),
        ]
        wanted = [(ref.name, ref.key) for ref in refs if ref is not None]
        wanted += [(file.secret, file.key) for file in builders.kafka_secret_files(stack)]
        wanted += builders.kinesis_secret_keys(stack)
        for name, key in wanted:
            data = await self._read_secret(stack.namespace, name)
            if data is None or key not in data:
                raise MissingSecret(f"Secret {name} with key {key} does not exist in {stack.namespace}")
            digests[name] = builders.secret_digest(data)
        identity = stack.spec.content_api.identity
        if identity.mode != "off" and identity.secret_ref is not None:
            # Checked, not digested: its keys are read again in place, so a change rolls no pod.
            name = identity.secret_ref.name
            if await self._read_secret(stack.namespace, name) is None:
                raise MissingSecret(
                    f"Secret {name} (contentApi.identity.secretRef) does not exist in {stack.namespace}"
                )
        return digests

    async def _read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return await self._kube.read_secret(namespace, name)
        except kube.ApiError as error:
            if error.status != 403:
                raise
            raise _forbidden(namespace, name) from None

    async def _signer(self, stack: builders.Stack) -> None:
        """The stack's ruleset signing key, made unless it exists (ruleset_keys); a Secret the
        operator may not read is SecretForbidden here too."""
        try:
            await self._keys.signer(stack)
        except kube.ApiError as error:
            if error.status != 403:
                raise
            raise _forbidden(stack.namespace, builders.ruleset_signing_name(stack)) from None

    async def _keda_wanted(self, stack: builders.Stack) -> bool:
        """Whether the workers would be scaled by KEDA: asked only when they autoscale by it or by Auto;
        KEDA's absence under mode KEDA is MissingApi."""
        scaling = stack.spec.workers.autoscaling
        if not scaling.enabled or scaling.mode == "HPA":
            return False
        served = await self._kube.serves(autoscaling.KEDA_API_VERSION, autoscaling.SCALED_OBJECT)
        try:
            autoscaling.worker_scaler(stack, served)
        except autoscaling.KedaMissing as error:
            raise MissingApi(str(error)) from None
        return served

    async def _apply(self, manifest: builders.Manifest) -> dict[str, Any]:
        """Apply a child; an autoscaled Deployment's replicas are handed over first (module docstring)."""
        if manifest["kind"] != "Deployment":
            return await self._kube.apply(manifest)
        meta = manifest["metadata"]
        key = (meta["namespace"], meta["name"])
        if "replicas" not in manifest["spec"] and self._own_replicas.get(key, True):
            await self._hand_over_replicas(manifest)
        applied = await self._kube.apply(manifest)
        self._own_replicas[key] = owns_replicas(applied)
        return applied

    async def _hand_over_replicas(self, manifest: builders.Manifest) -> None:
        meta = manifest["metadata"]
        live = await self._kube.get("apps/v1", "Deployment", meta["namespace"], meta["name"])
        if live is None or not owns_replicas(live):
            return  # a new Deployment starts at 1 (the autoscaler raises it), or it is not ours to give
        replicas = (live.get("spec") or {}).get("replicas", 1)
        hold = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": replicas},
        }
        # Without force: if the autoscaler changed them meanwhile, this conflicts (409) and the retry
        # finds them no longer ours.
        await self._kube.apply(hold, field_manager=names.REPLICAS_FIELD_MANAGER, force=False)
        log.info(
            "Deployment %s/%s: %d replicas handed over to its autoscaler",
            meta["namespace"],
            meta["name"],
            replicas,
        )

    async def _refused(self, source: specs.Source, manifest: builders.Manifest, error: kube.ApiError) -> None:
        message = f"the API server refused {manifest['kind']} {manifest['metadata']['name']}: {error}"
        await self._book.update(
            source.namespace,
            source.name,
            source.generation,
            [conditions.make(names.RECONCILED, False, "ChildRefused", message, source.generation)],
        )

    def forget(self, namespace: str, name: str) -> None:
        self._checksums.pop(f"{namespace}/{name}", None)
        self._redis.forget(f"{namespace}/{name}")
        for suffix in ("worker", "api"):
            self._own_replicas.pop((namespace, f"{name}-{suffix}"), None)
        self._prober.forget(f"{namespace}/{name}")
        self._book.forget(namespace, name)
