"""tailor.js in Chromium: personalized slots that never shift the page, never run injected script,
work under a CSP without 'unsafe-inline', and keep their fallback markup when decisions fail.

Against the local ShopServer (conftest), whose /v1/decide answers what each test sets.
"""

from __future__ import annotations

import threading
from typing import Any

import layout_shift
import pytest
from playwright.sync_api import Page
from shop_server import STRICT_CSP, Answer, Recorded, ShopServer

from tailor.core.rules import sanitize

pytestmark = pytest.mark.browser

HERO = "[data-tailor-slot='home-hero']"
PROMO = "[data-tailor-slot='sidebar-promo']"

WATCH_CSP = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__violations.push(event.violatedDirective + ' ' + event.blockedURI);
});
"""


def html(variant: str, body: str, decision_id: str = "") -> dict[str, Any]:
    return {
        "variant": variant,
        "rule": "rule-1",
        "decisionId": decision_id or f"d-{variant}",
        "content": {"type": "html", "body": body},
    }


def personalized(page: Page, selector: str) -> None:
    page.wait_for_selector(f"{selector}[data-tailor-state='personalized']", timeout=3000)


def test_all_slots_come_from_one_decide_call_per_page_view(page: Page, shop: ShopServer) -> None:
    shop.decisions = {
        "home-hero": html(
            "hero-shoes-new-arrivals",
            '<section class="hero"><h2>New running shoes are in</h2>'
            '<a href="/c/shoes/?sort=new">Shop new arrivals</a></section>',
        ),
        "sidebar-promo": {
            "variant": "promo-cart-discount",
            "rule": "abandoned-cart",
            "decisionId": "d-promo",
            "content": {
                "type": "json",
                "data": {
                    "headline": "Still thinking it over?",
                    "code": "CART5",
                    "discountPercent": 5,
                    "href": "/cart/",
                },
            },
        },
    }
    page.goto(f"{shop.url}/")
    personalized(page, HERO)
    personalized(page, PROMO)
    assert page.text_content(f"{HERO} h2") == "New running shoes are in"
    assert page.get_attribute(HERO, "data-tailor-variant") == "hero-shoes-new-arrivals"
    # The JSON variant reached the page's own listener (js/storefront.js), which rendered it.
    assert page.text_content(f"{PROMO} .promo-headline") == "Still thinking it over?"
    assert page.text_content(f"{PROMO} .promo-code") == "CART5"

    shop.wait_for(lambda: len(shop.kept_events()) == 1, what="the page view")
    decides = shop.recorded("/v1/decide")
    assert len(decides) == 1, "one batched call for both slots"
    query = decides[0].query
    view = shop.kept_events()[0]
    assert sorted(query["slot"]) == ["home-hero", "sidebar-promo"]
    assert query["user"] == [view["anonymousId"]]
    assert query["session"] == [view["sessionId"]]

    page.evaluate("() => window.tailor.render()")
    assert len(shop.recorded("/v1/decide")) == 1, "rendering again reuses the cached decisions"


def test_text_image_and_html_content_are_inserted_as_what_they_are(page: Page, shop: ShopServer) -> None:
    shop.decisions = {
        "home-hero": {
            "variant": "hero-shoes-sale",
            "rule": "returning-shoe-browser",
            "decisionId": "d-img",
            "content": {
                "type": "image",
                "data": {
                    "src": "/img/banners/shoes-sale.webp",
                    "alt": "Up to 40% off selected shoes",
                    "href": "/c/shoes/sale",
                },
            },
        },
        "sidebar-promo": {
            "variant": "promo-text",
            "rule": None,
            "decisionId": "d-text",
            "content": {"type": "text", "body": "<b>5% off</b> & free returns"},
        },
    }
    page.goto(f"{shop.url}/c/shoes/")
    personalized(page, HERO)
    personalized(page, PROMO)
    link = page.locator(f"{HERO} > a.tailor-image-link")
    assert link.get_attribute("href") == "/c/shoes/sale"
    image = link.locator("img.tailor-image")
    assert image.get_attribute("alt") == "Up to 40% off selected shoes"
    page.wait_for_function("() => document.querySelector('img.tailor-image').complete")
    assert page.evaluate("() => document.querySelector('img.tailor-image').naturalWidth") == 1200
    # Text stays text: the markup in it is shown, not parsed.
    assert page.text_content(PROMO) == "<b>5% off</b> & free returns"
    assert page.locator(f"{PROMO} b").count() == 0


def test_fallback_markup_stays_when_decisions_time_out_or_fail(page: Page, shop: ShopServer) -> None:
    shop.respond_decide = lambda request: Answer(
        200, {"decisions": [{"slot": "home-hero", **html("late", "<p>too late</p>")}]}, delay=2.5
    )
    page.goto(f"{shop.url}/")
    page.wait_for_selector(f"{HERO}[data-tailor-state='fallback']", timeout=2000)  # decideTimeout is 1 s
    page.wait_for_timeout(2000)  # the late answer arrives meanwhile and must be ignored
    assert page.get_attribute(HERO, "data-tailor-state") == "fallback"
    assert page.text_content(f"{HERO} h2") == "Welcome to the shop"
    assert page.get_attribute(HERO, "aria-busy") is None

    shop.respond_decide = lambda request: Answer(500, {"title": "Internal error"})
    page.goto(f"{shop.url}/c/bags/")
    page.wait_for_selector(f"{PROMO}[data-tailor-state='fallback']", timeout=2000)
    assert page.text_content(f"{PROMO} p") == "Free shipping on orders over 50 EUR."


def open_with_a_late_decision(page: Page, shop: ShopServer, url: str) -> None:
    """Open `url` measuring layout shifts, its decision held until the fallback has been painted (a
    decision that beats the first paint shifts nothing, and would prove nothing), then released."""
    shop.decide_gate = threading.Event()
    layout_shift.measure(page)
    page.goto(url)
    layout_shift.painted(page)
    shop.decide_gate.set()


def test_personalized_content_shifts_nothing(page: Page, shop: ShopServer) -> None:
    tall = "<section class='hero'><h2>Big news</h2>" + "<p>A line of content.</p>" * 30 + "</section>"
    shop.decisions = {
        "home-hero": html("hero-tall", tall),
        "sidebar-promo": {
            "variant": "promo-json",
            "rule": "r",
            "decisionId": "d-p",
            "content": {
                "type": "json",
                "data": {"headline": "Bestsellers this week" * 5, "href": "/bestsellers/"},
            },
        },
    }
    # Content arrives after the first paint, as over a slow network (however slow: no decide timeout).
    shop.script_attributes = 'data-decide-timeout="30000"'
    before: dict[str, Any] = {}
    shop.decide_gate = threading.Event()
    layout_shift.measure(page)
    page.goto(f"{shop.url}/")
    layout_shift.painted(page)
    before["hero"] = page.locator(HERO).bounding_box()
    before["grid"] = page.locator(".grid").bounding_box()
    shop.decide_gate.set()
    personalized(page, HERO)
    personalized(page, PROMO)
    assert layout_shift.settled_cls(page) == 0, layout_shift.shifts(page)
    assert page.locator(HERO).bounding_box() == before["hero"]
    assert page.locator(".grid").bounding_box() == before["grid"]


def test_the_measurement_sees_a_shift_when_a_slot_reserves_no_space(page: Page, shop: ShopServer) -> None:
    """The control for the test above: the same measurement on a slot without a reserved size."""
    shop.extra_pages["/unreserved/"] = """<!doctype html><html><head><title>no reservation</title>
<link rel="stylesheet" href="/css/store.css">
<script src="/sdk/tailor.js" data-decide-timeout="30000" defer></script></head>
<body><div data-tailor-slot="home-hero"><p>short fallback</p></div>
<p class="below">Content below</p></body></html>"""
    shop.decisions = {"home-hero": html("tall", "<p>line</p>" * 20)}
    open_with_a_late_decision(page, shop, f"{shop.url}/unreserved/")
    personalized(page, HERO)
    assert layout_shift.settled_cls(page) > 0


def test_a_strict_csp_without_unsafe_inline_is_enough(page: Page, shop: ShopServer) -> None:
    shop.csp = STRICT_CSP
    # Variant HTML as the pipeline serves it: through the operator's sanitizer (which drops inline
    # styles, since a browser reports a style attribute it merely parses, even in a <template>).
    dirty = (
        '<section class="hero" style="color:red"><style>h2{color:red}</style><h2>Styled</h2>'
        '<img src="/img/favicon.svg" alt="" onload="x()"><a href="/new/">New</a></section>'
    )
    shop.decisions = {
        "home-hero": html("hero-styled", sanitize.clean_html(dirty)),
        "sidebar-promo": {
            "variant": "promo-json",
            "rule": "r",
            "decisionId": "d-p",
            "content": {"type": "json", "data": {"headline": "Bestsellers", "href": "/bestsellers/"}},
        },
    }
    console_errors: list[str] = []
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    page.add_init_script(WATCH_CSP)
    page.goto(f"{shop.url}/p/trail-runner/")
    page.wait_for_selector(f"{PROMO}[data-tailor-state='personalized']", timeout=3000)
    assert page.text_content(f"{PROMO} .promo-headline") == "Bestsellers"
    page.click("#add-to-cart")
    shop.wait_for(lambda: len(shop.kept_events()) == 2, what="the page view and the cart add")

    page.goto(f"{shop.url}/")
    personalized(page, HERO)
    assert page.text_content(f"{HERO} h2") == "Styled"
    assert page.get_attribute(f"{HERO} a", "href") == "/new/"
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__violations") == []
    assert console_errors == []


def test_without_its_trusted_types_policy_html_slots_keep_their_fallback(
    page: Page, shop: ShopServer
) -> None:
    shop.csp = STRICT_CSP.replace("trusted-types tailor", "trusted-types 'none'")
    shop.decisions = {
        "home-hero": html("hero-html", "<h2>Needs innerHTML</h2>"),
        "sidebar-promo": {
            "variant": "t",
            "rule": "r",
            "decisionId": "d-t",
            "content": {"type": "text", "body": "Text works"},
        },
    }
    page.goto(f"{shop.url}/")
    personalized(page, PROMO)
    page.wait_for_selector(f"{HERO}[data-tailor-state='fallback']")
    assert page.text_content(f"{HERO} h2") == "Welcome to the shop"
    assert page.text_content(PROMO) == "Text works"


INJECTIONS = [
    """<img src="/nope.png" onerror="window.__pwned='img onerror'">""",
    """<script>window.__pwned='script'</script>""",
    """<svg><script>window.__pwned='svg script'</script></svg>""",
    """<svg onload="window.__pwned='svg onload'"><circle r="2"/></svg>""",
    """<a id="js-link" href="javascript:window.__pwned='javascript: link'">a link</a>""",
    """<a id="js-link-2" href=" java&#x09;script:window.__pwned='obfuscated link'">another</a>""",
    """<iframe srcdoc="<script>parent.__pwned='iframe'</script>"></iframe>""",
    """<svg><a id="animated"><animate attributeName="href" values="javascript:window.__pwned='animate'"/>"""
    """<text y="20">animated</text></a></svg>""",
    """<details open ontoggle="window.__pwned='ontoggle'"><summary>x</summary></details>""",
    """<form><button formaction="javascript:window.__pwned='formaction'">go</button></form>""",
    """<object data="javascript:window.__pwned='object'"></object>""",
    """<embed src="javascript:window.__pwned='embed'">""",
    """<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned='mxss'">""",
    """<input autofocus onfocus="window.__pwned='autofocus'">""",
    """<p style="background:url(javascript:window.__pwned='style')">styled</p>""",
]


def test_a_script_injection_in_a_variant_does_not_execute(page: Page, shop: ShopServer) -> None:
    shop.decisions = {
        "home-hero": html(
            "evil", "<section class='hero'><h2>Hello</h2>" + "".join(INJECTIONS) + "</section>"
        ),
        "sidebar-promo": {
            "variant": "evil-text",
            "rule": "r",
            "decisionId": "d-t",
            "content": {"type": "text", "body": INJECTIONS[0]},
        },
    }
    page.goto(f"{shop.url}/")
    personalized(page, HERO)
    personalized(page, PROMO)
    for selector in ("#js-link", "#js-link-2", "#animated text"):
        page.click(f"{HERO} {selector}", force=True)
    page.wait_for_timeout(700)  # time for any image error, toggle, focus or animation to fire
    assert page.evaluate("() => window.__pwned") is None
    assert page.text_content(f"{HERO} h2") == "Hello", "the harmless part of the variant is shown"
    dangerous = page.evaluate(
        """(selector) => {
          const slot = document.querySelector(selector);
          const found = [];
          for (const el of slot.querySelectorAll('*')) {
            const banned = ['script', 'iframe', 'object', 'embed', 'form', 'style', 'animate'];
            if (banned.includes(el.localName)) found.push(el.localName);
            for (const attr of el.attributes) {
              const scripted = /^javascript:/i.test(attr.value.replace(/\\s/g, ''));
              const risky = attr.name.startsWith('on') || ['style', 'srcdoc'].includes(attr.name);
              if (risky || scripted) found.push(attr.name);
            }
          }
          return found;
        }""",
        HERO,
    )
    assert dangerous == []
    assert page.text_content(PROMO) == INJECTIONS[0], "a text variant shows the payload as text"


def test_a_click_in_a_personalized_slot_sends_feedback_once(page: Page, shop: ShopServer) -> None:
    shop.decisions = {
        "home-hero": html(
            "hero-x",
            "<section class='hero'><h2>Hi</h2><a id='cta' href='#more'>More</a></section>",
            decision_id="signed-decision-token",
        )
    }
    page.goto(f"{shop.url}/")
    personalized(page, HERO)
    page.click(f"{HERO} #cta")
    page.click(f"{HERO} h2")
    page.click(PROMO)  # the promo kept its fallback: no decision to credit
    shop.wait_for(lambda: len(shop.recorded("/v1/feedback")) >= 1, what="click feedback")
    page.wait_for_timeout(300)
    feedback = shop.recorded("/v1/feedback")
    assert [request.json for request in feedback] == [
        {"decisionId": "signed-decision-token", "type": "click"}
    ]


def test_live_mode_swaps_the_hero_once_browsing_is_counted(page: Page, shop: ShopServer) -> None:
    """The storefront's data-live: when the visitor's third shoe page view is accepted, the hero
    changes on that very page within a second, without shifting anything."""

    def decide(request: Recorded) -> Answer:
        views = [
            e
            for e in shop.kept_events()
            if e["type"] == "page_view" and e["properties"].get("category") == "shoes"
        ]
        hero = (
            html(
                "hero-shoes-new-arrivals", "<section class='hero'><h2>New running shoes are in</h2></section>"
            )
            if len(views) >= 3
            else html("hero-welcome", "<section class='hero'><h2>Welcome to the shop</h2></section>")
        )
        return Answer(200, {"decisions": [{"slot": "home-hero", "rulesetVersion": 1, **hero}]})

    shop.respond_decide = decide
    layout_shift.measure(page)
    for visit in range(1, 4):
        page.goto(f"{shop.url}/c/shoes/")
        shop.wait_for(lambda visit=visit: len(shop.kept_events()) == visit, what=f"page view {visit}")
        if visit < 3:
            personalized(page, HERO)
            page.wait_for_timeout(400)  # a refresh after the accepted view changes nothing yet
            assert page.text_content(f"{HERO} h2") == "Welcome to the shop"
    page.wait_for_function(
        "(selector) => document.querySelector(selector).textContent === 'New running shoes are in'",
        arg=f"{HERO} h2",
        timeout=1000,
    )
    assert page.get_attribute(HERO, "data-tailor-variant") == "hero-shoes-new-arrivals"
    assert layout_shift.settled_cls(page) == 0, layout_shift.shifts(page)
    assert len(shop.recorded("/v1/decide")) == 3, "one decide per page view: it waited for the view to count"


def test_live_mode_redecides_after_an_action_on_the_page(page: Page, shop: ShopServer) -> None:
    """An add-to-cart on a product page changes the promo beside it, on the same page."""

    def decide(request: Recorded) -> Answer:
        carted = any(e["type"] == "add_to_cart" for e in shop.kept_events())
        promo = (
            {
                "variant": "promo-cart-reminder",
                "rule": "abandoned-cart",
                "decisionId": "d-cart",
                "content": {"type": "text", "body": "You left something in your cart."},
            }
            if carted
            else {
                "variant": "promo-free-shipping",
                "rule": None,
                "decisionId": "d-ship",
                "content": {"type": "text", "body": "Free shipping on orders over 50 EUR."},
            }
        )
        return Answer(200, {"decisions": [{"slot": "sidebar-promo", "rulesetVersion": 1, **promo}]})

    shop.respond_decide = decide
    layout_shift.measure(page)
    page.goto(f"{shop.url}/p/canvas-tote/")
    personalized(page, PROMO)
    assert page.get_attribute(PROMO, "data-tailor-variant") == "promo-free-shipping"
    page.wait_for_timeout(500)
    assert len(shop.recorded("/v1/decide")) == 1, "the page view alone causes no second decide"
    page.click("#add-to-cart")
    page.wait_for_selector(
        f"{PROMO}[data-tailor-variant='promo-cart-reminder']", timeout=2000
    )  # flushInterval 1 s
    assert page.text_content(PROMO) == "You left something in your cart."
    assert len(shop.recorded("/v1/decide")) == 2
    assert layout_shift.settled_cls(page) == 0, layout_shift.shifts(page)
