"""Compile a namespace and publish its ruleset; report on every rule, variant and the stack.

Each namespace has one compile loop (an asyncio task): a change to any of its rules, variants or its
stack wakes it, it waits `debounce` for the rest of a burst (`kubectl apply -f dir/`), takes a snapshot
of the kopf indexes (no API listing), compiles incrementally, publishes to Redis when the ruleset's
content changed, then patches the statuses that changed and posts an Event per new problem.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from tailor.core import cancellation, constants, redis_target
from tailor.core.rules import compiler, ruleset, signing, versions
from tailor_operator import builders, conditions, kube, metrics, observed, redis_access
from tailor_operator import constants as names
from tailor_operator.reconcile import children, ruleset_keys, stack_status

log = logging.getLogger(__name__)

Snapshot = Callable[[], list[observed.Observed]]
RETRY_SECONDS = 2.0


@dataclass
class Namespace:
    snapshot: Snapshot
    cache: compiler.Cache = field(default_factory=compiler.Cache)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    inputs: bytes = b""  # fingerprint of the inputs of the last successful round
    last: ruleset.Ruleset | None = None  # the last ruleset published or loaded
    warned: set[tuple[str, str, int, str]] = field(default_factory=set)  # Events already posted


@dataclass(frozen=True)
class Report:
    """What one round did, for logs, tests and the benchmark."""

    version: int | None
    published: bool
    held: compiler.Problem | None
    problems: tuple[compiler.Problem, ...]


class Publisher:
    def __init__(
        self,
        client: kube.Kube,
        connections: redis_access.RedisConnections,
        book: stack_status.StackStatusBook,
        keys: ruleset_keys.RulesetKeys,
        debounce: float = 0.02,
    ) -> None:
        self._kube = client
        self._redis = connections
        self._keys = keys
        self._book = book
        self._debounce = debounce
        self._namespaces: dict[str, Namespace] = {}

    def request(self, namespace: str, snapshot: Snapshot) -> None:
        """Recompile `namespace` soon, from `snapshot()` taken when the round starts."""
        state = self._namespaces.get(namespace)
        if state is None:
            state = self._namespaces[namespace] = Namespace(snapshot)
        state.snapshot = snapshot
        if state.task is None or state.task.done():
            state.task = asyncio.create_task(self._loop(namespace, state), name=f"compile {namespace}")
        state.wake.set()

    async def stop(self, namespace: str) -> None:
        """Cancel the namespace's compile loop and wait for it (before withdrawing a deleted stack, so
        that no round in flight publishes after the withdrawal)."""
        state = self._namespaces.pop(namespace, None)
        if state is not None and state.task is not None:
            state.task.cancel()
            await asyncio.gather(state.task, return_exceptions=True)

    async def close(self) -> None:
        tasks = [state.task for state in self._namespaces.values() if state.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, namespace: str, state: Namespace) -> None:
        while True:
            # A round's Redis calls can swallow the cancel of `stop` (tailor.core.cancellation): without
            # this check the loop would wait for a wake-up that never comes, and `stop` with it.
            cancellation.checkpoint()
            await state.wake.wait()
            await asyncio.sleep(self._debounce)
            state.wake.clear()
            try:
                with metrics.reconciling("Ruleset"):
                    await self.round(namespace, state, state.snapshot())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Redis down, API hiccup: keep the namespace dirty and try again.
                log.warning("compiling %s failed, retrying in %.0fs: %s", namespace, RETRY_SECONDS, error)
                state.inputs = b""
                await self._report_failure(state, error)
                await asyncio.sleep(RETRY_SECONDS)
                state.wake.set()

    async def _report_failure(self, state: Namespace, error: Exception) -> None:
        """Say on the stack why nothing was published (best effort: the API may be what failed)."""
        stack_item = _the_stack(state.snapshot())
        if stack_item is None:
            return
        source = stack_item.source
        if isinstance(error, ConnectionError | redis.RedisError):
            # The cause by name (a wrong password, an untrusted certificate, a full Redis), as RedisReady.
            reason, message = redis_target.explain(error)
        else:
            reason, message = "PublishFailed", str(error)
        served = f"; version {state.last.version} keeps serving" if state.last is not None else ""
        condition = conditions.make(
            names.RULESET_PUBLISHED, False, reason, f"{message}{served}; retrying", source.generation
        )
        self._book.seed(source.namespace, source.name, stack_item.status)
        try:
            await self._book.update(source.namespace, source.name, source.generation, [condition])
        except Exception as report_error:  # the API itself may be down; the retry loop goes on
            log.debug("could not report on %s: %s", source.ref, report_error)

    async def compile_now(self, namespace: str, items: list[observed.Observed]) -> Report:
        """One round outside the loop (tests, benchmarks)."""
        state = self._namespaces.setdefault(namespace, Namespace(lambda: items))
        return await self.round(namespace, state, items)

    async def round(self, namespace: str, state: Namespace, items: list[observed.Observed]) -> Report:
        # A stack being deleted has withdrawn its ruleset (finalizer): publishing again would revive it.
        items = [item for item in items if not (item.deleting and item.source.kind == constants.STACK_KIND)]
        fingerprint = _fingerprint(items)
        stack_item = _the_stack(items)
        paused = stack_item is not None and children.is_paused(stack_item.source)
        if paused:
            return Report(None, False, None, ())
        client = None
        signer = None
        if stack_item is not None:
            try:
                stack = children.parse_stack(stack_item.source)
                client = await self._redis.for_stack(stack)
            except (children.InvalidStack, LookupError):
                client = None  # compile_namespace reports the stack's problem
            else:
                signer = await self._keys.signer(stack)
        if fingerprint == state.inputs:
            return Report(state.last.version if state.last else None, False, None, ())

        previous = await self._current(client, stack_item, state, signer)
        started = time.perf_counter()
        result = await asyncio.to_thread(
            compiler.compile_namespace, namespace, [item.source for item in items], previous, state.cache
        )
        log.debug("compiled %s in %.1f ms", namespace, (time.perf_counter() - started) * 1000)
        published = False
        served = previous
        if (
            result.ruleset is not None
            and client is not None
            and stack_item is not None
            and signer is not None
        ):
            served = await versions.publish(client, result.ruleset, signer)
            published = previous is None or served.version != previous.version
            state.last = served
            metrics.published(served.stack, served.version)
            if published:
                log.info("published %s version %d", served.stack, served.version)
        if stack_item is not None:
            metrics.compiled(f"{namespace}/{stack_item.source.name}", not_live(result))
        await self._report(namespace, state, items, result, served, stack_item)
        state.inputs = fingerprint
        return Report(served.version if served else None, published, result.held, tuple(result.problems))

    async def _current(
        self,
        client: Any,
        stack_item: observed.Observed | None,
        state: Namespace,
        signer: signing.Signer | None,
    ) -> ruleset.Ruleset | None:
        """The ruleset being served (the last-good reference), cached while its version is current.
        A current version the stack's key did not sign is not taken as a reference: it is reported on
        the stack (the readers refused it too) and published over."""
        if client is None or stack_item is None or signer is None:
            return state.last
        key = f"{stack_item.source.namespace}/{stack_item.source.name}"
        try:
            version = await versions.current_version(client, key)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise ConnectionError(f"Redis of {key} unreachable: {error}") from error
        if state.last is not None and state.last.stack == key and state.last.version == version:
            return state.last
        try:
            state.last = (
                await versions.load(client, key, version, verifier=signer.verifier()) if version else None
            )
        except versions.Unreadable as refused:
            state.last = None
            await self.report_refused(stack_item, refused)
        return state.last

    async def check_current(self, stack: builders.Stack, client: Any) -> bool:
        """Whether the current version in Redis verifies with the stack's key (the stats timer asks, so
        a ruleset written by someone else is noticed between rounds). When it does not: an Event on the
        stack, and its namespace is recompiled, which publishes a signed version over it."""
        signer = await self._keys.signer(stack)
        try:
            await versions.load(client, stack.key, verifier=signer.verifier())
        except versions.Unreadable as refused:
            state = self._namespaces.get(stack.namespace)
            if state is not None:
                stack_item = _the_stack(state.snapshot())
                if stack_item is not None:
                    await self.report_refused(stack_item, refused)
                state.inputs = b""  # the next round publishes, whatever the inputs
                state.last = None
                state.wake.set()
            return False
        return True

    async def report_refused(self, stack_item: observed.Observed, refused: versions.Unreadable) -> None:
        message = (
            f"version {refused.version} in Redis is refused by the stack's readers ({refused.reason}: "
            f"{refused.detail}); they keep their last good version, and the operator publishes over it. "
            "Something other than the operator wrote to the stack's Redis: see docs/operating.md, "
            "'Who can publish a ruleset'"
        )
        log.warning("%s: %s", stack_item.source.ref, message)
        metrics.ruleset_refused(stack_item.source.namespace, stack_item.source.name, refused.reason)
        try:
            await self._kube.post_event(stack_item.involved(), "RulesetRefused", message)
        except kube.ApiError as error:
            log.warning("could not post an Event for %s: %s", stack_item.source.ref, error)

    async def _report(
        self,
        namespace: str,
        state: Namespace,
        items: list[observed.Observed],
        result: compiler.CompileResult,
        served: ruleset.Ruleset | None,
        stack_item: observed.Observed | None,
    ) -> None:
        version = served.version if served is not None else None
        by_key: dict[tuple[str, str], observed.Observed] = {
            (item.source.kind, item.source.name): item for item in items
        }
        patches = []
        for key, outcome in result.resources.items():
            item = by_key.get(key)
            if item is None or item.source.kind == constants.STACK_KIND:
                continue
            status = resource_status(item, outcome, result.held, version)
            if status is not None:
                patches.append(self._kube.patch_status(item.source.kind, namespace, item.source.name, status))
            for problem in outcome.problems:
                await self._warn(state, item, problem)
        if result.held is not None and result.held.name:
            held_item = by_key.get((result.held.kind, result.held.name))
            if held_item is not None:
                await self._warn(state, held_item, result.held)
        # Bounded concurrency: a namespace of thousands patches in waves, not all at once.
        for start in range(0, len(patches), 32):
            await asyncio.gather(*patches[start : start + 32])
        if stack_item is not None:
            await self._report_stack(stack_item, result, served)

    async def _report_stack(
        self, item: observed.Observed, result: compiler.CompileResult, served: ruleset.Ruleset | None
    ) -> None:
        source = item.source
        self._book.seed(source.namespace, source.name, item.status)
        stack_result = result.resources.get((source.kind, source.name))
        own = stack_result.problems if stack_result is not None else ()
        generation = source.generation
        if own:
            condition = conditions.make(
                names.RULESET_PUBLISHED, False, own[0].reason, own[0].message, generation
            )
        elif result.held is not None:
            served_text = f"version {served.version} keeps serving" if served else "nothing is served yet"
            condition = conditions.make(
                names.RULESET_PUBLISHED, False, "Held", f"{result.held}; {served_text}", generation
            )
        elif served is not None:
            problems = len(result.problems)
            note = f"; {problems} problem(s) in rules or variants" if problems else ""
            condition = conditions.make(
                names.RULESET_PUBLISHED,
                True,
                "Published",
                f"version {served.version} is served{note}",
                generation,
            )
        else:
            condition = conditions.make(
                names.RULESET_PUBLISHED, None, "Pending", "not published yet", generation
            )
        fields: dict[str, Any] = {}
        if served is not None:
            fields = {
                "rulesetVersion": served.version,
                "rulesetChecksum": served.checksum,
                "rules": len(served.rules),
                "variants": len(served.variants),
            }
        await self._book.update(source.namespace, source.name, generation, [condition], fields)

    async def _warn(self, state: Namespace, item: observed.Observed, problem: compiler.Problem) -> None:
        key = (item.source.kind, item.source.name, item.source.generation, problem.reason)
        if key in state.warned:
            return
        state.warned.add(key)
        try:
            await self._kube.post_event(item.involved(), problem.reason, problem.message)
        except kube.ApiError as error:
            log.warning("could not post an Event for %s: %s", problem.ref, error)


async def withdraw(client: Any, stack: str) -> int:
    """Stop serving a deleted stack: remove its current pointer and ruleset documents (the sequence
    stays, so a stack created again under the same name never reuses a version number)."""
    keys = [versions.current_key(stack)]
    async for key in client.scan_iter(match=versions.version_key(stack, 0)[:-1] + "*", count=500):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name.rsplit(":", 1)[-1].isdigit() or name.endswith(":signature"):
            keys.append(name)
    return int(await client.delete(*keys))


def resource_status(
    item: observed.Observed,
    outcome: compiler.ResourceResult,
    held: compiler.Problem | None,
    version: int | None,
) -> dict[str, Any] | None:
    """The status a rule or variant should show, or None when it already shows it."""
    source, current = item.source, item.status
    generation = source.generation
    published_version = current.get("publishedVersion")
    if held is not None and outcome.outcome != "kept" and not outcome.problems:
        served = f"version {version} keeps serving" if version else "nothing is served yet"
        ready = conditions.make(names.READY, False, "Held", f"not published: {held}; {served}", generation)
    elif outcome.problems:
        problem = outcome.problems[0]
        if outcome.outcome == "kept":
            tail = f"; version {version} still serves its last good form" if version else ""
        else:
            tail = "; it is not served"
        ready = conditions.make(names.READY, False, problem.reason, problem.message + tail, generation)
    else:
        already = (
            current.get("observedGeneration") == generation
            and published_version is not None
            and (conditions.find(current.get("conditions"), names.READY) or {}).get("status") == "True"
        )
        if not already:
            published_version = version
        message = f"generation {generation} is served since version {published_version}"
        ready = conditions.make(names.READY, True, "Published", message, generation)
    merged = conditions.merge(current.get("conditions"), [ready])
    status: dict[str, Any] = {"observedGeneration": generation, "conditions": merged}
    if published_version is not None:
        status["publishedVersion"] = published_version
    unchanged = (
        current.get("observedGeneration") == generation
        and current.get("publishedVersion") == status.get("publishedVersion")
        and conditions.same(current.get("conditions"), merged)
    )
    return None if unchanged else status


def not_live(result: compiler.CompileResult) -> int:
    """How many rules and variants the served ruleset does not have as their authors last wrote them:
    each `kept` or `omitted`, or all of them when a problem holds the whole ruleset back."""
    authored = [key for key in result.resources if key[0] != constants.STACK_KIND]
    if result.ruleset is None:
        return max(len(authored), 1)
    return sum(1 for key in authored if result.resources[key].outcome != "published")


def _the_stack(items: Iterable[observed.Observed]) -> observed.Observed | None:
    stacks = sorted(
        (item for item in items if item.source.kind == constants.STACK_KIND),
        key=lambda item: (item.source.created, item.source.name),
    )
    return stacks[0] if stacks else None


def _fingerprint(items: Iterable[observed.Observed]) -> bytes:
    """What compiling depends on (specs, labels, generations) and what reports depend on (statuses)."""
    material = sorted(
        (
            item.source.kind,
            item.source.name,
            item.source.generation,
            item.source.labels,
            item.source.spec,
            item.source.annotations.get(names.PAUSED_ANNOTATION, ""),
            _status_key(item.status),
        )
        for item in items
    )
    return orjson.dumps(material, option=orjson.OPT_SORT_KEYS)


def _status_key(status: Mapping[str, Any]) -> Any:
    ready = conditions.find(status.get("conditions"), names.READY) or {}
    return [
        status.get("observedGeneration"),
        status.get("publishedVersion"),
        ready.get("status"),
        ready.get("reason"),
    ]
