"""Kinesis Data Streams as the events' source (docs/kinesis.md), through boto3 against moto's server:
events posted to the collector are stored in the stream, a `tailor worker` reads its shards and counts
them exactly in Redis, and a worker SIGKILLed mid-stream loses nothing and counts nothing twice once
a new one resumes from the per-shard checkpoints."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis
from tailor_api import web
from tailor_api.collector import Collector
from tailor_worker import deadletter, kinesis_source
from test_worker import WorkerProcess, views, wait_until

from tailor.core import kinesis as kinesis_settings
from tailor.devstack import kinesis_emulator, scratch

pytestmark = [pytest.mark.redis, pytest.mark.slow]

USERS = [f"k{i}" for i in range(20)]


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


def serve(collector: Collector) -> httpx.AsyncClient:
    """The collector behind the app's own reply sending (as test_collector.py serves it)."""

    async def app(scope: web.Scope, receive: web.Receive, send: web.Send) -> None:
        await web.send_reply(send, await collector.handle(scope, receive))

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tailor.test")


def events(count: int) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4().hex, "type": "page_view", "userId": USERS[i % len(USERS)],
             "properties": {"category": "shoes"}} for i in range(count)]  # fmt: skip


async def post(http: httpx.AsyncClient, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 100):
        reply = await http.post("/v1/events", json={"events": items[start : start + 100]})
        assert reply.status_code == 202, reply.text
        assert reply.json()["accepted"] == len(items[start : start + 100])


async def test_posted_events_are_counted_exactly_through_kinesis_across_a_killed_worker(
    kinesis: kinesis_emulator.KinesisEmulator,
    redis_url: str,
    redis_client: redis.Redis,
    workers: list[WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    environment = {**kinesis_emulator.ENVIRONMENT, "TAILOR_EVENTS_SOURCE": "kinesis",
                   "TAILOR_KINESIS_STREAM": stream, "TAILOR_KINESIS_ENDPOINT_URL": kinesis.endpoint,
                   "TAILOR_KINESIS_IDLE_POLL_SECONDS": "0.05",
                   # The killed worker's shards wait for its leases to expire before the next one reads.
                   "TAILOR_KINESIS_LEASE_SECONDS": "1",
                   # Small pages (batches of 100 from 2 shards), so the worker is killed mid-stream.
                   "TAILOR_KINESIS_RECORDS_PER_CALL": "50"}  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = kinesis_settings.KinesisSettings().client()
    client.create_stream(StreamName=stream, ShardCount=2)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    # No Kafka anywhere: the stack's topics are never made, its bootstrap is never dialled.
    config = scratch.stack_config("127.0.0.1:9", "kinesis-test")
    await asyncio.to_thread(scratch.publish, redis_url, config, make_topics=False)
    collector = Collector()
    await collector.start(config)
    http = serve(collector)
    first, second = events(1000), events(1000)
    try:
        await post(http, first)
        stored = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        assert stored["OpenShardCount"] == 2
        worker = WorkerProcess(config.key, redis_url, **environment)
        workers.append(worker)

        def counted() -> dict[str, int]:
            return {user: views(redis_client, config, user) for user in USERS}

        # SIGKILLed mid-stream: some of the first half counted and checkpointed, the rest not yet.
        key = kinesis_source.checkpoint_key(config.key, stream)
        wait_until(lambda: redis_client.hlen(key) > 0, 60, worker.output)
        worker.kill()
        assert sum(counted().values()) < 1000, "not mid-stream: the whole first half was counted"
        await post(http, second)
        await post(http, first[:200])  # a client resending after a lost reply: the same ids

        # Full pages for the one that resumes: it has 1,200 records or more to read.
        again = WorkerProcess(
            config.key, redis_url, **{**environment, "TAILOR_KINESIS_RECORDS_PER_CALL": "500"}
        )
        workers.append(again)
        expected = dict.fromkeys(USERS, 100)
        wait_until(lambda: counted() == expected, 60, lambda: f"{counted()}\n{again.output()}")

        def outcomes() -> tuple[float, float, float]:
            return (again.metric("tailor_worker_events_consumed_total"),
                    again.metric('tailor_worker_events_processed_total{outcome="counted"}'),
                    again.metric('tailor_worker_events_processed_total{outcome="duplicate"}'))  # fmt: skip

        # Every record it read is counted or a duplicate (the killed worker's last batch, the resent 200)
        wait_until(lambda: outcomes()[0] == outcomes()[1] + outcomes()[2], 10,
                   lambda: f"{outcomes()}\n{again.output()}")  # fmt: skip
        consumed, _, duplicates = outcomes()
        # ... and it resumed after the checkpoints, not from the start of the stream (2,200 records).
        assert consumed < 2200, again.output()
        assert duplicates >= 200
        behind = [line for line in again.scrape().splitlines()
                  if line.startswith("tailor_worker_kinesis_behind_seconds{")]  # fmt: skip
        assert len(behind) == 2, behind  # one per shard
        assert counted() == expected
        assert again.terminate() == 0, again.output()
    finally:
        await http.aclose()
        await collector.close()
        client.delete_stream(StreamName=stream)
        scratch.forget(redis_url, config.key)


async def test_two_workers_share_the_shards_and_when_one_is_sigkilled_the_other_takes_them_counting_exactly(
    kinesis: kinesis_emulator.KinesisEmulator,
    redis_url: str,
    redis_client: redis.Redis,
    workers: list[WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    environment = {**kinesis_emulator.ENVIRONMENT, "TAILOR_EVENTS_SOURCE": "kinesis",
                   "TAILOR_KINESIS_STREAM": stream, "TAILOR_KINESIS_ENDPOINT_URL": kinesis.endpoint,
                   "TAILOR_KINESIS_IDLE_POLL_SECONDS": "0.05", "TAILOR_KINESIS_RECORDS_PER_CALL": "50",
                   "TAILOR_KINESIS_LEASE_SECONDS": "2"}  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = kinesis_settings.KinesisSettings().client()
    client.create_stream(StreamName=stream, ShardCount=4)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    shards = [shard["ShardId"] for shard in client.list_shards(StreamName=stream)["Shards"]]
    config = scratch.stack_config("127.0.0.1:9", "kinesis-test")
    await asyncio.to_thread(scratch.publish, redis_url, config, make_topics=False)
    collector = Collector()
    await collector.start(config)
    http = serve(collector)
    first, second = events(1000), events(1000)
    a = WorkerProcess(config.key, redis_url, **environment)
    workers.append(a)

    def owners() -> list[str]:
        """Each shard's lease holder, as the pid of its worker ('' when free)."""
        held = [str(redis_client.get(kinesis_source.lease_key(config.key, stream, shard)) or "")
                for shard in shards]  # fmt: skip
        return [owner.split("-")[-2] if owner else "" for owner in held]

    def counted() -> dict[str, int]:
        return {user: views(redis_client, config, user) for user in USERS}

    try:
        wait_until(lambda: owners() == [str(a.process.pid)] * 4, 30, a.output)
        # A second worker joins: the first gives up half its shards, the second takes them.
        b = WorkerProcess(config.key, redis_url, **environment)
        workers.append(b)
        pids = sorted([str(a.process.pid), str(b.process.pid)])
        wait_until(lambda: sorted(owners()) == sorted(pids * 2), 30,
                   lambda: f"{owners()} {pids}\n{a.output()}\n{b.output()}")  # fmt: skip
        await post(http, first)
        # a is SIGKILLed once it has checkpointed some of its shards and not counted all of its share.
        key = kinesis_source.checkpoint_key(config.key, stream)
        wait_until(lambda: redis_client.hlen(key) >= 3, 30, a.output)
        a.kill()
        assert sum(counted().values()) < 1000, "not mid-stream: every event of the first half was counted"
        await post(http, second)  # no resend: exact counts then mean nothing lost and nothing twice
        # b takes a's shards once their leases expire (2 s), from a's checkpoints.
        wait_until(lambda: owners() == [str(b.process.pid)] * 4, 30, lambda: f"{owners()}\n{b.output()}")
        expected = dict.fromkeys(USERS, 100)
        wait_until(lambda: counted() == expected, 60, lambda: f"{counted()}\n{b.output()}")
        assert b.terminate() == 0, b.output()
        assert owners() == [""] * 4  # a stopped worker gives its leases up
        assert counted() == expected
    finally:
        await http.aclose()
        await collector.close()
        client.delete_stream(StreamName=stream)
        scratch.forget(redis_url, config.key)


class ReshardedStream:
    """A stream as AWS documents resharding, which moto does not show (docs/kinesis.md): a closed
    parent keeps its records and ends its iterator after the last one (no NextShardIterator), its
    children hold only what was written after the split or merge. Only the calls ShardReader makes."""

    def __init__(self) -> None:
        self.shards: dict[str, dict[str, Any]] = {}
        self.sequence = 10**50  # AWS's are 56-digit numbers, increasing

    def add(self, shard: str, *parents: str) -> None:
        self.shards[shard] = {"records": [], "parents": parents, "closed": False}
        for parent in parents:
            self.shards[parent]["closed"] = True

    def put(self, shard: str, count: int) -> None:
        for _ in range(count):
            self.sequence += 7
            self.shards[shard]["records"].append(
                {"SequenceNumber": str(self.sequence), "Data": f"{shard}:{self.sequence}".encode(),
                 "PartitionKey": "u", "ApproximateArrivalTimestamp": datetime.now(UTC)}
            )  # fmt: skip

    def list_shards(self, **_: Any) -> dict[str, Any]:
        listed = []
        for shard, state in self.shards.items():
            item: dict[str, Any] = {"ShardId": shard, "SequenceNumberRange": {}}
            if state["parents"]:
                item["ParentShardId"] = state["parents"][0]
            if len(state["parents"]) > 1:
                item["AdjacentParentShardId"] = state["parents"][1]
            if state["closed"] and state["records"]:
                item["SequenceNumberRange"]["EndingSequenceNumber"] = state["records"][-1]["SequenceNumber"]
            listed.append(item)
        return {"Shards": listed}

    def get_shard_iterator(self, *, ShardId: str, ShardIteratorType: str, **more: Any) -> dict[str, str]:
        records = self.shards[ShardId]["records"]
        start = 0
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            after = int(more["StartingSequenceNumber"])
            start = sum(1 for record in records if int(record["SequenceNumber"]) <= after)
        return {"ShardIterator": f"{ShardId}|{start}"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard, position = ShardIterator.split("|")
        state, start = self.shards[shard], int(position)
        page = state["records"][start : start + Limit]
        end = start + len(page)
        finished = state["closed"] and end == len(state["records"])
        return {"Records": page, "NextShardIterator": None if finished else f"{shard}|{end}"}

    def close(self) -> None:
        return None


def test_parents_are_read_to_their_end_before_children_across_a_split_a_merge_and_a_restart(
    redis_client: redis.Redis,
) -> None:
    stack = f"kinesis-test/{uuid.uuid4().hex[:8]}"
    settings = kinesis_settings.KinesisSettings(
        source="kinesis",
        stream="resharded",
        records_per_call=10,
        idle_poll_seconds=0,
        list_shards_seconds=0.001,
    )
    stream = ReshardedStream()
    stream.add("s0")
    stream.put("s0", 25)
    stream.add("s1", "s0")  # split: s0 closed with 25 records, s1 and s2 take the writes after it
    stream.add("s2", "s0")
    stream.put("s1", 12)
    stream.put("s2", 8)
    stream.add("s3", "s1", "s2")  # merge
    stream.put("s3", 5)
    read: list[str] = []

    def run(reader: kinesis_source.ShardReader, rounds: int) -> None:
        for _ in range(rounds):
            records = reader.take(15, 0)
            newest: dict[int, int] = {}
            for record in records:
                value, partition, offset = record.value(), record.partition(), record.offset()
                assert value is not None
                assert partition is not None
                assert offset is not None
                read.append(value.decode().split(":")[0])
                newest[partition] = max(newest.get(partition, -1), offset)
            reader.store(newest)  # as the worker does after the batch's Redis write

    try:
        first = kinesis_source.ShardReader(settings, redis_client, stack, kinesis_client=stream)
        run(first, 4)
        assert read.count("s0") == 25
        assert "s3" not in read  # its parents are not both done yet
        first.close()  # stopped: its leases given up
        # A new reader (a restarted worker) resumes after the checkpoints and reads nothing twice.
        run(kinesis_source.ShardReader(settings, redis_client, stack, kinesis_client=stream), 6)
        assert [read.count(shard) for shard in ("s0", "s1", "s2", "s3")] == [25, 12, 8, 5]
        last_parent = max(index for index, shard in enumerate(read) if shard != "s3")
        assert read.index("s3") > last_parent  # the merged shard after both of its parents
        assert read.index("s1") > max(index for index, shard in enumerate(read) if shard == "s0")
        assert read.index("s2") > max(index for index, shard in enumerate(read) if shard == "s0")
        checkpoints = redis_client.hgetall(kinesis_source.checkpoint_key(stack, "resharded"))
        assert {shard: at for shard, at in checkpoints.items() if at == kinesis_source.SHARD_END}.keys() == {
            "s0",
            "s1",
            "s2",
        }
        assert checkpoints["s3"] == stream.shards["s3"]["records"][-1]["SequenceNumber"]
    finally:
        leftovers = redis_client.keys(f"tailor:{{{stack}}}:kinesis:*")
        redis_client.delete(kinesis_source.checkpoint_key(stack, "resharded"), *leftovers)


def test_a_worker_that_lost_its_lease_cannot_move_the_checkpoint_and_dead_letters_name_their_record(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stack = f"kinesis-test/{uuid.uuid4().hex[:8]}"
    settings = kinesis_settings.KinesisSettings(source="kinesis", stream="fenced", idle_poll_seconds=0)
    stream = ReshardedStream()
    stream.add("s0")
    stream.put("s0", 10)
    key = kinesis_source.checkpoint_key(stack, "fenced")
    reader = kinesis_source.ShardReader(settings, redis_client, stack, kinesis_client=stream)

    def take_and_store(count: int) -> list[Any]:
        records = reader.take(count, 0)
        newest = records[-1].offset()
        assert newest is not None
        reader.store({0: newest})  # as the worker does after the batch's Redis write
        return records

    def checkpoint_at(index: int) -> bool:
        return bool(redis_client.hget(key, "s0") == stream.shards["s0"]["records"][index]["SequenceNumber"])

    try:
        take_and_store(4)
        assert checkpoint_at(3)
        # Its lease taken over (it stalled past the expiry): its next store must not move the checkpoint.
        redis_client.set(kinesis_source.lease_key(stack, "fenced", "s0"), "another-worker")
        second = take_and_store(4)
        assert checkpoint_at(3)
        # The control: while it owns the lease, its store moves the checkpoint.
        redis_client.set(kinesis_source.lease_key(stack, "fenced", "s0"), reader.owner)
        take_and_store(2)
        assert checkpoint_at(9)

        record = second[0]
        letter = deadletter.DeadLetter(record, "invalid", [{"loc": "id", "msg": "missing"}])
        with caplog.at_level(logging.WARNING, logger=kinesis_source.__name__):
            kinesis_source.LoggedDeadLetters().send([letter])
        sequence = stream.shards["s0"]["records"][4]["SequenceNumber"]
        assert f"dead letter (invalid) at s0 {sequence}" in caplog.text
    finally:
        redis_client.delete(*redis_client.keys(f"tailor:{{{stack}}}:kinesis:*"))


async def test_events_the_stream_did_not_store_get_a_503_and_the_same_batch_a_202_once_it_does(
    kinesis: kinesis_emulator.KinesisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    environment = {**kinesis_emulator.ENVIRONMENT, "TAILOR_EVENTS_SOURCE": "kinesis",
                   "TAILOR_KINESIS_STREAM": stream,
                   "TAILOR_KINESIS_ENDPOINT_URL": kinesis.endpoint}  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    collector = Collector()
    await collector.start(scratch.stack_config("127.0.0.1:9", "kinesis-test"))
    http = serve(collector)
    client = kinesis_settings.KinesisSettings().client()
    batch = {"events": events(3)}
    try:
        refused = await http.post("/v1/events", json=batch)  # the stream does not exist (yet)
        assert refused.status_code == 503, refused.text
        client.create_stream(StreamName=stream, ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
        accepted = await http.post("/v1/events", json=batch)
        assert accepted.status_code == 202, accepted.text
        (shard,) = client.list_shards(StreamName=stream)["Shards"]
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        stored = client.get_records(ShardIterator=iterator)["Records"]
        assert [orjson.loads(record["Data"])["id"] for record in stored] == [e["id"] for e in batch["events"]]
        assert [record["PartitionKey"] for record in stored] == [e["userId"] for e in batch["events"]]
    finally:
        await http.aclose()
        await collector.close()
        client.delete_stream(StreamName=stream)
