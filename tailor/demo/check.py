"""The demo's self-check: the whole pipeline, end to end, without a browser.

Synthetic shoppers do what the storefront's visitors do, through the same public routes tailor.js
uses: page views go to POST /v1/events (collector → Kafka → worker → Redis profile) and the hero comes
from GET /v1/decide. examples/shop says a visitor who viewed shoes three times in 24 hours sees a shoe
hero (rule `returning-shoe-browser`), a brand-new visitor the first-order offer (`new-visitor`), and
anyone in between the fallback. For each shopper the check walks that path and measures the time from
posting the third shoe page view to the first decision that shows the shoe hero: the freshness a
visitor sees. The first shopper's decision is also explained (admin route), its profile read, and a
click fed back.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tailor.demo import client as demo_client
from tailor.demo.client import ApiClient, Decision

HERO = "home-hero"
SHOE_RULE = "returning-shoe-browser"  # examples/shop/rules.yaml: 3 shoe views in 24h
NEW_VISITOR_RULE = "new-visitor"
SHOE_PAGE = "/c/shoes/"
#: The storefront's promise: browsing a category changes the hero within a second.
PROMISE_SECONDS = 1.0

Say = Callable[[str], None]
Tick = Callable[[], None]


def _nothing() -> None:
    """The default tick: no processes to watch."""


class CheckFailed(RuntimeError):
    """What the check expected, and what it saw instead."""


@dataclass(frozen=True)
class Sample:
    user: str
    variant: str
    ack_seconds: float  # POST /v1/events → 202 (Kafka acknowledged)
    decided_seconds: float  # POST /v1/events sent → first decide showing the shoe hero


@dataclass
class CheckReport:
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.samples) and not self.problems

    def median_ms(self) -> float:
        return statistics.median(s.decided_seconds for s in self.samples) * 1000

    def max_ms(self) -> float:
        return max(s.decided_seconds for s in self.samples) * 1000


def describe(decision: Decision) -> str:
    if decision.variant is None:
        return "the fallback (no rule applies)"
    return f"{decision.variant} (rule {decision.rule})"


def hero(client: ApiClient, user: str, session: str) -> Decision:
    decisions, _ = client.decide(user, session, [HERO])
    return decisions[0]


def wait_for_hero(
    client: ApiClient,
    user: str,
    session: str,
    wanted: Callable[[Decision], bool],
    timeout: float,
    tick: Tick = _nothing,
) -> tuple[Decision, float]:
    """Poll /v1/decide until `wanted` holds; (decision, monotonic time it was read). Each decide
    takes about a millisecond, so polling without a pause measures freshness to that resolution."""
    deadline = time.monotonic() + timeout
    while True:
        decision = hero(client, user, session)
        now = time.monotonic()
        if wanted(decision):
            return decision, now
        if now > deadline:
            tick()
            raise CheckFailed(f"after {timeout:.0f} s the hero is still {describe(decision)}")


def shoe_views(client: ApiClient, user: str) -> int:
    counts = client.profile(user).get("counts", {}).get("24h", {})
    return int(counts.get("views|category|shoes", 0))


def wait_for_shoe_views(
    client: ApiClient, user: str, wanted: int, timeout: float, tick: Tick = _nothing
) -> None:
    deadline = time.monotonic() + timeout
    while (seen := shoe_views(client, user)) != wanted:
        tick()  # a worker that died explains a profile that never counts
        if time.monotonic() > deadline:
            raise CheckFailed(f"after {timeout:.0f} s the profile counts {seen} shoe views, not {wanted}")
        time.sleep(0.005)


def shoe_view(user: str, session: str, storefront_url: str) -> demo_client.Event:
    return demo_client.make_event(
        "page_view",
        user,
        session,
        url=f"{storefront_url}{SHOE_PAGE}",
        title="Shoes · Tailor demo shop",
        properties={"category": "shoes"},
    )


def walk(
    client: ApiClient, storefront_url: str, first_timeout: float, say: Say | None, tick: Tick = _nothing
) -> Sample:
    """One new shopper: first-order hero, two shoe views → fallback, a third → shoe hero (timed)."""
    user = f"demo-check-{uuid.uuid4().hex[:12]}"
    session = uuid.uuid4().hex
    first = hero(client, user, session)
    if first.rule != NEW_VISITOR_RULE:
        raise CheckFailed(f"a new visitor should get rule {NEW_VISITOR_RULE}, got {describe(first)}")
    if say:
        say(f"  new visitor {user}: hero is {describe(first)}")
    for _ in range(2):
        client.send_events([shoe_view(user, session, storefront_url)])
    # Wait on the profile (an admin read that counts nothing), not on /v1/decide: every decide counts
    # an impression, and new-visitor's cap of 3 per session would turn the hero to the fallback by itself.
    # The first shopper also waits for the worker to join its consumer group: a longer timeout.
    wait_for_shoe_views(client, user, 2, first_timeout, tick)
    middle = hero(client, user, session)
    if middle.rule is not None:
        raise CheckFailed(f"after 2 shoe views the hero should be the fallback, got {describe(middle)}")
    if say:
        say(f"  2 shoe page views counted: hero is {describe(middle)}")
    posted = time.monotonic()
    accepted = client.send_events([shoe_view(user, session, storefront_url)])
    acked = posted + accepted.seconds
    switched, seen = wait_for_hero(client, user, session, lambda d: d.rule == SHOE_RULE, 5.0, tick)
    sample = Sample(user, switched.variant or "", acked - posted, seen - posted)
    if say:
        say(
            f"  3rd shoe page view: hero is {describe(switched)}, "
            f"{sample.decided_seconds * 1000:.0f} ms after the event was posted "
            f"(202 after {sample.ack_seconds * 1000:.0f} ms)"
        )
        explain_and_click(client, user, session, switched, say)
    return sample


def matcher_text(matcher: dict[str, Any]) -> str:
    """`views[category=shoes] in 24h: 3 gte 3` from an /v1/explain audience entry."""
    feature = matcher["feature"]
    if matcher.get("dimension"):
        feature += f"[{matcher['dimension']}={matcher.get('value')}]"
    return f"{feature} in {matcher['window']}: {matcher['actual']} {matcher['op']} {matcher['threshold']}"


def explain_and_click(client: ApiClient, user: str, session: str, decision: Decision, say: Say) -> None:
    """The admin view of the decision, the profile behind it, and click feedback on it."""
    explained = client.explain(user, session, HERO)
    chosen = explained["slots"][0]["decision"]
    rule = next(r for r in explained["slots"][0]["rules"] if r["rule"] == SHOE_RULE)
    held = [matcher_text(m) for m in rule.get("audience", [])]
    if chosen["rule"] != SHOE_RULE:
        raise CheckFailed(f"/v1/explain chose {chosen['rule']}, /v1/decide {SHOE_RULE}")
    say(f"  explain: {SHOE_RULE} chosen ({chosen['reason']}); {'; '.join(held)}")
    counts = client.profile(user)["counts"]["24h"]
    shoes = counts.get("views|category|shoes", 0)
    if shoes != 3:
        raise CheckFailed(f"the profile should count 3 shoe views in 24h, counts {counts}")
    say(f"  profile: {counts.get('views', 0)} page views in 24h, {shoes} of them shoes")
    if decision.decision_id is None:
        raise CheckFailed("the decision has no decisionId to give feedback on")
    client.feedback(decision.decision_id, "click")
    say("  feedback: a click on the shoe hero accepted (counted in the rule's CTR stats)")


def run(
    client: ApiClient,
    storefront_url: str,
    *,
    shoppers: int = 5,
    first_timeout: float = 60.0,
    say: Say,
    tick: Tick = _nothing,
) -> CheckReport:
    """Walk `shoppers` new shoppers; the report's problems are empty when everything held. `tick` runs
    while waiting and may raise (the demo's raises when one of its processes has exited)."""
    report = CheckReport()
    for index in range(shoppers):
        first = index == 0
        try:
            sample = walk(
                client, storefront_url, first_timeout if first else 10.0, say if first else None, tick
            )
        except (CheckFailed, demo_client.ApiError) as error:
            report.problems.append(str(error) or repr(error))
            break
        report.samples.append(sample)
    if report.samples and report.median_ms() > PROMISE_SECONDS * 1000:
        report.problems.append(
            f"the median event→decision time {report.median_ms():.0f} ms breaks the demo's promise "
            f"of {PROMISE_SECONDS:.0f} s"
        )
    if report.samples:
        say(
            f"  event → decision over {len(report.samples)} shoppers: median {report.median_ms():.0f} ms, "
            f"max {report.max_ms():.0f} ms (from posting the page view to a decide that reflects it)"
        )
    return report
