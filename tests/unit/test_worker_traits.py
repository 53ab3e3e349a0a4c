"""The workers' traits topic, offline: what a batch of traits CloudEvents becomes (writes, dead
letters with their reasons, offsets) — tailor_worker.traits.classify."""

from __future__ import annotations

import json

from confluent_kafka import Message
from tailor_worker import deadletter, traits

from tailor.core.profile import traits as profile_traits
from tailor.core.rules import ruleset

NOW = 1_800_000_000.0
DECLARED = profile_traits.declared(
    (ruleset.Trait(name="churnRisk", type="number", ttl_seconds=60, minimum=0, maximum=1),)
)


def message(offset: int, value: bytes | None) -> Message:
    return Message(topic="traits", partition=0, offset=offset, key=b"u1", value=value)


def event(**data: object) -> bytes:
    return json.dumps({
        "specversion": "1.0", "type": "dev.tailor.traits.v1", "source": "//tests", "id": "e1",
        "time": "2027-01-15T08:00:00Z", "data": {"userId": "u1", **data},
    }).encode()  # fmt: skip


def test_a_batch_becomes_writes_timed_by_the_event_and_dead_letters_with_reasons() -> None:
    batch = traits.classify(
        [
            message(1, event(traits={"churnRisk": 0.4})),
            message(2, event(traits={"churnRisk": 2})),
            message(3, event(traits={"ltv": 1})),
            message(4, b"{not json"),
            message(5, event(traits={})),
            message(6, None),
        ],
        "shop/main",
        DECLARED,
        NOW,
    )
    assert len(batch.commands) == 1
    written = json.loads(batch.commands[0][6])  # EVALSHA sha 1 key now name doc at
    assert written["v"] == 0.4
    assert written["t"] == 1_800_000_000.0  # 2027-01-15T08:00:00Z
    reasons = [(letter.message.offset(), letter.reason, letter.errors) for letter in batch.dead]
    assert reasons[0] == (2, traits.INVALID_TRAIT, [
        {"field": "data.traits.churnRisk", "message": "number trait 2.0 is above the maximum 1"}
    ])  # fmt: skip
    assert reasons[1][:2] == (3, traits.INVALID_TRAIT)
    assert "not a declared trait" in reasons[1][2][0]["message"]
    assert reasons[2][:2] == (4, deadletter.UNDECODABLE)
    assert reasons[3][:2] == (5, deadletter.INVALID)
    assert reasons[3][2][0]["field"].startswith("data.traits")
    assert reasons[4][:2] == (6, deadletter.UNDECODABLE)
    assert batch.offsets == {0: 6}
