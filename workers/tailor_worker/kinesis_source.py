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

One reader reads every shard of the stream: there are no leases between workers yet (docs/kinesis.md,
"What is left").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message
from redis.typing import EncodableT, FieldT

from tailor.core import kinesis
from tailor.core.logthrottle import RepeatThrottle
from tailor_worker import deadletter, metrics

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())

SHARD_END: Final = "SHARD_END"


def checkpoint_key(stack: str, stream: str) -> str:
    """The Redis hash of a stack's checkpoints in `stream`: shard id -> sequence number or SHARD_END."""
    return f"tailor:{{{stack}}}:kinesis:{stream}:checkpoints"


class Record:
    """A Kinesis record as the batch classifier reads a Kafka message (lean_check, batch)."""

    __slots__ = ("_arrived_ms", "_data", "_key", "_offset", "_partition")

    def __init__(self, partition: int, offset: int, data: bytes, key: str, arrived_ms: int) -> None:
        self._partition, self._offset, self._data = partition, offset, data
        self._key, self._arrived_ms = key, arrived_ms

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
    ) -> None:
        """`kinesis_client`: a boto3 Kinesis client's face; default: made from `settings`."""
        self.settings = settings
        self.stream = settings.require_stream()
        self._kinesis = kinesis_client if kinesis_client is not None else settings.client()
        self._redis = client
        self._key = checkpoint_key(stack, self.stream)
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
        records: list[Record] = []
        for shard in list(self._shards.values()):
            if len(records) >= batch_size:
                break
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
            if shard is None:
                continue
            sequence = shard.sequences[counter]
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
        self._kinesis.close()

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
            arrived = item["ApproximateArrivalTimestamp"]
            records.append(Record(shard.number, self._counter, item["Data"], item["PartitionKey"],
                                  int(arrived.timestamp() * 1000)))  # fmt: skip
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
        done = [s for s in self._shards.values()
                if s.id not in self._done and s.stored == s.taken and self._at_end(s)]  # fmt: skip
        for shard in done:
            self._done.add(shard.id)
            del self._shards[shard.id]
            log.info("shard %s done: its children are read next", shard.id)
        if done:
            self._next_listing = 0.0  # find the children now
        return dict.fromkeys((shard.id for shard in done), SHARD_END)

    def _checkpoint(self, updates: dict[str, str]) -> None:
        if not updates:
            return
        try:
            fields: dict[FieldT, EncodableT] = {shard: at for shard, at in updates.items()}
            self._redis.hset(self._key, mapping=fields)
        except redis.RedisError as error:
            # The batch is counted already; a restart before the next checkpoint replays it (dedup).
            log.warning("could not checkpoint %s: %s", sorted(updates), error)
            return
        self._checkpoints.update(updates)


class LoggedDeadLetters:
    """Dead letters without Kafka: logged and counted (a dead-letter stream is not made yet)."""

    def send(self, letters: list[deadletter.DeadLetter]) -> bool:
        for letter in letters:
            log.warning("dead letter (%s) from shard %s: %s", letter.reason, letter.message.partition(),
                        letter.errors[:3])  # fmt: skip
        return True

    def close(self) -> None:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# What _retry may retry when the reader is made: the stream or its endpoint not reachable (yet).
UNREACHABLE: Final = (BotoCoreError, ClientError)
