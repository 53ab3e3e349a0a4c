"""A logging filter that lets one record per message through every so often.

librdkafka reports every failed connection attempt; while a broker is down that is a line every few
tens of milliseconds, which buries everything else in the log. The first report of each message
passes, repeats within the interval are counted and summarised on the next one that passes.

Repeats are recognised by the message without what librdkafka varies from one report to the next
(`(after 12ms in state CONNECT, 3 identical error(s) suppressed)`), or by a record's `throttle_key`
(`log.warning(..., extra={"throttle_key": reason})`) when a caller names the cause itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# librdkafka's suffix on connection errors: how long the attempt took and how many it folded into this one.
_VOLATILE = re.compile(r" ?\(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)")


def repeat_key(record: logging.LogRecord) -> str:
    """What makes two records the same report: the caller's `throttle_key`, else the message without
    librdkafka's timings."""
    key = getattr(record, "throttle_key", None)
    return str(key) if key is not None else _VOLATILE.sub("", record.getMessage())


class RepeatThrottle(logging.Filter):
    def __init__(self, interval_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # message -> (when it last passed, repeats since)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = repeat_key(record)
        now = self._clock()
        passed_at, repeats = self._seen.get(key, (None, 0))
        if passed_at is not None and now - passed_at < self.interval_seconds:
            self._seen[key] = (passed_at, repeats + 1)
            return False
        if len(self._seen) > 1000:  # messages carry addresses and ids: keep the table bounded
            self._seen.clear()
        self._seen[key] = (now, 0)
        if repeats and passed_at is not None:
            # args emptied: the message is final text and may hold a '%' of its own.
            record.msg = f"{message} (repeated {repeats} times in the last {now - passed_at:.0f}s)"
            record.args = ()
        return True
