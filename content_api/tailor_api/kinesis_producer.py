"""The collector's producer when the stack's events go to a Kinesis data stream (docs/kinesis.md).

The same face as tailor_api.producer.AsyncProducer: `send_all` returns once every record is stored in
the stream, or raises producer.Unavailable (the client gets a 503 and resends the whole batch; the
workers' dedup makes the records already stored harmless). The partition key is the user, so one
user's events stay in one shard, in order. PutRecords stores some records and fails others (a shard
over its throughput): only the failed ones are sent again, until the delivery timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from tailor.core import kinesis
from tailor.core.logthrottle import RepeatThrottle
from tailor_api import producer

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())


class KinesisProducer:
    def __init__(self, settings: kinesis.KinesisSettings, *, delivery_timeout_seconds: float = 5.0) -> None:
        self.stream = settings.require_stream()
        self.delivery_timeout_seconds = delivery_timeout_seconds
        self._client = settings.client()

    async def send_all(
        self, topic: str, messages: Sequence[producer.Outgoing], *, timestamp_ms: int = 0
    ) -> None:
        """Store `messages` (key, value, headers) in the stream; `topic` and `timestamp_ms` are Kafka's
        (the record's arrival time is Kinesis's own; headers have no place in a record)."""
        if not messages:
            return
        records = [{"PartitionKey": key.decode(), "Data": value} for key, value, _ in messages]
        await asyncio.to_thread(self._put_all, records)

    def _put_all(self, records: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + self.delivery_timeout_seconds
        for start in range(0, len(records), kinesis.MAX_PUT_RECORDS):
            self._put(records[start : start + kinesis.MAX_PUT_RECORDS], deadline)

    def _put(self, records: list[dict[str, Any]], deadline: float) -> None:
        import botocore.exceptions  # only Kinesis stacks load botocore

        pending, pause = records, 0.05
        while True:
            try:
                reply = self._client.put_records(StreamName=self.stream, Records=pending)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                raise producer.Unavailable(f"PutRecords failed: {error}") from error
            if not reply.get("FailedRecordCount"):
                return
            # Results are in the order of the records sent: keep only those that carry an error.
            failed = [record for record, result in zip(pending, reply["Records"], strict=True)
                      if result.get("ErrorCode")]  # fmt: skip
            reasons = {result.get("ErrorCode") for result in reply["Records"] if result.get("ErrorCode")}
            if time.monotonic() + pause > deadline:
                raise producer.Unavailable(f"{len(failed)} records not stored in time: {sorted(reasons)}")
            log.warning("%d of %d records not stored (%s); resending them", len(failed), len(pending),
                        ", ".join(sorted(reasons)))  # fmt: skip
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            pending = failed

    def stream_state(self) -> tuple[bool, str, str]:
        """(ok, what /readyz may say, the whole cause for the log): does the stream exist and take
        records (DescribeStreamSummary; the collector's role needs kinesis:DescribeStreamSummary too)."""
        import botocore.exceptions  # only Kinesis stacks load botocore

        try:
            reply = self._client.describe_stream_summary(StreamName=self.stream)
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "ClientError"))
            return False, f"{code} (the reason is in this replica's log)", f"{code}: {error}"
        except botocore.exceptions.BotoCoreError as error:
            name = type(error).__name__
            return False, f"{name} (the reason is in this replica's log)", f"{name}: {error}"
        status = str(reply["StreamDescriptionSummary"]["StreamStatus"])
        if status in ("ACTIVE", "UPDATING"):  # UPDATING (a reshard) still takes records
            return True, "ok", "ok"
        return False, f"the stream is {status}", f"the stream is {status}"

    async def close(self, flush_seconds: float = 10.0) -> None:
        """Nothing is queued: every send_all waited for its records."""
        self._client.close()
