"""The worker's source when the stack's events are in a Kinesis data stream (docs/kinesis.md).

`ShardReader` has the face of tailor_worker.consumer.EventConsumer (`take`, `store`, `refresh_lag`,
`close`), so the worker's batch loop, classification, Redis write and dedup are the Kafka path's own.
Each record becomes a `Record` that reads like a confluent_kafka Message to the batch classifier: its
partition is the shard's number in this reader, its offset a counter the reader maps back to the
record's sequence number (those have up to 56 digits; offsets must fit 64 bits).

Checkpoints: the sequence number of the newest record processed, per shard, in one Redis hash beside
the stack's other keys, written by `store` only after the batch's Redis write succeeded — so a
restarted reader resumes right after it (AFTER_SEQUENCE_NUMBER), replays at most the batch that was in
flight, and dedup makes that replay harmless. A shard closed by a split or merge is read to its end
and marked done (`SHARD_END`) once all its records are stored; its children are read only after every
parent is done, so one user's events (one partition key) are counted in order across a reshard.

Several workers share a stream through shard leases in Redis (`Leases`): a worker reads only the shards
it holds a lease on; a lease expires unless renewed, so the shards of a worker that died are taken by
the others after `lease_seconds`; each worker aims at its fair share (the open shards divided by the
live workers, which renew their presence alike) and gives up what it holds beyond it once nothing of
that shard is in flight. A checkpoint is written only by the lease's owner, checked in the same Redis
script that writes it (fenced): a worker that lost a shard mid-batch cannot move its checkpoint, and
what the new owner reads again is dropped by dedup.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message
from redis.typing import EncodableT

from tailor.core import kinesis
from tailor.core.logthrottle import RepeatThrottle
from tailor_worker import deadletter, metrics

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())

SHARD_END: Final = "SHARD_END"


def lease_key(stack: str, stream: str, shard: str) -> str:
    """A shard's lease: the owning worker's id, with an expiry (same hash tag as the checkpoints)."""
    return f"tailor:{{{stack}}}:kinesis:{stream}:lease:{shard}"


def workers_key(stack: str, stream: str) -> str:
    """The stream's live workers: a sorted set of worker ids scored by when their presence expires."""
    return f"tailor:{{{stack}}}:kinesis:{stream}:workers"


# Each lease key whose value is ARGV[1] gets the expiry ARGV[2] ms; returns 1 or 0 per key.
_RENEW = """
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
"""
# KEYS[1] the checkpoints hash, KEYS[i+1] shard i's lease; ARGV[1] the owner, then (shard, at) pairs:
# each checkpoint written only while ARGV[1] holds that shard's lease (the fence). Returns the count.
_CHECKPOINT = """
local written = 0
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[2 * i - 2], ARGV[2 * i - 1])
    written = written + 1
  end
end
return written
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def checkpoint_key(stack: str, stream: str) -> str:
    """The Redis hash of a stack's checkpoints in `stream`: shard id -> sequence number or SHARD_END."""
    return f"tailor:{{{stack}}}:kinesis:{stream}:checkpoints"


class Record:
    """A Kinesis record as the batch classifier reads a Kafka message (lean_check, batch)."""

    __slots__ = ("_arrived_ms", "_data", "_key", "_offset", "_partition", "where")

    def __init__(
        self, partition: int, offset: int, data: bytes, key: str, arrived_ms: int, where: str = ""
    ) -> None:
        self._partition, self._offset, self._data = partition, offset, data
        self._key, self._arrived_ms = key, arrived_ms
        self.where = where  # "<shard id> <sequence number>": where the stream keeps it (dead letters)

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._data

    def key(self) -> bytes:
        return self._key.encode()

    def headers(self) -> None:
        return None

    def topic(self) -> str:
        return "kinesis"

    def timestamp(self) -> tuple[int, int]:
        # When the stream stored the record: lateness is judged against it, the same on every replay.
        return TIMESTAMP_LOG_APPEND_TIME, self._arrived_ms


@dataclass(slots=True)
class _Shard:
    id: str
    number: int  # the partition the classifier sees
    parents: tuple[str, ...]
    iterator: str | None = None
    closed: bool = False  # GetRecords gave no next iterator: read to its end
    ending: int | None = None  # ListShards' EndingSequenceNumber: closed by a split or merge
    after: str | None = None  # the sequence number of the newest record taken (where to resume)
    taken: int = -1  # the counter of the newest record taken
    stored: int = -1  # the counter of the newest record stored
    sequences: dict[int, str] = field(default_factory=dict)  # counter -> sequence number, until stored
    next_poll: float = 0.0


class ShardReader:
    def __init__(
        self,
        settings: kinesis.KinesisSettings,
        client: redis.Redis,
        stack: str,
        *,
        kinesis_client: Any = None,
        on_dropped: Callable[[list[int]], None] | None = None,
    ) -> None:
        """`kinesis_client`: a boto3 Kinesis client's face; default: made from `settings`. `on_dropped`:
        called with the partitions (shard numbers) of shards whose lease this worker gave up or lost."""
        self.settings = settings
        self.stream = settings.require_stream()
        self._kinesis = kinesis_client if kinesis_client is not None else settings.client()
        self._redis = client
        self._key = checkpoint_key(stack, self.stream)
        self._stack = stack
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._held: set[str] = set()  # shards whose lease this worker holds
        self._releasing: set[str] = set()  # held beyond the fair share: given up once nothing is in flight
        self._next_leasing = 0.0
        self._renew = client.register_script(_RENEW)
        self._fenced_checkpoint = client.register_script(_CHECKPOINT)
        self._release = client.register_script(_RELEASE)
        self._on_dropped = on_dropped
        self._shards: dict[str, _Shard] = {}
        self._numbers: dict[int, _Shard] = {}
        self._done: set[str] = set()
        self._present: set[str] = set()  # the shards the stream lists now
        self._checkpoints: dict[str, str] = {}
        self._next_listing = 0.0
        self._counter = 0
        self._load_checkpoints()
        self._list_shards()
        log.info("reading Kinesis stream %s (%d shards)", self.stream, len(self._shards))

    # -- the consumer's face -----------------------------------------------------------------------

    def take(self, batch_size: int, wait_seconds: float) -> list[Message]:
        """Up to `batch_size` records from the shards that are readable, each shard asked at most once;
        when none had any, wait up to `wait_seconds` for the next poll."""
        self._checkpoint(self._finished())
        if time.monotonic() >= self._next_listing:
            try:
                self._list_shards()
            except (BotoCoreError, ClientError) as error:  # read the shards known; list again later
                log.warning("ListShards of %s failed, retrying: %s", self.stream, error)
                self._next_listing = time.monotonic() + max(self.settings.idle_poll_seconds, 1.0)
        if time.monotonic() >= self._next_leasing:
            try:
                self._lease()
            except redis.RedisError as error:  # the leases lapse unless renewed: read on, fenced
                log.warning("could not renew the shard leases of %s: %s", self.stream, error)
                self._next_leasing = time.monotonic() + 1.0
        records: list[Record] = []
        for shard in list(self._shards.values()):
            if len(records) >= batch_size:
                break
            if shard.id not in self._held or shard.id in self._releasing:
                continue
            if not self._readable(shard) or time.monotonic() < shard.next_poll:
                continue
            try:
                records += self._read(shard, batch_size - len(records))
            except (BotoCoreError, ClientError) as error:
                # Throttled, an expired iterator, the endpoint away: ask again later from after the
                # newest record taken (nothing taken is skipped, nothing stored is read twice).
                log.warning("GetRecords of shard %s failed, retrying: %s", shard.id, error)
                shard.iterator = None
                shard.next_poll = time.monotonic() + max(self.settings.idle_poll_seconds, 1.0)
        if not records and wait_seconds > 0:
            time.sleep(min(wait_seconds, self.settings.idle_poll_seconds))
        # Read by the classifier only through the methods Record has (see the module's docstring).
        return cast(list[Message], records)

    def store(self, newest: Mapping[int, int]) -> None:
        """Checkpoint each shard at the newest record processed (after the batch's Redis write)."""
        updates: dict[str, str] = {}
        for number, counter in newest.items():
            shard = self._numbers.get(number)
            sequence = shard.sequences.get(counter) if shard is not None else None
            if shard is None or sequence is None:
                continue  # its lease was lost meanwhile: the new owner reads it again
            shard.sequences = {c: s for c, s in shard.sequences.items() if c > counter}
            shard.stored = max(shard.stored, counter)
            updates[shard.id] = sequence
        updates.update(self._finished())
        self._checkpoint(updates)

    def refresh_lag(self, *, ask_broker: bool = False) -> None:
        """Kinesis's lag is set from each GetRecords (tailor_worker_kinesis_behind_seconds), in seconds."""

    def reaches_brokers(self, timeout: float = 1.0) -> bool:
        return True

    def close(self) -> None:
        """Give up every lease (each shard's checkpoint is where the last stored batch left it), so the
        other workers take the shards at once rather than after the expiry."""
        with contextlib.suppress(redis.RedisError):
            for shard_id in list(self._held):
                self._release(keys=[self._lease_key(shard_id)], args=[self.owner])
            self._redis.zrem(workers_key(self._stack, self.stream), self.owner)
        self._held.clear()
        self._kinesis.close()

    # -- leases --------------------------------------------------------------------------------------

    def _lease_key(self, shard_id: str) -> str:
        return lease_key(self._stack, self.stream, shard_id)

    def _lease(self) -> None:
        """One round: say this worker is alive, renew its leases, give up what it holds beyond its fair
        share and take free shards up to it. Every third of the lease's life."""
        ttl_ms = int(self.settings.lease_seconds * 1000)
        now_ms = int(time.time() * 1000)
        present = workers_key(self._stack, self.stream)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(present, {self.owner: now_ms + ttl_ms})
        pipe.zremrangebyscore(present, "-inf", now_ms)
        pipe.zcard(present)
        pipe.pexpire(present, 3 * ttl_ms)
        live = max(1, int(pipe.execute()[2]))
        self._refresh_checkpoints()
        held = sorted(self._held)
        if held:
            renewed = self._renew(keys=[self._lease_key(s) for s in held], args=[self.owner, ttl_ms])
            lost = [shard_id for shard_id, ok in zip(held, renewed, strict=True) if not int(ok)]
            if lost:
                log.warning("lost the leases of shards %s (expired): their new owners read on", lost)
                self._drop(lost)
        # The shards someone must read now: not done, parents done (children wait for their parents).
        open_shards = [shard for shard in self._shards.values() if self._readable(shard)]
        fair = math.ceil(len(open_shards) / live)
        for shard_id in sorted(self._held - self._releasing)[fair:]:
            self._releasing.add(shard_id)
            log.info("giving up shard %s (%d workers share %d shards)", shard_id, live, len(open_shards))
        for shard in self._shards.values():
            if shard.id in self._releasing and shard.stored == shard.taken:
                self._release(keys=[self._lease_key(shard.id)], args=[self.owner])
                self._drop([shard.id])
        for shard in open_shards:
            if len(self._held) >= fair:
                break
            if shard.id in self._held:
                continue
            if self._redis.set(self._lease_key(shard.id), self.owner, nx=True, px=ttl_ms):
                # Resume from the checkpoint its last owner stored (read again just above).
                shard.iterator, shard.after, shard.closed = None, None, False
                shard.taken = shard.stored = self._counter
                shard.sequences.clear()
                self._held.add(shard.id)
                log.info("took the lease of shard %s at %s", shard.id, self._checkpoints.get(shard.id))
        self._next_leasing = time.monotonic() + self.settings.lease_seconds / 3

    def _drop(self, shard_ids: list[str]) -> None:
        """No longer ours: forget what was taken and not stored (its new owner reads it again)."""
        numbers = []
        for shard_id in shard_ids:
            self._held.discard(shard_id)
            self._releasing.discard(shard_id)
            shard = self._shards.get(shard_id)
            if shard is not None:
                shard.iterator, shard.after = None, None
                shard.sequences.clear()
                numbers.append(shard.number)
            with contextlib.suppress(KeyError):
                metrics.KINESIS_BEHIND.remove(self.stream, shard_id)
        if numbers and self._on_dropped is not None:
            self._on_dropped(numbers)

    def _refresh_checkpoints(self) -> None:
        """The other workers' progress: shards they finished (children may be readable now), and where
        a shard this worker may take next resumes. Its own shards' checkpoints are its own to write."""
        raw: dict[Any, Any] = cast(dict[Any, Any], self._redis.hgetall(self._key))
        for key, value in raw.items():
            shard_id, at = _text(key), _text(value)
            if shard_id in self._held:
                continue
            self._checkpoints[shard_id] = at
            if at == SHARD_END and shard_id not in self._done:
                self._done.add(shard_id)
                self._shards.pop(shard_id, None)

    # -- shards --------------------------------------------------------------------------------------

    def _load_checkpoints(self) -> None:
        raw: dict[Any, Any] = cast(dict[Any, Any], self._redis.hgetall(self._key))
        self._checkpoints = {_text(k): _text(v) for k, v in raw.items()}
        self._done = {shard for shard, at in self._checkpoints.items() if at == SHARD_END}

    def _list_shards(self) -> None:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = (self._kinesis.list_shards(NextToken=token) if token
                    else self._kinesis.list_shards(StreamName=self.stream))  # fmt: skip
            found += page["Shards"]
            token = page.get("NextToken")
            if not token:
                break
        self._present = {item["ShardId"] for item in found}
        for item in found:
            shard_id = item["ShardId"]
            ending = item.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
            if shard_id in self._shards and ending is not None:
                self._shards[shard_id].ending = int(ending)
            if shard_id in self._shards or shard_id in self._done:
                continue
            parents = tuple(p for p in (item.get("ParentShardId"), item.get("AdjacentParentShardId")) if p)
            shard = _Shard(shard_id, len(self._numbers), parents, ending=int(ending) if ending else None)
            self._shards[shard_id] = shard
            self._numbers[shard.number] = shard
            self._next_leasing = 0.0  # a new shard to share out now
        self._next_listing = time.monotonic() + self.settings.list_shards_seconds

    def _at_end(self, shard: _Shard) -> bool:
        """Every record of the shard taken: GetRecords said so (no next iterator), or the shard is closed
        and its last sequence number is at most the newest taken. The second is what an emulator shows
        (moto never ends the iterator of a closed shard; docs/kinesis.md)."""
        if shard.closed or shard.ending is None:
            return shard.closed
        after = shard.after or self._checkpoints.get(shard.id)
        return shard.ending <= (int(after) if after else 0)

    def _readable(self, shard: _Shard) -> bool:
        """Not finished, and each parent done (or gone from the stream: past its retention)."""
        if self._at_end(shard):
            return False
        return all(parent in self._done or parent not in self._present for parent in shard.parents)

    def _read(self, shard: _Shard, limit: int) -> list[Record]:
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        reply = self._kinesis.get_records(
            ShardIterator=shard.iterator, Limit=min(limit, self.settings.records_per_call)
        )
        shard.iterator = reply.get("NextShardIterator")
        records: list[Record] = []
        for item in reply["Records"]:
            self._counter += 1
            shard.sequences[self._counter] = shard.after = item["SequenceNumber"]
            arrived = item["ApproximateArrivalTimestamp"]  # epoch seconds (KinesisSettings.client)
            seconds = arrived.timestamp() if isinstance(arrived, datetime.datetime) else float(arrived)
            records.append(Record(shard.number, self._counter, item["Data"], item["PartitionKey"],
                                  int(seconds * 1000),
                                  f"{shard.id} {item['SequenceNumber']}"))  # fmt: skip
        behind = reply.get("MillisBehindLatest")
        if behind is not None:
            metrics.KINESIS_BEHIND.labels(self.stream, shard.id).set(behind / 1000.0)
        if records:
            shard.taken = self._counter
        else:
            shard.next_poll = time.monotonic() + self.settings.idle_poll_seconds
        if shard.iterator is None:
            shard.closed = True
            log.info("shard %s read to its end (%d records to store)", shard.id, len(shard.sequences))
        return records

    def _iterator(self, shard: _Shard) -> str:
        shard_id = shard.id
        after = shard.after or self._checkpoints.get(shard_id)
        if after:
            reply = self._kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after,
            )  # fmt: skip
        else:
            reply = self._kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )
        return cast(str, reply["ShardIterator"])

    def _finished(self) -> dict[str, str]:
        """Closed shards whose every record taken is stored: done, their children readable."""
        done = [s for s in self._shards.values() if s.id in self._held
                and s.id not in self._done and s.stored == s.taken and self._at_end(s)]  # fmt: skip
        for shard in done:
            self._done.add(shard.id)
            del self._shards[shard.id]
            self._held.discard(shard.id)  # its lease lapses by itself; its SHARD_END is written first
            # Its last "behind" would stay exported for ever (and hold the lag alert firing).
            with contextlib.suppress(KeyError):
                metrics.KINESIS_BEHIND.remove(self.stream, shard.id)
            log.info("shard %s done: its children are read next", shard.id)
        if done:
            self._next_listing = self._next_leasing = 0.0  # find the children and take them now
        return dict.fromkeys((shard.id for shard in done), SHARD_END)

    def _checkpoint(self, updates: dict[str, str]) -> None:
        if not updates:
            return
        shards = sorted(updates)
        pairs: list[EncodableT] = [self.owner]
        for shard_id in shards:
            pairs += [shard_id, updates[shard_id]]
        try:
            written = self._fenced_checkpoint(
                keys=[self._key, *(self._lease_key(shard_id) for shard_id in shards)], args=pairs
            )
        except redis.RedisError as error:
            # The batch is counted already; a restart before the next checkpoint replays it (dedup).
            log.warning("could not checkpoint %s: %s", shards, error)
            return
        if int(written) < len(shards):
            log.warning("checkpoints of %s not written: the lease of some is no longer ours", shards)
        self._checkpoints.update(updates)


class LoggedDeadLetters:
    """Dead letters without Kafka: logged with where the stream keeps the record (shard and sequence
    number, readable again with GetShardIterator AT_SEQUENCE_NUMBER until the stream's retention ends)
    and counted; not copied anywhere (docs/kinesis.md, "Dead letters and traits")."""

    def send(self, letters: list[deadletter.DeadLetter]) -> bool:
        for letter in letters:
            where = cast(Record, letter.message).where
            log.warning("dead letter (%s) at %s: %s", letter.reason, where, letter.errors[:3])
        return True

    def close(self) -> None:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# What _retry may retry when the reader is made: the stream or its endpoint not reachable (yet).
UNREACHABLE: Final = (BotoCoreError, ClientError)
