"""Rulesets the readers must not serve, published into the real Redis while a content API and a worker
follow it (issue 14, items 3 and 5): a document that is not JSON, one written for a newer reader, a
well-formed one with the Kafka brokers pointed elsewhere but signed by another key, and the same
unsigned. Each is refused by both, counted by reason, and the version they had keeps serving; neither
process dies, /readyz stays 200 and says the replica is behind; then a good version is taken at once.

Before signed rulesets the first of these ended the API's follower (the replica served its old version
for ever with /readyz green) and made the worker exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from pipeline_harness import Pipeline, running_pipeline, scrape, wait_until

from tailor.core.rules import ruleset, signing, versions
from tailor.devstack import scratch

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

QUICK_API = {"TAILOR_RULESET_POLL_SECONDS": "0.2", "TAILOR_RULESET_STALE_SECONDS": "0"}
QUICK_WORKER = {"TAILOR_WORKER_CONFIG_CHECK_SECONDS": "0.1", "TAILOR_WORKER_POLL_SECONDS": "0.1"}


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str) -> Iterator[Pipeline]:
    config = scratch.compiled_stack_config(kafka_bootstrap, "ruleset-trust", partitions=1)
    with running_pipeline(config, redis_url, QUICK_WORKER, api_args=("--routes", "decide"),
                          api_env=QUICK_API) as running:  # fmt: skip
        yield running


def rejected(metrics_text: str, reason: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("tailor_ruleset_rejected_total{") and f'reason="{reason}"' in line
    )


def served_version(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("tailor_ruleset_version{")
    )


def write_version(client: redis.Redis, stack: str, document: bytes, signature: bytes | None) -> int:
    """What anyone who reaches the stack's Redis can do: a new version, made current, announced."""
    version = int(client.incr(versions.seq_key(stack)))
    with client.pipeline(transaction=True) as pipe:
        pipe.set(versions.version_key(stack, version), document)
        if signature is not None:
            pipe.set(versions.signature_key(stack, version), signature)
        pipe.set(versions.current_key(stack), version)
        pipe.publish(versions.channel(stack), version)
        pipe.execute()
    return version


def test_refused_rulesets_keep_the_last_good_one_in_api_and_worker(
    pipeline: Pipeline, redis_url: str
) -> None:
    stack = pipeline.config.key
    client = redis.Redis.from_url(redis_url)
    good = versions.load_sync(client, stack, verifier=signing.DEVELOPMENT.verifier())
    assert good is not None
    wait_until(lambda: served_version(scrape(pipeline.worker_metrics)) == good.version, 30, pipeline.outputs)

    def as_version(version: int, **changes: object) -> bytes:
        document = orjson.loads(good.model_copy(update={"version": version}).to_json())
        document.update(changes)
        return orjson.dumps(document)

    elsewhere = good.config.kafka.model_copy(update={"bootstrap_servers": "attacker.example:9092"})
    tampered = good.model_copy(update={"config": good.config.model_copy(update={"kafka": elsewhere})})
    other_key = signing.Signer.generate()
    attacks: list[tuple[str, Callable[[int], tuple[bytes, signing.Signer | None]]]] = [
        ("invalid", lambda v: (b'{"format": 1, "rules": [', signing.DEVELOPMENT)),
        ("format", lambda v: (as_version(v, format=ruleset.FORMAT + 1, audiences=[]), signing.DEVELOPMENT)),
        ("signature", lambda v: (tampered.model_copy(update={"version": v}).to_json(), other_key)),
        ("signature", lambda v: (tampered.model_copy(update={"version": v}).to_json(), None)),
    ]
    with (
        httpx.Client(base_url=pipeline.api_url, timeout=5) as http,
        httpx.Client(base_url=pipeline.admin_url, timeout=5) as admin,
    ):
        for reason, make in attacks:
            api_before = rejected(scrape(f"{pipeline.admin_url}/metrics"), reason)
            worker_before = rejected(scrape(pipeline.worker_metrics), reason)
            version = int(client.get(versions.seq_key(stack)) or 0) + 1
            document, signer = make(version)
            assert (
                write_version(client, stack, document, signer.sign(document) if signer else None) == version
            )

            wait_until(lambda: rejected(scrape(f"{pipeline.admin_url}/metrics"), reason) == api_before + 1,  # noqa: B023
                       10, pipeline.outputs)  # fmt: skip
            wait_until(lambda: rejected(scrape(pipeline.worker_metrics), reason) == worker_before + 1,  # noqa: B023
                       10, pipeline.outputs)  # fmt: skip
            assert pipeline.api.alive, pipeline.outputs()
            assert pipeline.worker.alive, pipeline.outputs()
            readiness = admin.get("/readyz")
            assert readiness.status_code == 200, readiness.text
            check = readiness.json()["checks"]["ruleset"]
            assert (check["version"], check["published"], check["stale"]) == (good.version, version, True)
            assert reason in check["detail"]
            assert served_version(scrape(pipeline.worker_metrics)) == good.version
            decided = http.get("/v1/decide", params={"slot": "hero", "user": "u1", "session": "s1"})
            assert decided.status_code != 503, decided.text

        # Logged once per reason a minute: the second `signature` refusal adds no line.
        for output in (pipeline.api.output(200_000), pipeline.worker.output(200_000)):
            assert output.count(" refused, ") == 3, output

        # A good publish (the development key, as the devstack's operator signs) is taken by both.
        fresh = good.model_copy(update={"config": good.config.model_copy(update={"kill_switch": True})})
        published = asyncio.run(publish(redis_url, fresh))
        wait_until(lambda: admin.get("/readyz").json()["checks"]["ruleset"]["version"] == published.version,
                   10, pipeline.outputs)  # fmt: skip
        wait_until(lambda: served_version(scrape(pipeline.worker_metrics)) == published.version, 10,
                   pipeline.outputs)  # fmt: skip
        check = admin.get("/readyz").json()["checks"]["ruleset"]
        assert "stale" not in check, check
    client.close()


async def publish(redis_url: str, published: ruleset.Ruleset) -> ruleset.Ruleset:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await versions.publish(client, published)
    finally:
        await client.aclose()
