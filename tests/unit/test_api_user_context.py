"""The one pipelined read of a user's context, and its parse into a UserContext."""

from __future__ import annotations

import sample
from tailor_api import resp, user_context

from tailor.core.decision import engine, keys
from tailor.core.events import occurrence
from tailor.core.profile import state as profile_state
from tailor.core.rules import ruleset


def capped_engine() -> engine.Engine:
    cap = ruleset.FrequencyCap(per_session=2, per_user_count=3, per_user_window_seconds=60)
    published = sample.build(
        [sample.html_variant("d", "hero", fallback=True), sample.html_variant("p", "hero")],
        [ruleset.Rule(name="p", slot="hero", variants=("p",), frequency_cap=cap)],
    )
    return engine.load(published)


def test_the_read_is_one_pipeline_and_parses_memory_caps_and_suppressions() -> None:
    built = capped_engine()
    read = user_context.ContextRead(built, built.profile_reader, "u1", "s1", [built.slots["hero"]], 1000.0)
    assert [c[0] for c in read.commands][1:] == ["HGETALL", "ZRANGEBYSCORE", "ZCOUNT"]
    packed = b"".join(resp.pack_command(command) for command in read.commands)  # what goes to Redis
    assert packed.startswith(b"*")
    assert packed.count(b"\r\n*") == len(read.commands) - 1  # one RESP array per command
    assert b"$5\r\nHMGET\r\n$" in packed
    session_hash = [b"m:hero", keys.memory_value("p", "p").encode(), b"c:p", b"2"]
    state = read.parse([None, session_hash, [b"v:x", b"t:sale"], 1], built.profile_reader)
    assert state.memory == {"hero": ("p", "p")}
    assert state.session_caps == {"p": 2}
    assert state.user_caps == {"p": 1}
    assert state.suppressed == frozenset({"v:x", "t:sale"})


def test_an_unreadable_profile_means_an_empty_one_not_a_failed_decision() -> None:
    built = capped_engine()
    read = user_context.ContextRead(built, built.profile_reader, "u1", "", [built.slots["hero"]], 1000.0)
    state = read.parse([b"\xff\x00 not a profile", [], [], 0], built.profile_reader)
    assert state.profile.user == "u1"
    assert state.profile.counts == {} or all(not c for c in state.profile.counts.values())


def test_the_profile_is_read_at_the_moment_of_the_request_not_the_wall_clock() -> None:
    built = capped_engine()
    plan = built.profile_reader.plan
    state = profile_state.ProfileState()
    viewed = occurrence.Occurrence("e1", "u1", 1000.0, "views", "s1", ())
    profile_state.apply(plan, state, [viewed], 1000.0)
    stored = profile_state.fields(state)

    def views_in_5m(now: float) -> int:
        read = user_context.ContextRead(built, built.profile_reader, "u1", "s1", [built.slots["hero"]], now)
        return read.parse([stored, [], [], 0], built.profile_reader).profile.count("5m", "views")

    # Requests in the past of the wall clock (replays, tests): the view counts until its window ends.
    assert views_in_5m(1010.0) == 1
    assert views_in_5m(1000.0 + 301) == 0
