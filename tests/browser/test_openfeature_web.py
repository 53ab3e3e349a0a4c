"""OpenFeature in the browser: `@openfeature/web-sdk` with the official `@openfeature/ofrep-web-provider`
(from npm, bundled by esbuild: tests/browser/openfeature) on a page of another origin than the real
`tailor api` process, in Chromium. The page shows the hero slot's flag; the provider's polling gets
304 while nothing changed (If-None-Match and ETag across origins), then a 200, a ConfigurationChanged
event and the shoe lovers' variant once the user's behaviour is recorded the workers' way."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response

# api_process and test_openfeature live beside the integration tests; a browser test run alone must
# find them too (pytest puts only this directory on the path).
sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
import api_process
import test_openfeature
from api_harness import page_view

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.kafka, pytest.mark.timeout(180)]
PACKAGE = Path(__file__).parent / "openfeature"
PAGE = b"""<!doctype html><meta charset="utf-8"><title>OFREP</title>
<div id="hero"></div><script src="/bundle.js"></script>"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """page.js and the npm packages as one script, built by esbuild from npm (scripts/setup.sh)."""
    esbuild = PACKAGE / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail(f"{esbuild} is missing: run scripts/setup.sh (npm ci in {PACKAGE})", pytrace=False)
    out = tmp_path_factory.mktemp("openfeature") / "bundle.js"
    subprocess.run(
        [str(esbuild), "page.js", "--bundle", "--format=iife", f"--outfile={out}", "--log-level=warning"],
        cwd=PACKAGE, check=True, timeout=60,
    )  # fmt: skip
    return out.read_bytes()


@pytest.fixture(scope="module")
def site(bundle: bytes) -> Iterator[str]:
    """The shop's pages on an origin of their own: the page and its bundle."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (bundle, "text/javascript") if self.path == "/bundle.js" else (PAGE, "text/html")
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(
    site: str, redis_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[api_process.Served]:
    log = tmp_path_factory.mktemp("ofrep-web") / "api.log"
    with api_process.serve(redis_url, kafka_bootstrap, log, cors_origins=(site,)) as served:
        yield served


def test_the_web_provider_shows_the_slot_and_polls_with_etags_until_behaviour_changes_it(
    served: api_process.Served, site: str, redis_url: str, page: Page
) -> None:
    # `served` first: its set-up publishes with asyncio.run, which Playwright's loop (open from the
    # page's fixtures on) would refuse.
    user = f"u-{uuid.uuid4().hex[:8]}"
    evaluations: list[Response] = []
    page.on(
        "response", lambda r: evaluations.append(r) if r.url.endswith("/ofrep/v1/evaluate/flags") else None
    )
    page.goto(f"{site}/?api={served.url}&user={user}&session=s1&poll=300")
    page.wait_for_function("window.openfeatureResult !== undefined", timeout=15_000)
    result = page.evaluate("window.openfeatureResult")
    assert "error" not in result, result
    first = result["first"]
    assert (first["value"], first["variant"], first["reason"]) == ("hero-default", "hero-default", "DEFAULT")
    assert first["missing"] == "FLAG_NOT_FOUND"
    assert first["decisionId"]
    assert page.text_content("#hero") == "<p>hero-default</p>"  # the content, rendered as text here

    # Polling while nothing changed: 304s, each sent with the ETag the first answer exposed.
    wait_until(page, lambda: sum(r.status == 304 for r in evaluations) >= 2)
    tag = evaluations[0].header_value("etag")
    assert tag
    assert all(r.request.header_value("if-none-match") == tag for r in evaluations if r.status == 304)

    test_openfeature.behave(redis_url, served.stack, user, page_view(user, "shoes", 2))
    page.wait_for_function("window.openfeatureResult.changes.length > 0", timeout=15_000)
    assert page.evaluate("window.openfeatureResult.changes") == [["hero"]]
    now = page.evaluate("window.openfeatureRead()")
    assert now["reason"] == "TARGETING_MATCH"
    assert now["value"] in test_openfeature.SHOE_VARIANTS
    assert now["rule"] == "shoe-lovers"
    assert evaluations[-1].status in (200, 304)
    assert any(r.status == 200 for r in evaluations[1:])  # the change came as a 200 of a poll


def wait_until(page: Page, condition: Any, seconds: float = 10) -> None:
    """Let the page run (Playwright's events are delivered meanwhile) until `condition()` holds."""
    for _ in range(int(seconds * 20)):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("the condition did not hold in time")
