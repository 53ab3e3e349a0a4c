"""`tailor simulate`: examples/shop decided for personas, offline, by the content API's engine."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tailor.cli import main

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
SHOE_VARIANTS = {"hero-shoes-new-arrivals", "hero-shoes-sale"}


def event(
    number: int, type_: str = "page_view", *, user: str = "u1", minute: float = 0, **props: Any
) -> dict[str, Any]:
    at = (T0 + datetime.timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    return {"id": f"{user}-{number}", "type": type_, "userId": user, "sessionId": f"{user}-s",
            "timestamp": at, "page": {"url": "https://shop.example/"}, "properties": props}  # fmt: skip


def shoe_views(count: int, user: str = "u1") -> list[dict[str, Any]]:
    return [event(i, user=user, minute=i, category="shoes") for i in range(count)]


def write_lines(tmp_path: Path, events: list[dict[str, Any]]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


def simulate(capsys: pytest.CaptureFixture[str], events_file: Path, user: str, *args: str) -> dict[str, Any]:
    code = main.main(
        [
            "simulate",
            "--manifests",
            str(SHOP),
            "--events",
            str(events_file),
            "--user",
            user,
            "--format",
            "json",
            *args,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    document: dict[str, Any] = orjson.loads(out)
    return document


def seen(document: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    return {slot["slot"]: (slot["rule"], slot["variant"]) for slot in document["slots"]}


def test_three_shoe_views_show_the_category_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = simulate(capsys, write_lines(tmp_path, shoe_views(3)), "u1")
    rule, variant = seen(document)["home-hero"]
    assert rule == "returning-shoe-browser"
    assert variant in SHOE_VARIANTS
    hero = document["slots"][0]
    assert hero["content"]["type"] in ("html", "image")
    assert "views[category=shoes] ≥ 3 in 24h: 3 ✓" in hero["reasons"]
    assert document["profile"]["counts"]["24h"]["views|category|shoes"] == 3
    # Sticky per user: the same variant however often it is asked.
    assert seen(simulate(capsys, write_lines(tmp_path, shoe_views(3)), "u1"))["home-hero"] == (rule, variant)


def test_a_new_visitor_gets_the_welcome_offer_and_the_fallbacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = simulate(capsys, write_lines(tmp_path, shoe_views(3)), "someone-else")
    assert seen(document) == {
        "home-hero": ("new-visitor", "hero-first-order"),
        "sidebar-promo": (None, "promo-free-shipping"),
    }
    assert document["events"]["counted"] == 0
    promo = document["slots"][1]
    assert promo["fallback"] is True
    assert promo["content"] == {"type": "text", "body": "Free shipping on orders over 50 EUR."}
    assert promo["reasons"] == ["no rule applies: the slot's fallback"]


def test_a_browser_no_rule_matches_gets_the_hero_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    views = [event(i, minute=i, category="bags") for i in range(3)]
    document = simulate(capsys, write_lines(tmp_path, views), "u1")
    assert seen(document)["home-hero"] == (None, "hero-welcome")
    outcomes = {entry["rule"]: entry["outcome"] for entry in document["slots"][0]["rules"]}
    assert outcomes == {"returning-shoe-browser": "audience", "searcher": "audience", "new-visitor": "when"}


def test_events_after_at_and_outside_windows_do_not_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events_file = write_lines(tmp_path, shoe_views(3))
    before_third = (T0 + datetime.timedelta(minutes=1, seconds=30)).isoformat()
    early = simulate(capsys, events_file, "u1", "--at", before_third)
    assert early["events"] == {"counted": 2, "duplicates": 0, "afterAt": 1}
    assert seen(early)["home-hero"] == (None, "hero-welcome")  # 2 views: too many for new-visitor
    next_day = str((T0 + datetime.timedelta(hours=24, minutes=3)).timestamp())
    late = simulate(capsys, events_file, "u1", "--at", next_day)
    assert late["profile"]["counts"]["24h"] == {}
    assert seen(late)["home-hero"] == ("new-visitor", "hero-first-order")


def test_redelivered_events_count_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    views = shoe_views(2)
    document = simulate(capsys, write_lines(tmp_path, [*views, views[1]]), "u1")
    assert document["events"] == {"counted": 2, "duplicates": 1, "afterAt": 0}
    assert seen(document)["home-hero"] == (None, "hero-welcome")


def test_rollout_decides_by_the_users_bucket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    carts = [event(0, "add_to_cart", user=f"c{i}", productId="p1") for i in range(12)]
    events_file = write_lines(tmp_path, carts)
    served = set()
    for i in range(12):
        promo = simulate(capsys, events_file, f"c{i}", "--slot", "sidebar-promo")["slots"][0]
        (entry,) = [e for e in promo["rules"] if e["rule"] == "abandoned-cart"]
        assert entry["audience"][0]["matched"] is True
        in_rollout = entry["rollout"]["bucket"] < 50
        assert entry["rollout"]["in"] is in_rollout
        assert (promo["rule"] == "abandoned-cart") is in_rollout
        served.add(in_rollout)
    assert served == {True, False}  # 12 users: both sides of a 50% rollout


def test_json_array_and_batch_inputs_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    as_array = tmp_path / "array.json"
    as_array.write_bytes(orjson.dumps(shoe_views(3)))
    as_batch = tmp_path / "batch.json"
    as_batch.write_bytes(orjson.dumps({"events": shoe_views(3)}))
    for path in (as_array, as_batch):
        assert seen(simulate(capsys, path, "u1"))["home-hero"][0] == "returning-shoe-browser"


def test_invalid_events_exit_1_with_where_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        orjson.dumps(event(0)).decode() + "\n"
        + orjson.dumps({**event(1), "type": "page_vue"}).decode() + "\n"
        + "{not json\n"
    )  # fmt: skip
    code = main.main(["simulate", "--manifests", str(SHOP), "--events", str(path), "--user", "u1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:2: type: Input should be 'page_view'")
    assert lines[1].startswith(f"{path}:3: not JSON: ")


def test_the_text_output_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events_file = write_lines(tmp_path, shoe_views(3))
    code = main.main(["simulate", "--manifests", str(SHOP), "--events", str(events_file), "--user", "u1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "slot home-hero: hero-shoes-" in out
    assert "(rule returning-shoe-browser, priority 100)" in out
    assert (
        "  why: views[category=shoes] ≥ 3 in 24h: 3 ✓; frequency cap 20 per user per 24h: assumed fresh"
        in out
    )
    assert "    searcher (priority 50): audience does not match: searches ≥ 2 in 30m: 0 ✗" in out
    assert "slot sidebar-promo: promo-free-shipping (fallback)" in out


def test_the_kill_switch_serves_fallbacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifests = tmp_path / "shop"
    shutil.copytree(SHOP, manifests)
    stack = manifests / "stack.yaml"
    stack.write_text(stack.read_text().replace("  kafka:", "  killSwitch: true\n  kafka:", 1))
    events_file = write_lines(tmp_path, shoe_views(3))
    code = main.main(
        [
            "simulate",
            "--manifests",
            str(manifests),
            "--events",
            str(events_file),
            "--user",
            "u1",
            "--format",
            "json",
        ]
    )
    document = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert seen(document) == {
        "home-hero": (None, "hero-welcome"),
        "sidebar-promo": (None, "promo-free-shipping"),
    }
    assert document["slots"][0]["reasons"] == ["kill switch on: the slot's fallback"]
