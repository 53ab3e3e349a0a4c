"""The storefront in Chromium against the whole real pipeline, as `tailor demo` runs it.

In this module: the local stack (kube-apiserver, Kafka, Redis), the CRDs and examples/shop applied
to a fresh namespace, and `tailor operator`, `tailor worker` and `tailor api` as real processes. The
storefront is on its own origin, and the content API (another origin, CORS from the stack's
`contentApi.corsOrigins`) serves /sdk/tailor.js. Nothing here stands in for a Tailor component.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import layout_shift
import pytest
import redis
import yaml
from kubernetes import client as k8s_client
from playwright.sync_api import Browser, Page
from shop_server import STRICT_CSP, ShopServer

from tailor.core.rules import versions
from tailor.devstack import ports, probes

pytestmark = [pytest.mark.browser, pytest.mark.kube, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
ADMIN_TOKEN = "e2e-admin-token-of-at-least-32-bytes"
HERO = "[data-tailor-slot='home-hero']"
PROMO = "[data-tailor-slot='sidebar-promo']"
INJECTION = (
    "<p>Found it?</p>"
    """<img src="/nope.png" onerror="window.__pwned='img'"><script>window.__pwned='script'</script>"""
    """<a href="javascript:window.__pwned='link'">go</a><svg onload="window.__pwned='svg'"></svg>"""
    """<iframe srcdoc="<script>parent.__pwned='iframe'</script>"></iframe>"""
)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, redis.RedisError, ValueError) as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


class Process:
    """A `tailor` command in a subprocess; its log is kept for failure messages."""

    def __init__(self, name: str, log_dir: Path, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._sink = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tailor.cli.main", *args],
            stdout=self._sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._sink.close()


@dataclass
class Shop:
    namespace: str
    storefront: ShopServer
    api_url: str
    processes: list[Process]
    admin_url: str

    def profile(self, user: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.admin_url}/v1/profiles/{user}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            document: dict[str, Any] = json.loads(reply.read())
            return document

    def diagnostics(self) -> str:
        return "\n".join(f"--- {p.name} (alive={p.alive()}):\n{p.output()}" for p in self.processes)


def manifests(namespace: str, redis_url: str, kafka_bootstrap: str, storefront: str) -> list[dict[str, Any]]:
    """examples/shop as applied in this test: the stack pointed at the local Kafka and Redis and
    allowing the storefront's origin, plus a variant carrying script injections and a rule that
    shows it only to visitors who searched for "inject-me"."""
    documents: list[dict[str, Any]] = []
    for path in sorted(SHOP.glob("*.yaml")):
        documents += [copy.deepcopy(doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in documents:
        if doc["kind"] == "PersonalizationStack":
            spec = doc["spec"]
            spec["redis"] = {"url": redis_url}
            spec["kafka"]["bootstrapServers"] = kafka_bootstrap
            spec["kafka"]["topics"] = {"events": f"{namespace}.events", "deadLetter": f"{namespace}.dead"}
            spec["contentApi"]["corsOrigins"] = [storefront]
    documents.append(
        {
            "apiVersion": "tailor.dev/v1alpha1",
            "kind": "ContentVariant",
            "metadata": {"name": "promo-injection"},
            "spec": {"slot": "sidebar-promo", "content": {"type": "html", "body": INJECTION}},
        }
    )
    documents.append(
        {
            "apiVersion": "tailor.dev/v1alpha1",
            "kind": "PersonalizationRule",
            "metadata": {"name": "injection-probe"},
            "spec": {
                "slot": "sidebar-promo",
                "priority": 1000,
                "audience": [
                    {
                        "feature": "searches",
                        "dimension": "query",
                        "value": "inject-me",
                        "window": "5m",
                        "op": "gte",
                        "threshold": 1,
                    }
                ],
                "variants": {"names": ["promo-injection"]},
            },
        }
    )
    return documents


@pytest.fixture(scope="module")
def shop(
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    kubeconfig: Path,
    redis_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Shop]:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for name in ("personalizationstacks", "personalizationrules", "contentvariants"):
        probes.until_conditions_set(
            kubectl, "wait", "--for=condition=Established", f"crd/{name}.tailor.dev", "--timeout=30s"
        )
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    core = k8s_client.CoreV1Api(kube_api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    logs = tmp_path_factory.mktemp("e2e-logs")
    api_port, admin_port = ports.pick(None), ports.pick(None)
    api_url = f"http://127.0.0.1:{api_port}"
    admin_url = f"http://127.0.0.1:{admin_port}"  # readiness and profiles: the API's admin port
    storefront = ShopServer().start()
    storefront.sdk_src = f"{api_url}/sdk/tailor.js"  # the content API serves the SDK and is its endpoint
    processes: list[Process] = []
    try:
        kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=yaml.safe_dump_all(manifests(namespace, redis_url, kafka_bootstrap, storefront.url)),
        )
        stack = f"{namespace}/shop"
        processes.append(
            Process(
                "operator",
                logs,
                [
                    "operator",
                    "--namespace",
                    namespace,
                    "--redis-url",
                    redis_url,
                    "--standalone",
                    "--metrics-port",
                    "0",
                    "--liveness",
                    "off",
                ],
                {"KUBECONFIG": str(kubeconfig)},
            )
        )
        client = redis.Redis.from_url(redis_url)
        try:
            wait_for("the operator to publish the shop's ruleset", lambda: versions.load_sync(client, stack))
        finally:
            client.close()
        processes.append(
            Process(
                "worker",
                logs,
                ["worker", "--stack", stack, "--metrics-port", "0"],
                {"TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_POLL_SECONDS": "0.05"},
            )
        )
        processes.append(
            Process(
                "api",
                logs,
                [
                    "api",
                    "--stack",
                    stack,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--admin-port",
                    str(admin_port),
                ],
                {"TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN},
            )
        )
        running = Shop(namespace, storefront, api_url, processes, admin_url)

        def ready() -> bool:
            # Decisions and the collector are ready apart (/readyz needs Redis only); the first page
            # view is posted at once, so wait for both, or its retry backoff eats the 1 s budget.
            for path in ("/readyz", "/readyz/collector"):
                with urllib.request.urlopen(f"{admin_url}{path}", timeout=2) as reply:
                    if reply.status != 200:
                        return False
            return True

        worker = processes[1]

        def consuming() -> bool:
            # A worker is ready before its consumer group hands it partitions (a few seconds on a
            # new group); events posted meanwhile wait in Kafka, and a test timing freshness fails.
            return "tailor_worker.consumer: assigned [" in worker.log.read_text(errors="replace")

        try:
            wait_for("the content API and its collector to be ready", ready, timeout=90)
            wait_for("the worker to be assigned its partitions", consuming, timeout=60)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{running.diagnostics()}") from None
        yield running
    finally:
        for process in reversed(processes):
            process.stop()
        storefront.stop()
        core.delete_namespace(namespace)


@pytest.fixture
def page(chromium: Browser, shop: Shop) -> Iterator[Page]:
    """A new visitor: a fresh browser profile."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    browser_page = context.new_page()
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield browser_page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}\n{shop.diagnostics()}"


def visitor(page: Page) -> str:
    user: str = page.evaluate("() => window.tailor.identity().user")
    return user


def test_browsing_shoes_changes_the_hero_within_a_second_and_shifts_nothing(page: Page, shop: Shop) -> None:
    store_url = shop.storefront.url
    layout_shift.measure(page)
    page.goto(f"{store_url}/")
    page.wait_for_selector(f"{HERO}[data-tailor-state='personalized']", timeout=5000)
    assert page.get_attribute(HERO, "data-tailor-variant") == "hero-first-order", "the new-visitor rule"
    for visit in (1, 2, 3):
        page.goto(f"{store_url}/c/shoes/")
        started = time.monotonic()
        page.wait_for_selector(f"{HERO}[data-tailor-state]", timeout=5000)
        if visit < 3:
            assert not (page.get_attribute(HERO, "data-tailor-variant") or "").startswith("hero-shoes")
        else:
            # returning-shoe-browser: 3 shoe page views in 24h. The third one counts on this very page.
            page.wait_for_selector(f"{HERO}[data-tailor-variant^='hero-shoes']", timeout=1000)
            assert time.monotonic() - started < 1.0, "the hero changed within a second"
        assert layout_shift.settled_cls(page) == 0, (
            f"layout shift on visit {visit}: {layout_shift.shifts(page)}"
        )
    counts = shop.profile(visitor(page))["counts"]["24h"]
    assert counts["views|category|shoes"] == 3
    assert counts["views"] == 4


def test_offline_actions_are_counted_exactly_once_when_back_online(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.storefront.url}/p/trail-runner/")
    user = visitor(page)
    wait_for(
        "the page view to be counted",
        lambda: shop.profile(user)["counts"].get("5m", {}).get("views") == 1,
        timeout=10,
    )
    page.context.set_offline(True)
    for _ in range(3):
        page.click("#wishlist")
    for _ in range(2):
        page.click("#add-to-cart")
    page.wait_for_timeout(1500)
    assert shop.profile(user)["counts"]["5m"].get("clicks", 0) == 0, "nothing arrived while offline"
    page.context.set_offline(False)

    def counted() -> dict[str, int] | None:
        counts: dict[str, int] = shop.profile(user)["counts"]["5m"]
        return counts if counts.get("clicks") == 3 and counts.get("cartAdds") == 2 else None

    wait_for("the offline actions to be counted", counted, timeout=15)
    page.wait_for_timeout(1500)  # any resend would be counted by now, if dedup failed
    counts = shop.profile(user)["counts"]["5m"]
    assert (counts["views"], counts["clicks"], counts["cartAdds"]) == (1, 3, 2)
    assert counts["clicks|productId|trail-runner"] == 3


# The page's clock set this far back while offline, then restored as the network comes back: the
# actions are stamped ten minutes before they can be sent, and the SDK's clock jumps ten minutes on
# with its timers still pending — what the collector, the workers and tailor.js see of a shopper who
# was offline for ten minutes (a device asleep, too), without the test waiting them out.
OFFLINE_SECONDS = 600


def test_actions_ten_minutes_offline_count_once_in_the_windows_that_hold_them(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.storefront.url}/p/trail-runner/")
    user = visitor(page)
    wait_for(
        "the page view to be counted",
        lambda: shop.profile(user)["counts"].get("5m", {}).get("views") == 1,
        timeout=10,
    )
    page.context.set_offline(True)
    page.evaluate(
        "(seconds) => { window.__realNow = Date.now; Date.now = () => window.__realNow() - seconds * 1000; }",
        OFFLINE_SECONDS,
    )
    for _ in range(3):
        page.click("#wishlist")
    for _ in range(2):
        page.click("#add-to-cart")
    page.wait_for_timeout(1500)
    queued = page.evaluate(
        "() => Object.keys(localStorage).filter((k) => k.startsWith('tailor.q.'))"
        ".map((k) => JSON.parse(localStorage.getItem(k)).e.timestamp)"
    )
    assert len(queued) == 5, "the five actions wait in the queue"
    ages = [time.time() - datetime.fromisoformat(stamp).timestamp() for stamp in queued]
    assert all(age > OFFLINE_SECONDS - 30 for age in ages), ages
    page.evaluate("() => { Date.now = window.__realNow; }")  # ten minutes later: back online
    page.context.set_offline(False)

    def counted() -> dict[str, Any] | None:
        counts: dict[str, Any] = shop.profile(user)["counts"]
        return counts if counts["30m"].get("clicks") == 3 and counts["30m"].get("cartAdds") == 2 else None

    wait_for("the offline actions to be counted", counted, timeout=15)
    page.wait_for_timeout(1500)  # any resend would be counted by now, if dedup failed
    counts = shop.profile(user)["counts"]
    for window in ("30m", "24h"):
        assert (counts[window]["views"], counts[window]["clicks"], counts[window]["cartAdds"]) == (1, 3, 2)
        assert counts[window]["clicks|productId|trail-runner"] == 3
    # Ten minutes back is outside the 5m window: there, only the page view of a moment ago.
    recent = counts["5m"]
    assert (recent["views"], recent.get("clicks", 0), recent.get("cartAdds", 0)) == (1, 0, 0)
    assert page.evaluate("() => window.tailor.status().notCounted") == 0


def test_a_csp_without_unsafe_inline_works_end_to_end(page: Page, shop: Shop) -> None:
    api = shop.api_url
    shop.storefront.csp = STRICT_CSP.replace("script-src 'self'", f"script-src 'self' {api}").replace(
        "connect-src 'self'", f"connect-src {api}"
    )
    try:
        violations: list[str] = []
        page.on(
            "console", lambda message: violations.append(message.text) if message.type == "error" else None
        )
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation',"
            " (e) => console.error('CSP: ' + e.violatedDirective))"
        )
        page.goto(f"{shop.storefront.url}/")
        page.wait_for_selector(f"{HERO}[data-tailor-state='personalized']", timeout=5000)
        assert page.text_content(f"{HERO} h2") == "First order? 10% off"
        page.click("a.tile[data-tailor-product-id='weekender']")
        page.wait_for_url("**/p/weekender/")
        user = visitor(page)
        wait_for(
            "the click and both page views",
            lambda: (
                shop.profile(user)["counts"]["5m"].get("views") == 2
                and shop.profile(user)["counts"]["5m"].get("clicks") == 1
            ),
            timeout=10,
        )
        assert violations == []
    finally:
        shop.storefront.csp = None


def test_a_script_injection_in_a_variant_does_not_execute(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.storefront.url}/")
    page.fill("#q", "inject-me")
    page.press("#q", "Enter")
    page.wait_for_url("**/search/?q=inject-me")
    page.wait_for_selector(f"{PROMO}[data-tailor-variant='promo-injection']", timeout=5000)
    assert page.text_content(f"{PROMO} p") == "Found it?"
    page.click(f"{PROMO} a", force=True)
    page.wait_for_timeout(700)
    assert page.evaluate("() => window.__pwned") is None
    found = page.evaluate(
        """(selector) => Array.from(document.querySelector(selector).querySelectorAll('*')).flatMap((el) =>
             [el.localName, ...Array.from(el.attributes, (a) => a.name + '=' + a.value)])""",
        PROMO,
    )
    assert not [item for item in found if "script" in item or item.startswith("on") or "iframe" in item], (
        found
    )
