"""Benchmark: the collector (POST /v1/events, batches of 50) against a raw producer. Prints one table.

1. ceiling: a raw confluent-kafka producer in this one process producing the very messages the
   collector produces (same value, key and CloudEvents headers; idempotent, acks=all), flushed.
2. `tailor api` (the real server and app) answering wrk's POSTs of 50 events, each 202 sent only
   after Kafka acknowledged all 50; once with delivery reports served by a poll thread, once by the
   event loop. "per core" is events per CPU-second of the server's processes (target ≥ 30,000).

    eval "$(tailor dev env)"; .venv/bin/python bench/collector.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _pipeline
import orjson
from confluent_kafka import Producer

from tailor.core import events
from tailor.devstack import ports, scratch

BATCH = 50
TARGET_PER_CORE = 30_000


def cloudevent(
    event: dict[str, object], source: bytes
) -> tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]:
    """What the collector produces for `event` (tailor_api.collector builds the same)."""
    headers: list[tuple[str, str | bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(event["id"])),
        ("ce_source", source),
        ("ce_type", f"dev.tailor.event.{event['type']}"),
        ("ce_time", "2026-11-29T10:00:00.000Z"),
        ("ce_dataschema", events.SCHEMA_ID),
        ("content-type", b"application/json"),
    ]
    return str(event["userId"]).encode(), orjson.dumps(event), headers


def raw_producer(kafka: str, topic: str, count: int) -> tuple[float, float]:
    """(events/s wall, events per CPU-second) of producing `count` collector-shaped messages."""
    messages = [cloudevent(_pipeline.shopper_event(f"u{i % 5000}"), b"/tailor/bench") for i in range(5000)]
    producer = Producer(
        {"bootstrap.servers": kafka, "enable.idempotence": True, "acks": "all", "linger.ms": 2}
    )
    producer.produce(topic, b"warm-up")
    producer.flush(10)
    delivered = 0

    def on_delivery(error: object, _message: object) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1

    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        key, value, headers = messages[i % len(messages)]
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.005)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert delivered == count, f"only {delivered} of {count} delivered"
    return count / wall, count / cpu


def wrk_script(body: bytes) -> Path:
    script = Path(tempfile.mkdtemp(prefix="tailor-bench-")) / "post.lua"
    text = body.decode()
    assert "]==]" not in text
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{text}]==]\n'
    )
    return script


def collector(
    kafka: str, redis_url: str, stack: str, mode: str, seconds: int, connections: int
) -> tuple[float, float, int, str]:
    """(events/s, events per server CPU-second, non-202 responses, wrk latency line)."""
    port, admin_port = ports.pick(None), ports.pick(None)
    log = Path(tempfile.gettempdir()) / f"tailor-bench-api-{mode}-{uuid.uuid4().hex[:6]}.log"
    server = _pipeline.tailor(
        [
            "api",
            "--stack",
            stack,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--log-level",
            "warning",
        ],
        redis_url,
        log,
        TAILOR_COLLECTOR_DELIVERY_MODE=mode,
    )
    try:
        _pipeline.wait_http(f"http://127.0.0.1:{admin_port}/readyz/collector")  # events taken
        body = orjson.dumps({"events": [_pipeline.shopper_event(f"u{i}") for i in range(BATCH)]})
        script = wrk_script(body)
        url = f"http://127.0.0.1:{port}/v1/events"
        # Warm up (connections, producer id, JIT-free but caches), then measure.
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", "-s", str(script), url], capture_output=True, check=True)
        cpu_before = _pipeline.tree_cpu_seconds(server.pid)
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        )
        cpu = _pipeline.tree_cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(30)
    output = result.stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = int(non_2xx.group(1)) if non_2xx else 0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", output)
    good = (requests - failed) * BATCH
    return (
        rate * BATCH * (requests - failed) / max(requests, 1),
        good / cpu,
        failed,
        p99.group(1) if p99 else "?",
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--raw-events", type=int, default=300_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/collector.py needs wrk: make setup installs it (or apt-get install wrk)")
    kafka, redis_url = _pipeline.environment()
    config = _pipeline.stack_config(kafka)
    scratch.publish(redis_url, config)

    raw_rate, raw_per_cpu = raw_producer(kafka, config.kafka.events_topic, args.raw_events)
    rows: list[list[object]] = [
        [
            "path",
            "events/s",
            "events per CPU-s",
            "vs raw (per CPU-s)",
            "non-202",
            "p99 latency",
            "target per core",
        ],
        [
            "raw producer, 1 process (ceiling)",
            f"{raw_rate:,.0f}",
            f"{raw_per_cpu:,.0f}",
            "1.00",
            "-",
            "-",
            "-",
        ],
    ]
    for mode in ("thread", "loop"):
        rate, per_cpu, failed, p99 = collector(
            kafka, redis_url, config.key, mode, args.seconds, args.connections
        )
        verdict = "met" if per_cpu >= TARGET_PER_CORE else "MISSED"
        rows.append([
            f"collector, batches of {BATCH}, {mode} delivery", f"{rate:,.0f}", f"{per_cpu:,.0f}",
            f"{per_cpu / raw_per_cpu:.2f}", failed, p99, f"{TARGET_PER_CORE:,} ({verdict})",
        ])  # fmt: skip
    _pipeline.table(rows)
    _pipeline.cleanup(redis_url, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
