"""Sorting a batch of messages: what is counted per user, what is late, what goes to dead letters."""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from tailor_worker import batch, deadletter

from tailor.core.ruleset import FeatureConfig, Window

FEATURES = FeatureConfig(
    windows=(Window(name="5m", seconds=300, bucket_seconds=10),),
    dimensions=("category", "query"),
    allowed_lateness_seconds=60,
)
INGESTED = 1_800_000_000.0


def message(value: bytes | None, offset: int = 0, ingested: float = INGESTED) -> Message:
    return Message(topic="events", partition=0, offset=offset, key=b"k", value=value,
                   timestamp=(TIMESTAMP_CREATE_TIME, int(ingested * 1000)))  # fmt: skip


def event(**fields: Any) -> bytes:
    return orjson.dumps({"id": "e1", "type": "page_view", "userId": "alice", "timestamp": INGESTED, **fields})


def test_valid_events_are_grouped_per_user_with_their_dimension_values() -> None:
    messages = [
        message(event(properties={"category": "shoes", "brand": "acme"})),
        message(event(id="e2", type="search", anonymousId="anon", userId=None, properties={"query": "red"})),
        message(event(id="e3", type="click")),
    ]
    sorted_ = batch.sort(messages, FEATURES, now=INGESTED + 5)
    assert sorted_.events == 3
    assert sorted_.dead == []
    assert sorted_.late == 0
    alice = sorted_.by_user["alice"]
    assert [(o.id, o.counter, o.dimensions) for o in alice] == [
        ("e1", "views", (("category", "shoes"),)),  # brand is not a declared dimension
        ("e3", "clicks", ()),
    ]
    assert sorted_.by_user["anon"][0].dimensions == (("query", "red"),)


def test_lateness_is_judged_against_the_kafka_timestamp_not_the_worker_clock() -> None:
    on_time = message(event(timestamp=INGESTED - 60))
    too_late = message(event(id="e2", timestamp=INGESTED - 61))
    # Replayed a day later: the same decision as the first time.
    for now in (INGESTED, INGESTED + 86400):
        sorted_ = batch.sort([on_time, too_late], FEATURES, now=now)
        assert [o.id for o in sorted_.by_user["alice"]] == ["e1"]
        assert sorted_.late == 1


def test_undecodable_and_invalid_messages_become_dead_letters_with_reasons() -> None:
    sorted_ = batch.sort(
        [message(b"\xff{"), message(None, 1), message(event(type="hover"), 2), message(event(), 3)],
        FEATURES,
        now=INGESTED,
    )
    reasons = [(letter.message.offset(), letter.reason) for letter in sorted_.dead]
    assert reasons == [(0, deadletter.UNDECODABLE), (1, deadletter.UNDECODABLE), (2, deadletter.INVALID)]
    assert sorted_.dead[2].errors[0]["field"] == "type"
    assert len(sorted_.by_user["alice"]) == 1
