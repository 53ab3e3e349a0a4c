"""Benchmark: where the worker's CPU per event goes on a backlog, and two trees' workers compared.

bench/worker.py measures one `tailor worker` process from outside (/proc): the worker's own work,
librdkafka's threads, the metrics scrapes and the write thread are one figure, and trees run one
after the other, so a load that changes between runs (this box is shared) shows as a difference.
This script splits that figure, and compares trees under the same load:

`run` — the worker's per-batch stages in this process, one after the other on one thread, each
timed with `time.process_time` (CPU, not wall):
  take      `consume` of up to --batch-size messages, as `EventConsumer.take` does;
  classify  `tailor_worker.batch.classify` (the event read, compiled or the reference);
  write     the `store.ProfileWriter` write of the batch on one connection (loads, counting, guard
            calls, Redis round trips and replies); with --detail its parts, by wrapping the calls it
            makes (the wrappers add about 5 µs per event of their own to `write`);
  finish    the worker's metrics and its garbage clock, as `Worker._finish` does.
Every pass reads the whole backlog with a consumer of its own and writes to a stack (Redis keys) of
its own, so every pass starts with no user cached, as a new worker does.

`pair` — `tailor worker` processes of several trees at the same time, each on the backlog with its
own stack and consumer group, measured from outside as bench/worker.py does (scraped every 0.25 s,
CPU between the first and the last scrape inside the run), split by thread: the main thread (take,
classify, finish), the write thread, librdkafka's threads and the rest (the metrics server's). Run
together, the trees share whatever load the box has; the start order alternates by round.

The script uses only what the worker's code before issue 16 also has (`batch.classify`,
`ProfileWriter.write_sync` or `write`), so it measures older trees too: run `run` with that tree
first on PYTHONPATH, and give `pair` each tree's directory (and its native build's).

    eval "$(tailor dev env)"
    .venv/bin/python bench/worker_stages.py fill > /tmp/backlog.json   # once: a topic of 200,000 events
    .venv/bin/python bench/worker_stages.py run /tmp/backlog.json [--passes 3] [--detail]
    .venv/bin/python bench/worker_stages.py pair /tmp/backlog.json \\
        --tree before=/tmp/before:/tmp/before-native --tree head=. [--rounds 4]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, Message, TopicPartition

from tailor.core import native
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import ports, scratch

TICKS = os.sysconf("SC_CLK_TCK")
MAIN, WRITE, KAFKA, REST, SYSTEM = "main thread", "write thread", "librdkafka", "rest", "(of which system)"


def redis_url() -> str:
    """The stack's Redis (`run` imports no bench module: they follow the head's code, not an old tree's)."""
    url = os.environ.get("TAILOR_REDIS_URL")
    if not url:
        sys.exit('set TAILOR_KAFKA_BOOTSTRAP and TAILOR_REDIS_URL first: eval "$(tailor dev env)"')
    return url


def fill_backlog(events: int, users: int) -> dict[str, Any]:
    """A topic with bench/worker.py's backlog; what `run` and `pair` need to read it."""
    import _pipeline
    import worker as worker_bench

    kafka, url = _pipeline.environment()
    config = _pipeline.stack_config(kafka)
    scratch.publish(url, config)
    worker_bench.fill(kafka, config.kafka.events_topic, events, users)
    return {"config": config.model_dump(mode="json"), "events": events}


def fresh_stack(backlog: dict[str, Any]) -> StackConfig:
    """The backlog's stack under a new name: the same topic, Redis keys of its own."""
    template = StackConfig.model_validate(backlog["config"])
    return template.model_copy(update={"name": uuid.uuid4().hex[:8]})


# -- run: the stages in one process ------------------------------------------------------------


class Timer:
    """CPU seconds and calls by stage name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)


_timers: list[Timer] = []  # the pass being timed is the last: wrappers are installed once


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    clock = time.process_time

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return function(*args, **kwargs)
        finally:
            timer = _timers[-1]
            timer.cpu[name] += clock() - start
            timer.calls[name] += 1

    return timed


class _Timed:
    """An object whose named methods are timed (pyo3 objects take no attributes of their own)."""

    def __init__(self, target: Any, methods: dict[str, str]) -> None:
        self._target = target
        for method, name in methods.items():
            setattr(self, method, _timed(name, getattr(target, method)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_CALL = {"add": "write: guard call add", "take": "write: guard call take"}


def _instrument(writer: Any, store: Any, first: bool) -> None:
    """Time the write's parts: the counting's calls, the guard calls' packing, the Redis I/O."""
    counting = writer.counting
    methods = {"decode": "write: decode", "apply": "write: apply"}
    if hasattr(counting, "guarded_call"):  # since issue 16: the counting hands out the guard calls
        made = counting.guarded_call
        writer.counting = _Timed(counting, methods)
        writer.counting.guarded_call = lambda *args: _Timed(made(*args), _CALL)
    else:  # before: tailor_native.GuardedWrites, made by the store (one module global)
        writer.counting = _Timed(counting, methods)
        module = getattr(store, "tailor_native", None)
        if module is not None and first:
            guarded_writes = module.GuardedWrites

            class Module:
                def __getattr__(self, name: str) -> Any:
                    return getattr(module, name)

                @staticmethod
                def GuardedWrites(*args: Any) -> Any:
                    return _Timed(guarded_writes(*args), _CALL)

            store.tailor_native = Module()
        if hasattr(writer, "pack_command"):
            writer.pack_command = _timed("write: pack loads", writer.pack_command)
    if not first:
        return
    counting_module = getattr(store, "profile_counting", None)
    if counting_module is not None and hasattr(counting_module, "pack_command"):
        counting_module.pack_command = _timed("write: pack loads", counting_module.pack_command)
    import redis.connection

    connection = redis.connection.Connection
    connection.send_packed_command = _timed("write: Redis send", connection.send_packed_command)  # type: ignore[method-assign]
    connection.read_response = _timed("write: Redis read", connection.read_response)  # type: ignore[method-assign]


def _take_all(config: StackConfig, batch_size: int, count: int, timer: Timer) -> list[list[Message]]:
    kafka = config.kafka
    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap_servers, "group.id": uuid.uuid4().hex,
        "enable.auto.commit": False, "enable.partition.eof": False,
    })  # fmt: skip
    consumer.assign([TopicPartition(kafka.events_topic, p, 0) for p in range(kafka.partitions)])
    batches: list[list[Message]] = []
    seen = 0
    while seen < count:
        start = time.process_time()
        first = consumer.consume(1, timeout=1.0)
        messages = first + consumer.consume(batch_size - 1, timeout=0) if first else first
        timer.cpu["take"] += time.process_time() - start
        if messages:
            batches.append(messages)
            seen += len(messages)
    consumer.close()
    return batches


def one_pass(backlog: dict[str, Any], batch_size: int, detail: bool) -> Timer:
    from tailor_worker import batch as worker_batch
    from tailor_worker import garbage, metrics

    from tailor.core.profile import store

    url = redis_url()
    config = fresh_stack(backlog)
    client = redis.Redis.from_url(url)
    (getattr(store, "install_sync", None) or store.install)(client)
    timer = Timer()
    first = not _timers
    _timers.append(timer)
    batches = _take_all(config, batch_size, backlog["events"], timer)
    writer = store.ProfileWriter(config)
    write = getattr(writer, "write_sync", None) or writer.write
    if detail:
        _instrument(writer, store, first)
    topic = config.kafka.events_topic
    clock = garbage.GarbageClock()
    gc.collect()
    gc.freeze()
    gc.disable()  # as the worker runs
    try:
        for messages in batches:
            now = time.time()
            start = time.process_time()
            metrics.CONSUMED.labels(topic).inc(len(messages))
            work = worker_batch.classify(messages, config.features, now)
            classified = time.process_time()
            counted, duplicates, expired, _ = write(client, work.by_user, now, work.partition_of)
            written = time.process_time()
            metrics.PROCESSED.labels("counted").inc(counted)
            metrics.PROCESSED.labels("duplicate").inc(duplicates)
            metrics.DEDUP_HITS.inc(duplicates)
            metrics.PROCESSED.labels("late").inc(work.late)
            metrics.PROCESSED.labels("expired").inc(expired)
            metrics.PROCESSED.labels("dead_letter").inc(len(work.dead))
            metrics.PROCESSING_SECONDS.observe(time.perf_counter() % 1)
            clock.batch_done()
            timer.cpu["classify"] += classified - start
            timer.cpu["write"] += written - classified
            timer.cpu["finish"] += time.process_time() - written
            timer.calls["events"] += work.events
            timer.calls["counted"] += counted
    finally:
        gc.enable()
        client.close()
        scratch.forget(url, config.key)
    return timer


def run(args: argparse.Namespace) -> None:
    backlog = json.loads(args.backlog.read_text())
    load = _load()
    timers = [one_pass(backlog, args.batch_size, args.detail) for _ in range(args.passes)]
    events = backlog["events"]
    label = args.label or ("compiled" if native.enabled() else "Python references")
    print(f"# {label}: CPU µs per event, median of {args.passes} passes [each]; load {load} -> {_load()}; "
          f"{timers[0].calls['events']} events, {timers[0].calls['counted']} counted per pass")  # fmt: skip
    names = sorted({name for timer in timers for name in timer.cpu})
    for name in [*sorted(n for n in names if ":" not in n), *sorted(n for n in names if ":" in n)]:
        each = [timer.cpu[name] * 1e6 / events for timer in timers]
        calls = timers[0].calls.get(name)
        print(f"{name:26s} {statistics.median(each):6.2f}  {_each(each)}"
              + (f"  {calls} calls per pass" if calls else ""))  # fmt: skip
    total = [sum(timer.cpu[n] for n in ("classify", "write", "finish")) * 1e6 / events for timer in timers]
    print(f"{'classify+write+finish':26s} {statistics.median(total):6.2f}  {_each(total)}")


# -- pair: processes of several trees at once --------------------------------------------------


def process_threads(pid: int) -> dict[str, float]:
    """CPU seconds of a worker process by thread: its main thread, its busiest other Python thread
    (the write thread), librdkafka's threads, and the rest (other threads, and those gone: the
    metrics server's request threads); and the system share of the threads listed."""
    kinds: dict[str, float] = defaultdict(float)
    others = [0.0]
    for entry in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        user, system = int(fields[11]) / TICKS, int(fields[12]) / TICKS
        kinds[SYSTEM] += system
        if int(entry) == pid:
            kinds[MAIN] += user + system
        elif name.startswith("rdk:"):
            kinds[KAFKA] += user + system
        else:
            others.append(user + system)
    kinds[WRITE] = max(others)
    import _pipeline

    kinds[REST] = _pipeline.tree_cpu_seconds(pid) - kinds[MAIN] - kinds[KAFKA] - kinds[WRITE]
    return kinds


def pair_round(
    backlog: dict[str, Any],
    trees: list[tuple[str, str, list[str]]],
    processed: str = "tailor_worker_events_processed_total",
) -> dict[str, dict[str, float]]:
    """One worker process per tree (label, directory, PYTHONPATH entries before it), all at once."""
    import worker as worker_bench

    url = redis_url()
    count = backlog["events"]
    runs: list[dict[str, Any]] = []
    try:
        for label, root, first in trees:
            config = fresh_stack(backlog)
            scratch.publish(url, config)
            port = ports.pick(None)
            log = Path("/tmp") / f"tailor-bench-stages-{label}-{uuid.uuid4().hex[:6]}.log"
            path = [*first, root, f"{root}/content_api", f"{root}/workers", f"{root}/operator"]
            env = {**os.environ, "TAILOR_REDIS_URL": url, "PYTHONPATH": ":".join(path),
                   "TAILOR_WORKER_METRICS_HOST": "127.0.0.1",
                   "TAILOR_WORKER_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}"}  # fmt: skip
            process = subprocess.Popen(
                [sys.executable, "-m", "tailor.cli.main", "worker", "--stack", config.key,
                 "--metrics-port", str(port)],
                env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=root,
            )  # fmt: skip
            runs.append({"label": label, "key": config.key, "port": port, "process": process, "log": log,
                         "samples": []})  # fmt: skip
        deadline = time.monotonic() + 900
        while any(not run["samples"] or run["samples"][-1][1] < count for run in runs):
            for run in runs:
                if run["samples"] and run["samples"][-1][1] >= count:
                    continue
                if run["process"].poll() is not None:
                    raise SystemExit(f"a worker stopped; see {run['log']}")
                done = worker_bench.metric_sum(run["port"], processed)
                if done:
                    run["samples"].append((time.perf_counter(), done, process_threads(run["process"].pid)))
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not finish in 15 minutes")
            time.sleep(0.25 if all(run["samples"] for run in runs) else 0.01)
    finally:
        for run in runs:
            run["process"].terminate()
        for run in runs:
            run["process"].wait(30)
            scratch.forget(url, run["key"])
    results = {}
    for run in runs:
        samples = run["samples"]
        inside = [sample for sample in samples if sample[1] < count] or samples[:1]
        start, end = inside[0], inside[-1] if len(inside) > 1 else samples[-1]
        events = end[1] - start[1]
        result = {kind: (cpu - start[2][kind]) * 1e6 / events for kind, cpu in end[2].items()}
        result["total"] = result[MAIN] + result[WRITE] + result[KAFKA] + result[REST]
        result["events/s"] = events / (end[0] - start[0])
        results[run["label"]] = result
    return results


def pair(args: argparse.Namespace) -> None:
    backlog = json.loads(args.backlog.read_text())
    trees = []
    for spec in args.tree:
        label, paths = spec.split("=", 1)
        root, *first = paths.split(":")
        trees.append((label, str(Path(root).resolve()), first))
    everything: dict[str, list[dict[str, float]]] = defaultdict(list)
    for number in range(args.rounds):
        order = trees[number % len(trees) :] + trees[: number % len(trees)]
        print(
            f"## round {number + 1}, started in the order {[t[0] for t in order]}, load {_load()}", flush=True
        )
        for label, result in pair_round(backlog, order).items():
            everything[label].append(result)
            print(f"{label:10s} total {result['total']:6.2f} µs/event: {MAIN} {result[MAIN]:5.2f}, "
                  f"{WRITE} {result[WRITE]:5.2f}, {KAFKA} {result[KAFKA]:4.2f}, {REST} {result[REST]:4.2f}; "
                  f"{result['events/s']:,.0f} events/s", flush=True)  # fmt: skip
    print(f"## end, load {_load()}; median [each round]")
    for kind in ("total", MAIN, WRITE, KAFKA, REST, SYSTEM, "events/s"):
        for label, results in everything.items():
            each = [r[kind] for r in results]
            print(f"{kind:18s} {label:10s} {statistics.median(each):9.2f}  {_each(each)}")
    if len(everything) == 2:
        (first_label, first), (second_label, second) = everything.items()
        for kind in ("total", MAIN, WRITE):
            differences = [b[kind] - a[kind] for a, b in zip(first, second, strict=True)]
            median = statistics.median(differences)
            share = median / statistics.median([a[kind] for a in first])
            print(f"{second_label} - {first_label}, {kind}: median {median:+.2f} µs/event ({share:+.1%}) "
                  f"{_each(differences, '+')}")  # fmt: skip


def _each(values: list[float], sign: str = "") -> str:
    return "[" + " ".join(f"{value:{sign}.2f}" for value in values) + "]"


def _load() -> str:
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fill = sub.add_parser("fill", help="fill a topic with the backlog; prints what the others read")
    fill.add_argument("--events", type=int, default=200_000)
    fill.add_argument("--users", type=int, default=10_000)
    stages = sub.add_parser("run", help="the worker's stages in this process")
    stages.add_argument("backlog", type=Path)
    stages.add_argument("--passes", type=int, default=3)
    stages.add_argument("--batch-size", type=int, default=10_000)
    stages.add_argument("--detail", action="store_true", help="time the write's parts (adds overhead)")
    stages.add_argument("--label", default="")
    together = sub.add_parser("pair", help="worker processes of several trees at once")
    together.add_argument("backlog", type=Path)
    together.add_argument("--tree", action="append", required=True, metavar="LABEL=DIR[:FIRST_ON_PATH...]")
    together.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.command == "fill":
        print(json.dumps(fill_backlog(args.events, args.users)))
    elif args.command == "run":
        run(args)
    else:
        pair(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
