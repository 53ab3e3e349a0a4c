"""Event schema v1: what is accepted, what is refused and how the refusal reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tailor_api import validation

from tailor.core import events
from tailor.core.events.schema import MAX_PROPERTIES


def event(**fields: Any) -> dict[str, Any]:
    return {"id": "e-1", "type": "page_view", "userId": "u-1", **fields}


def errors(data: Any) -> dict[str, str]:
    parsed, problems = events.validate(data)
    assert parsed is None
    return {problem["field"]: problem["message"] for problem in problems}


def test_a_full_event_is_accepted_and_exposes_what_workers_count() -> None:
    parsed, problems = events.validate(
        event(
            sessionId="s-1",
            timestamp="2026-11-29T10:00:00.250Z",
            page={"url": "https://shop.example/p/1", "referrer": "https://shop.example/", "title": "Shoes"},
            properties={"category": "shoes", "productId": 1234, "value": 59.5, "brand": "acme", "size": 42.0},
            context={"device": "mobile", "locale": "en-US", "userAgent": "Mozilla/5.0"},
        )
    )
    assert problems == []
    assert parsed is not None
    assert parsed.user == "u-1"
    assert parsed.epoch_seconds(0.0) == 1795946400.25
    assert parsed.properties.get("productId") == "1234"  # numeric ids count as their text
    assert parsed.properties.get("brand") == "acme"
    assert parsed.properties.get("size") == "42"
    assert parsed.properties.get("value") == "59.5"
    assert parsed.properties.get("missing") is None


def test_anonymous_events_are_kept_under_the_anonymous_id() -> None:
    parsed, _ = events.validate({"id": "e", "type": "click", "anonymousId": "anon-9"})
    assert parsed is not None
    assert parsed.user == "anon-9"
    assert parsed.epoch_seconds(123.0) == 123.0  # no timestamp: the caller's default


def test_an_event_without_any_identity_names_the_field_to_add() -> None:
    assert errors({"id": "e", "type": "click"}) == {"userId": "either userId or anonymousId is required"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (event(type="hover"), "type"),
        (event(id=""), "id"),
        (event(id="has space"), "id"),
        (event(id="x" * 129), "id"),
        (event(userId="u" * 129), "userId"),
        # One grammar with the API's `user` and `session` (tailor.core.constants.ID_PATTERN).
        (event(id="e-1\n"), "id"),
        (event(id="{e-1}"), "id"),
        (event(id="a/b#c"), "id"),
        (event(userId="alice\n"), "userId"),
        (event(userId="{alice}"), "userId"),
        (event(anonymousId="a/b"), "anonymousId"),
        (event(sessionId="s#1"), "sessionId"),
        (event(sessionId="-s"), "sessionId"),
        (event(timestamp="2026-11-29T10:00:00"), "timestamp"),  # no zone: ambiguous
        (event(timestamp=True), "timestamp"),
        (event(page={"url": "u" * 2049}), "page.url"),
        (event(page={"url": "/", "bogus": 1}), "page.bogus"),
        (event(properties={"value": "12"}), "properties.value"),
        (event(properties={"query": "q" * 513}), "properties.query"),
        (event(properties={"flag": True}), "properties.flag"),
        (event(properties={"nested": {"a": 1}}), "properties.nested"),
        (event(properties={"long": "v" * 257}), "properties.long"),
        (event(properties={"bad name": "v"}), "properties"),
        (event(properties={"brand\n": "v"}), "properties"),
        (event(properties={f"p{i}": i for i in range(33)}), "properties"),
        (event(context={"device": "d" * 65}), "context.device"),
        (event(extra=1), "extra"),
        ([1, 2], "(event)"),
    ],
)
def test_each_violation_is_reported_on_its_own_field(data: Any, field: str) -> None:
    assert field in errors(data)


def test_every_problem_of_an_event_is_reported_at_once() -> None:
    found = errors({"id": "a b", "type": "nope", "userId": "u", "page": {"url": "/", "x": 1}})
    assert set(found) == {"id", "type", "page.x"}


def test_json_and_python_validation_agree() -> None:
    data = event(properties={"productId": 7, "brand": "acme"}, timestamp=1700000000)
    from_json, _ = events.validate_json(orjson.dumps(data))
    from_python, _ = events.validate(data)
    assert from_json == from_python


def test_undecodable_json_is_an_error_not_an_exception() -> None:
    parsed, problems = events.validate_json(b"\xff{not json")
    assert parsed is None
    assert problems


def test_a_number_too_long_for_a_float_is_an_error_not_an_exception() -> None:
    """JSON allows integers of any length; one that overflows a float used to escape the validator as
    an OverflowError (a worker would have crashed on that message over and over)."""
    huge = "1" * 400
    for name, message in (("value", "must be a finite number"),
                          ("brand", "a property must be a string or a finite number")):  # fmt: skip
        raw = f'{{"id": "e", "type": "click", "userId": "u", "properties": {{"{name}": {huge}}}}}'
        assert events.validate_json(raw) == (None, [{"field": f"properties.{name}", "message": message}])
    event, errors = events.validate_json(
        '{"id": "e", "type": "click", "userId": "u", "properties": {"n": 1e300}}'
    )
    assert event is not None
    assert not errors


def test_the_committed_json_schema_is_current() -> None:
    """Regenerate with `python -m tailor.core.events` after changing the models."""
    assert events.SCHEMA_PATH.read_bytes() == events.json_schema_text(), (
        "schemas/event-v1.json is stale: run `python -m tailor.core.events`"
    )


def test_the_json_schema_states_the_limits() -> None:
    schema = events.json_schema()
    properties = schema["$defs"]["Properties"]
    assert properties["maxProperties"] == MAX_PROPERTIES
    assert schema["anyOf"] == [
        {"required": ["userId"], "properties": {"userId": {"type": "string"}}},
        {"required": ["anonymousId"], "properties": {"anonymousId": {"type": "string"}}},
    ]
    assert schema["properties"]["type"]["enum"] == list(events.EVENT_TYPES)
    assert schema["additionalProperties"] is False


def test_a_batch_is_validated_at_once_and_errors_are_grouped_by_index() -> None:
    good = event()
    parsed, problems = events.validate_batch([good, good])
    assert parsed is not None
    assert [e.id for e in parsed] == ["e-1", "e-1"]
    assert problems == {}

    parsed, problems = events.validate_batch([good, {"id": "a b", "type": "x"}, good, "text", event(id="")])
    assert parsed is None
    assert sorted(problems) == [1, 3, 4]
    assert {p["field"] for p in problems[1]} == {"id", "type", "userId"}
    assert problems[3] == [
        {"field": "(event)", "message": "Input should be a valid dictionary or instance of Event"}
    ]
    assert [p["field"] for p in problems[4]] == ["id"]


def test_snake_case_names_are_not_part_of_the_wire_format() -> None:
    assert errors({"id": "e", "type": "click", "user_id": "u"}) == {
        "user_id": "Extra inputs are not permitted",
        "userId": "either userId or anonymousId is required",
    }


@given(st.text(st.characters(min_codepoint=9, max_codepoint=127), min_size=0, max_size=130))
@settings(max_examples=400, deadline=None)
def test_the_collector_takes_exactly_the_ids_the_api_decides_on(candidate: str) -> None:
    """A profile is written for an event's user only if /v1/decide accepts that user: no profiles that
    can never be decided on, and no id the API takes that the collector refuses."""
    try:
        validation.user(candidate)
        decidable = True
    except validation.InvalidParameter:
        decidable = False
    for field in ("userId", "anonymousId", "sessionId", "id"):
        data = event(**{field: candidate})
        parsed, _ = events.validate(data)
        assert (parsed is not None) is decidable, (field, candidate)
        from_json, _ = events.validate_json(orjson.dumps(data))
        assert (from_json is not None) is decidable, (field, candidate)
