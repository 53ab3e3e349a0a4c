"""POST /v1/events: validate a browser's events and hand them to Kafka, answering only once Kafka has them.

One event, or `{"events": [...]}`. Each event is validated on its own (tailor.core.events): the valid
ones are produced to the stack's events topic as CloudEvents in binary mode (`ce_*` headers, the
event JSON as value), keyed by the user so one user's events stay in order on one partition; the
invalid ones are reported by index with per-field errors. The answer:

- 202 `{"accepted", "rejected", "notCounted"}` once the broker acknowledged every accepted event
  (acks=all); `notCounted` lists, by index, accepted events that no window can hold any more (stamped
  further back than the stack's allowed lateness): they are on the topic for other consumers, but the
  workers will not count them, and a client must not send them again;
- 400 when no event is valid (nothing was produced); 413 over the byte or count limit;
- 503 with Retry-After when Kafka did not acknowledge them all. Some may have been written: the
  client resends the whole batch and the workers' dedup by event id makes that safe.

The app (tailor_api.app) owns routing, CORS and security headers; it calls `start`, `reconfigure`
and `close` from its lifespan and ruleset follower, and `handle` for each request. Bodies, problems
and Retry-After are tailor_api.web's, as on every other route.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from prometheus_client import Counter
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tailor.core import constants, durations, events, kafkaclient, kinesis, topics
from tailor.core.rules.ruleset import StackConfig
from tailor_api import identity, kinesis_producer, producer, web

log = logging.getLogger(__name__)

CLOUDEVENTS_TYPE_PREFIX: Final = "dev.tailor.event."

RECEIVED = Counter("tailor_events_received", "Events received by the collector.", ["outcome"])
PRODUCED = Counter("tailor_events_produced", "Events acknowledged by Kafka.", ["topic"])
NOT_COUNTED = Counter(
    "tailor_events_not_counted",
    "Events accepted to the topic that the workers will not count, by reason (late: older than the"
    " stack's allowed lateness when received).",
    ["reason"],
)
UNAVAILABLE = Counter(
    "tailor_collector_unavailable", "Requests answered 503 because Kafka did not acknowledge."
)
_ACCEPTED = RECEIVED.labels("accepted")
_REJECTED = RECEIVED.labels("rejected")
_LATE = NOT_COUNTED.labels("late")


class CollectorSettings(BaseSettings):
    """Tuning from the environment (`TAILOR_COLLECTOR_*`); everything else comes from the ruleset."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_COLLECTOR_", extra="ignore")

    # How long Kafka may take to acknowledge before the request gets a 503.
    delivery_timeout_seconds: float = 5.0
    # How long librdkafka waits to fill a produce request: throughput against latency.
    linger_ms: float = 2.0
    # Who serves delivery reports: a poll thread, or the event loop (bench/collector.py compares).
    delivery_mode: Literal["thread", "loop"] = "thread"
    # How long the start-up check of the stack's topics waits for unreachable brokers.
    topic_check_seconds: float = 15.0
    # Where the Secret keys of the stack's Kafka security are (the operator mounts them there).
    kafka_secrets_dir: Path = Field(
        default=Path(constants.KAFKA_SECRETS_DIR),
        validation_alias=AliasChoices(constants.ENV_KAFKA_SECRETS_DIR, "TAILOR_COLLECTOR_KAFKA_SECRETS_DIR"),
    )


class Collector:
    def __init__(
        self,
        settings: CollectorSettings | None = None,
        *,
        producer_extra: dict[str, str | int | float | bool] | None = None,
        **overrides: Any,
    ) -> None:
        settings = settings or CollectorSettings()
        self.settings = settings.model_copy(update=overrides) if overrides else settings
        self.producer_extra = producer_extra
        self.config: StackConfig | None = None
        self.kafka_health: kafkaclient.Health | None = None
        self._producer: producer.AsyncProducer | kinesis_producer.KinesisProducer | None = None
        self._source = b""
        # TAILOR_EVENTS_SOURCE=kinesis: events go to a Kinesis data stream instead (docs/kinesis.md).
        self.kinesis = kinesis.KinesisSettings()

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self, config: StackConfig) -> None:
        await self._use(config)

    async def reconfigure(self, config: StackConfig) -> None:
        """Limits apply at once; new Kafka settings get a new producer (the old one drains first)."""
        await self._use(config)

    @property
    def kinesis_stream(self) -> str:
        return self.kinesis.stream if self.kinesis.enabled else ""

    def kinesis_state(self) -> tuple[bool, str, str] | None:
        """The Kinesis stream's state (KinesisProducer.stream_state), None unless it is the source and
        the producer runs. Blocks on a call to AWS: run it on a thread."""
        if isinstance(self._producer, kinesis_producer.KinesisProducer):
            return self._producer.stream_state()
        return None

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.close()
            self._producer = None

    async def _use(self, config: StackConfig) -> None:
        previous, old = self.config, None
        if self.kinesis.enabled:
            if self._producer is None:
                self._producer = kinesis_producer.KinesisProducer(
                    self.kinesis, delivery_timeout_seconds=self.settings.delivery_timeout_seconds
                )
        elif previous is None or previous.kafka != config.kafka or self._producer is None:
            old, self._producer = self._producer, await self._connect(config)
        self.config = config
        self._source = f"/tailor/{config.namespace}/{config.name}".encode()
        if old is not None:
            await old.close()

    async def _connect(self, config: StackConfig) -> producer.AsyncProducer:
        """A producer for the stack's Kafka, its topics made if missing. A Secret key that is not
        mounted raises before anything changes: the runtime logs it and the previous settings stay."""
        kafka = config.kafka
        health = kafkaclient.Health(kafka, "the event collector")
        client = {**kafkaclient.client_config(kafka, self.settings.kafka_secrets_dir), **health.callbacks()}
        self.kafka_health = health
        # The operator makes the topic (docs/topics.md); until it exists, events get 503s.
        try:
            absent = await asyncio.to_thread(
                topics.missing,
                client,
                [kafka.events_topic],
                timeout=self.settings.topic_check_seconds,
            )
        except topics.TopicError as error:  # Kafka away at start: requests get 503s until it is back
            log.warning("could not check the topics of %s: %s", config.key, error)
        else:
            if absent:
                log.warning(
                    "topic %s of %s does not exist (yet): events get 503 until the operator makes it "
                    "(the stack's TopicsReady condition says why it has not)",
                    kafka.events_topic,
                    config.key,
                )
        return producer.AsyncProducer(
            client,
            delivery_timeout_seconds=self.settings.delivery_timeout_seconds,
            linger_ms=self.settings.linger_ms,
            mode=self.settings.delivery_mode,
            extra=self.producer_extra,
        )

    # -- requests ----------------------------------------------------------------------------------

    async def handle(
        self, scope: web.Scope, receive: web.Receive, who: identity.Identity | None = None
    ) -> web.Reply:
        """`who`: the user and session a verified identity token vouches for; every event must be
        theirs (userId and sessionId left out are taken from it)."""
        config = self.config
        if config is None or self._producer is None:
            return _not_configured()
        limits = config.api
        try:
            body = await web.read_body(scope, receive, limits.max_body_bytes)
        except web.BodyRefused as error:
            return error.reply()
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return web.problem(400, "invalid-json", "Body is not JSON", str(error))
        outcome = await self.accept(document, who)
        return outcome if isinstance(outcome, web.Reply) else web.json_reply(202, outcome)

    async def accept(self, document: Any, who: identity.Identity | None = None) -> dict[str, Any] | web.Reply:
        """One event or `{"events": [...]}`, parsed: `{"accepted", "rejected", "notCounted"}` once Kafka
        acknowledged the valid ones, else the problem reply. Shared by REST and GraphQL."""
        config, kafka = self.config, self._producer
        if config is None or kafka is None:
            return _not_configured()
        limits = config.api
        if isinstance(document, dict) and "events" in document:
            items = document["events"]
            if not isinstance(items, list) or len(document) != 1:
                detail = 'send one event, or {"events": [...]} with nothing else beside "events"'
                return web.problem(400, "invalid-batch", "Invalid batch", detail)
            if not items:
                detail = '"events" is empty: send at least one'
                return web.problem(400, "invalid-batch", "Invalid batch", detail)
        elif isinstance(document, dict):
            items = [document]
        else:
            detail = 'send one event object, or {"events": [...]}'
            return web.problem(400, "invalid-batch", "Invalid batch", detail)
        if len(items) > limits.max_batch_events:
            detail = f"the batch has {len(items)} events; at most {limits.max_batch_events} are accepted"
            return web.too_large(detail)

        if who is not None:
            try:
                claim_events(items, who)
            except identity.IdentityError as error:
                return identity.refusal(error)
        received_at = time.time()
        outgoing, rejected, late = self._prepare(items, received_at, config)
        if rejected:
            _REJECTED.inc(len(rejected))
        if not outgoing:
            detail = f"none of the {len(items)} events is valid; see rejected"
            return web.problem(400, "invalid-events", "No valid event", detail, accepted=0, rejected=rejected)
        topic = config.kafka.events_topic
        try:
            # Stamped with the moment judged here: the workers judge lateness against it alike.
            await kafka.send_all(topic, outgoing, timestamp_ms=int(received_at * 1000))
        except producer.Unavailable as error:
            UNAVAILABLE.inc()
            log.warning("events not acknowledged by Kafka: %s", error)
            # The reason stays in the log: librdkafka's texts can name brokers, which clients must not see.
            detail = (
                "Kafka did not acknowledge the events (the reason is in the collector's log), so none of "
                "them is accepted: send the whole batch again after Retry-After"
            )
            return web.problem(503, "kafka-unavailable", "Events not stored", detail)
        _ACCEPTED.inc(len(outgoing))
        PRODUCED.labels(topic).inc(len(outgoing))
        if late:
            _LATE.inc(len(late))
        return {"accepted": len(outgoing), "rejected": rejected, "notCounted": late}

    def _prepare(
        self, items: list[Any], received_at: float, config: StackConfig
    ) -> tuple[list[producer.Outgoing], list[dict[str, Any]], list[dict[str, Any]]]:
        # One validation call for the whole batch; per-event errors only when some are invalid.
        parsed, problems = events.validate_batch(items)
        rejected = [{"index": index, "errors": errors} for index, errors in sorted(problems.items())]
        outgoing: list[producer.Outgoing] = []
        late: list[dict[str, Any]] = []
        received_text: str | None = None
        source = self._source
        # The worker's rule (tailor_worker.batch): an event counts at its own time, never later than
        # its receipt, unless it is more than the allowed lateness behind that receipt.
        oldest = received_at - config.features.allowed_lateness_seconds
        for index, item in enumerate(items):
            if index in problems:
                continue
            event = parsed[index] if parsed is not None else events.Event.model_validate(item)
            at = event.epoch_seconds(received_at)
            if at < oldest:
                message = _late_message(received_at - at, config)
                late.append({"index": index, "id": event.id, "reason": "late", "message": message})
            # Valid, so these fields are present and well-typed: read them from the plain dict.
            when = item.get("timestamp")
            if not isinstance(when, str) or "T" not in when:
                if when is None:
                    # Stamped once, here: a replay of the Kafka message counts it at the same time.
                    received_text = received_text or events.to_wire_timestamp(
                        datetime.fromtimestamp(received_at, UTC)
                    )
                    item["timestamp"] = when = received_text
                else:  # Unix seconds: CloudEvents wants RFC 3339 in ce_time
                    when = datetime.fromtimestamp(float(when), UTC).isoformat()
            headers: producer.Headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", item["id"]),
                ("ce_source", source),
                ("ce_type", CLOUDEVENTS_TYPE_PREFIX + item["type"]),
                ("ce_time", when),
                ("ce_dataschema", events.SCHEMA_ID),
                ("content-type", b"application/json"),
            ]
            user = item.get("userId") or item["anonymousId"]
            outgoing.append((user.encode(), orjson.dumps(item), headers))
        return outgoing, rejected, late


def _not_configured() -> web.Reply:
    detail = "no stack configuration yet"
    return web.problem(503, "collector-unavailable", "Collector unavailable", detail)


def claim_events(items: list[Any], who: identity.Identity) -> None:
    """Each event's userId and sessionId: the token's, or IdentityError when one says otherwise."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # refused by validation, with the others' errors
        for field, claimed, claim in (("userId", who.user, "sub"), ("sessionId", who.session, "sid")):
            given = item.get(field)
            if given is not None and given != claimed:
                raise identity.IdentityError(
                    "mismatch",
                    f"event {index}: `{field}` is {str(given)[:128]!r} but the identity token's "
                    f"`{claim}` is {claimed!r}",
                )
            if claimed:
                item[field] = claimed


def _late_message(age: float, config: StackConfig) -> str:
    features = config.features
    limit = features.allowed_lateness_seconds
    why = "the largest window" if limit >= features.horizon_seconds else "the stack's allowedLateness"
    return (
        f"stamped {durations.format_seconds(int(age))} before it was received; events more than "
        f"{durations.format_seconds(limit)} old ({why}) are kept on the topic but not counted"
    )
