"""Synthetic shoppers for the demo (`tailor demo --traffic RATE`): events at RATE per second.

Each simulated session follows a plausible path through the demo storefront: it lands on the home
page, a category or a search; browses categories (mostly the shopper's favourite), opens products
from tiles, searches, adds to the cart, and sometimes buys. Some sessions belong to returning
shoppers, whose profiles build up across visits (that is what the shoe hero rule waits for). Every
page view with slots is followed by one /v1/decide for that page's slots, as tailor.js does, and the
shopper clicks a slot's content with a probability that depends on the variant, reported through
/v1/feedback; a purchase after a hero click is reported as a conversion. So the rules' statistics
(`kubectl get prule -o yaml`, status.stats) fill in, and the bandit rule learns which promo works.

`journey()` is pure (a seeded random generator gives the same path); `Traffic` drives journeys from a
few threads, paced so that events leave at the requested rate.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tailor.demo import client as demo_client
from tailor.demo.client import ApiClient, ApiError, Event

#: The storefront's catalogue (examples/storefront): category → (product id, name, price EUR).
CATALOG: dict[str, tuple[tuple[str, str, int], ...]] = {
    "shoes": (("trail-runner", "Trail Runner", 89), ("city-sneaker", "City Sneaker", 69)),
    "bags": (("canvas-tote", "Canvas Tote", 29), ("weekender", "Weekender Bag", 119)),
    "jackets": (("rain-shell", "Rain Shell", 99), ("down-parka", "Down Parka", 189)),
}
INTEREST_WEIGHTS = {"shoes": 0.45, "bags": 0.3, "jackets": 0.25}
QUERIES = {
    "shoes": ("running shoes", "sneakers", "trail shoes"),
    "bags": ("tote bag", "weekend bag"),
    "jackets": ("rain jacket", "parka", "winter coat"),
}
#: Pages with both slots (and every category page); the others have only the sidebar promo.
HERO_PAGES = frozenset({"/", "/new/", "/bestsellers/"})
HERO, PROMO = "home-hero", "sidebar-promo"
#: How likely a shopper clicks a slot's content, per variant (None: the fallback). Different on
#: purpose, so CTRs differ and the bandit rule (abandoned-cart) has something to learn.
CLICK_RATES: dict[str | None, float] = {
    "hero-shoes-sale": 0.14,
    "hero-shoes-new-arrivals": 0.08,
    "hero-first-order": 0.06,
    "hero-search-tips": 0.05,
    "promo-cart-discount": 0.12,
    "promo-cart-reminder": 0.05,
    "promo-bestsellers": 0.04,
    None: 0.02,
}
DEFAULT_CLICK_RATE = 0.03
RETURNING_SHARE = 0.35  # sessions by shoppers seen before
KNOWN_SHOPPERS = 2000  # how many past shoppers may come back
ACTIVE_SESSIONS_PER_THREAD = 25


@dataclass(frozen=True)
class Shopper:
    id: str
    interest: str
    device: str


@dataclass(frozen=True)
class Step:
    """What one moment of a session sends: events in one POST, then a decide for `slots` (if any)."""

    events: tuple[Event, ...]
    slots: tuple[str, ...] = ()
    purchase: bool = False


def slots_of(path: str) -> tuple[str, ...]:
    return (HERO, PROMO) if path in HERO_PAGES or path.startswith("/c/") else (PROMO,)


def new_shopper(rng: random.Random) -> Shopper:
    interest = rng.choices(list(INTEREST_WEIGHTS), weights=list(INTEREST_WEIGHTS.values()))[0]
    device = rng.choices(("mobile", "desktop", "tablet"), weights=(0.6, 0.33, 0.07))[0]
    return Shopper(f"sim-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}", interest, device)


def journey(shopper: Shopper, rng: random.Random, origin: str = "http://127.0.0.1:8000") -> Iterator[Step]:
    """One session of `shopper`, step by step (deterministic for a seeded `rng`)."""
    session = uuid.UUID(int=rng.getrandbits(128)).hex
    page = "/"

    def event(kind: str, path: str, **properties: str | int | float) -> Event:
        made = demo_client.make_event(
            kind, shopper.id, session, url=origin + path, properties=properties or None, device=shopper.device
        )
        made["id"] = str(uuid.UUID(int=rng.getrandbits(128)))  # reproducible ids for a seeded rng
        return made

    def view(path: str, **properties: str | int | float) -> Step:
        nonlocal page
        page = path
        return Step((event("page_view", path, **properties),), slots_of(path))

    def category_choice() -> str:
        return shopper.interest if rng.random() < 0.75 else rng.choice(list(CATALOG))

    landing = rng.choices(("home", "category", "search"), weights=(0.6, 0.3, 0.1))[0]
    if landing == "category":
        category = category_choice()
        yield view(f"/c/{category}/", category=category)
    elif landing == "search":
        query = rng.choice(QUERIES[shopper.interest])
        yield Step((event("search", page, query=query),))
        yield view(f"/search/?q={query.replace(' ', '+')}")
    else:
        yield view("/")
    cart: list[tuple[str, str, int]] = []
    product: tuple[str, str, int] | None = None
    for _ in range(rng.randint(2, 12)):
        roll = rng.random()
        if roll < 0.28:
            category = category_choice()
            product = None
            yield view(f"/c/{category}/", category=category)
        elif roll < 0.58:
            category = category_choice()
            product = rng.choice(CATALOG[category])
            yield Step((event("click", page, category=category, productId=product[0]),))
            yield view(f"/p/{product[0]}/", category=category, productId=product[0])
        elif roll < 0.68:
            query = rng.choice(QUERIES[category_choice()])
            product = None
            yield Step((event("search", page, query=query),))
            yield view(f"/search/?q={query.replace(' ', '+')}")
        elif roll < 0.82 and product is not None:
            category = next(c for c, items in CATALOG.items() if product in items)
            cart.append(product)
            yield Step(
                (event("add_to_cart", page, category=category, productId=product[0], value=product[2]),)
            )
        elif roll < 0.9 and cart:
            total = sum(item[2] for item in cart)
            first = cart[0][0]
            cart.clear()
            yield Step((event("purchase", "/cart/", productId=first, value=total),), purchase=True)
            yield view("/cart/")
        else:
            product = None
            yield view(rng.choice(("/", "/new/", "/bestsellers/")))


class Pacer:
    """Hands out send times `1/rate` apart across threads; a thread that fell behind does not get a
    burst to catch up (at most `slack` seconds of backlog), so the rate stays the rate."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        slack: float = 0.25,
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.interval = 1.0 / rate
        self.clock, self.sleep, self.slack = clock, sleep, slack
        self.lock = threading.Lock()
        self.next = clock()

    def acquire(self, count: int = 1) -> None:
        with self.lock:
            now = self.clock()
            self.next = max(self.next, now - self.slack)
            when = self.next
            self.next += count * self.interval
        if when > now:
            self.sleep(when - now)


@dataclass(frozen=True)
class Snapshot:
    at: float
    events: int = 0
    decides: int = 0
    impressions: int = 0  # decisions served by a rule (what the rules' stats count)
    clicks: int = 0
    rule_clicks: int = 0  # clicks the API counted in a rule's stats (the fallback has none)
    conversions: int = 0
    purchases: int = 0
    errors: int = 0
    decide_p50_ms: float = 0.0
    decide_p99_ms: float = 0.0
    last_error: str = ""

    def line(self, previous: Snapshot | None, target: float = 0.0) -> str:
        """One progress line; `previous` gives the rate since then, `target` the rate asked for."""
        since = previous.at if previous else self.at
        seconds = max(self.at - since, 1e-9)
        rate = (self.events - (previous.events if previous else 0)) / seconds if previous else 0.0
        text = (
            f"traffic: {self.events} events ({rate:.0f}/s), {self.decides} decides "
            f"(p50 {self.decide_p50_ms:.1f} ms, p99 {self.decide_p99_ms:.1f} ms), {self.clicks} clicks, "
            f"{self.purchases} purchases, {self.errors} errors"
        )
        if self.errors:
            text += f" (last: {self.last_error})"
        if previous and target and rate < 0.8 * target:
            # Each event is its own request followed by a decide, as in a browser: on a busy machine
            # the shoppers, the API and the worker share the cores, and the rate tops out.
            text += f"; below the {target:g}/s asked for: this machine is the limit"
        return text


@dataclass
class Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    events: int = 0
    decides: int = 0
    impressions: int = 0
    clicks: int = 0
    rule_clicks: int = 0
    conversions: int = 0
    purchases: int = 0
    errors: int = 0
    last_error: str = ""
    decide_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def failed(self, error: Exception) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = str(error)[:200]

    def snapshot(self) -> Snapshot:
        with self.lock:
            timings = sorted(self.decide_ms)

            def quantile(q: float) -> float:
                return timings[min(len(timings) - 1, int(q * len(timings)))] if timings else 0.0

            return Snapshot(
                at=time.monotonic(),
                events=self.events,
                decides=self.decides,
                impressions=self.impressions,
                clicks=self.clicks,
                rule_clicks=self.rule_clicks,
                conversions=self.conversions,
                purchases=self.purchases,
                errors=self.errors,
                decide_p50_ms=quantile(0.5),
                decide_p99_ms=quantile(0.99),
                last_error=self.last_error,
            )


class Session:
    """A journey in progress, with the hero decisions its shopper clicked (for conversions)."""

    def __init__(self, shopper: Shopper, steps: Iterator[Step]) -> None:
        self.shopper = shopper
        self.steps = steps
        self.clicked_heroes: list[str] = []


class Traffic:
    """Simulated shoppers against the content API at `api_url`, `rate` events per second."""

    def __init__(self, api_url: str, rate: float, storefront_url: str, seed: int | None = None) -> None:
        self.api_url = api_url
        self.rate = rate
        self.storefront_url = storefront_url
        self.pacer = Pacer(rate)
        self.counters = Counters()
        self.stopping = threading.Event()
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.known: deque[Shopper] = deque(maxlen=KNOWN_SHOPPERS)
        self.known_lock = threading.Lock()
        thread_count = max(1, min(8, math.ceil(rate / 100)))
        self.threads = [
            threading.Thread(target=self._run, args=(index,), name=f"traffic-{index}", daemon=True)
            for index in range(thread_count)
        ]

    def start(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> Snapshot:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)
        return self.counters.snapshot()

    def _session(self, rng: random.Random) -> Session:
        with self.known_lock:
            if self.known and rng.random() < RETURNING_SHARE:
                shopper = rng.choice(self.known)
            else:
                shopper = new_shopper(rng)
                self.known.append(shopper)
        return Session(shopper, journey(shopper, rng, self.storefront_url))

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed + index)
        client = ApiClient(self.api_url)
        sessions = [self._session(rng) for _ in range(ACTIVE_SESSIONS_PER_THREAD)]
        try:
            while not self.stopping.is_set():
                slot = rng.randrange(len(sessions))
                session = sessions[slot]
                step = next(session.steps, None)
                if step is None:
                    sessions[slot] = self._session(rng)
                    continue
                self.pacer.acquire(len(step.events))
                if self.stopping.is_set():
                    break
                try:
                    self._take(client, session, step, rng)
                except ApiError as error:
                    self.counters.failed(error)
                    self.stopping.wait(0.5)  # an API restart or outage: don't spin
        finally:
            client.close()

    def _take(self, client: ApiClient, session: Session, step: Step, rng: random.Random) -> None:
        client.send_events(step.events)
        self.counters.add(events=len(step.events), purchases=int(step.purchase))
        if step.purchase and session.clicked_heroes:
            client.feedback(session.clicked_heroes[-1], "conversion")
            self.counters.add(conversions=1)
        if not step.slots:
            return
        first_event = step.events[0]
        decisions, reply = client.decide(session.shopper.id, first_event["sessionId"], step.slots)
        with self.counters.lock:
            self.counters.decides += 1
            self.counters.impressions += sum(1 for decision in decisions if decision.rule)
            self.counters.decide_ms.append(reply.seconds * 1000)
        for decision in decisions:
            rate = CLICK_RATES.get(decision.variant, DEFAULT_CLICK_RATE)
            if decision.decision_id and rng.random() < rate:
                reply = client.feedback(decision.decision_id, "click")
                # The API counts a click once per session and rule (docs/content-api.md, feedback): a
                # second click of the same rule in a session is answered "duplicate" and not counted.
                counted = decision.rule is not None and reply.body.get("status") == "accepted"
                self.counters.add(clicks=1, rule_clicks=int(counted))
                if decision.slot == HERO:
                    session.clicked_heroes.append(decision.decision_id)
