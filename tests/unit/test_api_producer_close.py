"""tailor_api.producer.AsyncProducer: a closed producer releases librdkafka (its threads and sockets).

Before: the producer's error callback was a bound method, so producer -> callback -> AsyncProducer ->
producer was a reference cycle, freed only by a full garbage collection; the content API calls
gc.freeze() on every ruleset swap, which exempts everything alive then from collection for good. In a
full test run seven API producers (librdkafka threads, broker sockets) outlived their APIs, still
dialling the broker after the stack was gone.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from pathlib import Path

import pytest
from tailor_api import producer

from tailor.core import kafkaclient
from tailor.core.rules.ruleset import KafkaConfig

TASKS = Path("/proc/self/task")


def librdkafka_threads() -> int:
    """Threads of this process that librdkafka started (it names them rdk:main, rdk:broker…)."""
    count = 0
    for task in TASKS.iterdir():
        try:
            count += (task / "comm").read_text().startswith("rdk:")
        except OSError:
            continue  # the thread ended meanwhile
    return count


def refused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.skipif(not TASKS.is_dir(), reason="counts threads in /proc (Linux)")
@pytest.mark.parametrize("mode", ["thread", "loop"])
def test_a_closed_producer_leaves_no_librdkafka_thread(mode: str) -> None:
    before = librdkafka_threads()

    async def use_and_close() -> None:
        # As the collector makes it: the stack's client settings with its Health's callbacks.
        settings = KafkaConfig(bootstrap_servers=refused_address(), events_topic="e", dead_letter_topic="d")
        client = {**kafkaclient.client_config(settings), **kafkaclient.Health(settings, "test").callbacks()}
        kafka = producer.AsyncProducer(client, delivery_timeout_seconds=1.0, mode=mode)
        assert librdkafka_threads() > before, "the control: a live producer runs librdkafka threads"
        await kafka.close(flush_seconds=1.0)

    # Without the garbage collector, as for objects the content API's gc.freeze() reaches: closing
    # must release librdkafka by itself, not leave a cycle for a collection that may never come.
    gc.disable()
    try:
        asyncio.run(use_and_close())
    finally:
        gc.enable()
    deadline = time.monotonic() + 5
    while librdkafka_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert librdkafka_threads() == before
