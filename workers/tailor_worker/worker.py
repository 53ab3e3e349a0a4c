"""The worker loop: consume a batch, classify it, write it to Redis atomically, dead-letter the rest,
then store the offsets — and follow the stack's published ruleset for Kafka and feature settings.
A published version it must not use (not signed by a trusted key, unparseable, of a newer format) is
counted and logged, and the worker goes on with the settings it has; it never exits over one.

Nothing acknowledged is lost and nothing is counted twice: offsets are stored only after the Redis
write (and the dead-lettering) of their batch succeeded, and the write deduplicates by event id in
the same atomic call that counts. A batch that cannot be written is retried until it is, or until
the worker stops — then it is simply not stored, and whoever owns the partition next replays it.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from confluent_kafka import KafkaException, Message

from tailor.core import kafkaclient, kinesis, logthrottle, native, redis_target, topics
from tailor.core.profile import store
from tailor.core.rules import signing, versions
from tailor.core.rules.ruleset import KafkaConfig, Ruleset, StackConfig
from tailor_worker import batch, garbage, kinesis_source, liveness, metrics
from tailor_worker import traits as traits_topic
from tailor_worker.consumer import EventConsumer
from tailor_worker.deadletter import DeadLetterProducer
from tailor_worker.settings import WorkerSettings

log = logging.getLogger(__name__)
# Lines repeated while Redis refuses (full, a wrong password): one per cause every 10 s, with the count.
_throttled = logging.getLogger(f"{__name__}.retry")
_throttled.addFilter(logthrottle.RepeatThrottle())
# Refused rulesets: whoever can write to Redis can publish one a millisecond; the log must not follow.
_refusals = logging.getLogger(f"{__name__}.refused")
_refusals.addFilter(logthrottle.RepeatThrottle(interval_seconds=60.0))
COMPONENT = "worker"


class KafkaUnusable(Exception):
    """The stack's Kafka settings do not work from here (Health has said why); retried with backoff."""


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A classified batch whose Redis write is under way."""

    work: batch.ClassifiedBatch
    now: float
    started: float
    write: concurrent.futures.Future[store.Written | None]


class Worker:
    def __init__(
        self,
        stack: str,
        settings: WorkerSettings,
        *,
        clock: Callable[[], float] = time.time,
        redis_client: redis.Redis | None = None,
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.clock = clock
        self.target = settings.redis_target()
        self.redis = redis_client or self.target.client(
            socket_connect_timeout=settings.redis_connect_timeout_seconds,
            socket_timeout=settings.redis_socket_timeout_seconds,
            socket_keepalive=True,
        )
        self.progress = liveness.Progress(settings.liveness_stall_seconds)
        self._stopping = threading.Event()
        self.config: StackConfig | None = None
        self.version = 0
        self.verifier = signing.Verifier.from_text(settings.ruleset_keys)
        self._refused_version = 0  # the last version refused: refused once, not at every check
        for reason in versions.REASONS:  # at 0 from the start, so the first refusal is an increase
            metrics.RULESET_REJECTED.labels(stack, COMPONENT, reason)
        self._consumer: EventConsumer | kinesis_source.ShardReader | None = None
        self._dead_letters: DeadLetterProducer | kinesis_source.LoggedDeadLetters | None = None
        self._traits: traits_topic.TraitsLoop | None = None  # while the stack declares traits
        # TAILOR_EVENTS_SOURCE=kinesis: the events come from a Kinesis data stream (docs/kinesis.md).
        self.kinesis = kinesis.KinesisSettings()
        self._writer: store.ProfileWriter | None = None
        self._garbage = garbage.GarbageClock()
        self.kafka_health: kafkaclient.Health | None = None  # of the Kafka settings in use

    def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group (safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Process events until `stop()`."""
        if native.enabled():
            log.info("checking and counting events with the compiled hot path (tailor_native)")
        else:
            log.warning("tailor_native is %s: checking and counting events in Python, several times slower",
                        "switched off (TAILOR_NATIVE)" if native.BUILT else "not built")  # fmt: skip
        if not self._retry("install the profile functions", lambda: store.install(self.redis)):
            return
        config = self._wait_for_ruleset()
        if config is None:
            return
        # One batch's Redis write runs in this thread while the loop classifies the next batch: Python and
        # Redis work at the same time. Batches still complete strictly in order.
        writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-write")
        pending: _InFlight | None = None
        gc.freeze()  # what start-up made lives as long as the process: never walk it again
        gc.disable()  # collected between batches instead (garbage.GarbageClock)
        try:
            self._apply(config)
            next_check = time.monotonic() + self.settings.config_check_seconds
            while not self.stopping:
                if time.monotonic() >= next_check:
                    if pending is not None:  # settings apply between batches, never under one
                        self._finish(pending)
                        pending = None
                    self._follow_ruleset()
                    self._recheck_kafka()
                    next_check = time.monotonic() + self.settings.config_check_seconds
                assert self._consumer is not None
                # With a write in flight, take only what has arrived, so it is finished without delay.
                wait = 0.0 if pending is not None else self.settings.poll_seconds
                messages = self._consumer.take(self.settings.batch_size, wait)
                self.progress.beat()  # returned, with events or without: the loop goes round
                started = time.perf_counter()
                work = self._classify(messages) if messages else None
                if pending is not None:
                    self._finish(pending)
                    pending = None
                if work is not None:
                    now = self.clock()
                    pending = _InFlight(work, now, started, writer.submit(self._write, work, now))
            if pending is not None:
                self._finish(pending)
        finally:
            writer.shutdown(wait=True)
            self._close()
            gc.enable()

    # -- one batch -------------------------------------------------------------------------------

    def _classify(self, messages: list[Message]) -> batch.ClassifiedBatch:
        assert self.config is not None
        metrics.CONSUMED.labels(self.config.kafka.events_topic).inc(len(messages))
        return batch.classify(messages, self.config.features, self.clock())

    def _finish(self, flight: _InFlight) -> None:
        """Wait for the batch's write (retrying it here if it failed), dead-letter, store offsets."""
        assert self._consumer is not None
        written = flight.write.result()
        work = flight.work
        while written is None or not self._dead_letter(work):
            self._consumer.refresh_lag(ask_broker=True)  # stuck here: let the lag show it
            if self._stopping.wait(self.settings.retry_seconds):
                log.info("stopping with a batch not written; it will be replayed")
                return
            if written is None:
                written = self._write(work, flight.now)
        counted, duplicates, expired, over_cap = written
        self._consumer.store(work.offsets)
        metrics.PROCESSED.labels("counted").inc(counted)
        metrics.PROCESSED.labels("duplicate").inc(duplicates)
        metrics.DEDUP_HITS.inc(duplicates)
        metrics.PROCESSED.labels("late").inc(work.late)
        # Older than the dedup TTL when finally processed (a replay long after): not counted.
        metrics.PROCESSED.labels("expired").inc(expired)
        metrics.PROCESSED.labels("over_user_cap").inc(over_cap)
        metrics.OVER_USER_CAP.inc(over_cap)
        metrics.PROCESSED.labels("dead_letter").inc(len(work.dead))
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - flight.started)
        self.progress.beat()
        self._garbage.batch_done()

    def _write(self, work: batch.ClassifiedBatch, now: float) -> store.Written | None:
        """What the batch's write did, or None when Redis failed (the whole batch is retried: dedup
        makes the users that were written harmless, and the writer trusts nothing cached for them)."""
        if not work.by_user:
            return store.Written(0, 0, 0)
        writer = self._writer
        assert writer is not None
        loads, conflicts, resets, rerouted = writer.loads, writer.conflicts, writer.resets, writer.rerouted
        try:
            written = writer.write(self.redis, work.by_user, now, work.partition_of)
        except redis.RedisError as error:
            metrics.REDIS_ERRORS.inc()
            if redis_target.is_out_of_memory(error):
                # Redis keeps nothing more under noeviction: say so plainly, hold the batch (its offsets
                # are not stored) and retry until there is room; nothing is lost or counted twice.
                _throttled.error("batch held: %s", redis_target.explain(error, self.target).message)
            else:
                log.warning("Redis write failed, retrying the batch: %s", error)
            if store.is_missing_function(error):
                self._retry("install the profile functions", lambda: store.install(self.redis), beat=False)
            return None
        finally:
            metrics.PROFILE_LOADS.inc(writer.loads - loads)
            metrics.PROFILE_CONFLICTS.inc(writer.conflicts - conflicts)
            metrics.PROFILE_RESETS.inc(writer.resets - resets)
            metrics.PROFILE_REROUTED.inc(writer.rerouted - rerouted)
            metrics.PROFILE_CACHE_USERS.set(writer.cached_users)
        return written

    def _dead_letter(self, work: batch.ClassifiedBatch) -> bool:
        if not work.dead:
            return True
        assert self._dead_letters is not None
        if not self._dead_letters.send(work.dead):
            return False
        for letter in work.dead:
            metrics.DEAD_LETTERS.labels(letter.reason).inc()
        return True

    # -- configuration -----------------------------------------------------------------------------

    def _wait_for_ruleset(self) -> StackConfig | None:
        warned = False
        if self.verifier.development:
            log.warning("trusting rulesets signed with the public development key (%s is not set): "
                        "fine locally, never in a cluster", signing.ENV_KEYS)  # fmt: skip
        while not self.stopping:
            try:
                ruleset = self._load_current()
            except redis.RedisError as error:
                _throttled.warning("cannot read the ruleset of %s: %s", self.stack, error)
                ruleset = None
            if ruleset is not None:
                self._loaded(ruleset.version)
                return ruleset.config
            self.progress.beat()  # waiting for the operator, not stuck: a restart would not help
            if not warned:
                log.info("waiting for the operator to publish a ruleset for %s", self.stack)
                warned = True
            self._stopping.wait(1.0)
        return None

    def _load_current(self) -> Ruleset | None:
        """The current ruleset if this worker may use it; None when there is none, or it was refused."""
        version = versions.current_version_sync(self.redis, self.stack)
        if version:
            metrics.RULESET_PUBLISHED.labels(self.stack, COMPONENT).set(version)
        if not version or version in (self.version, self._refused_version):
            return None
        try:
            return versions.load_sync(self.redis, self.stack, version, verifier=self.verifier)
        except versions.Unreadable as refused:
            self._refused_version = version
            metrics.RULESET_REJECTED.labels(self.stack, COMPONENT, refused.reason).inc()
            kept = f"v{self.version} stays in use" if self.version else "waiting for one it can use"
            # One line per reason a minute (with the count): each version's text differs, the reason not.
            _refusals.error("ruleset %s v%d refused, %s: %s: %s",
                            self.stack, version, kept, refused.reason, refused.detail,
                            extra={"throttle_key": f"ruleset refused: {refused.reason}"})  # fmt: skip
            return None

    def _follow_ruleset(self) -> None:
        try:
            ruleset = self._load_current()
        except redis.RedisError as error:
            log.warning("cannot check the ruleset of %s: %s", self.stack, error)
            return
        if ruleset is None:
            return
        self._loaded(ruleset.version)
        if ruleset.config != self.config:
            log.info("stack settings changed in ruleset v%d; applying", ruleset.version)
            self._apply(ruleset.config)

    def _loaded(self, version: int) -> None:
        self.version = version
        metrics.RULESET_VERSION.labels(self.stack, COMPONENT).set(version)
        metrics.RULESET_LOADED.labels(self.stack, COMPONENT).set(time.time())

    def _apply(self, config: StackConfig) -> None:
        previous = self.config
        self.config = config
        # A new writer starts with an empty cache: state cached under other feature settings is dropped.
        self._writer = store.ProfileWriter(
            config,
            cache_users=self.settings.cache_size(),
            events_per_user_per_minute=self.settings.events_per_user_per_minute,
            dedup_marks_per_user=self.settings.dedup_marks_per_user,
            wait_replicas=self.settings.redis_wait_replicas,
            wait_timeout_ms=self.settings.redis_wait_timeout_ms,
        )
        if self.kinesis.enabled:
            if self._consumer is None:
                self._retry("read the Kinesis stream", self._connect_kinesis)
            return
        if (
            previous is not None
            and previous.kafka == config.kafka
            and previous.features.traits == config.features.traits
            and self._consumer is not None
        ):
            return  # features only: the next batch is counted with them
        self._close_kafka()
        health = self.kafka_health = kafkaclient.Health(config.kafka, COMPONENT)
        self._retry("connect to Kafka", lambda: self._connect(config, health))

    def _connect(self, config: StackConfig, health: kafkaclient.Health) -> None:
        """Check the stack's Kafka settings work (a refused password or certificate is named at once,
        not after a metadata timeout), make the topics if missing, then the consumer and producer."""
        kafka = config.kafka
        secrets = self.settings.kafka_secrets_dir
        problem = kafkaclient.probe(kafka, secrets, timeout=self.settings.kafka_probe_seconds)
        if problem is not None:
            health.failed(problem)
            raise KafkaUnusable(problem.reason)
        client = {**kafkaclient.client_config(kafka, secrets), **health.callbacks()}
        # The operator makes the topics (docs/topics.md); subscribing before they exist would leave the
        # consumer waiting for a metadata refresh, or a broker that auto-creates topics would make one
        # with its own defaults.
        _require_topics(client, kafka)
        health.connected()
        group = self.settings.group_id or config.worker_group
        self._consumer = EventConsumer(
            client,
            kafka.events_topic,
            group,
            instance_id=self.settings.instance_id,
            session_timeout_ms=self.settings.session_timeout_ms,
            on_dropped=self._partitions_dropped,
        )
        self._dead_letters = DeadLetterProducer(client, kafka.dead_letter_topic)
        log.info(
            "consuming %s as %s (dead letters to %s)", kafka.events_topic, group, kafka.dead_letter_topic
        )
        if kafka.traits_topic and config.features.traits:
            self._traits = traits_topic.TraitsLoop(
                client, config, f"{group}.traits", self.redis, retry_seconds=self.settings.retry_seconds
            )
            self._traits.start()

    def _connect_kinesis(self) -> None:
        self._consumer = kinesis_source.ShardReader(
            self.kinesis, self.redis, self.stack, on_dropped=self._partitions_dropped
        )
        self._dead_letters = kinesis_source.LoggedDeadLetters()

    def readiness(self) -> tuple[bool, str]:
        """Ready once the worker reads the stack's Kafka and while its clients report no failure."""
        if self.kinesis.enabled:
            return self._consumer is not None, f"reading the Kinesis stream {self.kinesis.stream}"
        if self.config is None or self.kafka_health is None:
            return False, "waiting for a published ruleset"
        return self.kafka_health.readiness()

    def _recheck_kafka(self) -> None:
        """After a client reported a failure: ask the brokers again, so readiness returns once they
        answer (an idle consumer would otherwise never say so)."""
        health = self.kafka_health
        consumer = self._consumer
        if (
            health is not None
            and health.problem is not None
            and consumer is not None
            and consumer.reaches_brokers()
        ):
            health.connected()

    def _partitions_dropped(self, partitions: list[int]) -> None:
        """Revoked or lost: another worker owns these users now, so their cached state is stale."""
        if self._writer is not None:
            self._writer.forget_partitions(partitions)

    def _retry(self, what: str, action: Callable[[], object], *, beat: bool = True) -> bool:
        """Run `action` until it succeeds (True) or the worker stops (False); each failed attempt is
        progress for the liveness unless `beat` is False (a batch's write in trouble)."""
        delay = self.settings.retry_seconds
        while not self.stopping:
            try:
                action()
                return True
            except (redis.RedisError, KafkaException, topics.TopicError, KafkaUnusable,
                    *kinesis_source.UNREACHABLE) as error:  # fmt: skip
                cause = (
                    redis_target.explain(error, self.target) if isinstance(error, redis.RedisError) else None
                )
                _throttled.warning("could not %s (%s); retrying in %.1fs", what,
                                   f"{cause.reason}: {cause.message}" if cause else error, delay)  # fmt: skip
                if beat:
                    self.progress.beat()  # waiting on another part, not stuck: a restart would not help
                self._stopping.wait(delay)
                delay = min(delay * 2, 10.0)
        return False

    def _close_kafka(self) -> None:
        if self._traits is not None:
            self._traits.stop()
            self._traits = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._dead_letters is not None:
            self._dead_letters.close()
            self._dead_letters = None

    def _close(self) -> None:
        self._close_kafka()
        log.info("worker for %s stopped", self.stack)


def _require_topics(client: Mapping[str, Any], kafka: KafkaConfig) -> None:
    wanted = [
        kafka.events_topic,
        kafka.dead_letter_topic,
        *([kafka.traits_topic] if kafka.traits_topic else []),
    ]
    absent = topics.missing(client, wanted)
    if absent:
        raise topics.TopicError(
            "TopicsMissing",
            f"{' and '.join(absent)} missing: the operator creates them (the stack's TopicsReady condition "
            "says why it has not)",
        )
