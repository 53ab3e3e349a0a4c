"""`tailor demo` as a user runs it, against the test session's real stack.

The demo is a subprocess given the stack's endpoints (KUBECONFIG, TAILOR_KAFKA_BOOTSTRAP,
TAILOR_REDIS_URL) and a temporary TAILOR_HOME, so it starts no stack of its own and leaves the user's
default stack alone. Each test uses its own namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kube, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

SWITCH = re.compile(
    r"3rd shoe page view: hero is (hero-shoes-\S+) \(rule returning-shoe-browser\), (\d+) ms after"
)
MEDIAN = re.compile(r"event → decision over (\d+) shoppers: median (\d+) ms, max (\d+) ms")
STATS = re.compile(r"rule stats \(kubectl get prule\): \+(\d+) impressions, \+(\d+) clicks")
CHROMIUM = Path("/usr/bin/chromium")


def demo_env(kubeconfig: Path, kafka_bootstrap: str, redis_url: str, home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TAILOR_ADMIN_TOKEN"}
    return env | {
        "KUBECONFIG": str(kubeconfig),
        "TAILOR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TAILOR_REDIS_URL": redis_url,
        "TAILOR_HOME": str(home),
    }


def tailor(*args: str) -> list[str]:
    return [sys.executable, "-m", "tailor.cli.main", *args]


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_demo_check_switches_the_hero_end_to_end_and_fills_the_rules_stats(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    kubeconfig: Path,
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    args = ["demo", "--check", "--port", "0", "--namespace", namespace, "--traffic", "40", "--duration", "5"]
    result = subprocess.run(
        tailor(*args),
        env=demo_env(kubeconfig, kafka_bootstrap, redis_url, tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "every part is external, nothing to start" in result.stderr, "the test stack was used as is"
    switch = SWITCH.search(result.stdout)
    assert switch, output
    median = MEDIAN.search(result.stdout)
    assert median, output
    shoppers, median_ms, max_ms = map(int, median.groups())
    assert shoppers == 5
    assert 0 < median_ms <= max_ms
    assert median_ms < 1000, "the storefront's promise: the hero changes within a second"
    assert "self-check passed" in result.stdout
    stats = STATS.search(result.stdout)
    assert stats, output
    assert int(stats.group(1)) > 0
    assert "traffic check passed" in result.stdout

    # What the demo left in the cluster: the shop, Ready, pointed at this stack, with live stats.
    stack = json.loads(kubectl("-n", namespace, "get", "pstack", "shop", "-o", "json").stdout)
    assert stack["spec"]["kafka"]["bootstrapServers"] == kafka_bootstrap
    assert stack["spec"]["redis"]["url"] == redis_url
    rules = json.loads(kubectl("-n", namespace, "get", "prule", "-o", "json").stdout)["items"]
    assert {rule["metadata"]["name"] for rule in rules} >= {"returning-shoe-browser", "new-visitor"}
    shown = sum(
        numbers["impressions"] for rule in rules for numbers in (rule["status"].get("stats") or {}).values()
    )
    assert shown >= int(stats.group(1))
    kubectl("delete", "namespace", namespace, "--wait=false")


def test_demo_check_fails_with_the_reason_when_the_pipeline_is_broken(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    kubeconfig: Path,
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """A worker that cannot start (an invalid TAILOR_WORKER_* setting) must fail the check, fast,
    naming the worker and quoting its log; nothing may be left running."""
    env = demo_env(kubeconfig, kafka_bootstrap, redis_url, tmp_path / "home") | {
        "TAILOR_WORKER_BATCH_SIZE": "not-a-number"
    }
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result = subprocess.run(
        tailor("demo", "--check", "--port", "0", "--namespace", namespace),
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "`tailor worker` exited with code 2" in result.stderr
    assert "TAILOR_WORKER_BATCH_SIZE" in result.stderr, "the worker's own message is quoted"
    assert "self-check passed" not in result.stdout
    assert time.monotonic() - started < 120, "a dead child is noticed at once, not after a timeout"
    assert "stopped the operator, worker and API" in result.stderr
    kubectl("delete", "namespace", namespace, "--wait=false")


class RunningDemo:
    """`tailor demo` in the background; its stdout collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            tailor(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{self.output}")


@pytest.fixture
def running_demo(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    kubeconfig: Path,
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
) -> Iterator[RunningDemo]:
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    demo = RunningDemo(
        ["demo", "--port", "0", "--namespace", namespace, "--traffic", "10"],
        demo_env(kubeconfig, kafka_bootstrap, redis_url, tmp_path / "home"),
    )
    try:
        demo.wait_for("self-check passed", timeout=300)
        yield demo
    finally:
        if demo.process.poll() is None:
            demo.process.kill()
            demo.process.wait(timeout=10)
        demo.reader.join(timeout=5)
        if demo.process.stdout is not None:
            demo.process.stdout.close()
        kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.browser
def test_browsing_the_demo_storefront_changes_the_hero_and_sigterm_stops_the_children(
    running_demo: RunningDemo,
) -> None:
    from playwright.sync_api import sync_playwright

    storefront = running_demo.wait_for(r"storefront\s+(http://\S+)/", timeout=5).group(1)
    api = running_demo.wait_for(r"content API\s+(http://\S+)/", timeout=5).group(1)
    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    assert executable, "headless Chromium is missing: apt-get install -y --no-install-recommends chromium"
    hero = "[data-tailor-slot='home-hero']"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console", lambda message: problems.append(message.text) if message.type == "error" else None
            )
            page.goto(f"{storefront}/")
            page.wait_for_selector(f"{hero}[data-tailor-state='personalized']", timeout=5000)
            assert page.get_attribute(hero, "data-tailor-variant") == "hero-first-order"
            for visit in (1, 2, 3):
                page.goto(f"{storefront}/c/shoes/")
                started = time.monotonic()
                if visit < 3:
                    page.wait_for_selector(f"{hero}[data-tailor-state]", timeout=5000)
                else:
                    page.wait_for_selector(f"{hero}[data-tailor-variant^='hero-shoes']", timeout=1000)
                    assert time.monotonic() - started < 1.0
            assert problems == [], "no script error or CSP violation under the demo's strict policy"
        finally:
            browser.close()

    assert listening(api)
    running_demo.process.send_signal(signal.SIGTERM)
    assert running_demo.process.wait(timeout=60) == 0, running_demo.output
    running_demo.reader.join(timeout=5)
    assert "stopped the operator, worker and API; the stack stays up" in running_demo.output
    assert not listening(api), "the content API stopped with the demo"
    assert not listening(storefront), "the storefront stopped with the demo"
