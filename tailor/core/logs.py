"""How every `tailor` process logs: as it always did (text), or one JSON object per line (opt-in).

`--log-format json` (or TAILOR_LOG_FORMAT=json; a stack's `spec.logging.format`, which the operator
passes to its pods) switches a process to JSON lines on stderr, formatted by python-json-logger: the
library kopf formats its own JSON logs with, so the operator's lines (kopf's format, with our fields
added by `OperatorFields`) and everyone else's come from one library. The fields are documented in
docs/operating.md ("Logs"). Text output is left exactly as each command wrote it before.

The id of the HTTP request being served is a context variable (`REQUEST_ID`): each request runs in
its own task, so a line logged anywhere beneath the request's handler carries that request's id.
"""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pythonjsonlogger import core as json_core
from pythonjsonlogger import orjson as json_orjson

ENV_FORMAT: Final = "TAILOR_LOG_FORMAT"
FORMATS: Final = ("text", "json")
# What `tailor worker` and `tailor operator` have always written; `tailor api` leaves text to granian.
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REQUEST_ID: ContextVar[str | None] = ContextVar("tailor_request_id", default=None)

# LogRecord attributes that are not extra fields (python-json-logger's list, and Python 3.12's task).
_RESERVED: Final = frozenset(json_core.RESERVED_ATTRS) | {"taskName"}


def chosen_format(flag: str | None) -> str:
    """The format a command logs in: its flag, else TAILOR_LOG_FORMAT, else text."""
    chosen = (flag or os.environ.get(ENV_FORMAT) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"log format {chosen!r}: use one of {', '.join(FORMATS)} (flag or {ENV_FORMAT})")
    return chosen


class JsonFormatter(json_orjson.OrjsonFormatter):
    """One JSON object per record: timestamp, level, logger, message, request_id (inside a request),
    stack, component, then any `extra=` fields; a logged exception adds `error` and `traceback`."""

    def __init__(self, *, component: str, stack: str | None = None) -> None:
        super().__init__()
        self.fixed: dict[str, str] = {"component": component}
        if stack:
            self.fixed = {"stack": stack, **self.fixed}

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, UTC)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        request_id = REQUEST_ID.get()
        if request_id is not None:
            log_data["request_id"] = request_id
        log_data.update(self.fixed)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key not in log_data:
                log_data[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            log_data["error"] = f"{type(error).__name__}: {error}"
        traceback = message_dict.get("exc_info")
        if traceback:
            log_data["traceback"] = traceback
        if message_dict.get("stack_info"):
            log_data["stack_info"] = message_dict["stack_info"]

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        # orjson writes the UTC timestamp as RFC 3339 with a Z; anything it cannot encode is repr'd.
        return orjson.dumps(
            log_data, default=repr, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
        ).decode()


class OperatorFields(logging.Filter):
    """Adds level, logger and component to the operator's records, which kopf's own JSON formatter
    writes (with its timestamp, severity and `object`), so every component's lines share these."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.level = record.levelname.lower()
        record.logger = record.name
        record.component = self.component
        return True


def configure(
    log_format: str, *, component: str, stack: str | None = None, level: int = logging.INFO
) -> None:
    """Root logging of a command: text with TEXT_FORMAT (as before), or JSON lines on stderr."""
    if log_format != "json":
        logging.basicConfig(level=level, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(component=component, stack=stack))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def granian_config(component: str, stack: str | None, level: str) -> dict[str, Any]:
    """A logging.config.dictConfig for granian (it configures its main and worker processes with it):
    granian's own loggers and the root logger as JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter", "component": component, "stack": stack}},
        "handlers": {"json": handler},
        "loggers": {"_granian": dict(quiet), "granian.access": dict(quiet)},
        "root": {"handlers": ["json"], "level": level.upper()},
    }
