"""Frequency caps: the check against the counts read, and the atomic confirm's call."""

from __future__ import annotations

import orjson
import sample

from tailor.core.decision import caps, engine, keys
from tailor.core.rules import ruleset


def capped_engine() -> engine.Engine:
    cap = ruleset.FrequencyCap(per_session=2, per_user_count=3, per_user_window_seconds=60)
    published = sample.build(
        [sample.html_variant("d", "hero", fallback=True), sample.html_variant("p", "hero")],
        [ruleset.Rule(name="p", slot="hero", variants=("p",), frequency_cap=cap)],
    )
    return engine.load(published)


def test_a_rule_is_under_its_caps_until_either_count_reaches_its_limit() -> None:
    rule = capped_engine().slots["hero"].rules[0]
    assert caps.under_caps(rule, session_count=1, user_count=2, trace=None)
    assert not caps.under_caps(rule, session_count=2, user_count=0, trace=None)
    assert not caps.under_caps(rule, session_count=0, user_count=3, trace=None)
    trace: dict[str, object] = {}
    caps.under_caps(rule, session_count=2, user_count=1, trace=trace)
    assert trace["caps"] == {
        "perSession": {"limit": 2, "count": 2, "ok": False},
        "perUser": {"limit": 3, "windowSeconds": 60, "count": 1, "ok": True},
    }


def test_the_per_user_window_is_read_from_its_own_key_since_the_window_start() -> None:
    built = capped_engine()
    (rule,) = caps.user_capped([built.slots["hero"]])
    assert caps.count_command("shop/main", "u1", rule, 1000.0) == (
        "ZCOUNT", keys.cap_key("shop/main", "u1", "p"), "(940.0", "+inf",
    )  # fmt: skip


def test_the_confirm_call_lists_candidates_in_serving_order_with_their_caps() -> None:
    built = capped_engine()
    rule = built.slots["hero"].rules[0]
    slots = [("hero", [(rule, rule.variants[0])])]
    command = caps.confirm_command("shop/main", "u1", "s1", slots, now=1000.0, session_ttl=1800)
    assert command[:3] == ("EVALSHA", caps.SCRIPT_SHA, 2)  # the session hash and the rule's per-user window
    assert command[3:5] == (keys.session_key("shop/main", "u1", "s1"), keys.cap_key("shop/main", "u1", "p"))
    (slot_plan,) = orjson.loads(command[-1])
    assert slot_plan[0] == "m:hero"
    assert slot_plan[1][0][:6] == ["p", 2, 3, 60, 2, keys.memory_value("p", "p")]
    assert caps.with_source(command)[:2] == ("EVAL", caps.SCRIPT)
