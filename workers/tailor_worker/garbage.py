"""Garbage collection in the worker: off while batches run, done between them.

A batch keeps tens of thousands of small objects alive (its occurrences) until it is written, and
every automatic young collection walked them all again, a large share of the worker's time
(docs/pipeline.md, docs/performance.md). Reference counting frees almost everything; cycles are
collected here.
"""

from __future__ import annotations

import gc
import time
from typing import Final

# The garbage collector runs only between batches, this often (see GarbageClock).
COLLECT_EVERY_SECONDS: Final = 5.0


class GarbageClock:
    """Call `batch_done` after each batch (with automatic collection off): every `every` seconds it
    collects the young generations (what is not frozen) and freezes what survives — mostly the cached
    users' entries — out of every later collection (a freeze is a list splice). Before freezing, the
    profile cache's long-lived objects were walked by every collection, and a full one paused the
    worker (docs/pipeline.md)."""

    def __init__(self, every: float = COLLECT_EVERY_SECONDS) -> None:
        self.every = every
        self.next = time.monotonic() + every

    def batch_done(self) -> None:
        now = time.monotonic()
        if now >= self.next:
            gc.collect(1)  # the young generations: everything not frozen already
            gc.freeze()
            self.next = now + self.every
