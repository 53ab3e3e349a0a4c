"""The operator's own Kafka clients connect as the stack's pods do.

The pods read the Secret keys a stack's Kafka settings name from files the operator mounts
(builders.py); the operator reads them through the API and writes them, for the length of one use,
to a private temporary directory laid out as that mount (<dir>/<secret>/<key>). Then
tailor.core.kafkaclient.client_config makes the same client settings from them as in a pod: the topic
admin (reconcile/topics.py) and the check of the settings (reconcile/kafka_probe.py) use it.
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from tailor.core import kafkaclient
from tailor.core.rules import ruleset
from tailor_operator import kube


class SecretMissing(Exception):
    """A Secret key the stack's Kafka settings name does not exist (the children's reconcile says so
    too, as Reconciled=False SecretMissing)."""


@contextlib.asynccontextmanager
async def secrets_dir(client: kube.Kube, namespace: str, kafka: ruleset.KafkaConfig) -> AsyncIterator[Path]:
    """A private directory holding the Secret keys `kafka` names, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="tailor-kafka-") as directory:  # 0700, this process only
        root = Path(directory)
        for file in kafka.security.secret_files():
            data = await client.read_secret(namespace, file.secret)
            if data is None or file.key not in data:
                raise SecretMissing(f"Secret {file.secret} with key {file.key} does not exist in {namespace}")
            path = kafkaclient.secret_path(root, file)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.write_bytes(base64.b64decode(data[file.key]))
            path.chmod(0o600)
        yield root


@contextlib.asynccontextmanager
async def client_config(
    client: kube.Kube, namespace: str, kafka: ruleset.KafkaConfig
) -> AsyncIterator[kafkaclient.Config]:
    """The stack's client settings, valid (their files present) until the block ends."""
    async with secrets_dir(client, namespace, kafka) as root:
        yield kafkaclient.client_config(kafka, root)
