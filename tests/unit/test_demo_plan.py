"""`tailor demo`'s parts that need no stack: the example overlay, the storefront server (real HTTP on
127.0.0.1), readiness, the traffic generator's journeys and pacing, ports and hints."""

from __future__ import annotations

import http.client
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailor.core import events
from tailor.demo import client as demo_client
from tailor.demo import kube as demo_kube
from tailor.demo import manifests as demo_manifests
from tailor.demo import runner
from tailor.demo import storefront as demo_storefront
from tailor.demo import traffic as demo_traffic

STOREFRONT_URL = "http://127.0.0.1:8000"


# --- the overlay of examples/shop -----------------------------------------------------------------


def overlaid(namespace: str = "tailor-demo") -> list[dict[str, Any]]:
    return demo_manifests.overlay(
        demo_manifests.load_example(),
        namespace=namespace,
        kafka_bootstrap="127.0.0.1:39092",
        redis_url="redis://127.0.0.1:36379/0",
        storefront_url=STOREFRONT_URL,
    )


def test_the_overlay_points_the_stack_at_the_local_kafka_and_redis_and_allows_the_storefront() -> None:
    documents = overlaid()
    assert documents[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tailor-demo"}}
    spec = demo_manifests.stack_of(documents)["spec"]
    assert spec["kafka"]["bootstrapServers"] == "127.0.0.1:39092"
    assert spec["kafka"]["topics"] == {
        "events": "tailor-demo.shop.events",
        "deadLetter": "tailor-demo.shop.events.deadletter",
    }
    assert spec["redis"] == {"url": "redis://127.0.0.1:36379/0"}, "not managed: the local processes need it"
    assert spec["contentApi"]["corsOrigins"] == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert spec["features"] == {
        "windows": ["5m", "30m", "24h"],
        "dimensions": ["category", "productId", "query"],
    }


def test_the_overlay_leaves_rules_variants_and_the_example_files_as_they_are() -> None:
    original = demo_manifests.load_example()
    documents = overlaid()
    unchanged = [d for d in documents[1:] if d["kind"] != "PersonalizationStack"]
    assert unchanged == [d for d in original if d["kind"] != "PersonalizationStack"]
    assert demo_manifests.stack_of(original)["spec"]["redis"] == {"managed": True}, (
        "the example is not edited"
    )


def test_two_namespaces_get_different_topics() -> None:
    first = demo_manifests.stack_of(overlaid("a"))["spec"]["kafka"]["topics"]
    second = demo_manifests.stack_of(overlaid("b"))["spec"]["kafka"]["topics"]
    assert set(first.values()).isdisjoint(second.values())


def test_the_overlaid_example_passes_tailor_validate(tmp_path: Path) -> None:
    """What the demo applies passes the operator's checks offline (schema, CEL, semantics)."""
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(demo_manifests.to_yaml(overlaid()))
    result = subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", "validate", "-n", "tailor-demo", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_overlay_round_trips_as_yaml() -> None:
    documents = overlaid()
    assert list(yaml.safe_load_all(demo_manifests.to_yaml(documents))) == documents


def test_a_missing_checkout_says_where_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(demo_manifests, "SHOP", tmp_path / "examples" / "shop")
    with pytest.raises(demo_manifests.ExampleMissing, match="runs from a source checkout"):
        demo_manifests.require_checkout()


# --- the storefront server ------------------------------------------------------------------------


@pytest.fixture
def storefront() -> Iterator[demo_storefront.StorefrontServer]:
    server = demo_storefront.StorefrontServer(demo_manifests.STOREFRONT, "http://127.0.0.1:9999").start()
    try:
        yield server
    finally:
        server.stop()


def get(server: demo_storefront.StorefrontServer, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_pages_load_tailor_js_from_the_content_api_under_a_strict_csp(
    storefront: demo_storefront.StorefrontServer,
) -> None:
    response = get(storefront, "/c/shoes/")
    body: bytes = response.body  # type: ignore[attr-defined]
    assert response.status == 200
    assert b'<script src="http://127.0.0.1:9999/sdk/tailor.js"' in body
    assert b'src="/sdk/tailor.js"' not in body
    assert b'<meta name="tailor:category" content="shoes">' in body
    csp = response.getheader("Content-Security-Policy") or ""
    assert "script-src 'self' http://127.0.0.1:9999" in csp
    assert "connect-src http://127.0.0.1:9999" in csp
    assert "unsafe-inline" not in csp
    assert "trusted-types tailor" in csp


def test_static_files_directories_and_missing_paths(storefront: demo_storefront.StorefrontServer) -> None:
    css = get(storefront, "/css/store.css")
    assert (css.status, css.getheader("Content-Type")) == (200, "text/css; charset=utf-8")
    assert css.getheader("Content-Security-Policy") is None
    redirect = get(storefront, "/c/shoes?sort=new")
    assert (redirect.status, redirect.getheader("Location")) == (301, "/c/shoes/?sort=new")
    assert get(storefront, "/nope/").status == 404
    assert get(storefront, "/../../pyproject.toml").status == 404
    assert get(storefront, "/%2e%2e/shop/stack.yaml").status == 404


# --- readiness ------------------------------------------------------------------------------------


def resource(
    kind: str, name: str, generation: int, observed: int | None, ready: str | None
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": ready, "reason": "Published" if ready == "True" else "UnknownVariant",
             "message": "ok" if ready == "True" else "variant nope does not exist"}
        ]  # fmt: skip
    return {"kind": kind, "metadata": {"name": name, "generation": generation}, "status": status}


def test_pending_lists_what_is_not_ready_at_its_current_generation() -> None:
    items = [
        resource("PersonalizationStack", "shop", 1, 1, "True"),
        resource("PersonalizationRule", "fresh", 1, None, None),
        resource("PersonalizationRule", "edited", 3, 2, "True"),
        resource("PersonalizationRule", "broken", 1, 1, "False"),
        resource("ContentVariant", "hero", 2, 2, "True"),
    ]
    assert demo_kube.pending(items) == [
        "prule/fresh: no Ready condition yet",
        "prule/edited: generation 3 not observed yet (status is of 2)",
        "prule/broken: Ready=False UnknownVariant: variant nope does not exist",
    ]
    assert demo_kube.pending([items[0], items[4]]) == []


def test_rule_totals_sum_every_rules_stats() -> None:
    items = [
        {"status": {"stats": {"a": {"impressions": 10, "clicks": 2, "ctr": 0.2}, "b": {"impressions": 5}}}},
        {"status": {}},
        {},
    ]
    assert runner.rule_totals(items) == (15, 2)


# --- traffic --------------------------------------------------------------------------------------


def test_every_event_of_many_journeys_is_a_valid_v1_event() -> None:
    rng = random.Random(7)
    kinds: set[str] = set()
    for _ in range(300):
        shopper = demo_traffic.new_shopper(rng)
        for step in demo_traffic.journey(shopper, rng, STOREFRONT_URL):
            accepted, errors = events.validate_batch(list(step.events))
            assert errors == {}, (step, errors)
            assert accepted is not None
            kinds.update(event.type for event in accepted)
            assert all(event.anonymous_id == shopper.id for event in accepted)
    assert kinds == {"page_view", "click", "search", "add_to_cart", "purchase"}


def test_journeys_look_like_the_storefront() -> None:
    rng = random.Random(11)
    steps = [step for _ in range(200) for step in demo_traffic.journey(demo_traffic.new_shopper(rng), rng)]
    views = [s for s in steps if s.events[0]["type"] == "page_view"]
    assert all(s.slots for s in views), "every page view is followed by a decide, as tailor.js does"
    assert not any(s.slots for s in steps if s.events[0]["type"] != "page_view")
    for step in views:
        path = step.events[0]["page"]["url"].removeprefix("http://127.0.0.1:8000")
        assert (demo_manifests.STOREFRONT / path.split("?")[0].lstrip("/") / "index.html").is_file(), path
        assert ("home-hero" in step.slots) == (
            path in ("/", "/new/", "/bestsellers/") or path.startswith("/c/")
        )
    shoe_views = [s for s in views if s.events[0].get("properties", {}).get("category") == "shoes"]
    assert len(shoe_views) > len(views) / 5, "shoes are the most popular interest"
    purchases = [s for s in steps if s.purchase]
    assert 0 < len(purchases) < len(views) / 5


def test_a_seeded_journey_is_reproducible() -> None:
    def walk(seed: int) -> list[tuple[str, ...]]:
        rng = random.Random(seed)
        shopper = demo_traffic.new_shopper(rng)
        return [
            tuple(e["id"] + e["type"] for e in step.events) for step in demo_traffic.journey(shopper, rng)
        ]

    assert walk(3) == walk(3)
    assert walk(3) != walk(4)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_the_pacer_spaces_events_at_the_rate() -> None:
    fake = FakeTime()
    pacer = demo_traffic.Pacer(10, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        pacer.acquire()
    assert fake.sleeps == [0.1, 0.1, 0.1, 0.1]
    assert fake.now == pytest.approx(100.4)
    pacer.acquire(3)  # a step with three events takes three slots
    pacer.acquire()
    assert fake.now == pytest.approx(100.8)


def test_the_pacer_does_not_burst_after_a_stall() -> None:
    fake = FakeTime()
    pacer = demo_traffic.Pacer(100, clock=fake.clock, sleep=fake.sleep, slack=0.25)
    pacer.acquire()
    fake.now += 10.0  # the thread was busy for 10 s: 1,000 slots missed
    for _ in range(30):
        pacer.acquire()
    # Only the slack (0.25 s = 25 slots, and the one due now) goes without waiting; then 10 ms apart.
    waits = [seconds for seconds in fake.sleeps if seconds > 1e-9]
    assert waits == [0.01] * 4


def test_retry_after_reads_seconds_and_falls_back() -> None:
    assert demo_client.retry_after({"Retry-After": "2"}) == 2.0
    assert demo_client.retry_after({"retry-after": "120"}) == 5.0, "capped"
    assert demo_client.retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.2
    assert demo_client.retry_after({}) == 0.2


# --- ports and the command line -------------------------------------------------------------------


def test_a_busy_port_is_named_with_its_role_and_what_to_do() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # The base is checked first, so the message is about this port whatever else is in use.
        with pytest.raises(
            runner.DemoError, match=rf"port {port} \(for the storefront\) is in use"
        ) as raised:
            runner.choose_ports(port)
    assert "--port 0 for any free ports" in str(raised.value)


def test_port_zero_takes_five_free_ports() -> None:
    ports = runner.choose_ports(0)
    assert (
        len({ports.storefront, ports.api, ports.operator_metrics, ports.worker_metrics, ports.api_admin}) == 5
    )


def test_the_cli_reports_a_busy_port_without_a_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tailor.cli.main", "demo", "--check", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} (for the storefront) is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_hints_say_what_to_try_and_how_to_poke() -> None:
    text = runner.hints(
        storefront="http://127.0.0.1:8000",
        api="http://127.0.0.1:8001",
        ports=runner.Ports(8000, 8001, 8002, 8003, 8004),
        namespace="tailor-demo",
        token="secret",
        kubectl="kubectl",
        dev="tailor dev --name x",
        logs="/logs",
        browser=True,
    )
    assert "Open http://127.0.0.1:8000/" in text
    assert "three shoe pages" in text
    assert "kubectl -n tailor-demo get prule" in text
    assert "TAILOR_ADMIN_TOKEN=secret" in text
    assert "http://127.0.0.1:8002/metrics (operator)" in text
    assert 'eval "$(tailor dev --name x env)"' in text
    assert "`tailor dev --name x down` stops it" in text
    quiet = runner.hints(
        storefront="s", api="a", ports=runner.Ports(1, 2, 3, 4, 5), namespace="n", token="t",
        kubectl="k", dev="d", logs="l", browser=False,
    )  # fmt: skip
    assert "Try it in a browser" not in quiet


def test_the_progress_line_says_when_the_rate_is_not_reached() -> None:
    before = demo_traffic.Snapshot(at=10.0, events=0)
    after = demo_traffic.Snapshot(at=20.0, events=500, decides=350, clicks=20, errors=1, last_error="503")
    line = after.line(before, target=50)
    assert line.startswith("traffic: 500 events (50/s), 350 decides")
    assert "1 errors (last: 503)" in line
    assert "below" not in line
    assert "below the 200/s asked for" in after.line(before, target=200)
