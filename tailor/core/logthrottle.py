"""A logging filter that lets one record per message through every so often.

librdkafka reports every failed connection attempt; while a broker is down that is a line every few
tens of milliseconds, which buries everything else in the log. The first report of each message
passes, repeats within the interval are counted and summarised on the next one that passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatThrottle(logging.Filter):
    def __init__(self, interval_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # message -> (when it last passed, repeats since)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        now = self._clock()
        passed_at, repeats = self._seen.get(message, (None, 0))
        if passed_at is not None and now - passed_at < self.interval_seconds:
            self._seen[message] = (passed_at, repeats + 1)
            return False
        if len(self._seen) > 1000:  # messages carry addresses and ids: keep the table bounded
            self._seen.clear()
        self._seen[message] = (now, 0)
        if repeats and passed_at is not None:
            # args emptied: the message is final text and may hold a '%' of its own.
            record.msg = f"{message} (repeated {repeats} times in the last {now - passed_at:.0f}s)"
            record.args = ()
        return True
