"""The React bindings (@tailor/sdk/react) in Chromium, with React and react-dom from npm.

The page (sdk/testing/react-page) is rendered on the server side by react-dom/server's
renderToString and hydrated in the browser with the same tree: three <TailorSlot>s under one
<TailorProvider>. Against the local ShopServer (conftest), whose /v1/decide answers what each test
sets: one decide for all slots, no layout shift (with a control page whose slots reserve no space),
sanitized HTML only, fallback on timeout, click feedback, and the server's markup kept with
JavaScript off and by hydration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import layout_shift
import pytest
from playwright.sync_api import Browser, Page
from shop_server import ShopServer

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PAGE_BUILDER = REPO / "sdk" / "testing" / "react-page" / "page.mjs"
HERO = "[data-tailor-slot='home-hero']"
PROMO = "[data-tailor-slot='sidebar-promo']"
FOOTER = "[data-tailor-slot='footer-note']"
SLOTS = (HERO, PROMO, FOOTER)

# What an attacker would try if a variant's HTML ever reached the page unsanitized.
HOSTILE = (
    "<script>window.__xss = 'script'</script>"
    "<a id='hostile' href=\"javascript:window.__xss='href'\" onclick=\"window.__xss='onclick'\">Details</a>"
)
TALL_HERO = (
    "<section class='hero'><h2>New running shoes are in</h2>" + "<p>A line.</p>" * 12 + HOSTILE + "</section>"
)


@pytest.fixture(scope="module")
def react_page(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The client bundle (esbuild) and the server-rendered documents (renderToString), built once."""
    node = shutil.which("node")
    assert node, "Node.js is needed: apt-get install nodejs (scripts/apt-packages.sh)"
    assert (REPO / "sdk" / "node_modules" / "react-dom").is_dir(), (
        "sdk/node_modules is missing: run bash scripts/setup.sh (npm ci in sdk/)"
    )
    out = tmp_path_factory.mktemp("react-page")
    built = subprocess.run(
        [node, str(PAGE_BUILDER), str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert built.returncode == 0, built.stderr
    return {"bundle": (out / "react-page.js").read_bytes(), "pages": json.loads(built.stdout)}


@pytest.fixture
def react_shop(shop: ShopServer, react_page: dict[str, Any]) -> ShopServer:
    shop.extra_scripts["/react-page.js"] = react_page["bundle"]
    for name, document in react_page["pages"].items():
        shop.extra_pages[f"/react/{name}/"] = document
    shop.decisions = {
        "home-hero": {
            "variant": "hero-shoes",
            "rule": "shoe-lovers",
            "decisionId": "d-hero",
            "content": {"type": "html", "body": TALL_HERO},
        },
        "sidebar-promo": {
            "variant": "promo-json",
            "rule": "cart",
            "decisionId": "d-promo",
            "content": {"type": "json", "data": {"headline": "Still thinking it over?"}},
        },
        "footer-note": {
            "variant": "note-text",
            "rule": "all",
            "decisionId": "d-note",
            "content": {"type": "text", "body": "<b>Free</b> returns"},
        },
    }
    return shop


def open_with_a_late_decision(page: Page, shop: ShopServer, path: str) -> None:
    """Open `path` measuring layout shifts, the decision held until the server's markup has been
    painted (content that beats the first paint shifts nothing, and would prove nothing)."""
    shop.decide_gate = threading.Event()
    layout_shift.measure(page)
    page.goto(f"{shop.url}{path}")
    shop.wait_for(lambda: len(shop.recorded("/v1/decide")) == 1, timeout=15, what="the decide request")
    layout_shift.painted(page)
    shop.decide_gate.set()


def state(page: Page, selector: str, value: str) -> None:
    page.wait_for_selector(f"{selector}[data-tailor-state='{value}']", timeout=10_000)


def test_react_slots_share_one_decide_show_sanitized_content_and_shift_nothing(
    page: Page, react_shop: ShopServer
) -> None:
    open_with_a_late_decision(page, react_shop, "/react/reserved/")
    before = page.locator("#below-hero").bounding_box()
    for selector in SLOTS:
        state(page, selector, "personalized")
    assert layout_shift.settled_cls(page) == 0, layout_shift.shifts(page)
    assert page.locator("#below-hero").bounding_box() == before

    decides = react_shop.recorded("/v1/decide")
    assert len(decides) == 1, "one decide for the page's three slots"
    assert sorted(decides[0].query["slot"]) == ["footer-note", "home-hero", "sidebar-promo"]
    react_shop.wait_for(lambda: len(react_shop.kept_events()) == 1, what="the page view")
    assert react_shop.kept_events()[0]["type"] == "page_view"

    assert page.text_content(f"{HERO} h2") == "New running shoes are in"
    assert page.text_content(f"{PROMO} .promo-headline") == "Still thinking it over?"
    assert page.text_content(FOOTER) == "<b>Free</b> returns", "text stays text"
    assert page.get_attribute(HERO, "data-tailor-variant") == "hero-shoes"
    # The hostile parts were scrubbed before they reached the page, and nothing ran.
    assert page.locator(f"{HERO} script").count() == 0
    assert page.get_attribute(f"{HERO} #hostile", "href") is None
    assert page.get_attribute(f"{HERO} #hostile", "onclick") is None
    page.click(f"{HERO} #hostile")
    assert page.evaluate("() => window.__xss") is None
    assert page.evaluate("() => window.__hydrationErrors") == []


def test_the_measurement_sees_a_shift_when_react_slots_reserve_no_space(
    page: Page, react_shop: ShopServer
) -> None:
    """The control for the test above: the same page and content, slots without a height."""
    open_with_a_late_decision(page, react_shop, "/react/unreserved/")
    state(page, HERO, "personalized")
    assert layout_shift.settled_cls(page) > 0


def test_react_slots_keep_the_server_markup_when_decide_times_out(page: Page, react_shop: ShopServer) -> None:
    react_shop.decide_delay = 2.5  # the page's decideTimeout is 0.5 s
    page.goto(f"{react_shop.url}/react/quick/")
    for selector in SLOTS:
        state(page, selector, "fallback")
    assert page.text_content(f"{HERO} h2") == "Welcome to the shop"
    assert page.text_content(f"{PROMO} .promo-fallback") == "Free returns on every order"
    # Hydration adopted the server's nodes (they keep the mark set before the bundle ran).
    assert page.evaluate("() => document.querySelector('.hero-fallback').__fromServer") is True
    assert page.evaluate("() => window.__hydrationErrors") == []


def test_a_click_in_a_react_slot_sends_feedback_once(page: Page, react_shop: ShopServer) -> None:
    page.goto(f"{react_shop.url}/react/reserved/")
    for selector in SLOTS:
        state(page, selector, "personalized")
    page.click(f"{HERO} h2")
    page.click(f"{HERO} p >> nth=0")
    page.click(FOOTER)
    react_shop.wait_for(lambda: len(react_shop.recorded("/v1/feedback")) >= 2, what="click feedback")
    # A later request shows the page is past the clicks: feedback sent by then is all there is.
    page.evaluate("() => fetch('/v1/feedback-done').then(() => null)")
    sent = sorted(json.dumps(request.json) for request in react_shop.recorded("/v1/feedback"))
    assert sent == sorted(
        json.dumps({"decisionId": decision, "type": "click"}) for decision in ("d-hero", "d-note")
    )


def test_the_server_rendered_markup_is_kept_with_javascript_off(
    chromium: Browser, react_shop: ShopServer
) -> None:
    context = chromium.new_context(java_script_enabled=False, viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{react_shop.url}/react/reserved/")
        assert page.text_content(f"{HERO} h2") == "Welcome to the shop"
        assert page.text_content(f"{PROMO} .promo-fallback") == "Free returns on every order"
        assert page.text_content(FOOTER) == "Thanks for shopping"
        box = page.locator(HERO).bounding_box()
        assert box is not None
        assert box["height"] == 240, "the slot's space is reserved without script"
        assert react_shop.recorded("/v1/decide") == []
    finally:
        context.close()
