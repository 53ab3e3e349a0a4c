"""The worker's liveness, from its consume loop's progress (served as /healthz by tailor_worker.metrics).

A worker can be alive as a process and stuck as a worker: a Redis call on a half-open connection, a
write that keeps failing. Kubernetes only sees that when the probe looks at the loop itself: the loop
`beat`s each time a consume returns (a poll that found nothing is progress: the topic is just idle)
and each time a batch is done; /healthz answers 503 once the last beat is older than the allowed
stall. A batch retried because Redis fails or hangs does not beat, so a worker that cannot write for
that long is restarted (fresh connections); its batch was never acknowledged and is replayed
(docs/operating.md, "Worker liveness").
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """When the consume loop last made progress (monotonic); safe to read from any thread."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()  # one float store: atomic under the GIL

    def stalled_for(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._last

    def check(self) -> tuple[bool, str]:
        """(alive, why): what /healthz answers (tailor_worker.metrics.serve)."""
        stalled = self.stalled_for()
        if stalled <= self.stall_seconds:
            return True, "the consume loop is going round"
        return False, (
            f"no progress of the consume loop for {stalled:.0f}s (allowed {self.stall_seconds:g}s):"
            " a Redis write failing or hanging, see the worker's log"
        )
