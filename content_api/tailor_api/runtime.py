"""The process's live state: Redis connections, the engine being served, and the background work.

`Runtime.start` connects, then follows the stack's published rulesets (tailor.core.rules.versions.follow).
Each new version is loaded into a complete Engine first (tailor.core.decision.engine.load, the data
plane's stage) and then swapped in with one assignment: a request holds the engine it started with,
so in-flight requests finish on the old version and a half-loaded one is never served. A version that
fails to load, or that must not be served (not signed by a trusted key, unparseable, of a newer format:
tailor.core.rules.versions.Unreadable), is counted and logged, and the last good one keeps serving;
/readyz shows how far behind the published version the replica is. In the background the runtime refreshes
the bandit's statistics and flushes impression counts, so neither costs the hot path a Redis call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import redis

from tailor.core import cancellation, logthrottle, redis_target, stats
from tailor.core.decision import contextual
from tailor.core.decision import engine as engine_module
from tailor.core.profile import store
from tailor.core.rules import ruleset, signing, versions
from tailor_api import identity, metrics, ratelimit, resp, resp_cluster, tokens, web
from tailor_api.settings import ApiSettings

log = logging.getLogger(__name__)
CLOSE_SECONDS = 15.0
# Between attempts to start while Redis refuses (a wrong password, an untrusted certificate, a full
# Redis): the process stays up and not ready, and says why at this pace, instead of exiting into a
# crash loop that hides the reason behind restarts.
START_RETRY_SECONDS = 5.0
_throttled = logging.getLogger(f"{__name__}.start")
_throttled.addFilter(logthrottle.RepeatThrottle())  # one line per cause every 10 s, with the count
# Refused rulesets: whoever can write to Redis can publish one a millisecond; the log must not follow.
_refusals = logging.getLogger(f"{__name__}.refused")
_refusals.addFilter(logthrottle.RepeatThrottle(interval_seconds=60.0))


class Collector(Protocol):
    """POST /v1/events (tailor_api.collector.Collector; tests may give their own)."""

    async def start(self, config: ruleset.StackConfig) -> None: ...
    async def reconfigure(self, config: ruleset.StackConfig) -> None: ...
    async def close(self) -> None: ...
    async def handle(
        self, scope: web.Scope, receive: web.Receive, who: identity.Identity | None = None
    ) -> web.Reply: ...
    async def accept(
        self, document: Any, who: identity.Identity | None = None
    ) -> dict[str, Any] | web.Reply: ...
    @property
    def kinesis_stream(self) -> str: ...  # "" unless the events go to a Kinesis stream
    def kinesis_state(self) -> tuple[bool, str, str] | None: ...


def load_collector() -> Collector:
    """The collector, imported only where it serves: a decisions-only replica never loads the Kafka client."""
    from tailor_api import collector

    return collector.Collector()


class Runtime:
    def __init__(self, settings: ApiSettings, collector: Collector | None = None) -> None:
        if not settings.stack or "/" not in settings.stack:
            raise ValueError(f"stack {settings.stack!r}: give the PersonalizationStack as namespace/name")
        self.settings = settings
        self.stack = settings.stack
        self.engine: engine_module.Engine | None = None
        timeout = settings.redis_timeout_seconds
        self.target = settings.redis_target()
        self.redis = self.target.async_client(socket_timeout=timeout, socket_connect_timeout=timeout)
        # Pub/sub waits pass their own timeout, so redis-py's default socket timeout never cuts them.
        self.follow_redis = self.target.async_client(socket_connect_timeout=timeout)
        # The hot path's own connection: to one Redis, or over a Redis Cluster's primaries by hash slot.
        self.connection: resp.Pipelined = (
            resp_cluster.ClusterConnection(self.target, timeout_seconds=timeout)
            if self.target.cluster
            else resp.Connection(self.target, timeout_seconds=timeout)
        )
        self.limiter = ratelimit.Limiter(self.stack)  # configured from each ruleset served (tailor_api.app)
        self.start_error: str | None = None  # why the start waits, while it does
        self.start_reason = ""  # its reason alone (RedisAuthenticationFailed, …), for /readyz
        self.signer: tokens.Signer | None = None
        self.decision_keys = tokens.StackKeys(
            self.redis, self.stack, settings.decision_key_rotation_seconds, settings.feedback_max_age_seconds
        )
        self.identity_keys: identity.KeyDirectory | None = None
        if settings.identity_mode != "off":
            if not settings.identity_keys_dir:
                raise ValueError(
                    f"TAILOR_IDENTITY_MODE={settings.identity_mode} needs TAILOR_IDENTITY_KEYS_DIR, "
                    "the mounted identity Secret"
                )
            self.identity_keys = identity.KeyDirectory(
                settings.identity_keys_dir,
                settings.identity_algorithms,
                settings.identity_max_lifetime_seconds,
                settings.identity_cache_size,
            )
            self.identity_keys.reload()
        self.identity = identity.Gate(settings.identity_mode, self.identity_keys)
        self.bandit: dict[str, dict[str, stats.VariantStats]] = {}
        self.segments: dict[str, contextual.Segments] = {}  # contextual bandit rules' counts per segment
        # (rule, variant, segment or None): a contextual rule's impressions count for its segment too
        self.impressions: collections.Counter[tuple[str, str, str | None]] = collections.Counter()
        self.collector = collector
        self.collector_config: ruleset.StackConfig | None = None  # what the collector runs with
        self._collector_target: ruleset.StackConfig | None = None  # what it was last asked to run with
        self._collector_work: asyncio.Task[None] | None = None
        self.collector_error: str | None = None  # why the collector could not take the last settings
        self.verifier = signing.Verifier.from_text(settings.ruleset_keys)
        self.load_errors = 0
        self.last_load_error: str | None = None
        self.published_version = 0  # the current version in Redis, as last seen
        self._behind_since: float | None = None  # monotonic time since which published > served
        for reason in (*versions.REASONS, "load"):  # at 0 from the start, so the first refusal is an increase
            metrics.ruleset_rejected.labels(self.stack, "api", reason)
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[Callable[[engine_module.Engine], None]] = []
        self._kafka_checked: tuple[float, bool, str] = (-float("inf"), False, "not checked yet")
        self._kafka_check: asyncio.Task[None] | None = None

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def decides(self) -> bool:
        """Serves decisions (and feedback, admin): every mode but a collector of its own."""
        return self.settings.api_routes != "collect"

    async def start(self) -> None:
        """Connect and follow the stack's rulesets. When Redis refuses, start returns anyway and keeps
        trying in the background: /readyz says why meanwhile (and the process never crash-loops)."""
        if self.identity_keys is not None:
            self._spawn(
                self._every(self.settings.identity_reload_seconds, self.reload_identity_keys), "identity-keys"
            )
        try:
            await self._prepare()
        except (redis.RedisError, OSError) as error:
            self._start_failed(error)
            self._spawn(self._start_when_redis_answers(), "start")
            return
        self._follow()

    async def _prepare(self) -> None:
        if not self.decides:  # a collector of its own signs nothing and reads no profile
            self.start_error = None
            return
        self.signer = await self.decision_keys.refresh(time.time())
        if isinstance(self.connection, resp_cluster.ClusterConnection):
            await self.connection.reload()  # the slot map before the first decide (RedisUnavailable: retried)
        try:
            await store.install(self.redis)
        except redis.ResponseError as error:
            # A full Redis refuses FUNCTION LOAD like any write; the functions it already has serve.
            if not (redis_target.is_out_of_memory(error) and await store.installed(self.redis)):
                raise
            log.warning("%s; serving with the functions Redis already has", self._explain(error))
        self.start_error = None

    def _start_failed(self, error: BaseException) -> None:
        self.start_reason = redis_target.explain(error, self.target).reason
        self.start_error = self._explain(error)
        _throttled.error("the content API cannot start yet: %s; retrying every %.0fs",
                         self.start_error, START_RETRY_SECONDS)  # fmt: skip

    def _explain(self, error: BaseException) -> str:
        failure = redis_target.explain(error, self.target)
        return f"{failure.reason}: {failure.message}"

    async def _start_when_redis_answers(self) -> None:
        while True:
            await asyncio.sleep(START_RETRY_SECONDS)
            try:
                await self._prepare()
            except (redis.RedisError, OSError) as error:
                self._start_failed(error)
                cancellation.checkpoint()
                continue
            log.info("Redis at %s answers: starting", self.target.address)
            self._follow()
            return

    def _follow(self) -> None:
        settings = self.settings
        poll = settings.ruleset_poll_seconds
        if self.verifier.development:
            log.warning("trusting rulesets signed with the public development key (%s is not set): "
                        "fine locally, never in a cluster", signing.ENV_KEYS)  # fmt: skip
        follower = versions.follow(self.follow_redis, self.stack, self.on_ruleset, poll_seconds=poll,
                                   verifier=self.verifier, on_rejected=self.on_rejected,
                                   on_published=self.on_published)  # fmt: skip
        self._spawn(follower, "follow")
        if self.decides:
            self._spawn(self._every(settings.bandit_refresh_seconds, self.refresh_bandit), "bandit-refresh")
            self._spawn(
                self._every(settings.impressions_flush_seconds, self.flush_impressions), "impressions"
            )
            # A few times a period, so a new period's key is there before it starts (made ahead) and
            # deleted keys are dropped within a minute.
            refresh = min(60.0, settings.decision_key_rotation_seconds / 10)
            self._spawn(self._every(refresh, self.refresh_decision_keys), "decision-keys")

    async def stop(self) -> None:
        # On Python 3.11 redis-py can swallow a cancellation (its sends go through asyncio.wait_for;
        # see tailor.core.cancellation). The loops check for it once per round; cancelling again
        # until they are done also interrupts a round in progress, and the deadline bounds shutdown
        # whatever a task does.
        pending = set(self._tasks)
        deadline = time.monotonic() + CLOSE_SECONDS / 3
        while pending and time.monotonic() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        for task in pending:
            log.error("background task %s did not stop within %.0fs", task.get_name(), CLOSE_SECONDS / 3)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.flush_impressions()
        if self._kafka_check is not None:
            self._kafka_check.cancel()  # its thread ends by its own timeout
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._kafka_check
        if self._collector_work is not None:
            self._collector_work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._collector_work
        if self.collector is not None and self.collector_config is not None:
            try:
                await asyncio.wait_for(self.collector.close(), CLOSE_SECONDS)
            except Exception as error:  # shutting down regardless: say what was left behind
                log.warning("the event collector did not close cleanly: %r", error)
        await self.connection.close()
        await self.redis.aclose()
        await self.follow_redis.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception as error:  # Redis away for a moment (or full): the next round retries
                _throttled.warning("%s failed: %s", getattr(work, "__name__", work), error)
            cancellation.checkpoint()  # `work` talks to Redis, which may have swallowed a cancel

    def on_engine(self, listener: Callable[[engine_module.Engine], None]) -> None:
        """Call `listener` after every swap (the router uses it to refresh its CORS allowlist)."""
        self._listeners.append(listener)

    # --- rulesets --------------------------------------------------------------------------------

    def on_published(self, version: int) -> None:
        self.published_version = version
        metrics.ruleset_published.labels(self.stack, "api").set(version)
        served = self.engine.version if self.engine is not None else 0
        if version <= served:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = time.monotonic()

    def on_rejected(self, refused: versions.Unreadable) -> None:
        self._refused(refused.version, refused.reason, f"{refused.reason}: {refused.detail}")

    def _refused(self, version: int, reason: str, detail: str) -> None:
        self.load_errors += 1
        self.last_load_error = f"version {version}: {detail}"
        metrics.ruleset_rejected.labels(self.stack, "api", reason).inc()
        served = f"v{self.engine.version} keeps serving" if self.engine is not None else "nothing served yet"
        # One line per reason a minute (with the count): each version's text differs, the reason does not.
        _refusals.error("ruleset %s v%s refused, %s: %s", self.stack, version, served, detail,
                        extra={"throttle_key": f"ruleset refused: {reason}"})  # fmt: skip

    def ruleset_lag(self) -> tuple[int, float]:
        """How many versions behind the published one the served ruleset is, and for how long (s)."""
        served = self.engine.version if self.engine is not None else 0
        if self._behind_since is None or self.published_version <= served:
            return 0, 0.0
        return self.published_version - served, time.monotonic() - self._behind_since

    async def on_ruleset(self, published: ruleset.Ruleset) -> None:
        try:
            loaded = engine_module.load(published)
        except Exception as error:
            self._refused(published.version, "load", str(error))
            return
        self.engine = loaded  # the swap: one assignment
        if loaded.version >= self.published_version:
            self._behind_since = None
        # Engines and their compiled rules live long: keep them out of the collector's full sweeps,
        # which otherwise walk them all and show up as tail latency.
        gc.freeze()
        for listener in self._listeners:
            listener(loaded)
        metrics.ruleset_version.labels(self.stack, "api").set(loaded.version)
        metrics.ruleset_loaded.labels(self.stack, "api").set(time.time())
        log.info("serving ruleset %s v%s", self.stack, loaded.version)
        if loaded.bandit_rules and self.decides:
            with contextlib.suppress(Exception):
                await self.refresh_bandit()
        if self.collector is not None and loaded.config != self._collector_target:
            # Kafka admin calls can take seconds (or hang while a broker is away): they must never hold
            # up the next ruleset, so the collector is configured beside the follower, in order.
            self._collector_target = loaded.config
            previous = self._collector_work
            self._collector_work = asyncio.create_task(self._configure_collector(loaded.config, previous))

    async def _configure_collector(
        self, config: ruleset.StackConfig, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        if self.collector is None or config == self.collector_config:
            return
        try:
            if self.collector_config is None:
                await self.collector.start(config)
            else:
                await self.collector.reconfigure(config)
            self.collector_config = config
            self.collector_error = None
        except Exception as error:
            self.collector_error = str(error)
            log.error("the event collector could not take the stack's Kafka settings: %s", error)

    # --- background work -------------------------------------------------------------------------

    async def refresh_decision_keys(self) -> None:
        self.signer = await self.decision_keys.refresh(time.time())

    async def decision_key(self, kid: str) -> tokens.Signer | None:
        """The signer, also holding older key `kid` when Redis still has it (None: it does not)."""
        key = await self.decision_keys.fetch(kid)
        if key is None or self.signer is None:
            return None
        self.signer = self.signer.with_key(kid, key)
        return self.signer

    async def reload_identity_keys(self) -> None:
        if self.identity_keys is not None:
            self.identity_keys.reload()

    async def refresh_bandit(self) -> None:
        """Per-variant impressions and clicks of every bandit rule, and per segment of every contextual
        one (bounded to its maxSegments: decision.contextual), read in one pipeline."""
        served = self.engine
        if served is None or not served.bandit_rules:
            self.bandit, self.segments = {}, {}
            return
        contexts = {
            rule.name: rule.context for plan in served.slots.values() for rule in plan.rules if rule.context
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            for rule in served.bandit_rules:
                pipe.hgetall(stats.key(self.stack, rule))
            for rule in contexts:
                pipe.hgetall(stats.segment_key(self.stack, rule))
            replies = await pipe.execute()
        count = len(served.bandit_rules)
        self.bandit = {
            rule: stats.parse(raw) for rule, raw in zip(served.bandit_rules, replies[:count], strict=True)
        }
        self.segments = {
            rule: contextual.bound(stats.parse_segments(raw), context.max_segments)
            for (rule, context), raw in zip(contexts.items(), replies[count:], strict=True)
        }

    def events_gate(self, scope: web.Scope) -> tuple[Collector, identity.Identity | None] | web.Reply:
        """The collector and who the request is for, before events are taken (REST and GraphQL), or
        the 503 (no collector running yet) or 401 (identity) to answer."""
        collector = self.collector
        if (
            collector is None and self.settings.api_routes == "decide"
        ):  # GraphQL's events, on a decide replica
            name = self.stack.partition("/")[2]
            detail = (
                "this replica serves `tailor api --routes decide`: events are collected by the stack's "
                f"collector (Service {name}-collector, spec.contentApi.collector.separate): send them there"
            )
            return web.problem(503, "served-elsewhere", "Route served elsewhere", detail)
        if collector is None or self.collector_config is None:
            detail = "the event collector is not running (no ruleset with Kafka settings yet)"
            return web.problem(503, "collector-unavailable", "Collector unavailable", detail)
        try:
            return collector, self.identity.check(scope, time.time())
        except identity.IdentityError as error:
            return identity.refusal(error)

    def count_impression(self, rule: str, variant: str, segment: str | None = None) -> None:
        self.impressions[(rule, variant, segment)] += 1
        metrics.impression_counter(rule, variant).inc()

    async def flush_impressions(self) -> None:
        pending, self.impressions = self.impressions, collections.Counter()
        if not pending:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (rule, variant, segment), n in pending.items():
                    pipe.hincrby(stats.key(self.stack, rule), stats.field(variant, stats.IMPRESSIONS), n)
                    if segment is not None:
                        field = stats.segment_field(segment, variant, stats.IMPRESSIONS)
                        pipe.hincrby(stats.segment_key(self.stack, rule), field, n)
                await pipe.execute()
        except Exception:
            self.impressions.update(pending)  # counted next time: impressions are never dropped
            raise

    # --- readiness -------------------------------------------------------------------------------

    async def redis_ready(self) -> tuple[bool, str]:
        """(ok, detail) for /readyz. The detail is the failure's reason only (RedisAuthenticationFailed,
        …): the address and the advice go to the log, as readiness bodies can reach clients."""
        try:
            (reply,) = await self.connection.execute([("PING",)])
        except resp.RedisUnavailable as error:
            failure = redis_target.explain(error, self.target)
            _throttled.warning("not ready: %s: %s", failure.reason, failure.message)
            return False, f"{failure.reason} (the reason is in this replica's log)"
        if self.start_error is not None:
            return False, f"{self.start_reason} (the reason is in this replica's log)"
        return reply == b"PONG", "ok" if reply == b"PONG" else "unexpected reply to PING"

    def kafka_state(self) -> tuple[bool, str]:
        """Could the stack's Kafka brokers be reached (metadata of the events topic), or its Kinesis
        stream (source_check), as last checked.
        Never waits: a check older than `kafka_check_seconds` starts a new one in the background, so a
        readiness probe is not held up by brokers that do not answer (the check waits seconds for them)."""
        if self.engine is None:
            return False, "no ruleset yet, so no Kafka settings"
        checked_at, ok, detail = self._kafka_checked
        stale = time.monotonic() - checked_at >= self.settings.kafka_check_seconds
        if stale and (self._kafka_check is None or self._kafka_check.done()):
            self._kafka_check = asyncio.create_task(self._check_kafka(), name="kafka-check")
        return ok, detail

    @property
    def source_check(self) -> str:
        """The name of the events' source in /readyz's checks: kafka, or kinesis (docs/kinesis.md)."""
        return "kinesis" if self.collector is not None and self.collector.kinesis_stream else "kafka"

    async def _check_kafka(self) -> None:
        served = self.engine
        if served is None:
            return
        if self.collector is not None and self.collector.kinesis_stream:
            state = await asyncio.to_thread(self.collector.kinesis_state)
            ok, detail, reason = state or (False, "the collector is not running", "not running")
            where = f"the Kinesis stream {self.collector.kinesis_stream}"
        else:
            kafka = served.config.kafka
            ok, detail, reason = await asyncio.to_thread(
                _kafka_metadata, kafka, self.settings.kafka_secrets_dir
            )
            where = f"Kafka at {kafka.bootstrap_servers}"
        # The brokers' addresses go to the log only: readiness bodies can reach clients.
        if not ok and detail != self._kafka_checked[2]:  # once per change: readiness asks every few seconds
            log.warning("not ready: %s: %s", where, reason)
        self._kafka_checked = (time.monotonic(), ok, detail)
        metrics.kafka_up.labels(self.stack).set(1 if ok else 0)


def _kafka_metadata(kafka: ruleset.KafkaConfig, secrets_dir: pathlib.Path) -> tuple[bool, str, str]:
    """(ok, what /readyz may say: the cause without the brokers' address, the whole cause for the log)."""
    # Imported here: a decisions-only replica never loads the Kafka client.
    from tailor.core import kafkaclient

    problem = kafkaclient.probe(kafka, secrets_dir, timeout=2.0, require_topic=True)
    if problem is not None:
        return (
            False,
            f"{problem.reason} (the reason is in this replica's log)",
            f"{problem.reason}: {problem.message}",
        )
    return True, "ok", "ok"
