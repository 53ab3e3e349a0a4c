"""tailor.js in Chromium: what the storefront's visitors do arrives at the collector, once each.

Against the local ShopServer (conftest): page views, declared clicks, dataLayer pushes and searches;
offline and collector outages; the consent gate; a storefront on another origin than the API.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page
from shop_server import Answer, Recorded, ShopServer

from tailor.core import events as event_schema

pytestmark = pytest.mark.browser

QUEUED = "() => Object.keys(localStorage).filter((key) => key.startsWith('tailor.q.')).length"


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def assert_valid(events: list[dict[str, Any]]) -> None:
    """Each event passes the collector's own v1 validation (tailor.core.events)."""
    for event in events:
        _, errors = event_schema.validate(event)
        assert not errors, (event, errors)


def test_page_views_and_declared_clicks_arrive_valid_and_once(page: Page, shop: ShopServer) -> None:
    page.goto(f"{shop.url}/c/shoes/")
    shop.wait_for(lambda: len(shop.kept_events()) == 1, what="the page view")
    first = shop.kept_events()[0]
    assert first["type"] == "page_view"
    assert first["properties"] == {"category": "shoes"}  # from <meta name="tailor:category">
    assert first["page"]["url"] == f"{shop.url}/c/shoes/"
    assert first["page"]["title"] == "Shoes · Tailor demo shop"
    assert first["context"]["device"] == "desktop"

    page.click("a.tile[data-tailor-product-id='trail-runner']")  # navigates to the product page
    page.wait_for_url("**/p/trail-runner/")
    shop.wait_for(lambda: len(shop.kept_events()) == 3, what="the click and the next page view")
    kept = shop.kept_events()
    click = of_type(kept, "click")[0]
    assert click["properties"] == {"category": "shoes", "productId": "trail-runner"}
    assert click["page"]["url"] == f"{shop.url}/c/shoes/", "recorded on the page where it happened"
    product_view = of_type(kept, "page_view")[1]
    assert product_view["properties"] == {"category": "shoes", "productId": "trail-runner"}
    assert product_view["page"]["referrer"] == f"{shop.url}/c/shoes/"
    assert {event["anonymousId"] for event in kept} == {first["anonymousId"]}
    assert {event["sessionId"] for event in kept} == {first["sessionId"]}
    assert_valid(kept)
    shop.wait_for(lambda: page.evaluate(QUEUED) == 0, what="an empty queue")


def test_datalayer_pushes_and_searches_become_tailor_events(page: Page, shop: ShopServer) -> None:
    page.goto(f"{shop.url}/p/weekender/")
    page.click("#add-to-cart")  # js/storefront.js pushes a GA4 add_to_cart to window.dataLayer
    page.click("#wishlist")  # declared with data-tailor-track
    shop.wait_for(lambda: len(shop.kept_events()) == 3, what="page view, add to cart, wishlist click")
    cart = of_type(shop.kept_events(), "add_to_cart")[0]
    assert cart["properties"] == {
        "productId": "weekender",
        "category": "bags",
        "value": 119,
        "currency": "EUR",
        "quantity": 1,
        "items": 1,
    }
    wishlist = of_type(shop.kept_events(), "click")[0]
    assert wishlist["properties"] == {"action": "wishlist", "category": "bags", "productId": "weekender"}

    page.fill("#q", "red boots")
    page.press("#q", "Enter")
    page.wait_for_url("**/search/?q=red+boots")
    shop.wait_for(lambda: len(of_type(shop.kept_events(), "search")) == 1, what="the search")
    assert of_type(shop.kept_events(), "search")[0]["properties"] == {"query": "red boots"}
    assert page.text_content("#search-summary") is not None
    assert "red boots" in (page.text_content("#search-summary") or "")

    page.goto(f"{shop.url}/cart/")
    page.click("#checkout")
    shop.wait_for(lambda: len(of_type(shop.kept_events(), "purchase")) == 1, what="the purchase")
    purchase = of_type(shop.kept_events(), "purchase")[0]["properties"]
    assert purchase["productId"] == "trail-runner"
    assert purchase["value"] == 89
    assert purchase["transactionId"].startswith("T-")
    assert_valid(shop.kept_events())


def test_offline_clicks_arrive_exactly_once_when_back_online(
    page: Page, context: BrowserContext, shop: ShopServer
) -> None:
    page.goto(f"{shop.url}/p/rain-shell/")
    shop.wait_for(lambda: len(shop.kept_events()) == 1, what="the page view")
    context.set_offline(True)
    for _ in range(3):
        page.click("#add-to-cart")
        page.click("#wishlist")
    page.wait_for_timeout(1500)  # longer than flushInterval: the SDK would have sent by now
    assert len(shop.kept_events()) == 1, "nothing can arrive while offline"
    assert page.evaluate(QUEUED) == 6, "the six actions wait in localStorage"

    context.set_offline(False)
    shop.wait_for(lambda: len(shop.kept_events()) == 7, what="the offline actions")
    shop.wait_for(lambda: page.evaluate(QUEUED) == 0, what="an empty queue")
    kept = shop.kept_events()
    assert Counter(event["type"] for event in kept) == {"page_view": 1, "add_to_cart": 3, "click": 3}
    wire = Counter(event["id"] for event in shop.events_on_wire())
    assert set(wire.values()) == {1}, f"every event crossed the wire once: {wire}"
    assert_valid(kept)


def test_a_collector_outage_across_pages_loses_nothing(page: Page, shop: ShopServer) -> None:
    outage = {"on": True}

    def events(request: Recorded) -> Answer | None:
        return Answer(503, {"title": "Kafka unavailable"}, {"Retry-After": "1"}) if outage["on"] else None

    shop.respond_events = events
    page.goto(f"{shop.url}/")
    page.click("a.tile[data-tailor-product-id='city-sneaker']")
    page.wait_for_url("**/p/city-sneaker/")
    page.click("#add-to-cart")
    page.click(".site-nav a[href='/c/bags/']")
    page.wait_for_url("**/c/bags/")
    page.wait_for_timeout(300)
    assert shop.kept_events() == [], "the collector accepted nothing during the outage"
    assert len(shop.recorded("/v1/events")) >= 2, "the SDK kept trying (fetches and beacons)"

    outage["on"] = False
    shop.wait_for(lambda: len(shop.kept_events()) == 6, timeout=8, what="everything from the outage")
    kept = shop.kept_events()
    assert [(event["type"], event["page"]["url"].removeprefix(shop.url)) for event in kept] == [
        ("page_view", "/"),
        ("click", "/"),
        ("page_view", "/p/city-sneaker/"),
        ("add_to_cart", "/p/city-sneaker/"),
        ("click", "/p/city-sneaker/"),
        ("page_view", "/c/bags/"),
    ], "every action, oldest first"
    shop.wait_for(lambda: page.evaluate(QUEUED) == 0, what="an empty queue")
    page.wait_for_timeout(1200)
    assert len(shop.kept_events()) == 6, "and nothing else"


def test_nothing_is_stored_or_sent_before_consent(page: Page, shop: ShopServer) -> None:
    shop.script_attributes = "data-require-consent"
    shop.decisions = {
        "home-hero": {
            "variant": "v",
            "rule": "r",
            "decisionId": "d",
            "content": {"type": "text", "body": "Personal"},
        }
    }
    page.goto(f"{shop.url}/c/bags/")
    page.click(".site-nav a[href='/c/jackets/']")
    page.wait_for_url("**/c/jackets/")
    page.click("#q")
    page.wait_for_timeout(1200)
    assert shop.requests == [], "no event, no decision request"
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert page.get_attribute("[data-tailor-slot='home-hero']", "data-tailor-state") == "fallback"
    assert "Welcome to the shop" in (page.text_content("[data-tailor-slot='home-hero']") or "")

    page.evaluate("() => window.tailor.consent(true)")
    shop.wait_for(lambda: len(shop.kept_events()) == 1, what="this page's view, held until consent")
    assert shop.kept_events()[0]["page"]["url"] == f"{shop.url}/c/jackets/"
    page.wait_for_selector("[data-tailor-slot='home-hero'][data-tailor-state='personalized']")
    assert page.evaluate("() => localStorage.getItem('tailor.consent')") == "granted"

    page.reload()
    shop.wait_for(lambda: len(shop.kept_events()) == 2, what="the next page view, without asking again")


def test_a_storefront_on_another_origin_than_the_api(page: Page, shop: ShopServer) -> None:
    api = ShopServer().start()
    try:
        api.cors_origin = shop.url
        api.decisions = {
            "home-hero": {
                "variant": "hero-x",
                "rule": "r",
                "decisionId": "d-x",
                "content": {"type": "text", "body": "From the API origin"},
            }
        }
        # As a shop would embed it: tailor.js from the content API, which is then also the endpoint.
        shop.sdk_src = f"{api.url}/sdk/tailor.js"
        page.goto(f"{shop.url}/")
        page.wait_for_selector("[data-tailor-slot='home-hero'][data-tailor-state='personalized']")
        assert page.text_content("[data-tailor-slot='home-hero']") == "From the API origin"
        api.wait_for(lambda: len(api.kept_events()) == 1, what="the page view, cross-origin")
        assert shop.requests == [], "nothing went to the storefront's own origin"

        page.click("a.tile[data-tailor-product-id='down-parka']")  # leaves the page: keepalive or beacon
        page.wait_for_url("**/p/down-parka/")
        api.wait_for(lambda: len(api.kept_events()) == 3, what="the click and the next page view")
        beacons = [
            r
            for r in api.recorded("/v1/events")
            if r.headers.get("Content-Type", "").startswith("text/plain")
        ]
        for beacon in beacons:  # cross-origin beacons must be "simple" requests, sent as text/plain
            assert isinstance(beacon.json, dict), "a beacon's body is the same JSON document"
    finally:
        api.stop()
