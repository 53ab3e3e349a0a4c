"""Events: what a browser or a server sends (`schema`, the v1 model and its JSON Schema), the lean
check a worker runs first (`lean_check`), and the event as counted (`occurrence`).

The schema's public names are re-exported here: `from tailor.core import events; events.Event`.
"""

from tailor.core.events.schema import (
    EVENT_TYPES,
    SCHEMA_ID,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    Event,
    EventType,
    field_errors,
    json_schema,
    json_schema_text,
    to_wire_timestamp,
    validate,
    validate_batch,
    validate_json,
    write_schema,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_ID",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Event",
    "EventType",
    "field_errors",
    "json_schema",
    "json_schema_text",
    "to_wire_timestamp",
    "validate",
    "validate_batch",
    "validate_json",
    "write_schema",
]
