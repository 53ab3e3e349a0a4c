"""Event schema v1: what a browser (tracker.js) or a server sends to POST /v1/events.

The collector validates each event with these models before producing it to Kafka, and the workers
validate again (a topic may be written by other producers). The JSON Schema exported from them is
committed as `schemas/event-v1.json`; regenerate it with `python -m tailor.core.events`.

Limits are strict on purpose: every string and every property map is bounded, so one client cannot
inflate Redis state or the Kafka log, and errors name the offending field so it can be fixed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeGuard

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from tailor.core import constants

SCHEMA_VERSION: Final = 1
SCHEMA_ID: Final = "https://tailor.dev/schemas/event-v1.json"
SCHEMA_PATH: Final = Path(__file__).resolve().parents[3] / "schemas" / "event-v1.json"

EventType = Literal["page_view", "click", "add_to_cart", "search", "purchase", "custom"]
EVENT_TYPES: Final[tuple[str, ...]] = ("page_view", "click", "add_to_cart", "search", "purchase", "custom")

MAX_ID_LENGTH: Final = constants.MAX_ID_LENGTH
MAX_PROPERTIES: Final = 32
MAX_PROPERTY_NAME_LENGTH: Final = 64
MAX_PROPERTY_VALUE_LENGTH: Final = constants.MAX_PROPERTY_VALUE_LENGTH
MAX_QUERY_LENGTH: Final = constants.MAX_QUERY_LENGTH
MAX_URL_LENGTH: Final = 2048
MAX_DEVICE_LENGTH: Final = 64
MAX_LOCALE_LENGTH: Final = 35
MAX_USER_AGENT_LENGTH: Final = 512
# Matched with fullmatch: `$` alone lets a final newline through in Python.
PROPERTY_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
# Users, anonymous ids, sessions and event ids share the API's grammar (tailor.core.constants.ID_PATTERN).
IDENTIFIER_PATTERN: Final = constants.ID_PATTERN

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=IDENTIFIER_PATTERN)
]
Url = Annotated[str, StringConstraints(max_length=MAX_URL_LENGTH)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_PROPERTY_VALUE_LENGTH)]


def _text_or_number(max_length: int) -> WithJsonSchema:
    """The schema of a text property as accepted: a number is taken too, as its decimal text
    (`coerce_numbers_to_str` below), which pydantic's generated schema does not say."""
    return WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1, "maxLength": max_length}, {"type": "number"}]}
    )


PropertyText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PROPERTY_VALUE_LENGTH),
    _text_or_number(MAX_PROPERTY_VALUE_LENGTH),
]
QueryText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_QUERY_LENGTH), _text_or_number(MAX_QUERY_LENGTH)
]


def _property_value(value: Any) -> str | int | float:
    # One check with one message instead of a union's three (str | int | float) for a wrong value.
    if isinstance(value, str):
        if not 1 <= len(value) <= MAX_PROPERTY_VALUE_LENGTH:
            raise PydanticCustomError(
                "property_value",
                "a text property must have 1 to {limit} characters",
                {"limit": MAX_PROPERTY_VALUE_LENGTH},
            )
        return value
    if _finite_number(value):
        return value
    raise PydanticCustomError("property_value", "a property must be a string or a finite number")


def _finite_number(value: Any) -> TypeGuard[int | float]:
    """A number a float can hold: an integer too long for one (JSON allows any length) is refused
    like infinity, before it can reach str() limits or float arithmetic."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(value: Any) -> int | float:
    if _finite_number(value):
        return value
    raise PydanticCustomError("number_type", "must be a finite number")


Number = Annotated[int | float, PlainValidator(_number), WithJsonSchema({"type": "number"})]

PropertyValue = Annotated[
    str | int | float,
    PlainValidator(_property_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_PROPERTY_VALUE_LENGTH},
                {"type": "number"},
            ]
        }
    ),
]


class _Part(BaseModel):
    """camelCase on the wire, unknown fields refused (a typo should fail loudly, not vanish)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, frozen=True, extra="forbid", allow_inf_nan=False
    )


class Page(_Part):
    url: Url
    referrer: Url | None = None
    title: ShortText | None = None


class Context(_Part):
    device: Annotated[str, StringConstraints(max_length=MAX_DEVICE_LENGTH)] | None = None
    locale: Annotated[str, StringConstraints(max_length=MAX_LOCALE_LENGTH)] | None = None
    user_agent: Annotated[str, StringConstraints(max_length=MAX_USER_AGENT_LENGTH)] | None = None


class Properties(BaseModel):
    """The well-known properties plus your own string or number properties (at most 32 in all)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
        extra="allow",
        allow_inf_nan=False,
        # Shops often use numeric product ids; they are counted as their decimal text.
        coerce_numbers_to_str=True,
        json_schema_extra={
            "maxProperties": MAX_PROPERTIES,
            "propertyNames": {"pattern": PROPERTY_NAME.pattern, "maxLength": MAX_PROPERTY_NAME_LENGTH},
        },
    )
    __pydantic_extra__: dict[str, PropertyValue] = Field(init=False)

    category: PropertyText | None = None
    product_id: PropertyText | None = None
    query: QueryText | None = None
    value: Number | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Properties:
        extra = self.__pydantic_extra__
        if not extra:
            return self  # the four well-known properties alone are within every limit
        known = sum(v is not None for v in (self.category, self.product_id, self.query, self.value))
        if known + len(extra) > MAX_PROPERTIES:
            raise PydanticCustomError(
                "too_many_properties",
                "at most {limit} properties are allowed, got {count}",
                {"limit": MAX_PROPERTIES, "count": known + len(extra)},
            )
        for name in extra:
            if len(name) > MAX_PROPERTY_NAME_LENGTH or not PROPERTY_NAME.fullmatch(name):
                raise PydanticCustomError(
                    "property_name",
                    "property name '{name}' must start with a letter, use only letters, digits, '_', '.', '-'"
                    " and be at most {limit} characters",
                    {"name": name[:80], "limit": MAX_PROPERTY_NAME_LENGTH},
                )
        return self

    def get(self, name: str) -> str | None:
        """The property `name` as the text a dimension counts, or None when absent."""
        if name == "category":
            return self.category
        if name == "productId":
            return self.product_id
        if name == "query":
            return self.query
        value: Any = self.value if name == "value" else (self.__pydantic_extra__ or {}).get(name)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


_IDENTITY_MISSING = PydanticCustomError("identity_missing", "either userId or anonymousId is required")


class Event(_Part):
    """One behaviour event. Either `userId` (known user) or `anonymousId` (cookie) is required."""

    model_config = ConfigDict(
        title="Tailor event v1",
        # null does not identify anyone: the schema says so too, as the validator does.
        json_schema_extra={
            "anyOf": [
                {"required": ["userId"], "properties": {"userId": {"type": "string"}}},
                {"required": ["anonymousId"], "properties": {"anonymousId": {"type": "string"}}},
            ]
        },
    )

    id: Identifier = Field(description="Client-made unique id; the deduplication key.")
    type: EventType
    user_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    session_id: Identifier | None = None
    timestamp: AwareDatetime | None = Field(
        default=None,
        description="When it happened (RFC 3339 with a zone, or Unix seconds); the time the collector"
        " received it when absent.",
    )
    page: Page | None = None
    properties: Properties = Properties()
    context: Context | None = None

    @model_validator(mode="after")
    def _identified(self) -> Event:
        if self.user_id is None and self.anonymous_id is None:
            raise _IDENTITY_MISSING
        return self

    @property
    def user(self) -> str:
        """The identity profiles are kept under: the user id, else the anonymous id."""
        return self.user_id or self.anonymous_id or ""

    def epoch_seconds(self, default: float) -> float:
        return self.timestamp.timestamp() if self.timestamp is not None else default


def _anonymous(data: Any) -> bool:
    return isinstance(data, dict) and not any(
        data.get(name) is not None for name in ("userId", "anonymousId")
    )


def field_errors(error: ValidationError, data: Any = None) -> list[dict[str, str]]:
    """Pydantic's errors as `{"field", "message"}` with dotted camelCase paths a client can act on.

    Given the input `data`, a missing identity is reported too when other fields failed (pydantic
    checks it only once they pass): the client then fixes everything in one go.
    """
    return _as_fields(error.errors(include_url=False), data)


def _as_fields(items: Sequence[ErrorDetails], data: Any) -> list[dict[str, str]]:
    result = []
    for item in items:
        if item["type"] == "identity_missing":
            path = "userId"
        else:
            loc = item["loc"]
            path = ".".join(f"[{part}]" if isinstance(part, int) else part for part in loc).replace(".[", "[")
        result.append({"field": path or "(event)", "message": item["msg"]})
    if _anonymous(data) and not any(item["type"] == "identity_missing" for item in items):
        result.append({"field": "userId", "message": _IDENTITY_MISSING.message()})
    return result


def validate(data: Any) -> tuple[Event | None, list[dict[str, str]]]:
    """An event from decoded JSON, or None and its field errors."""
    try:
        return Event.model_validate(data), []
    except ValidationError as error:
        return None, field_errors(error, data)


BATCH: Final = TypeAdapter(list[Event])


def validate_batch(items: list[Any]) -> tuple[list[Event] | None, dict[int, list[dict[str, str]]]]:
    """All events of a batch in one call (the fast path when they are all valid), else the field
    errors of each invalid one by index; the events not named there are valid."""
    try:
        return BATCH.validate_python(items), {}
    except ValidationError as error:
        by_index: dict[int, list[ErrorDetails]] = {}
        for item in error.errors(include_url=False):
            loc = item["loc"]
            index = loc[0] if loc and isinstance(loc[0], int) else -1
            by_index.setdefault(index, []).append({**item, "loc": loc[1:]})
        return None, {
            index: _as_fields(errors, items[index] if 0 <= index < len(items) else None)
            for index, errors in by_index.items()
        }


def validate_json(raw: bytes | str) -> tuple[Event | None, list[dict[str, str]]]:
    """An event from JSON text (worker side: one Kafka message value)."""
    try:
        return Event.model_validate_json(raw), []
    except ValidationError as error:
        return None, field_errors(error)


def json_schema() -> dict[str, Any]:
    schema = Event.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> bytes:
    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json_schema_text())
    return path


def to_wire_timestamp(moment: datetime) -> str:
    """RFC 3339 with milliseconds and a Z, the form the collector fills in for events without one."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
