"""A stack's content API and worker as real `tailor` processes on the real broker and Redis: started on
a published ruleset, their metrics scraped, their output kept for failure messages; and the session's
broker, to stop and start under them."""

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
from pathlib import Path

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from tailor import devstack
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import ports, probes, scratch

ADMIN_TOKEN = "pipeline-admin-token-of-at-least-32-bytes"
# The pipelines here stream hundreds of events per user per second to count them exactly: the workers'
# per-user caps (tested in test_profile_store.py) are lifted.
UNCAPPED = {
    "TAILOR_WORKER_EVENTS_PER_USER_PER_MINUTE": "1000000",
    "TAILOR_WORKER_DEDUP_MARKS_PER_USER": "1000000",
}


class Process:
    """A `tailor` command in a subprocess, its output kept (for failure messages) until closed."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.admin_url = ""  # `tailor api`'s admin port (explain, profiles, metrics, readiness): start_api
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

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod (SIGKILL if it takes more than 30 s); the output stays."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def close(self) -> None:
        self.stop()
        self.log.close()


@dataclass
class Broker:
    """The session's Kafka broker (tailor.devstack), for tests that take it away."""

    stack: devstack.Stack

    def restart(self) -> None:
        """SIGTERM (a controlled shutdown), then start and wait until healthy."""
        self.stack.restart("kafka")

    def stop(self) -> None:
        self.stack.stop("kafka")

    def start(self) -> None:
        """Start (a no-op when running) and wait until healthy."""
        self.stack.start("kafka")

    def kill_and_start(self, down_seconds: float) -> None:
        """SIGKILL (a crash: log recovery on start), down a while, then start and wait until healthy."""
        self.stack.kill("kafka")
        time.sleep(down_seconds)
        self.stack.start("kafka")


@contextlib.contextmanager
def session_broker(stack: devstack.Stack, bootstrap: str) -> Iterator[Broker]:
    """The session's broker, running and healthy again when the block ends whatever happened in it (the
    tests after it share the broker). Refuses an external one (TAILOR_KAFKA_BOOTSTRAP)."""
    if "kafka" not in stack.state.components:
        raise AssertionError(
            "TAILOR_KAFKA_BOOTSTRAP points elsewhere: this test stops the session's own broker"
        )
    try:
        yield Broker(stack)
    finally:
        stack.start("kafka")
        assert probes.kafka_metadata(bootstrap, timeout=10.0), "the broker did not come back"


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
    api_url: str  # the public port: decide, feedback, events
    worker: Process
    worker_metrics: str

    def outputs(self) -> str:
        return f"--- api ---\n{self.api.output()}\n--- worker ---\n{self.worker.output(12000)}"

    @property
    def admin_url(self) -> str:
        """The API's admin port: explain, profiles, metrics, health, readiness."""
        return self.api.admin_url

    def profile(self, user: str) -> dict[str, object]:
        """GET /v1/profiles/{user} on the admin port, as an operator reads it."""
        reply = httpx.get(
            f"{self.admin_url}/v1/profiles/{user}",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        document: dict[str, object] = reply.json()
        return document

    def views(self, user: str, window: str = "24h") -> int:
        counts = self.profile(user)["counts"]
        assert isinstance(counts, dict)
        return int(counts.get(window, {}).get("views", 0))

    def worker_metric(self, name: str) -> float:
        return metric(scrape(self.worker_metrics), name)

    def api_metric(self, name: str) -> float:
        return metric(scrape(f"{self.admin_url}/metrics"), name)


def start_api(
    config: StackConfig, redis_url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[Process, str]:
    """`tailor api` for `config`'s stack on free ports (`args` added, e.g. --routes collect); the URL of
    its public port (its admin port's is `process.admin_url`)."""
    port, admin_port = ports.pick(None), ports.pick(None)
    process = Process(
        ["api", "--stack", config.key, "--host", "127.0.0.1", "--port", str(port),
         "--admin-port", str(admin_port), "--log-level", "warning", *args],
        {"TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})},
    )  # fmt: skip
    process.admin_url = f"http://127.0.0.1:{admin_port}"
    return process, f"http://127.0.0.1:{port}"


def wait_ready(url: str, process: Process, explain: Callable[[], str], path: str = "/readyz") -> None:
    """Until `url` (an admin port) answers 200 on `path` (/readyz/collector: events are taken);
    AssertionError with `explain()` if the process exits first."""

    def ready() -> bool:
        try:
            return httpx.get(f"{url}{path}", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(lambda: ready() or not process.alive, 60, explain)
    assert process.alive, explain()


@contextlib.contextmanager
def running_pipeline(
    config: StackConfig,
    redis_url: str,
    worker_env: dict[str, str],
    *,
    api_args: tuple[str, ...] = (),
    api_env: dict[str, str] | None = None,
    kafka_secrets: Path | None = None,
) -> Iterator[Pipeline]:
    """`config`'s ruleset published (its topics made), its content API and worker running until the
    block ends, the API collecting events unless `api_args` has it only decide; `worker_env` adds to
    the worker's environment, `api_args` and `api_env` to the API's. `kafka_secrets`: the directory of
    the Secret keys its Kafka security names (TAILOR_KAFKA_SECRETS_DIR of both)."""
    secrets = {"TAILOR_KAFKA_SECRETS_DIR": str(kafka_secrets)} if kafka_secrets is not None else {}
    scratch.publish(redis_url, config, **({"secrets_dir": kafka_secrets} if kafka_secrets else {}))
    metrics_port = ports.pick(None)
    api, api_url = start_api(config, redis_url, *api_args, env={**secrets, **(api_env or {})})
    worker = Process(
        ["worker", "--stack", config.key, "--metrics-port", str(metrics_port)],
        {
            "TAILOR_REDIS_URL": redis_url,
            "TAILOR_WORKER_METRICS_HOST": "127.0.0.1",
            **secrets,
            **UNCAPPED,
            **worker_env,
        },
    )
    running = Pipeline(config, api, api_url, worker, f"http://127.0.0.1:{metrics_port}/metrics")
    try:
        path = "/readyz" if "decide" in api_args else "/readyz/collector"
        wait_ready(api.admin_url, api, running.outputs, path)
        yield running
    finally:
        worker.close()
        api.close()
