"""Headless Chromium (Debian's, driven by Playwright) and the local ShopServer for the SDK's tests.

Every page gets a fresh browser context (empty storage) and fails its test on any uncaught script
error. The server is in shop_server.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from shop_server import ShopServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in the main thread
# while it is open, and every later test that calls asyncio.run() would then fail.
@pytest.fixture(scope="module")
def playwright_session() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def chromium(playwright_session: Playwright) -> Iterator[Browser]:
    """Debian's Chromium (Playwright cannot download its own browsers here)."""
    path = CHROMIUM if CHROMIUM.exists() else None
    found = shutil.which("chromium")
    if path is None and found:
        path = Path(found)
    if path is None:
        pytest.fail(
            "headless Chromium is missing: apt-get install -y --no-install-recommends chromium",
            pytrace=False,
        )
    browser = playwright_session.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def shop() -> Iterator[ShopServer]:
    """The storefront, tailor.js and the API routes on one origin (a fresh server per test)."""
    server = ShopServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: empty localStorage, sessionStorage, cache."""
    browser_context = chromium.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield browser_context
    finally:
        browser_context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on any uncaught script error."""
    browser_page = context.new_page()
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))
    yield browser_page
    assert not errors, f"uncaught errors in the page: {errors}"
