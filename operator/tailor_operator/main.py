"""The kopf handlers: the only module with `@kopf.on…`. Each is thin and calls a reconcile function.

What is watched, and why:
- PersonalizationStacks: create/update/resume apply the children; a timer re-applies them (drift), a
  second copies live stats into rules; delete (behind our finalizer) withdraws the published ruleset.
  Their topics have handlers of their own (create/update/resume and a timer), after the children's.
- PersonalizationRules, ContentVariants, stacks: indexed per namespace (kopf indexes: the compile loop
  reads them instead of listing the API), and every event wakes the namespace's compile loop.
- Deployments, StatefulSets, Services labelled managed-by=tailor-operator: an edit or deletion is
  restored at once, and their status becomes the stack's component conditions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import redis

from tailor.core import constants
from tailor_operator import constants as names
from tailor_operator import kube, metrics, observed, redis_access
from tailor_operator import settings as operator_settings
from tailor_operator.reconcile import (
    children,
    kafka_probe,
    publishing,
    ruleset_keys,
    stack_status,
    stats,
    topics,
)

log = logging.getLogger(__name__)

GROUP, VERSION = constants.API_GROUP, constants.API_VERSION
KOPF_PREFIX = f"kopf.{GROUP}"
# Timer intervals are fixed when the handlers are registered, at import: from the environment only.
_AT_IMPORT = operator_settings.OperatorSettings()
DRIFT_SECONDS = _AT_IMPORT.drift_interval_seconds
STATS_SECONDS = _AT_IMPORT.stats_interval_seconds
TOPICS_SECONDS = _AT_IMPORT.topics_interval_seconds
CHILD_SELECTOR = {constants.LABEL_MANAGED_BY: names.MANAGED_BY}

Index = Mapping[str, Any]  # kopf.Index: namespace -> store of Observed


@dataclass
class Runtime:
    """Everything the handlers share, built once the event loop runs."""

    settings: operator_settings.OperatorSettings
    kube: kube.Kube
    redis: redis_access.RedisConnections
    book: stack_status.StackStatusBook
    prober: kafka_probe.KafkaProber
    children: children.ChildrenReconciler
    topics: topics.TopicsReconciler
    publisher: publishing.Publisher

    @classmethod
    async def create(cls, ours: operator_settings.OperatorSettings) -> Runtime:
        client = await kube.Kube.connect()
        book = stack_status.StackStatusBook(client)
        connections = redis_access.RedisConnections(client, ours.redis_url)
        prober = kafka_probe.KafkaProber(client, book, ours.kafka_probe_seconds)
        keys = ruleset_keys.RulesetKeys(client, ours.development_signing)
        if ours.development_signing:
            log.warning("new stacks' rulesets are signed with the public development key "
                        "(TAILOR_OPERATOR_RULESET_SIGNING=stack generates one per stack)")  # fmt: skip
        return cls(
            settings=ours,
            kube=client,
            redis=connections,
            book=book,
            prober=prober,
            children=children.ChildrenReconciler(
                client, book, connections, prober, keys, image_allowlist=ours.image_allowlist
            ),
            topics=topics.TopicsReconciler(client, book, ours.kafka_timeout_seconds),
            publisher=publishing.Publisher(client, connections, book, keys, ours.debounce_seconds),
        )

    async def close(self) -> None:
        await self.prober.close()
        await self.publisher.close()
        await self.redis.close()
        await self.kube.close()


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


def _items(index: Index, namespace: str | None) -> list[observed.Observed]:
    return list(index.get(namespace or "", ()))


def _request(memo: Any, namespace: str | None, indexes: Mapping[str, Any]) -> None:
    """Wake the namespace's compile loop; it reads the live kopf indexes, which kopf passes as keyword
    arguments named after the indexing handlers' ids."""
    stacks, rules, variants = indexes["tailor_stacks"], indexes["tailor_rules"], indexes["tailor_variants"]

    def snapshot() -> list[observed.Observed]:
        return [*_items(stacks, namespace), *_items(rules, namespace), *_items(variants, namespace)]

    _runtime(memo).publisher.request(namespace or "", snapshot)


# --- lifecycle ---------------------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    ours: operator_settings.OperatorSettings = memo.settings
    settings.persistence.finalizer = constants.FINALIZER
    # kopf ignores, when diffing, every annotation under its storage prefix: a prefix of its own keeps
    # tailor.dev/paused a change that triggers the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.peering.lifetime = ours.peering_lifetime_seconds
    settings.peering.stealth = True
    settings.posting.level = logging.WARNING
    # Our resources are known up front: no cluster-wide scan of CRDs and namespaces, which the
    # chart's least-privilege RBAC refuses (kopf would retry it for about a minute before acting).
    settings.scanning.disabled = True
    settings.batching.batch_window = 0.01  # collapse bursts per object, but add little latency
    memo.runtime = await Runtime.create(ours)


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    await _runtime(memo).close()


# --- indexes -----------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, constants.STACK_PLURAL, id="tailor_stacks")
def tailor_stacks(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, observed.Observed]:
    return {namespace or "": observed.Observed.from_body(body)}


@kopf.index(GROUP, VERSION, constants.RULE_PLURAL, id="tailor_rules")
def tailor_rules(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, observed.Observed]:
    return {namespace or "": observed.Observed.from_body(body)}


@kopf.index(GROUP, VERSION, constants.VARIANT_PLURAL, id="tailor_variants")
def tailor_variants(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, observed.Observed]:
    return {namespace or "": observed.Observed.from_body(body)}


# --- rules, variants: recompile ----------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, constants.RULE_PLURAL, id=names.HANDLER_RULE_EVENT)
async def rule_event(
    namespace: str | None,
    memo: Any,
    **indexes: Any,
) -> None:
    _request(memo, namespace, indexes)


@kopf.on.event(GROUP, VERSION, constants.VARIANT_PLURAL, id=names.HANDLER_VARIANT_EVENT)
async def variant_event(
    namespace: str | None,
    memo: Any,
    **indexes: Any,
) -> None:
    _request(memo, namespace, indexes)


@kopf.on.event(GROUP, VERSION, constants.STACK_PLURAL, id=names.HANDLER_STACK_EVENT)
async def stack_event(
    type: str,
    name: str,
    namespace: str | None,
    memo: Any,
    **indexes: Any,
) -> None:
    if type == "DELETED":
        _runtime(memo).children.forget(namespace or "", name)
        _runtime(memo).topics.forget(namespace or "", name)
    _request(memo, namespace, indexes)


def _on_stack_changes(handler_id: str, reconcile: Callable[[kopf.Body, Any], Awaitable[None]]) -> None:
    """Run `reconcile` when a stack is created, updated or resumed: one kopf handler per cause, each
    with an id of its own (kopf keeps each handler's progress apart), registered in this order."""

    async def handler(body: kopf.Body, memo: Any, **_: Any) -> None:
        await reconcile(body, memo)

    for cause, register in (
        ("create", kopf.on.create),
        ("update", kopf.on.update),
        ("resume", kopf.on.resume),
    ):
        register(GROUP, VERSION, constants.STACK_PLURAL, id=f"{handler_id}-{cause}")(handler)


# --- stacks: children --------------------------------------------------------------------------------


async def _reconcile_stack(body: kopf.Body, memo: Any) -> None:
    item = observed.Observed.from_body(body)
    try:
        await _runtime(memo).children.reconcile(item.source, item.status)
    except children.InvalidStack as error:
        raise kopf.PermanentError(f"invalid spec: {error}") from error
    except children.MissingSecret as error:
        raise kopf.TemporaryError(str(error), delay=10) from error
    except children.MissingApi as error:
        raise kopf.TemporaryError(str(error), delay=30) from error
    except kube.ApiError as error:
        raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=5) from error


_on_stack_changes(names.HANDLER_STACK_RECONCILE, _reconcile_stack)


@kopf.timer(
    GROUP, VERSION, constants.STACK_PLURAL, id=names.HANDLER_STACK_DRIFT, interval=DRIFT_SECONDS, idle=5
)
async def stack_drift(body: kopf.Body, memo: Any, **_: Any) -> None:
    await _reconcile_stack(body, memo)


# --- stacks: topics ----------------------------------------------------------------------------------
# After the children's handlers (kopf runs a cause's handlers in the order they are registered), and
# never raising for Kafka: TopicsReady says what is wrong, the timer looks again.


async def _reconcile_topics(body: kopf.Body, memo: Any) -> None:
    item = observed.Observed.from_body(body)
    try:
        await _runtime(memo).topics.reconcile(item.source, item.status)
    except kube.ApiError as error:
        raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=5) from error


_on_stack_changes(names.HANDLER_STACK_TOPICS, _reconcile_topics)


@kopf.timer(GROUP, VERSION, constants.STACK_PLURAL, id=names.HANDLER_STACK_TOPICS, interval=TOPICS_SECONDS)
async def stack_topics(body: kopf.Body, memo: Any, **_: Any) -> None:
    await _reconcile_topics(body, memo)


@kopf.on.delete(GROUP, VERSION, constants.STACK_PLURAL, id=names.HANDLER_STACK_DELETE, retries=3, backoff=5)
async def stack_deleted(body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Withdraw the stack's rulesets from Redis (children go by owner reference)."""
    runtime = _runtime(memo)
    item = observed.Observed.from_body(body)
    runtime.children.forget(namespace or "", name)
    try:
        stack = children.parse_stack(item.source)
        client = await runtime.redis.for_stack(stack)
        await runtime.publisher.stop(namespace or "")
        removed = await publishing.withdraw(client, stack.key)
        log.info("withdrew %d ruleset keys of %s", removed, stack.key)
        metrics.forget(stack.key)
    except (children.InvalidStack, LookupError) as error:
        log.info("nothing to withdraw for %s/%s: %s", namespace, name, error)


@kopf.on.event(
    "apps", "v1", "deployments", labels=CHILD_SELECTOR, id=f"{names.HANDLER_CHILD_EVENT}-deployment"
)
@kopf.on.event(
    "apps", "v1", "statefulsets", labels=CHILD_SELECTOR, id=f"{names.HANDLER_CHILD_EVENT}-statefulset"
)
@kopf.on.event("v1", "services", labels=CHILD_SELECTOR, id=f"{names.HANDLER_CHILD_EVENT}-service")
async def child_event(type: str, body: kopf.Body, namespace: str | None, memo: Any, **indexes: Any) -> None:
    owners = {ref.get("uid") for ref in body.get("metadata", {}).get("ownerReferences", [])}
    stack = next(
        (item for item in _items(indexes["tailor_stacks"], namespace) if item.source.uid in owners), None
    )
    if stack is None:
        return  # not ours, or its stack is being deleted
    try:
        await _runtime(memo).children.on_child(stack.source, stack.status, dict(body), type)
    except (children.InvalidStack, kube.ApiError) as error:
        log.warning(
            "could not restore %s %s/%s: %s", body.get("kind"), namespace, body["metadata"]["name"], error
        )


# --- stacks: stats -----------------------------------------------------------------------------------


@kopf.timer(
    GROUP, VERSION, constants.STACK_PLURAL, id=names.HANDLER_STACK_STATS, interval=STATS_SECONDS, idle=5
)
async def stack_stats(body: kopf.Body, namespace: str | None, memo: Any, **indexes: Any) -> None:
    runtime = _runtime(memo)
    item = observed.Observed.from_body(body)
    try:
        stack = children.parse_stack(item.source)
        client = await runtime.redis.for_stack(stack)
        with metrics.reconciling("Stats"):
            await stats.copy_stats(
                runtime.kube, client, stack.key, _items(indexes["tailor_rules"], namespace)
            )
        if not children.is_paused(item.source):
            # What the readers check, checked here too: a ruleset someone else wrote is reported and
            # replaced within this timer's interval (reconcile/publishing.py, check_current).
            await runtime.publisher.check_current(stack, client)
    except (children.InvalidStack, LookupError, ConnectionError, OSError, redis.RedisError,
            ruleset_keys.SigningKeyError) as error:  # fmt: skip
        log.debug("stats of %s/%s not copied: %s", namespace, item.source.name, error)


# --- running -----------------------------------------------------------------------------------------


async def ensure_peering(ours: operator_settings.OperatorSettings) -> None:
    """Create the peering objects operators meet in, unless they exist (kopf requires them): one
    cluster-wide, or one in each watched namespace."""
    if ours.standalone:
        return
    meta: dict[str, Any] = {"name": ours.peering}
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {**meta, "namespace": namespace}}
        for namespace in ours.namespaces
    ] or [{"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": meta}]
    client = await kube.Kube.connect()
    try:
        for manifest in manifests:
            try:
                await client.create_unless_exists(manifest)
            except kube.ApiError as error:
                log.warning("could not create the peering object %s: %s", ours.peering, error)
    finally:
        await client.close()


async def operate(ours: operator_settings.OperatorSettings, stop: asyncio.Event | None = None) -> None:
    await ensure_peering(ours)
    await kopf.operator(
        clusterwide=not ours.namespaces,
        namespaces=list(ours.namespaces),
        standalone=ours.standalone,
        priority=ours.priority,
        peering_name=None if ours.standalone else ours.peering,
        liveness_endpoint=ours.liveness_url,
        memo=kopf.Memo(settings=ours),
        stop_flag=stop,
    )


def run(ours: operator_settings.OperatorSettings) -> int:
    metrics.serve(ours.metrics_port)
    log.info(
        "tailor operator: %s, peering %s (priority %d), images %s",
        f"namespaces {', '.join(ours.namespaces)}" if ours.namespaces else "all namespaces",
        "off" if ours.standalone else ours.peering,
        ours.priority,
        f"allowed: {', '.join(ours.image_allowlist)}" if ours.image_allowlist else "unrestricted",
    )
    asyncio.run(operate(ours))
    return 0
