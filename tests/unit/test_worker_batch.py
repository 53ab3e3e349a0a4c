"""Classifying a batch of messages: what is counted per user, what is late, what goes to dead letters —
with the compiled reader and with its Python reference alike."""

from __future__ import annotations

from typing import Any

import native_marks
import orjson
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, KafkaError, Message
from hypothesis import given, settings
from hypothesis import strategies as st
from tailor_worker import batch, deadletter

from tailor.core import native
from tailor.core.events import lean_check
from tailor.core.rules.ruleset import FeatureConfig, Window

FEATURES = FeatureConfig(
    windows=(Window(name="5m", seconds=300, bucket_seconds=10),),
    dimensions=("category", "query"),
    allowed_lateness_seconds=60,
)
INGESTED = 1_800_000_000.0


def message(value: bytes | None, offset: int = 0, ingested: float = INGESTED, partition: int = 0) -> Message:
    return Message(topic="events", partition=partition, offset=offset, key=b"k", value=value,
                   timestamp=(TIMESTAMP_CREATE_TIME, int(ingested * 1000)))  # fmt: skip


@pytest.fixture(
    params=[pytest.param("on", marks=native_marks.needs_native), "off"], ids=["compiled", "python"]
)
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The reader batch.classify uses, chosen as a worker's is: by TAILOR_NATIVE (tailor.core.native)."""
    monkeypatch.setenv(native.ENV, request.param)
    return str(request.param)


def event(**fields: Any) -> bytes:
    return orjson.dumps({"id": "e1", "type": "page_view", "userId": "alice", "timestamp": INGESTED, **fields})


def test_valid_events_are_grouped_per_user_with_their_dimension_values(implementation: str) -> None:
    messages = [
        message(event(properties={"category": "shoes", "brand": "acme"})),
        message(event(id="e2", type="search", anonymousId="anon", userId=None, properties={"query": "red"})),
        message(event(id="e3", type="click")),
    ]
    classified = batch.classify(messages, FEATURES, now=INGESTED + 5)
    assert classified.events == 3
    assert classified.dead == []
    assert classified.late == 0
    alice = classified.by_user["alice"]
    assert [(o.id, o.counter, o.dimensions) for o in alice] == [
        ("e1", "views", (("category", "shoes"),)),  # brand is not a declared dimension
        ("e3", "clicks", ()),
    ]
    assert classified.by_user["anon"][0].dimensions == (("query", "red"),)


def test_lateness_is_judged_against_the_kafka_timestamp_not_the_worker_clock(implementation: str) -> None:
    on_time = message(event(timestamp=INGESTED - 60))
    too_late = message(event(id="e2", timestamp=INGESTED - 61))
    # Replayed a day later: the same decision as the first time.
    for now in (INGESTED, INGESTED + 86400):
        classified = batch.classify([on_time, too_late], FEATURES, now=now)
        assert [o.id for o in classified.by_user["alice"]] == ["e1"]
        assert classified.late == 1


def test_undecodable_and_invalid_messages_become_dead_letters_with_reasons(implementation: str) -> None:
    classified = batch.classify(
        [message(b"\xff{"), message(None, 1), message(event(type="hover"), 2), message(event(), 3)],
        FEATURES,
        now=INGESTED,
    )
    reasons = [(letter.message.offset(), letter.reason) for letter in classified.dead]
    assert reasons == [(0, deadletter.UNDECODABLE), (1, deadletter.UNDECODABLE), (2, deadletter.INVALID)]
    assert classified.dead[2].errors[0]["field"] == "type"
    assert len(classified.by_user["alice"]) == 1


def test_the_newest_offset_of_each_partition_is_gathered_for_storing(implementation: str) -> None:
    """Every message that is not an error counts as processed — dead letters and late events too."""
    messages = [
        message(event(), offset=7, partition=0),
        message(b"{", offset=3, partition=1),  # a dead letter
        message(event(id="e2", timestamp=INGESTED - 3600), offset=4, partition=1),  # late
        message(event(id="e3"), offset=8, partition=0),
        Message(topic="events", partition=2, offset=99, error=KafkaError(KafkaError._TRANSPORT)),
    ]
    classified = batch.classify(messages, FEATURES, now=INGESTED)
    assert classified.offsets == {0: 8, 1: 4}
    assert (classified.events, classified.late, len(classified.dead)) == (4, 1, 1)
    assert classified.partition_of == {"alice": 0}


def test_a_message_without_a_timestamp_is_judged_at_the_workers_clock(implementation: str) -> None:
    undated = Message(topic="events", partition=0, offset=0, value=event(timestamp=INGESTED - 100),
                      timestamp=(TIMESTAMP_NOT_AVAILABLE, 0))  # fmt: skip
    assert batch.classify([undated], FEATURES, now=INGESTED).late == 1
    assert batch.classify([undated], FEATURES, now=INGESTED - 50).late == 0


def _messages() -> st.SearchStrategy[list[Message]]:
    value = st.one_of(
        st.builds(
            lambda i, kind, user, lag, category, extra: event(
                id=f"e{i}",
                type=kind,
                userId=user,
                timestamp=INGESTED - lag,
                properties={"category": category, **extra},
            ),
            st.integers(0, 50),
            st.sampled_from(["page_view", "click", "search", "hover", "purchase"]),
            st.sampled_from(["alice", "bob", "carol", "", None]),
            st.sampled_from([0, 1.5, 59, 61, 3600, -30]),
            st.one_of(st.sampled_from(["shoes", "hats"]), st.integers(-3, 3), st.floats(0, 2), st.none()),
            st.sampled_from([{}, {"value": "x"}, {"brand": "acme"}, {"query": 1e20}]),
        ),
        st.sampled_from([b"", b"{", b"\xff", b"[]", b"null"]),
        st.none(),
    )
    one = st.builds(
        lambda v, partition, offset, lag: message(v, offset, INGESTED - lag, partition),
        value, st.integers(0, 3), st.integers(0, 1000), st.sampled_from([0, 30]),
    )  # fmt: skip
    return st.lists(one, max_size=30)


@native_marks.needs_native
@settings(max_examples=300, deadline=None)
@given(_messages(), st.sampled_from([0, 60, 3600]))
def test_the_compiled_reader_reads_a_batch_as_its_reference(messages: list[Message], lateness: int) -> None:
    compiled = lean_check.compiled_reader(FEATURES.dimensions).read_batch(messages, INGESTED, lateness)
    reference = lean_check.PythonReader(FEATURES.dimensions).read_batch(messages, INGESTED, lateness)
    assert compiled == reference
    assert list(compiled["by_user"]) == list(reference["by_user"])
    built = [type(o) for occurrences in compiled["by_user"].values() for o in occurrences]
    assert built == [type(o) for occurrences in reference["by_user"].values() for o in occurrences]


def test_what_the_reader_did_not_read_is_decided_by_the_model_after_the_users_other_events(
    implementation: str,
) -> None:
    """A null property is valid, but only the model reads it: it is counted after the user's events
    the lean check read (and judged late the same way); a model-read user new to the batch is added."""
    messages = [
        message(event(id="e1", properties={"category": None})),
        message(event(id="e2"), offset=1),
        message(event(id="e3", userId="bob", properties={"category": None}), offset=2, partition=3),
        message(event(id="e4", timestamp=INGESTED - 61, properties={"category": None}), offset=3),
    ]
    classified = batch.classify(messages, FEATURES, now=INGESTED)
    assert [o.id for o in classified.by_user["alice"]] == ["e2", "e1"]
    assert list(classified.by_user) == ["alice", "bob"]
    assert classified.partition_of == {"alice": 0, "bob": 3}
    assert (classified.events, classified.late, classified.dead) == (4, 1, [])
