"""tailor.core.cancellation.checkpoint: a loop stops once cancelled, even if a library swallowed it."""

from __future__ import annotations

import asyncio
import contextlib

from tailor.core import cancellation


async def swallowing_call() -> None:
    """Returns normally when cancelled, as 3.11's asyncio.wait_for does when its call just finished."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)


def test_a_loop_with_a_checkpoint_stops_after_its_cancel_was_swallowed() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await swallowing_call()
            cancellation.checkpoint()

    async def main() -> None:
        task = asyncio.create_task(loop())
        await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done, "the loop went on after its cancellation was swallowed"
        assert task.cancelled()

    asyncio.run(main())
    assert rounds == 1


def test_without_the_checkpoint_the_same_loop_goes_on() -> None:
    """The control: the cancel really is swallowed, and only the counted request is left of it."""
    stop = False

    async def loop() -> None:
        while not stop:
            await swallowing_call()

    async def main() -> None:
        nonlocal stop
        task = asyncio.create_task(loop())
        await asyncio.sleep(0.01)
        task.cancel()
        _, running = await asyncio.wait({task}, timeout=0.2)
        assert task in running
        assert task.cancelling() == 1  # what checkpoint() reads
        stop = True
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        assert task.done()

    asyncio.run(main())


def test_a_task_that_was_not_cancelled_passes() -> None:
    async def main() -> None:
        cancellation.checkpoint()

    asyncio.run(main())
