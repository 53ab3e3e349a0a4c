"""The browser SDK's own checks as part of pytest: its npm package's tests (`npm test`: the esbuild
build, then Node's built-in runner), its TypeScript declarations (`npm run types`: tsc), and the
contract between the SDK and the collector: every event tailor.js makes passes tailor.core.events."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tailor.core import events

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk"
NODE = shutil.which("node")
NPM = shutil.which("npm")


def node_major() -> int:
    if NODE is None:
        return 0
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"v(\d+)\.", version.strip())
    return int(match.group(1)) if match else 0


# The SDK's tests use Node's built-in runner and fetch: Node 18 or later (Debian 12's `nodejs` is 18;
# scripts/apt-packages.sh installs it). Missing Node fails the tests, it never skips them.
NODE_MISSING = "Node.js 18+ is needed for the SDK's tests: apt-get install nodejs (or run make setup)"


def node(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    assert NODE is not None, NODE_MISSING
    assert node_major() >= 18, NODE_MISSING
    return subprocess.run(
        [NODE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def npm(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`npm ARGS` in sdk/, whose node_modules scripts/setup.sh installs (`npm ci`)."""
    assert NPM is not None, NODE_MISSING
    assert (SDK / "node_modules" / ".bin" / "esbuild").exists(), (
        "sdk/node_modules is missing: run bash scripts/setup.sh (it runs npm ci in sdk/)"
    )
    return subprocess.run(
        [NPM, "--silent", *args], cwd=SDK, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_sdk_javascript_tests_pass() -> None:
    result = npm("test")
    summary = dict(re.findall(r"^# (tests|pass|fail|cancelled) (\d+)$", result.stdout, re.MULTILINE))
    assert result.returncode == 0, (
        f"npm test in sdk/ failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    assert summary.get("fail") == "0", summary
    assert summary.get("cancelled") == "0", summary
    assert int(summary.get("pass", "0")) >= 60, f"the SDK's tests did not all run: {summary}"


def test_the_type_declarations_agree_with_their_use_under_tsc() -> None:
    result = npm("run", "types")
    assert result.returncode == 0, (
        f"tsc on sdk/tailor.d.ts, react/index.d.mts, test/usage.mts:\n{result.stdout}{result.stderr}"
    )


def test_every_event_the_sdk_makes_passes_the_collectors_validation() -> None:
    result = node("sdk/testing/emit-events.js", timeout=60)
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    types = {event["type"] for event in made}
    assert types == {"page_view", "click", "add_to_cart", "search", "purchase", "custom"}, types
    assert len(made) == 16  # 7 from the dataLayer, the automatic page view, 8 tracked
    for event in made:
        parsed, errors = events.validate(event)
        assert not errors, (event, errors)
        assert parsed is not None
    identified = [event for event in made if event.get("userId")]
    # The tracked page view and the automatic one, which runs once the script's synchronous part ended.
    assert [event["type"] for event in identified] == ["page_view", "page_view"]
    assert identified[0]["userId"] == "customer-42@example.com"
