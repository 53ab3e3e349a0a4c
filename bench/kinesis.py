"""Benchmark: one `tailor worker` reading a Kinesis data stream beside one reading a Kafka topic, in the
same run (issue 18's "Kinesis events/s per worker beside Kafka's"; docs/kinesis.md).

Each round, for each side in turn (the side that goes first alternates): a fresh bench stack, its
source filled with the same --events realistic events of --users users (not timed; one Kafka
partition, one Kinesis shard), then a real `tailor worker` counts the backlog into Redis
(bench/worker.py's `worker`: events/s from its first to its last event, and the CPU it and Redis spent
per event), beside a bare read of the same backlog (a confluent-kafka consumer; boto3 GetRecords
pages of 1,000) with its client's CPU per event. Kinesis is moto's server
(tailor.devstack.kinesis_emulator), started here.

The fair figure is the worker's own CPU per event: moto answers GetRecords from a Python process of its
own on the same two cores, so the Kinesis side's events/s are bounded by moto's speed, not the worker's
nor AWS's (moto's CPU per event is printed beside, and its own raw read is the ceiling of that side).
What the emulator makes unmeasurable: AWS's per-shard limits (2 MB/s and 5 GetRecords calls a second
per shard for reads: on AWS one shard's reads top out near 2 MB/s, about 5,500 of these events a
second, whatever the worker can do), network round trips to the AWS endpoint (GetRecords' latency;
the worker asks again at once when a page was full), and TLS (moto here is plain HTTP; AWS is HTTPS).

    eval "$(tailor dev env)"; .venv/bin/python bench/kinesis.py [--events 20000] [--users 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _pipeline
import orjson
import worker as worker_bench

from tailor.core import kinesis, redis_target
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import kinesis_emulator


def kinesis_client(emulator: kinesis_emulator.KinesisEmulator) -> Any:
    settings = kinesis.KinesisSettings(
        source="kinesis", stream="bench", region="us-east-1", endpoint_url=emulator.endpoint
    )
    return settings.client()


def fill_stream(client: Any, stream: str, count: int, users: int) -> None:
    """`count` events of `users` users stamped over the last minute, 500 a PutRecords, as the collector
    puts them (the event's JSON, the user as partition key)."""
    now = time.time()
    records = []
    for i in range(count):
        event = _pipeline.shopper_event(f"user-{i % users}", now - (count - i) * 60 / count)
        records.append({"PartitionKey": event["userId"], "Data": orjson.dumps(event)})
    for start in range(0, count, kinesis.MAX_PUT_RECORDS):
        pending = records[start : start + kinesis.MAX_PUT_RECORDS]
        while pending:
            reply = client.put_records(StreamName=stream, Records=pending)
            pending = [record for record, result in zip(pending, reply["Records"], strict=True)
                       if result.get("ErrorCode")]  # fmt: skip


def raw_read(client: Any, stream: str, count: int) -> tuple[float, float]:
    """(records/s, this process's CPU-s per record) of bare GetRecords pages of 1,000 (the worker's
    default page): the ceiling of the Kinesis side, moto included."""
    (shard,) = client.list_shards(StreamName=stream)["Shards"]
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    seen, start, cpu = 0, time.perf_counter(), time.process_time()
    while seen < count:
        reply = client.get_records(ShardIterator=iterator, Limit=1000)
        seen += len(reply["Records"])
        iterator = reply["NextShardIterator"]
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count


def one_run(
    side: str,
    kafka: str,
    target: redis_target.RedisTarget,
    emulator: kinesis_emulator.KinesisEmulator,
    args: argparse.Namespace,
) -> tuple[float, float, float, float, float, float]:
    """(events/s, worker CPU-s/event, Redis CPU-s/event, moto CPU-s/event, raw read/s, raw CPU-s/event)."""
    config: StackConfig = _pipeline.stack_config(kafka, partitions=1)
    _pipeline.publish(target, config)
    env: dict[str, str] = {}
    stream = ""
    client = kinesis_client(emulator)
    if side == "kinesis":
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_stream(StreamName=stream, ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
        fill_stream(client, stream, args.events, args.users)
        raw = raw_read(client, stream, args.events)
        env = {**kinesis_emulator.ENVIRONMENT, kinesis.ENV_SOURCE: kinesis.KINESIS,
               kinesis.ENV_STREAM: stream, kinesis.ENV_ENDPOINT_URL: emulator.endpoint}  # fmt: skip
    else:
        worker_bench.fill(kafka, config.kafka.events_topic, args.events, args.users)
        rate, per_cpu = worker_bench.raw_consume(kafka, config.kafka.events_topic, args.events)
        raw = (rate, 1 / per_cpu)
    moto_before = _pipeline.tree_cpu_seconds(emulator.process.pid)
    rate, cpu, redis_spent, _ = worker_bench.worker(target, config.key, args.events, env=env)
    moto_spent = (_pipeline.tree_cpu_seconds(emulator.process.pid) - moto_before) / args.events
    if stream:
        client.delete_stream(StreamName=stream)
    client.close()
    _pipeline.cleanup(os.environ["TAILOR_REDIS_URL"], config)
    return rate, cpu, redis_spent, moto_spent, *raw


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kafka, redis_url = _pipeline.environment()
    for name, value in kinesis_emulator.ENVIRONMENT.items():  # boto3 signs with them; moto takes any
        os.environ.setdefault(name, value)
    target = redis_target.RedisTarget.from_environment(url=redis_url)
    sides = ["kafka", "kinesis"]
    runs: dict[str, list[tuple[float, ...]]] = {side: [] for side in sides}
    lines = [["run", "events/s", "worker CPU µs/event", "Redis CPU µs/event", "moto CPU µs/event",
              "raw read/s (ceiling)", "raw read CPU µs/event", "load"]]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tailor-bench-kinesis-") as directory:
        emulator = kinesis_emulator.start(Path(directory))
        try:
            for round_ in range(1, args.rounds + 1):
                for side in sides if round_ % 2 else list(reversed(sides)):
                    result = one_run(side, kafka, target, emulator, args)
                    runs[side].append(result)
                    rate, cpu, redis_spent, moto_spent, raw_rate, raw_cpu = result
                    lines.append([f"{side}, round {round_}", f"{rate:,.0f}", f"{cpu * 1e6:.1f}",
                                  f"{redis_spent * 1e6:.1f}",
                                  f"{moto_spent * 1e6:.1f}" if side == "kinesis" else "-",
                                  f"{raw_rate:,.0f}", f"{raw_cpu * 1e6:.1f}",
                                  f"{os.getloadavg()[0]:.1f}"])  # fmt: skip
        finally:
            emulator.stop()
    print(f"bench/kinesis.py: a backlog of {args.events:,} events of {args.users:,} users, one worker, one "
          f"partition / one shard, {args.rounds} rounds in turns")  # fmt: skip
    _pipeline.table(lines)
    median = {side: [statistics.median(run[i] for run in runs[side]) for i in range(6)] for side in sides}
    kafka_m, kinesis_m = median["kafka"], median["kinesis"]
    print(f"medians: Kafka {kafka_m[0]:,.0f} events/s, worker {kafka_m[1] * 1e6:.1f} µs/event "
          f"({1 / kafka_m[1]:,.0f} events per worker CPU-s); Kinesis (moto) {kinesis_m[0]:,.0f} events/s, "
          f"worker {kinesis_m[1] * 1e6:.1f} µs/event ({1 / kinesis_m[1]:,.0f} per worker CPU-s), "
          f"moto {kinesis_m[3] * 1e6:.1f} µs/event; a bare read's client CPU: Kafka {kafka_m[5] * 1e6:.1f}, "
          f"boto3 {kinesis_m[5] * 1e6:.1f} µs/event")  # fmt: skip
    print(
        f"Kinesis / Kafka: worker events per worker CPU-second {kafka_m[1] / kinesis_m[1]:.2f} (the fair "
        f"figure); events/s {kinesis_m[0] / kafka_m[0]:.2f} (bounded by moto, not by the worker or AWS)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
