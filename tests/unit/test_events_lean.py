"""The workers' lean event check accepts only what the event model accepts, and counts it the same.

Generated events mix valid values with every kind of wrong one (lengths at and past each limit,
patterns, types, nulls, huge and non-finite numbers, naive and millisecond timestamps, unknown
fields, too many properties). Whenever the lean check accepts, the model must accept too and give
the same Occurrence; when it refuses, the worker asks the model, so acceptance is the model's.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.core import events, events_lean, profile_store

INGESTED = 1_800_000_000.0
DIMENSIONS = ("category", "productId", "query", "value", "brand", "product_id")
ABSENT = object()


def texts(*lengths: int) -> st.SearchStrategy[str]:
    return st.sampled_from(lengths).flatmap(
        lambda n: st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=n, max_size=n)
    )


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid nine times in ten, so that whole events are often valid and often wrong in one place."""
    return st.integers(0, 9).flatmap(lambda n: invalid if n == 0 else valid)


identifiers = mostly(
    st.one_of(texts(1, 8, 128), st.none()),
    st.one_of(texts(129, 0), st.sampled_from(["with space", "tab\there", "ünïcode", "a\u0000b"]),
              st.integers(-5, 5)),
)  # fmt: skip
numbers = st.one_of(
    st.integers(-(10**6), 10**6), st.sampled_from([0, 10**15 - 1, 10**15, 10**20, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1.0, -2.0, 1.5, 1e300, 2.5e-3]),
)  # fmt: skip
property_values = mostly(
    st.one_of(texts(1, 12, 256), st.integers(-(10**6), 10**6), st.sampled_from([1.0, -2.0, 1.5, 2.5e-3])),
    st.one_of(texts(0, 257, 512, 513), numbers, st.booleans(), st.none(), st.just([1]), st.just({"a": 1})),
)
property_names = mostly(
    st.sampled_from(["category", "productId", "query", "value", "brand", "product_id", "a.b-c_d"]),
    st.sampled_from(["1abc", "_x", "has space", "x" * 64, "x" * 65, ""]),
)
properties = mostly(
    st.dictionaries(property_names, property_values, max_size=6),
    st.one_of(
        st.dictionaries(
            st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=3, max_size=5),
            st.sampled_from(["v", 7]),
            min_size=30,
            max_size=34,
        ),
        st.none(),
        st.just("not a map"),
    ),
)
timestamps = mostly(
    st.one_of(st.floats(1e9, 2e9), st.integers(0, 2 * 10**9),
              st.sampled_from(["2026-11-29T10:00:00Z", "2026-11-29T10:00:00.123+02:00"]), st.none()),
    st.one_of(st.sampled_from([1.7e12, 1_700_000_000_123, -5, 3e10, "2026-11-29T10:00:00", "yesterday", "",
                               "2026-13-01T00:00:00Z"]), st.booleans()),
)  # fmt: skip
pages = mostly(
    st.fixed_dictionaries(
        {"url": texts(0, 20, 2048)},
        optional={"referrer": st.one_of(texts(5), st.none()), "title": st.one_of(texts(5, 256), st.none())},
    ),
    st.one_of(
        st.fixed_dictionaries({"url": texts(2049)}, optional={"title": texts(257), "extra": st.just(1)}),
        st.just({}),
        st.just([]),
    ),
)
good_context = {"device": texts(3), "locale": texts(5), "userAgent": texts(10)}
bad_context = {"device": texts(65), "locale": texts(36), "userAgent": texts(513), "user_agent": st.just("x")}
contexts = mostly(
    st.one_of(st.fixed_dictionaries({}, optional=good_context), st.none()),
    st.fixed_dictionaries({}, optional=bad_context),
)


@st.composite
def raw_events(draw: st.DrawFn) -> bytes:
    fields: dict[str, Any] = {
        "id": draw(mostly(texts(32), identifiers)),
        "type": draw(mostly(st.sampled_from(events.EVENT_TYPES), st.sampled_from(["hover", None, 3]))),
    }
    for name, strategy in (
        ("userId", identifiers), ("anonymousId", identifiers), ("sessionId", identifiers),
        ("timestamp", timestamps), ("page", pages), ("properties", properties), ("context", contexts),
    ):  # fmt: skip
        value = draw(st.one_of(st.just(ABSENT), strategy))
        if value is not ABSENT:
            fields[name] = value
    if draw(st.integers(0, 20)) == 0:
        fields["unknown"] = 1
    if "userId" not in fields and "anonymousId" not in fields and draw(st.integers(0, 9)) > 0:
        fields["userId"] = "u1"
    # The standard library writes what orjson cannot: huge integers, Infinity and NaN.
    return json.dumps(fields).encode()


def by_the_model(raw: bytes) -> profile_store.Occurrence | None:
    event, errors = events.validate_json(raw)
    if event is None:
        assert errors
        return None
    return profile_store.occurrence(event, INGESTED, DIMENSIONS)


@settings(max_examples=3000, deadline=None)
@given(raw_events())
def test_whatever_the_lean_check_accepts_the_model_accepts_and_counts_alike(raw: bytes) -> None:
    lean = events_lean.occurrence(raw, INGESTED, DIMENSIONS)
    if lean is not None:
        assert by_the_model(raw) == lean


def test_ordinary_events_take_the_fast_path() -> None:
    ordinary = [
        {"id": "e1", "type": "page_view", "userId": "u", "sessionId": "s", "timestamp": 1_799_999_990.25,
         "page": {"url": "https://shop.example/p/1", "referrer": None, "title": "P"},
         "properties": {"category": "shoes", "productId": 12345, "price": 9.5, "value": 3.0},
         "context": {"device": "mobile", "locale": "en-US", "userAgent": "Mozilla/5.0"}},
        {"id": "e2", "type": "search", "anonymousId": "a", "timestamp": "2027-01-15T08:00:00.5+01:00",
         "properties": {"query": "red shoes", "brand": "acme", "product_id": 7}},
        {"id": "e3", "type": "custom", "userId": "u", "timestamp": INGESTED + 3600},  # clock ahead: capped
    ]  # fmt: skip
    for fields in ordinary:
        raw = json.dumps(fields).encode()
        lean = events_lean.occurrence(raw, INGESTED, DIMENSIONS)
        assert lean is not None, fields
        assert lean == by_the_model(raw)
    productid = events_lean.occurrence(json.dumps(ordinary[0]).encode(), INGESTED, DIMENSIONS)
    assert productid is not None
    assert dict(productid.dimensions) == {"category": "shoes", "productId": "12345", "value": "3"}


def test_what_the_lean_check_refuses_gets_the_models_verdict_and_message() -> None:
    for fields in (
        {"id": "e1", "type": "click"},  # no identity
        {"id": "e1", "type": "click", "userId": "u", "properties": {"category": None}},  # valid: null
        {"id": "e1", "type": "click", "userId": "u", "properties": {"category": 1.5}},  # valid: coerced
        {"id": "e1", "type": "click", "userId": "u", "properties": {"query": "q" * 400}},  # valid: ≤ 512
        {"id": "e1", "type": "click", "userId": "u", "properties": {"value": "3"}},  # invalid
    ):
        raw = json.dumps(fields).encode()
        assert events_lean.occurrence(raw, INGESTED, DIMENSIONS) is None
    assert (
        by_the_model(b'{"id": "e1", "type": "click", "userId": "u", "properties": {"category": 1.5}}')
        is not None
    )
    assert events.validate_json(b'{"id": "e1", "type": "click"}')[1] == [
        {"field": "userId", "message": "either userId or anonymousId is required"}
    ]
