"""The workers' lean event check accepts only what the event model accepts, and counts it the same.

Generated events mix valid values with every kind of wrong one (lengths at and past each limit,
patterns, types, nulls, huge and non-finite numbers, naive and millisecond timestamps, unknown
fields, too many properties). Whenever the lean check accepts, the model must accept too and give
the same Occurrence; when it refuses, the worker asks the model, so acceptance is the model's.

Both implementations are held to that: the Python reference and the compiled one (tailor_native),
which must also answer as the Python one does wherever it answers at all.
"""

from __future__ import annotations

import json
import math
import random
import string
from datetime import datetime
from typing import Any

import native_marks
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.core import events, native
from tailor.core.events import lean_check, occurrence, schema

INGESTED = 1_800_000_000.0
DIMENSIONS = ("category", "productId", "query", "value", "brand", "product_id")
ABSENT = object()
READERS: dict[str, lean_check.Reader | None] = {
    "python": lean_check.PythonReader(DIMENSIONS),
    "native": lean_check.compiled_reader(DIMENSIONS) if native.BUILT else None,
}
both_readers = pytest.mark.parametrize("implementation", READERS)


def read(
    implementation: str, raw: bytes, reader: lean_check.Reader | None = None
) -> occurrence.Occurrence | None:
    """What the reader counts of one message received at INGESTED (never late), or None: left unread."""
    reader = reader or READERS[implementation]
    if reader is None:
        pytest.skip(native_marks.MISSING)
    message = Message(topic="events", partition=0, offset=0, value=raw,
                      timestamp=(TIMESTAMP_CREATE_TIME, int(INGESTED * 1000)))  # fmt: skip
    batch = reader.read_batch([message], INGESTED, math.inf)
    if batch["unread"]:
        assert batch["unread"] == [0]
        assert not batch["by_user"]
        return None
    ((only,),) = batch["by_user"].values()
    return only


def texts(*lengths: int) -> st.SearchStrategy[str]:
    return st.sampled_from(lengths).flatmap(
        lambda n: st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=n, max_size=n)
    )


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid nine times in ten, so that whole events are often valid and often wrong in one place."""
    return st.integers(0, 9).flatmap(lambda n: invalid if n == 0 else valid)


ID_FIRST = st.characters(categories=(), include_characters=string.ascii_letters + string.digits)
ID_REST = st.characters(categories=(), include_characters=string.ascii_letters + string.digits + "._:@+-")


def ids(*lengths: int) -> st.SearchStrategy[str]:
    """Ids of the one grammar (tailor.core.constants.ID_PATTERN), of these lengths."""
    return st.sampled_from(lengths).flatmap(
        lambda n: st.tuples(ID_FIRST, st.text(ID_REST, min_size=n - 1, max_size=n - 1)).map("".join)
    )


identifiers = mostly(
    st.one_of(ids(1, 8, 128), st.none()),
    st.one_of(ids(129), texts(0, 1, 8), st.integers(-5, 5),
              st.sampled_from(["with space", "tab\there", "ünïcode", "a\u0000b", "alice\n", "{tag}", "a/b",
                               "a#b", "-lead", ".x"])),
)  # fmt: skip
numbers = st.one_of(
    st.integers(-(10**6), 10**6), st.sampled_from([0, 10**15 - 1, 10**15, 10**20, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1.0, -2.0, 1.5, 1e300, 2.5e-3]),
)  # fmt: skip
# Lengths count code points: 256 of these are 512 or 1024 bytes of UTF-8, or 12 bytes per escape.
wide_texts = st.sampled_from(["é", "😀", "a\u00e9", '\n"\\/']).flatmap(
    lambda unit: st.sampled_from([256, 257]).map(lambda n: (unit * n)[:n])
)
property_values = mostly(
    st.one_of(texts(1, 12, 256), st.integers(-(10**6), 10**6), st.sampled_from([1.0, -2.0, 1.5, 2.5e-3]),
              wide_texts),
    st.one_of(texts(0, 257, 512, 513), numbers, st.booleans(), st.none(), st.just([1]), st.just({"a": 1})),
)  # fmt: skip
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


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """Mostly the plain form, with its fields now and then just past their ranges."""
    year = draw(st.sampled_from([1, 1969, 2024, 2026, 2255, 2300, 9999]))
    month, day = draw(st.integers(1, 13)), draw(st.integers(1, 31))
    hour, minute, second = draw(st.integers(0, 24)), draw(st.integers(0, 59)), draw(st.integers(0, 60))
    fraction = draw(st.sampled_from(["", ".5", ".123", ".000001", ".999999", ".1234567"]))
    zone = draw(st.sampled_from(["Z", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "+24:00", "+0200"]))
    separator = draw(st.sampled_from("TTTT t"))
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


timestamps = mostly(
    st.one_of(st.floats(1e9, 2e9), st.integers(0, 2 * 10**9), rfc3339_texts(),
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
        "id": draw(mostly(ids(32), identifiers)),
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
    # The standard library writes what orjson cannot: huge integers, Infinity and NaN; and escapes
    # all non-ASCII text, or none of it.
    text = json.dumps(fields, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from(SEPARATORS)))
    if draw(st.integers(0, 20)) == 0:
        text = draw(st.sampled_from(DUPLICATES)) + text[1:]
    return text.encode()


SEPARATORS = [(", ", ": "), (",", ":"), (" ,\n\t", " :\r\n")]
# A key given twice: jiter keeps the last, the lean check must not guess.
DUPLICATES = ['{"id": "first", ', '{"type": "click", ', '{"userId": "first", ', '{"properties": {}, ']


def by_the_model(raw: bytes) -> occurrence.Occurrence | None:
    event, errors = events.validate_json(raw)
    if event is None:
        assert errors
        return None
    return occurrence.from_event(event, INGESTED, DIMENSIONS)


@both_readers
@settings(max_examples=1000, deadline=None)
@given(raw=raw_events())
def test_whatever_the_lean_check_accepts_the_model_accepts_and_counts_alike(
    implementation: str, raw: bytes
) -> None:
    lean = read(implementation, raw)
    if lean is not None:
        assert by_the_model(raw) == lean


@settings(max_examples=1000, deadline=None)
@given(raw=raw_events())
def test_wherever_the_compiled_check_answers_the_python_one_answers_alike(raw: bytes) -> None:
    native = read("native", raw)
    if native is not None:
        assert native == read("python", raw)
        assert type(native) is occurrence.Occurrence


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A generated event with a few bytes overwritten, inserted or cut: the hand-written JSON reader
    meets truncations, stray quotes and brackets, broken escapes and broken UTF-8 from Kafka."""
    raw = bytearray(draw(raw_events()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.one_of(st.sampled_from(b'"\\{}[]:,.-+eE0u \x00\xc3\xff'), st.integers(0, 255)))
        action = draw(st.sampled_from(["overwrite", "insert", "cut"]))
        if action == "insert" or at == len(raw):
            raw[at:at] = bytes([byte])
        elif action == "overwrite":
            raw[at] = byte
        else:
            del raw[at : at + draw(st.integers(1, 16))]
    return bytes(raw)


@settings(max_examples=1000, deadline=None)
@given(raw=st.one_of(damaged(), st.binary(max_size=400)))
def test_damaged_or_random_bytes_never_pass_the_compiled_check_unless_the_model_agrees(raw: bytes) -> None:
    native = read("native", raw)  # never raises: a damaged value is None, and the model decides
    if native is not None:
        assert by_the_model(raw) == native


@native_marks.needs_native
def test_the_compiled_check_is_built_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import tailor_native

    monkeypatch.delenv(native.ENV, raising=False)  # not switched off (TAILOR_NATIVE=off runs of the suite)
    assert native.BUILT
    assert isinstance(lean_check.reader(DIMENSIONS), tailor_native.EventReader)


@both_readers
def test_ordinary_events_take_the_fast_path(implementation: str) -> None:
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
        lean = read(implementation, raw)
        assert lean is not None, fields
        assert lean == by_the_model(raw)
    productid = read(implementation, json.dumps(ordinary[0]).encode())
    assert productid is not None
    assert dict(productid.dimensions) == {"category": "shoes", "productId": "12345", "value": "3"}


@both_readers
def test_what_the_lean_check_refuses_gets_the_models_verdict_and_message(implementation: str) -> None:
    for fields in (
        {"id": "e1", "type": "click"},  # no identity
        {"id": "e1", "type": "click", "userId": "u", "properties": {"category": None}},  # valid: null
        {"id": "e1", "type": "click", "userId": "u", "properties": {"category": 1.5}},  # valid: coerced
        {"id": "e1", "type": "click", "userId": "u", "properties": {"query": "q" * 400}},  # valid: ≤ 512
        {"id": "e1", "type": "click", "userId": "u", "properties": {"value": "3"}},  # invalid
    ):
        raw = json.dumps(fields).encode()
        assert read(implementation, raw) is None
    assert (
        by_the_model(b'{"id": "e1", "type": "click", "userId": "u", "properties": {"category": 1.5}}')
        is not None
    )
    assert events.validate_json(b'{"id": "e1", "type": "click"}')[1] == [
        {"field": "userId", "message": "either userId or anonymousId is required"}
    ]


def event_with(**fields: Any) -> bytes:
    return json.dumps({"id": "e1", "type": "click", "userId": "u", **fields}).encode()


def test_the_compiled_check_decodes_escapes_and_counts_code_points() -> None:
    for ensure_ascii in (True, False):
        for text in ("😀" * 256, "é" * 256, 'quote " backslash \\ tab \t'):
            fields = {"id": "e1", "type": "click", "userId": "u", "properties": {"brand": text},
                      "page": {"url": "/", "title": text}}  # fmt: skip
            raw = json.dumps(fields, ensure_ascii=ensure_ascii).encode()
            native = read("native", raw)
            assert native is not None, text
            assert native == by_the_model(raw)
            assert dict(native.dimensions)["brand"] == text
    assert read("native", event_with(properties={"brand": "😀" * 257})) is None
    escaped_id = read("native", b'{"id": "\\u0041\\u002db", "type": "click", "userId": "u"}')
    assert escaped_id is not None
    assert escaped_id.id == "A-b"
    assert read("native", b'{"id": "A\\/b", "type": "click", "userId": "u"}') is None  # `/`: no id
    for lone_surrogate in (b'"\\ud800"', b'"\\udc00x"', b'"\\ud800\\u0041"'):
        raw = b'{"id": "e1", "type": "click", "userId": "u", "properties": {"brand": %s}}' % lone_surrogate
        assert read("native", raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "e1", "id": "e2", "type": "click", "userId": "u"}',
        b'{"id": "e1", "type": "click", "userId": "u", "userId": "v"}',
        b'{"id": "e1", "type": "click", "userId": "u", "properties": {"brand": "a", "brand": "b"}}',
        b'{"id": "e1", "type": "click", "userId": "u", "page": {"url": "/", "url": "/b"}}',
        b'{"id": "e1", "type": "click", "userId": "u", "context": {"device": null, "device": "x"}}',
    ],
)
def test_duplicate_keys_are_left_to_the_model(raw: bytes) -> None:
    assert read("native", raw) is None


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-29T10:00:00Z", "2026-11-29T10:00:00.5Z", "2026-11-29T10:00:00.123456+02:00",
        "2024-02-29T23:59:59.999999-05:30", "1970-01-01T00:00:00+23:59", "2026-11-29T10:00:00.000001-00:00",
    ],
)  # fmt: skip
def test_plain_rfc3339_timestamps_are_read_to_the_microsecond(stamp: str) -> None:
    raw = event_with(timestamp=stamp)
    native = read("native", raw)
    assert native is not None
    assert native == by_the_model(raw) == read("python", raw)
    assert native.at == datetime.fromisoformat(stamp).timestamp()


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-29T10:00:00", "2026-11-29 10:00:00Z", "2026-11-29t10:00:00z", "2026-11-29T10:00:00.1234567Z",
        "2026-11-29T10:00:00+0200", "2025-02-29T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T10:00:60Z",
        "2026-11-29T10:00Z", "2026-11-29", "2300-01-01T00:00:00Z", "1700000000", "", "2026-11-29T10:00:00,5Z",
        "2026-11-29_10:00:00Z", "2026-11-29T10:00:00+02", "2026-11-29T10:00:00\u221202:00",
    ],
)  # fmt: skip
def test_other_timestamp_texts_are_read_as_the_model_reads_them_or_left_to_it(stamp: str) -> None:
    """speedate, pydantic's own parser, reads RFC 3339 in the compiled check too: what it reads is
    what the model reads; naive, impossible and far-off times are left to the model."""
    raw = event_with(timestamp=stamp)
    native = read("native", raw)
    assert native is None or native == by_the_model(raw)
    if by_the_model(raw) is None or stamp.startswith("2300"):  # invalid; not exact in microseconds
        assert native is None


def test_unix_seconds_are_rounded_to_the_microsecond_as_pydantic_does() -> None:
    rng = random.Random(7)
    stamps = [rng.uniform(1e9, 2e9) for _ in range(2000)] + [
        rng.randrange(10**9, 2 * 10**9) for _ in range(50)
    ]
    stamps += [1_799_999_990.0000005, 1_799_999_990.9999995, 1_799_999_990.25, 0.0, 1e-7]
    for stamp in stamps:
        raw = event_with(timestamp=stamp)
        native = read("native", raw)
        assert native is not None, stamp
        assert native == by_the_model(raw), stamp
    for beyond in (-1, -0.5, 1e10, 3e10, 1_700_000_000_123):  # before 1970, or milliseconds
        assert read("native", event_with(timestamp=beyond)) is None


def test_integers_are_counted_as_their_text_up_to_fifteen_digits() -> None:
    for number in (0, -7, 10**15 - 1, -(10**15 - 1)):
        native = read("native", event_with(properties={"productId": number, "brand": number}))
        assert native is not None
        assert dict(native.dimensions) == {"productId": str(number), "brand": str(number)}
    for big in (10**15, -(10**15), 10**20, 10**400):
        assert read("native", event_with(properties={"price": big})) is None
    # -0: an integer 0 to the model, a float -0.0 to serde_json; counted alike ("0"), or left to the model.
    for name in ("brand", "category"):
        raw = b'{"id": "e1", "type": "click", "userId": "u", "properties": {"%s": -0}}' % name.encode()
        native = read("native", raw)
        assert native is None or native == by_the_model(raw)


def test_float_dimension_values_count_as_integers_or_go_to_python() -> None:
    for number, text in ((3.0, "3"), (-2.0, "-2"), (-0.0, "0"), (1e14, "100000000000000")):
        raw = event_with(properties={"value": number, "brand": number})
        native = read("native", raw)
        assert native is not None
        assert dict(native.dimensions) == {"value": text, "brand": text}
        assert native == by_the_model(raw)
    for number in (2.5, 1e300):  # Python's float text, or a long integer: left to the Python check
        raw = event_with(properties={"brand": number})
        assert read("native", raw) is None
        assert read("python", raw) == by_the_model(raw) is not None
    # A float that is no dimension is checked, not counted.
    assert read("native", event_with(properties={"price": 9.95})) is not None


@native_marks.needs_native
def test_the_compiled_check_is_given_its_limits_by_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "MAX_ID_LENGTH", 4)
    short_ids = lean_check.compiled_reader.__wrapped__(DIMENSIONS)  # not the cached reader
    assert read("native", event_with(id="abcd"), short_ids) is not None
    assert read("native", event_with(id="abcde"), short_ids) is None
    monkeypatch.setattr(schema, "IDENTIFIER_PATTERN", r"^[a-z]+$")
    with pytest.raises(ValueError, match="identifier pattern"):
        lean_check.compiled_reader.__wrapped__(DIMENSIONS)
