"""The operator's check of each stack's Kafka settings: the KafkaConnected condition.

On every reconcile (create, update, the drift timer) the operator connects to the stack's Kafka as
its pods would — the same client settings (tailor.core.kafkaclient.client_config), with the Secrets'
keys it reads through the API written to a private directory laid out as the pods' mount — and reads
the events topic's metadata. A refused password, an untrusted or expired certificate, a listener
that speaks another protocol set KafkaConnected=False with the cause as its reason, which Ready then
carries (stack_status).

Why the operator probes, rather than the pods reporting: the pods have no Kubernetes API access (by
design, builders.py), the cause is wanted before any pod runs (and for a stack scaled to 0), and
status stays with one writer. What the operator cannot see is the pods' network and identity: so
only causes that are the settings' own are False (a refused password is refused from anywhere); a
broker the operator cannot reach is Unknown and does not hold Ready (the pods' readiness says
whether they reach it); AWS MSK IAM, which authenticates each pod by its own identity, is not probed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading

from tailor.core import kafkaclient
from tailor.core.rules import compiler
from tailor_operator import builders, conditions, kafka_access, kube
from tailor_operator import constants as names
from tailor_operator.reconcile import stack_status

log = logging.getLogger(__name__)


class KafkaProber:
    def __init__(self, client: kube.Kube, book: stack_status.StackStatusBook, timeout_seconds: float) -> None:
        self._kube = client
        self._book = book
        self._timeout = timeout_seconds
        self._running: dict[str, asyncio.Task[None]] = {}
        # librdkafka blocks: probes run on threads of their own, so a slow broker never holds up the
        # default executor the rest of the operator uses.
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="kafka-probe")
        self._closing = threading.Event()  # ends probes under way at shutdown, not after their timeout

    def request(self, stack: builders.Stack, generation: int) -> None:
        """Probe the stack's Kafka in the background, unless a probe of it is under way."""
        if self._timeout <= 0:
            return
        running = self._running.get(stack.key)
        if running is not None and not running.done():
            return
        self._running[stack.key] = asyncio.create_task(
            self._report(stack, generation), name=f"kafka-probe {stack.key}"
        )

    async def _report(self, stack: builders.Stack, generation: int) -> None:
        try:
            condition = await self.check(stack, generation)
            if condition is not None:
                await self._book.update(stack.namespace, stack.name, generation, [condition])
        except Exception as error:  # a probe must never take the operator down: the next one retries
            log.warning("could not check the Kafka of %s: %s", stack.key, error)

    async def check(self, stack: builders.Stack, generation: int) -> conditions.Condition | None:
        """KafkaConnected for the stack; None when there is nothing to say yet (a Secret is missing:
        Reconciled says so)."""
        if stack.spec.kafka is None:
            return None  # a Kinesis stack: no Kafka
        try:
            kafka = compiler.stack_config(stack.namespace, stack.name, stack.spec).kafka
        except ValueError:
            return None  # an invalid spec: the publisher reports it
        if kafka.security.sasl is not None and kafka.security.sasl.aws_msk_iam_region is not None:
            return conditions.make(
                names.KAFKA_CONNECTED, None, "KafkaNotProbed",
                "AWS MSK IAM authenticates each pod by its own identity, which the operator cannot stand in "
                "for: the workers' and content API's readiness say whether they connect",
                generation,
            )  # fmt: skip
        try:
            async with kafka_access.secrets_dir(self._kube, stack.namespace, kafka) as secrets:
                probe = functools.partial(
                    kafkaclient.probe, kafka, secrets, self._timeout, stop=self._closing
                )
                problem = await asyncio.get_running_loop().run_in_executor(self._threads, probe)
        except kafka_access.SecretMissing:
            return None
        if problem is None:
            return conditions.make(
                names.KAFKA_CONNECTED, True, "Connected",
                f"the operator connected to {kafka.bootstrap_servers} with the stack's settings",
                generation,
            )  # fmt: skip
        if not problem.blocking:
            return conditions.make(
                names.KAFKA_CONNECTED, None, problem.reason,
                f"from the operator: {problem.message}; the pods' readiness says whether they reach it",
                generation,
            )  # fmt: skip
        log.warning("stack %s: Kafka: %s: %s", stack.key, problem.reason, problem.message)
        return conditions.make(names.KAFKA_CONNECTED, False, problem.reason, problem.message, generation)

    def forget(self, key: str) -> None:
        running = self._running.pop(key, None)
        if running is not None:
            running.cancel()

    async def close(self) -> None:
        self._closing.set()
        for task in self._running.values():
            task.cancel()
        for task in self._running.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)
