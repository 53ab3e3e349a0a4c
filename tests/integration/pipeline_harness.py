"""A stack's content API and worker as real `tailor` processes on the real broker and Redis: started on
a published ruleset, their metrics scraped, their output kept for failure messages."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import ports, scratch

ADMIN_TOKEN = "pipeline-admin-token"


class Process:
    """A `tailor` command in a subprocess, its output kept (for failure messages) until closed."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix=f"tailor-{args[0]}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tailor.cli.main", *args],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self, tail: int = 6000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-tail:]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def metric(text: str, name: str) -> float:
    """The sum of the samples whose line starts with `name` in a Prometheus scrape."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> list[Message]:
    """Every message in `topic`'s `partitions`, from the beginning to the end they had when asked."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    messages: list[Message] = []
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        read = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout
        while any(read[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=1.0):
                if message.error() is None:
                    read[message.partition() or 0] = (message.offset() or 0) + 1
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def wait_until(check: Callable[[], bool], timeout: float, explain: Callable[[], str]) -> float:
    """Seconds it took for `check` to hold; AssertionError with `explain()` after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not reached in {timeout}s:\n{explain()}")


@dataclass
class Pipeline:
    config: StackConfig
    api: Process
    api_url: str
    worker: Process
    worker_metrics: str

    def outputs(self) -> str:
        return f"--- api ---\n{self.api.output()}\n--- worker ---\n{self.worker.output(12000)}"

    def profile(self, http: httpx.Client, user: str) -> dict[str, object]:
        """GET /v1/profiles/{user}, as an operator reads it."""
        reply = http.get(f"/v1/profiles/{user}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert reply.status_code == 200, reply.text
        document: dict[str, object] = reply.json()
        return document

    def views(self, http: httpx.Client, user: str, window: str = "24h") -> int:
        counts = self.profile(http, user)["counts"]
        assert isinstance(counts, dict)
        return int(counts.get(window, {}).get("views", 0))

    def worker_metric(self, name: str) -> float:
        return metric(scrape(self.worker_metrics), name)

    def api_metric(self, name: str) -> float:
        return metric(scrape(f"{self.api_url}/metrics"), name)


@contextlib.contextmanager
def running_pipeline(config: StackConfig, redis_url: str, worker_env: dict[str, str]) -> Iterator[Pipeline]:
    """`config`'s ruleset published (its topics made), its content API and worker running until the
    block ends; `worker_env` adds to the worker's environment."""
    scratch.publish(redis_url, config)
    port, metrics_port = ports.pick(None), ports.pick(None)
    api = Process(
        ["api", "--stack", config.key, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        {"TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    worker = Process(
        ["worker", "--stack", config.key, "--metrics-port", str(metrics_port)],
        {"TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_METRICS_HOST": "127.0.0.1", **worker_env},
    )
    running = Pipeline(
        config, api, f"http://127.0.0.1:{port}", worker, f"http://127.0.0.1:{metrics_port}/metrics"
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{running.api_url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lambda: ready() or not api.alive, 60, running.outputs)
        assert api.alive, running.outputs()
        yield running
    finally:
        worker.close()
        api.close()
