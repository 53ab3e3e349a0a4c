"""Cancellation that holds for long-running asyncio loops on Python 3.11.

On 3.11, `asyncio.wait_for` can swallow a cancellation: when the task is cancelled in the same
event-loop turn as the awaited operation finishes, wait_for returns the operation's result instead
of raising CancelledError (CPython gh-86296; 3.12 rebuilt wait_for on asyncio.timeout). redis-py's
asyncio client sends every command through wait_for whenever a socket timeout is set, and redis-py
sets one by default, so a task looping over Redis calls can be cancelled and simply carry on: a
content API whose ruleset follower polls forever never finishes shutting down.

The request is not lost, though: the task still counts it (`Task.cancelling()` stays above zero until
someone handles it). A loop that calls `checkpoint()` once per round therefore stops at the end of
the round in which it was cancelled, whatever a library did with the CancelledError.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise CancelledError if the current task was asked to cancel and is still running."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError(f"{task.get_name()} was cancelled")
