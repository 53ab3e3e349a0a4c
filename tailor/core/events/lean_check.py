"""The workers' lean check: a batch of Kafka messages to what is counted of them, without a model.

`schema.Event` is the schema and the source of every error message, but building and reading back a
model per message is the worker's largest cost. This module checks the same rules with one
pydantic-core validator that has no Python-level validators (plain dicts out, no models) and reads
the few values a worker counts straight from them (an `occurrence.Occurrence`).

It is deliberately a strict subset: anything it is not sure about (a property `null`, a float where a
text property is expected, a very long query or number, a missing identity) it leaves unread, and the
caller then asks `schema.Event` — which decides, and names the problem for the dead letter. So an
event is accepted exactly when `schema.Event` accepts it, and counted the same way;
tests/unit/test_events_lean_check.py holds the two to that on generated events.

A reader takes a whole batch and gives back one `BatchRead`: the occurrences per user, the indexes
of the messages it did not read, the partitions' newest offsets. `reader` gives the one that runs:
compiled (`tailor_native.EventReader`, native/src/event.rs) unless tailor.core.native says otherwise,
else `PythonReader`, which is also the reference the tests hold the compiled one to.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final, Protocol, TypedDict

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message
from pydantic_core import SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from tailor.core import constants, native
from tailor.core.events import occurrence, schema

if native.BUILT:
    import tailor_native


class BatchRead(TypedDict):
    """What a reader read of one batch."""

    by_user: dict[str, list[occurrence.Occurrence]]  # in message order; late events left out
    partition_of: dict[str, int]  # user -> the partition of its first message (-1: none)
    unread: list[int]  # indexes of the messages not read: errors, no value, what only the model can read
    offsets: dict[int, int]  # partition -> its newest offset among the messages that are not errors
    events: int  # messages that are not errors
    late: int  # events older than the allowed lateness when the collector received them


class Reader(Protocol):
    def read_batch(self, messages: list[Message], now: float, lateness: float) -> BatchRead:
        """Read `messages` at `now` (the time of a message without a Kafka timestamp); an event more
        than `lateness` seconds older than its Kafka timestamp is late."""
        ...


_TEXT_PROPERTIES: Final = frozenset({"category", "productId", "query"})
# Integers beyond this go the slow way: the model decides (text limits, floats that overflow).
_MAX_INT: Final = 10**15


def _text(max_length: int, min_length: int = 0) -> cs.CoreSchema:
    return cs.str_schema(min_length=min_length, max_length=max_length, strict=True)


def _optional(schema: cs.CoreSchema, required: bool = False) -> cs.TypedDictField:
    return cs.typed_dict_field(cs.nullable_schema(schema), required=required)


def _schema() -> cs.CoreSchema:
    identifier = cs.str_schema(
        min_length=1, max_length=schema.MAX_ID_LENGTH, pattern=schema.IDENTIFIER_PATTERN, strict=True
    )
    page = cs.typed_dict_schema(
        {
            "url": cs.typed_dict_field(_text(schema.MAX_URL_LENGTH), required=True),
            "referrer": _optional(_text(schema.MAX_URL_LENGTH)),
            "title": _optional(_text(schema.MAX_PROPERTY_VALUE_LENGTH)),
        },
        extra_behavior="forbid",
    )
    context = cs.typed_dict_schema(
        {
            "device": _optional(_text(schema.MAX_DEVICE_LENGTH)),
            "locale": _optional(_text(schema.MAX_LOCALE_LENGTH)),
            "userAgent": _optional(_text(schema.MAX_USER_AGENT_LENGTH)),
        },
        extra_behavior="forbid",
    )
    value = cs.union_schema([
        _text(schema.MAX_PROPERTY_VALUE_LENGTH, min_length=1),
        cs.int_schema(strict=True),
        cs.float_schema(strict=True, allow_inf_nan=False),
    ])  # fmt: skip
    properties = cs.dict_schema(
        keys_schema=cs.str_schema(
            max_length=schema.MAX_PROPERTY_NAME_LENGTH, pattern=schema.PROPERTY_NAME.pattern, strict=True
        ),
        values_schema=value,
        max_length=schema.MAX_PROPERTIES,
        strict=True,
    )
    return cs.typed_dict_schema(
        {
            "id": cs.typed_dict_field(identifier, required=True),
            "type": cs.typed_dict_field(cs.literal_schema(list(schema.EVENT_TYPES)), required=True),
            "userId": _optional(identifier),
            "anonymousId": _optional(identifier),
            "sessionId": _optional(identifier),
            "timestamp": _optional(cs.datetime_schema(tz_constraint="aware")),
            "page": _optional(page),
            "properties": cs.typed_dict_field(properties, required=False),
            "context": _optional(context),
        },
        extra_behavior="forbid",
    )


_VALIDATOR: Final = SchemaValidator(_schema())
_OCCURRENCE: Final = occurrence.Occurrence
_COUNTER_OF: Final = constants.FEATURE_OF_EVENT_TYPE
_new: Final = tuple.__new__


def reader(dimensions: tuple[str, ...]) -> Reader:
    """The reader that runs: compiled when tailor.core.native says so, else the Python reference."""
    return compiled_reader(dimensions) if native.enabled() else PythonReader(dimensions)


@functools.cache
def compiled_reader(dimensions: tuple[str, ...]) -> tailor_native.EventReader:
    """The compiled reader, given the schema's limits and patterns (it refuses to start if it does
    not implement those patterns)."""
    return tailor_native.EventReader(
        dimensions,
        occurrence=occurrence.Occurrence,
        counters={t: _COUNTER_OF.get(t, occurrence.CUSTOM_COUNTER) for t in schema.EVENT_TYPES},
        limits={
            "id": schema.MAX_ID_LENGTH,
            "properties": schema.MAX_PROPERTIES,
            "property_name": schema.MAX_PROPERTY_NAME_LENGTH,
            "property_value": schema.MAX_PROPERTY_VALUE_LENGTH,
            "url": schema.MAX_URL_LENGTH,
            "device": schema.MAX_DEVICE_LENGTH,
            "locale": schema.MAX_LOCALE_LENGTH,
            "user_agent": schema.MAX_USER_AGENT_LENGTH,
        },
        patterns={"identifier": schema.IDENTIFIER_PATTERN, "property_name": schema.PROPERTY_NAME.pattern},
    )


def ingestion_time(message: Message, default: float) -> float:
    """When the collector accepted the message (its Kafka timestamp), else `default`."""
    kind, millis = message.timestamp()
    return millis / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else default


class PythonReader:
    """The reader in Python: the reference of tailor_native.EventReader, and what runs without it."""

    def __init__(self, dimensions: Sequence[str]) -> None:
        self.dimensions = tuple(dimensions)

    def read_batch(self, messages: list[Message], now: float, lateness: float) -> BatchRead:
        by_user: dict[str, list[occurrence.Occurrence]] = {}
        partition_of: dict[str, int] = {}
        unread: list[int] = []
        offsets: dict[int, int] = {}
        events = late = 0
        dimensions = self.dimensions
        for index, message in enumerate(messages):
            if message.error() is not None:
                unread.append(index)
                continue
            events += 1
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:
                offsets[partition] = max(offsets.get(partition, -1), offset)
            ingested = ingestion_time(message, now)
            value = message.value()
            counted = python_occurrence(value, ingested, dimensions) if value else None
            if counted is None:
                unread.append(index)
                continue
            if ingested - counted.at > lateness:
                late += 1
                continue
            user = counted.user
            found = by_user.get(user)
            if found is None:
                by_user[user] = [counted]
                partition_of[user] = partition if partition is not None else -1
            else:
                found.append(counted)
        return BatchRead(
            by_user=by_user,
            partition_of=partition_of,
            unread=unread,
            offsets=offsets,
            events=events,
            late=late,
        )


def python_occurrence(
    raw: bytes | str, ingested_at: float, dimensions: Sequence[str]
) -> occurrence.Occurrence | None:
    """One message value (JSON) and its Kafka time to what is counted of it, or None when not sure
    the event is valid."""
    try:
        fields: dict[str, Any] = _VALIDATOR.validate_json(raw)
    except ValidationError:
        return None
    user = fields.get("userId") or fields.get("anonymousId")
    if user is None:
        return None
    properties: dict[str, Any] = fields.get("properties") or {}
    for name, value in properties.items():
        kind = type(value)
        if kind is str:
            if name == "value":
                return None  # must be a number
        elif name in _TEXT_PROPERTIES:
            if kind is not int or not -_MAX_INT < value < _MAX_INT:
                return None  # floats and long numbers: the model's coercion decides
        elif kind is int and not -_MAX_INT < value < _MAX_INT:
            return None
    stamp = fields.get("timestamp")
    at = stamp.timestamp() if stamp is not None else ingested_at
    values = []
    for dimension in dimensions:
        value = properties.get(dimension)
        if value is not None:
            kind = type(value)
            if kind is float and value.is_integer():
                value = int(value)
            values.append((dimension, value if kind is str else str(value)))
    # tuple.__new__ directly: a named tuple's own __new__ is a Python function, a cost paid per event.
    return _new(_OCCURRENCE, (
        fields["id"],
        user,
        at if at < ingested_at else ingested_at,
        _COUNTER_OF.get(fields["type"], occurrence.CUSTOM_COUNTER),
        fields.get("sessionId") or "",
        tuple(values),
    ))  # fmt: skip
