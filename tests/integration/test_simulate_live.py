"""`tailor simulate` decides as the live content API does: same profile, same engine, same answer.

examples/shop is served by a real content API on the real Redis; forty shoppers' events are written
the way workers write them (the Redis functions) and each shopper asks GET /v1/decide once. Offline,
the simulation counts the same events in Python and decides with the API's engine; every slot of every
shopper must get the same rule and variant.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from api_harness import running_api

from tailor.cli import simulation, validate
from tailor.core import events
from tailor.core.rules import ruleset

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
SLOTS = ("home-hero", "sidebar-promo")


def shop() -> ruleset.Ruleset:
    checked = validate.check([SHOP], "shop")
    compiled = checked.results["shop"].ruleset
    assert compiled is not None
    return compiled


def behaviour(rng: random.Random, user: str, now: float) -> list[dict[str, Any]]:
    """A random mix of what the shop's rules look at, all within the last minute."""
    kinds = (
        [("page_view", {"category": "shoes"})] * rng.randrange(5)
        + [("page_view", {"category": "bags"})] * rng.randrange(4)
        + [("search", {"query": "boots"})] * rng.randrange(4)
        + [("add_to_cart", {"productId": "p1"})] * rng.randrange(2)
        + [("purchase", {"value": 30})] * (rng.random() < 0.2)
    )
    return [
        {"id": uuid.uuid4().hex, "type": type_, "userId": user, "sessionId": "s1",
         "timestamp": now - 60 + i, "page": {"url": "https://shop.example/"}, "properties": properties}
        for i, (type_, properties) in enumerate(kinds)
    ]  # fmt: skip


@pytest.mark.redis
@pytest.mark.asyncio(loop_scope="session")
async def test_simulate_agrees_with_the_live_api(redis_url: str, kafka_bootstrap: str) -> None:
    rng = random.Random(7)
    published = shop()
    # No bandit refresh while the test runs: offline there are no click statistics either.
    live = running_api(redis_url, published, kafka_bootstrap=kafka_bootstrap, bandit_refresh_seconds=3600)
    async with live as api:
        now = time.time()
        agreed = []
        for number in range(40):
            user = f"shopper-{number}-{uuid.uuid4().hex[:6]}"
            raw = behaviour(rng, user, now)
            await api.record_events(user, raw, now)
            response = await api.decide(user, "s1", *SLOTS)
            assert response.status_code == 200, response.text
            decisions = {
                d["slot"]: (d["rule"], d["variant"], d["content"]) for d in response.json()["decisions"]
            }
            loaded = [events.Event.model_validate(event) for event in raw]
            offline = simulation.simulate(published, loaded, user, now, session="s1")
            # The API names no variant for a fallback (docs/architecture.md §9); simulate does, and both
            # serve its content.
            simulated = {
                o.slot: (o.rule, o.variant if o.rule is not None else None, o.content) for o in offline.slots
            }
            assert simulated == decisions, (user, raw)
            agreed.append(decisions)
    # The personas cover the shop's rules, not just the fallbacks.
    rules = {rule for decisions in agreed for rule, _, _ in decisions.values()}
    assert {"returning-shoe-browser", "searcher", "new-visitor", "abandoned-cart", None} <= rules
