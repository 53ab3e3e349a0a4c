"""JSON log lines (tailor.core.logs) and the request ids they carry (tailor_api.web.RequestIds)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from tailor_api import web

from tailor.core import logs


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines to a buffer, as `--log-format json` makes the root logger."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logs.JsonFormatter(component="content-api", stack="shop/main"))
    logger = logging.getLogger("tailor.test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, sink
    finally:
        logger.removeHandler(handler)


def records(sink: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


def test_a_line_has_the_documented_fields_in_order_and_keeps_extra_ones(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, sink = captured
    logger.warning("profile of %s unreadable", "u1", extra={"user": "u1"})
    [record] = records(sink)
    assert list(record)[:6] == ["timestamp", "level", "logger", "message", "stack", "component"]
    assert (record["level"], record["logger"]) == ("warning", "tailor.test.logs")
    assert record["message"] == "profile of u1 unreadable"
    assert (record["stack"], record["component"], record["user"]) == ("shop/main", "content-api", "u1")
    assert str(record["timestamp"]).endswith("Z")
    assert "request_id" not in record  # outside a request


def test_an_error_adds_its_type_message_and_traceback(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, sink = captured
    try:
        raise ConnectionError("Redis at r:6379 refused")
    except ConnectionError:
        logger.exception("GET /v1/decide failed")
    [record] = records(sink)
    assert record["level"] == "error"
    assert record["error"] == "ConnectionError: Redis at r:6379 refused"
    assert "Traceback (most recent call last)" in str(record["traceback"])
    assert "exc_info" not in record


def test_each_task_logs_its_own_request_id(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, sink = captured

    async def request(request_id: str) -> None:
        logs.REQUEST_ID.set(request_id)
        await asyncio.sleep(0)  # interleaved with the other request
        logger.info("handled")

    async def both() -> None:
        await asyncio.gather(request("a"), request("b"))

    asyncio.run(both())
    assert sorted(str(r["request_id"]) for r in records(sink)) == ["a", "b"]
    assert logs.REQUEST_ID.get() is None  # the tasks' ids never leaked out


@pytest.mark.parametrize(
    "given", ["4bf92f3577b34da6a3ce929d0e0e4736", "a1b2-c3d4", "Root=1-5759e988:bd862e3fe1be46a9", "x" * 128]
)
def test_a_sane_request_id_is_taken_as_given(given: str) -> None:
    ids = web.RequestIds()
    assert ids({"headers": [(b"x-request-id", given.encode())]}) == given


@pytest.mark.parametrize("given", [b"", b"two words", b"x" * 129, b'quote"d', b"line\nbreak", "ü".encode()])
def test_an_insane_request_id_is_replaced_by_a_new_one(given: bytes) -> None:
    ids = web.RequestIds()
    made = ids({"headers": [(b"x-request-id", given)]})
    assert made != given.decode(errors="replace")
    assert made.split("-")[-1] == "1"
    assert ids({"headers": []}).split("-")[-1] == "2"  # a counter behind one random prefix


def test_the_log_format_comes_from_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logs.ENV_FORMAT, raising=False)
    assert logs.chosen_format(None) == "text"
    monkeypatch.setenv(logs.ENV_FORMAT, "JSON")
    assert logs.chosen_format(None) == "json"
    assert logs.chosen_format("text") == "text"
    monkeypatch.setenv(logs.ENV_FORMAT, "xml")
    with pytest.raises(ValueError, match="use one of text, json"):
        logs.chosen_format(None)
