"""The whole event path on the real broker and Redis: POST /v1/events to the content API, a real
`tailor worker` process, and the API's own decision and profile endpoints seeing the result."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sample
from api_harness import ADMIN_TOKEN, Live, live_factory

from tailor.core.rules import ruleset

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="session"),
]


@pytest.fixture
def live(redis_url: str, kafka_bootstrap: str) -> Live:
    return live_factory(redis_url, kafka_bootstrap)


def shoe_shop() -> ruleset.Ruleset:
    suffix = uuid.uuid4().hex[:8]
    config = sample.stack_config()
    topics = {
        "events_topic": f"e2e-events-{suffix}",
        "dead_letter_topic": f"e2e-dead-{suffix}",
        "partitions": 2,
    }
    kafka = config.kafka.model_copy(update=topics)
    fans = ruleset.Rule(
        name="shoe-fans",
        slot="hero",
        variants=("shoes",),
        audience=(
            ruleset.Matcher(feature="views", dimension="category", value="shoes", window="5m", threshold=3),
        ),
    )
    return sample.build(
        [sample.html_variant("default", "hero", fallback=True), sample.html_variant("shoes", "hero")],
        [fans],
        config=config.model_copy(update={"kafka": kafka}),
    )


async def test_posted_events_change_the_next_decision_and_show_in_the_profile(
    live: Live, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    async with live(shoe_shop()) as api:
        with log.open("wb") as output:
            worker = subprocess.Popen(  # noqa: ASYNC220  (a real process is the point)
                [
                    sys.executable,
                    "-m",
                    "tailor.cli.main",
                    "worker",
                    "--stack",
                    api.stack,
                    "--metrics-port",
                    "0",
                ],
                env={**os.environ, "TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_POLL_SECONDS": "0.1"},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            # The collector starts once the served ruleset gives it Kafka settings (topics made then).
            deadline = time.monotonic() + 30
            while api.app.runtime.collector_config is None:
                assert time.monotonic() < deadline, "the collector never started"
                await asyncio.sleep(0.05)
            user = f"shopper-{uuid.uuid4().hex[:6]}"
            before = await api.decide(user)
            assert before.json()["decisions"][0]["rule"] is None  # the fallback

            views = [
                {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": "s1",
                 "properties": {"category": "shoes", "productId": f"sku-{i}"}}
                for i in range(3)
            ]  # fmt: skip
            response = await api.client.post("/v1/events", json={"events": [*views, {"type": "click"}]})
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] == 3
            assert [r["index"] for r in response.json()["rejected"]] == [3]
            assert response.headers["content-security-policy"]  # the app's headers wrap the collector's reply

            deadline = time.monotonic() + 30
            while (await api.decide(user)).json()["decisions"][0]["rule"] != "shoe-fans":
                assert time.monotonic() < deadline, "the events never reached the decision"
                assert worker.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.05)
            assert (await api.decide(user)).json()["decisions"][0]["variant"] == "shoes"

            profile = await api.admin.get(
                f"/v1/profiles/{user}",
                params={"session": "s1"},
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert profile.status_code == 200
            document = profile.json()
            assert document["counts"]["5m"]["views|category|shoes"] == 3
            assert sorted(document["recent"]["productId"]) == ["sku-0", "sku-1", "sku-2"]
            assert document["session"]["pageViews"] == 3
        finally:
            worker.terminate()
            worker.wait(30)
