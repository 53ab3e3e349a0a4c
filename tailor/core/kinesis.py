"""Kinesis Data Streams as the events' source instead of Kafka (docs/kinesis.md): the settings the
collector and the workers share, and the boto3 client they make from them.

Off by default: `TAILOR_EVENTS_SOURCE=kinesis` switches both sides, `TAILOR_KINESIS_STREAM` names the
stream (made beforehand, by Terraform or `aws kinesis create-stream`), `TAILOR_KINESIS_REGION` its
region, `TAILOR_KINESIS_ENDPOINT_URL` an emulator's address (moto's server in tests). Credentials come
from boto3's own chain (the pod's IAM role through IRSA, AWS_* variables). On Kubernetes the operator
sets these variables from the PersonalizationStack's `spec.source`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The variables the operator gives the collector and worker pods of a stack whose spec.source is
# Kinesis (tailor_operator.builders.source_env); the settings below read them.
ENV_SOURCE: Final = "TAILOR_EVENTS_SOURCE"
ENV_STREAM: Final = "TAILOR_KINESIS_STREAM"
ENV_REGION: Final = "TAILOR_KINESIS_REGION"
ENV_ENDPOINT_URL: Final = "TAILOR_KINESIS_ENDPOINT_URL"
# boto3's own names for an access key (its credential chain reads them).
ENV_AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
ENV_AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"

KAFKA: Final = "kafka"
KINESIS: Final = "kinesis"
# One PutRecords call takes at most this many records (the Kinesis API's limit).
MAX_PUT_RECORDS: Final = 500


class KinesisSettings(BaseSettings):
    """Environment `TAILOR_KINESIS_*`, and `TAILOR_EVENTS_SOURCE`, read alike by collector and workers."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_KINESIS_", extra="ignore")

    source: Literal["kafka", "kinesis"] = Field(
        default=KAFKA, validation_alias=AliasChoices("TAILOR_EVENTS_SOURCE", "source")
    )
    stream: str = Field(default="", pattern=r"^$|^[a-zA-Z0-9_.-]{1,128}$")
    region: str = "us-east-1"
    # An emulator's address (moto's server); empty: AWS's own endpoint for the region.
    endpoint_url: str = ""
    # GetRecords' page size per shard, and the pause before asking an empty shard again: AWS allows 5
    # GetRecords calls per shard per second.
    records_per_call: int = Field(1000, ge=1, le=10_000)
    idle_poll_seconds: float = Field(0.2, ge=0.0)
    # How often the worker lists the shards again to find the children of a split or merge.
    list_shards_seconds: float = Field(10.0, gt=0.0)
    # A worker's lease on a shard (and its presence among the stream's workers) lasts this long unless
    # renewed (every third of it): a worker that dies loses its shards to the others after it.
    lease_seconds: float = Field(10.0, ge=1.0)

    @property
    def enabled(self) -> bool:
        return self.source == KINESIS

    def require_stream(self) -> str:
        if not self.stream:
            raise ValueError(
                "TAILOR_EVENTS_SOURCE=kinesis needs TAILOR_KINESIS_STREAM: the name of the stream to use"
            )
        return self.stream

    def client(self) -> Any:
        """A boto3 Kinesis client (boto3 is imported only by stacks that use Kinesis). Its timestamps
        are the epoch seconds AWS sends (a float), not datetimes: botocore's conversion (through
        dateutil's local time zone) was over half of its CPU per record read (docs/kinesis.md)."""
        import boto3  # only Kinesis stacks load boto3
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=float)
        return boto3.session.Session(botocore_session=session).client(
            "kinesis",
            region_name=self.region,
            endpoint_url=self.endpoint_url or None,
            # Our own retries decide what a failure means (a 503 to the client, a batch held): botocore's
            # standard mode retries throttling a few times first.
            config=Config(
                retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10
            ),
        )
