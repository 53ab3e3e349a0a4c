"""Benchmark: the worker's event read (tailor_native.EventReader) of several builds, in one process.

Each build of native/ is loaded as its own module (a directory holding `tailor_native/`, as a wheel
unpacks, or the one installed), and all read the same batches of a backlog, timed in turns with
`time.process_time` — so a change to the reader is compared under the same load, which a shared
box does not keep steady between processes. A build from before issue 16 (its `sort`, filling dicts
and calling back) is read the way that code called it.

    eval "$(tailor dev env)"
    .venv/bin/python bench/worker_stages.py fill > /tmp/backlog.json
    .venv/bin/python bench/event_read.py /tmp/backlog.json --build before=/tmp/before-native \
        [--build other=DIR ...] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from tailor.core.events import lean_check


def load_build(label: str, directory: Path) -> ModuleType:
    """The tailor_native in `directory`/tailor_native as a module of its own."""
    library = next((directory / "tailor_native").glob("tailor_native*.so"))
    loader = importlib.machinery.ExtensionFileLoader("tailor_native", str(library))
    spec = importlib.util.spec_from_file_location("tailor_native", library, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[f"tailor_native_{label}"] = module
    return module


def reader_of(module: ModuleType, dimensions: tuple[str, ...]) -> Any:
    """A read_batch(messages, now, lateness) of the build, however it is called."""
    if hasattr(module.EventReader, "read_batch"):
        made = lean_check.compiled_reader.__wrapped__  # the factory, with this build's class
        saved = getattr(lean_check, "tailor_native")  # noqa: B009 (not exported)
        setattr(lean_check, "tailor_native", module)  # noqa: B010
        try:
            return made(dimensions).read_batch
        finally:
            setattr(lean_check, "tailor_native", saved)  # noqa: B010
    # The old reader reads the schema's limits and patterns itself and refuses to start on any it does
    # not implement: give it the identifier pattern it checks while it is made (the bench's ids pass
    # both).
    from tailor.core.events import schema

    current = schema.IDENTIFIER_PATTERN
    schema.IDENTIFIER_PATTERN = "^[!-~]+$"  # type: ignore[misc]
    try:
        reader = module.EventReader(dimensions)
    finally:
        schema.IDENTIFIER_PATTERN = current  # type: ignore[misc]

    def read_batch(messages: list[Message], now: float, lateness: float) -> Any:
        by_user: dict[str, Any] = {}
        partition_of: dict[str, int] = {}
        offsets: dict[int, int] = {}
        unread: list[Any] = []
        events, late = reader.sort(
            messages,
            now,
            lateness,
            lambda message, at: unread.append(message),
            by_user,
            partition_of,
            offsets,
        )
        return {"by_user": by_user, "events": events, "late": late, "unread": unread}

    return read_batch


def batches_of(backlog: dict[str, Any], batch_size: int, count: int) -> list[list[Message]]:
    kafka = backlog["config"]["kafka"]
    consumer = Consumer({"bootstrap.servers": kafka["bootstrap_servers"], "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(kafka["events_topic"], p, 0) for p in range(kafka["partitions"])])
    batches, seen = [], 0
    while seen < count:
        messages = consumer.consume(batch_size, timeout=2.0)
        if not messages:
            break
        batches.append(messages)
        seen += len(messages)
    consumer.close()
    return batches


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backlog", type=Path)
    parser.add_argument("--build", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    backlog = json.loads(args.backlog.read_text())
    dimensions = tuple(backlog["config"]["features"]["dimensions"])
    lateness = float(backlog["config"]["features"]["allowed_lateness_seconds"])
    import tailor_native

    readers = {"installed": reader_of(tailor_native, dimensions)}
    for spec in args.build:
        label, directory = spec.split("=", 1)
        readers[label] = reader_of(load_build(label, Path(directory)), dimensions)
    batches = batches_of(backlog, args.batch_size, args.events)
    events = sum(len(batch) for batch in batches)
    now = time.time()
    counts = {label: sum(len(v) for b in batches for v in read(b, now, lateness)["by_user"].values())
              for label, read in readers.items()}  # fmt: skip
    assert len(set(counts.values())) == 1, counts
    timings: dict[str, list[float]] = {label: [] for label in readers}
    system: dict[str, list[float]] = {label: [] for label in readers}
    with open("/proc/loadavg") as load:
        print(f"# load before: {load.read().split()[:3]}; {events} events in {len(batches)} batches")
    gc.collect()
    gc.freeze()
    gc.disable()  # as the worker runs (tailor_worker.garbage): no collection inside a batch
    for round_number in range(args.rounds):
        order = list(readers.items())
        if round_number % 2:
            order.reverse()
        for label, read in order:
            spent = kernel = 0.0
            for batch in batches:
                start, times = time.process_time(), os.times()
                read(batch, now, lateness)
                spent += time.process_time() - start
                kernel += os.times().system - times.system
                gc.collect(0)
            timings[label].append(spent * 1e6 / events)
            system[label].append(kernel * 1e6 / events)
    with open("/proc/loadavg") as load:
        print(f"# load after: {load.read().split()[:3]}")
    for label, each in timings.items():
        print(
            f"{label:12s} {statistics.median(each):5.2f} µs per event  [{' '.join(f'{v:.2f}' for v in each)}]"
            f"  of which system {statistics.median(system[label]):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
