"""Redis with the managed settings crashed and started again mid-stream (docs/operating.md#durability):
what a real collector acknowledged against what a real worker counted once Redis is back.

The Redis runs with the very arguments the operator gives a managed Redis
(`builders.redis_statefulset`: `--appendonly yes --appendfsync <spec.redis.appendfsync> --save "60 1000"`,
maxmemory, noeviction), for `always` (the default) and `everysec`. While it is away the worker's
writes fail and it holds its batch (offsets are stored only after a write succeeded); after the
restart it writes again from what Redis holds.

Two crashes:
- the process SIGKILLed (an OOM kill, a deleted pod). What Redis wrote with write(2) stays in the
  kernel, which writes it out whether or not Redis asked for an fsync. The page cache is dropped
  before the restart (`echo 3 > /proc/sys/vm/drop_caches`), but that drops only clean pages: what was
  written and not yet on the disk (`Dirty:` in /proc/meminfo) stays.
- the machine crashed (a kernel panic, a power cut): Redis' directory is an ext4 file system on a loop
  device; at the crash Redis is SIGKILLed and the device's image copied at once. The copy holds what
  the file system had sent to the device — everything fsynced, and whatever the kernel wrote back by
  itself — but not the dirty pages still in memory, as a disk after a power cut. Redis starts again on
  the copy (ext4 replays its journal; Redis loads a truncated AOF, `aof-load-truncated yes`).
  With `everysec` this loses the writes of the last second or so, and their events are not counted
  again (the worker had stored their offsets): the control that shows the measurement can fail.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        f"{' '.join(command)}: {result.stderr.strip()} (the machine crash needs root)"
    )


@dataclass
class LoopDisk:
    """An ext4 file system in `image`, mounted on `mountpoint` through a loop device."""

    image: Path
    mountpoint: Path
    mounted: bool = False

    def create(self) -> None:
        with self.image.open("wb") as file:
            file.truncate(128 * 2**20)
        run("mkfs.ext4", "-q", "-F", str(self.image))
        self.mount()

    def mount(self) -> None:
        self.mountpoint.mkdir(exist_ok=True)
        run("mount", "-o", "loop", str(self.image), str(self.mountpoint))
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            run("umount", str(self.mountpoint))
            self.mounted = False

    def power_cut(self) -> None:
        """The disk as it is now, without what the kernel still holds in memory, becomes the disk."""
        crashed = self.image.with_suffix(".crashed")
        # First, and quickly (sparse): the image as the device has it at this instant.
        run("cp", "--sparse=always", str(self.image), str(crashed))
        self.unmount()  # writes the dirty pages to the old image, which is then thrown away
        crashed.replace(self.image)
        self.mount()


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
        with (self.directory.parent / f"redis-{self.port}.log").open("ab") as log:
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
        return (self.directory.parent / f"redis-{self.port}.log").read_text(errors="replace")[-3000:]


Crash = Literal["process", "machine"]


@contextlib.contextmanager
def managed_redis(directory: Path, appendfsync: str, crash: Crash) -> Iterator[tuple[ManagedRedis, LoopDisk]]:
    disk = LoopDisk(directory / "redis.img", directory / "data")
    if crash == "machine":
        disk.create()
    else:
        disk.mountpoint.mkdir()
    server = ManagedRedis(disk.mountpoint, appendfsync)
    try:
        server.start()
        yield server, disk
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
        disk.unmount()


# A machine crash is a process kill and more (the kernel's unwritten pages go too): `always` is tested
# with the machine crash, `everysec` with the process kill it survives (a pod deleted or OOM-killed).
CASES = {
    "always-machine-crashed": ("always", "machine"),
    "everysec-process-killed": ("everysec", "process"),
}
if fault_harness.ALL_CASES:
    CASES["control-everysec-machine-crashed"] = ("everysec", "machine")
    CASES["always-process-killed"] = ("always", "process")


@pytest.mark.parametrize(("appendfsync", "crash"), CASES.values(), ids=CASES.keys())
def test_the_managed_redis_crashed_mid_stream_loses_no_acknowledged_event_and_counts_none_twice(
    kafka_bootstrap: str, appendfsync: str, crash: Crash, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    timings: dict[str, float] = {}
    with managed_redis(tmp_path, appendfsync, crash) as (server, disk):
        config = scratch.stack_config(kafka_bootstrap, "redis-faults")
        worker_env = {"TAILOR_WORKER_RETRY_SECONDS": "0.2"}
        with running_pipeline(config, server.url, worker_env, api_args=("--routes", "collect")) as pipeline:
            posting_from = time.monotonic()
            with fault_harness.posting(pipeline.api_url) as posters:
                wait_until(lambda: pipeline.worker_metric(fault_harness.COUNTED) > 3000, 60, pipeline.outputs)
                killed_at = time.monotonic()
                server.kill()
                if crash == "machine":
                    disk.power_cut()
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
    print(f"\n[{request.node.callspec.id}] {report}, ~{rate:.0f} events/s; {dropped}")
    # The worker did meet the outage (its writes failed and were retried), and recovered by itself.
    assert errors > 0, outputs
    if (appendfsync, crash) == ("everysec", "machine"):
        assert report.lost > 0, f"the control lost nothing: {report}"
        return
    assert (report.lost, report.twice) == (0, 0), f"{report}\n{outputs}"
    assert report.missing_from_topic == 0, report
    assert sum(p.abandoned for p in posters) == 0
