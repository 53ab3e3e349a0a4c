"""Redis with the managed settings SIGKILLed and started again mid-stream (docs/operating.md#durability):
what a real collector acknowledged against what a real worker counted once Redis is back.

The Redis runs with the very arguments the operator gives a managed Redis
(`builders.redis_statefulset`: `--appendonly yes --appendfsync <spec.redis.appendfsync> --save "60 1000"`,
maxmemory, noeviction), for `always` (the default) and `everysec`. While it is away the worker's
writes fail and it holds its batch (offsets are stored only after a write succeeded); after the
restart it writes again from what Redis holds. The page cache is dropped between the kill and the
restart (`echo 3 > /proc/sys/vm/drop_caches`, as root), so Redis reads its files back from the disk.

What this cannot simulate is a crash of the machine: a SIGKILL leaves what Redis wrote with write(2)
in the kernel, which writes it out later whether or not Redis asked for an fsync; and dropping the
page cache drops only clean pages (`Dirty:` in /proc/meminfo does not move). That case is in
docs/operating.md#durability as a reasoned bound, not a measurement.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fault_harness
import pytest
import redis
from pipeline_harness import running_pipeline, wait_until
from tailor_operator import builders

from tailor.core.rules import specs
from tailor.devstack import ports, scratch, toolchain

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

REDIS_DOWN_SECONDS = 1.0


def managed_redis_args(appendfsync: str) -> list[str]:
    """The managed Redis' arguments as the operator builds them, less what only a pod has (the password
    from its Secret, /data)."""
    spec = specs.StackSpec.model_validate(
        {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"managed": True, "appendfsync": appendfsync}}
    )
    statefulset = builders.redis_statefulset(builders.Stack("shop", "shop", "uid", spec), "checksum")
    args: list[str] = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    del flags["--requirepass"], flags["--dir"]
    assert flags["--appendonly"] == "yes", flags
    assert flags["--appendfsync"] == appendfsync, flags
    return [part for pair in flags.items() for part in pair]


def drop_page_cache() -> str:
    """Ask the kernel to drop its clean page cache; what happened, in words (for the report)."""
    cached = _meminfo("Cached")
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        return f"drop_caches refused: {error}"
    return f"page cache {cached // 1024} -> {_meminfo('Cached') // 1024} MiB"


def _meminfo(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


@dataclass
class ManagedRedis:
    directory: Path
    appendfsync: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or ports.pick(None)
        command = [
            str(toolchain.find_tool("redis-server")),
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            *managed_redis_args(self.appendfsync),
        ]  # fmt: skip
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            wait_until(lambda: self._pings(client), 60, self.log)
        finally:
            client.close()

    def _pings(self, client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused while down, BUSY/LOADING while it reads its AOF
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no chance to write anything more
        self.process.wait(10)

    def log(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def managed_redis(directory: Path, appendfsync: str) -> Iterator[ManagedRedis]:
    server = ManagedRedis(directory, appendfsync)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_the_managed_redis_sigkilled_mid_stream_loses_no_acknowledged_event_and_counts_none_twice(
    kafka_bootstrap: str, appendfsync: str, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    with managed_redis(tmp_path, appendfsync) as server:
        config = scratch.stack_config(kafka_bootstrap, "redis-faults")
        worker_env = {"TAILOR_WORKER_RETRY_SECONDS": "0.2"}
        with running_pipeline(config, server.url, worker_env, api_args=("--routes", "collect")) as pipeline:
            posting_from = time.monotonic()
            with fault_harness.posting(pipeline.api_url) as posters:
                wait_until(lambda: pipeline.worker_metric(fault_harness.COUNTED) > 3000, 60, pipeline.outputs)
                killed_at = time.monotonic()
                server.kill()
                dropped = drop_page_cache()
                time.sleep(REDIS_DOWN_SECONDS)  # down long enough that the worker's writes fail
                server.start()
                timings["Redis back (s)"] = time.monotonic() - killed_at
                counted_at_restart = pipeline.worker_metric(fault_harness.COUNTED)
                wait_until(
                    lambda: pipeline.worker_metric(fault_harness.COUNTED) > counted_at_restart + 1000,
                    60,
                    pipeline.outputs,
                )
                timings["worker counting again (s)"] = time.monotonic() - killed_at
                time.sleep(2.0)
            stopped_at = time.monotonic()
            rate = sum(len(p.acknowledged) for p in posters) / (stopped_at - posting_from)
            report = fault_harness.measure(server.url, config, posters, stopped_at, timings)
            errors = pipeline.worker_metric("tailor_worker_redis_errors_total")
            outputs = pipeline.outputs()
    print(f"\n[appendfsync {appendfsync}] Redis SIGKILLed: {report}, ~{rate:.0f} events/s; {dropped}")
    # The worker did meet the outage (its writes failed and were retried), and recovered by itself.
    assert errors > 0, outputs
    assert (report.lost, report.twice) == (0, 0), f"{report}\n{outputs}"
    assert report.missing_from_topic == 0, report
    assert sum(p.abandoned for p in posters) == 0
