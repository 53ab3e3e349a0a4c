"""Request parsing and validation on the hot path: query strings, parameters, lazy CEL variables."""

from __future__ import annotations

import asyncio

import pytest
import sample
from tailor_api import validation, web

from tailor.core.decision import decide, engine
from tailor.core.profile import Profile


def test_query_decodes_only_what_needs_decoding() -> None:
    scope = {"query_string": b"slot=hero&slot=foot&user=a%40b.c&session=&q=x+y"}
    assert web.query(scope) == {"slot": ["hero", "foot"], "user": ["a@b.c"], "session": [""], "q": ["x y"]}
    assert web.query({"query_string": b""}) == {}


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(validation.InvalidParameter, match="2 times"):
        web.single({"user": ["a", "b"]}, "user")


@pytest.mark.parametrize(
    "user", ["{tag}", "a b", "", "x" * 129, "-lead", "ü", "alice\n", "alice\r\n", "a/b", "a#b"]
)
def test_users_that_could_break_keys_or_logs_are_refused(user: str) -> None:
    with pytest.raises(validation.InvalidParameter):
        validation.user(user)


@pytest.mark.parametrize("session", ["s1\n", "{s}", "a b", "x" * 129, "s#1"])
def test_sessions_follow_the_same_grammar(session: str) -> None:
    with pytest.raises(validation.InvalidParameter):
        validation.session(session)
    assert validation.session("") == ""  # no session
    assert validation.session("tab:1@shop+x") == "tab:1@shop+x"


def test_a_slot_or_decision_id_with_a_final_newline_is_refused() -> None:
    with pytest.raises(validation.InvalidParameter):
        validation.slots(["hero\n"])
    with pytest.raises(validation.InvalidParameter):
        validation.decision_id("abc.def\n")


def test_slots_are_deduplicated_and_bounded() -> None:
    assert validation.slots(["hero", "hero", "foot"]) == ("hero", "foot")
    with pytest.raises(validation.InvalidParameter):
        validation.slots([f"s{i}" for i in range(validation.MAX_SLOTS_PER_REQUEST + 1)])


def test_cel_variables_are_built_only_when_an_expression_reads_them() -> None:
    built = engine.load(sample.shop())
    profile = Profile(user="u", counts={"24h": {"purchases": 2}})
    variables = decide.CelActivation(built, profile).get()
    assert variables["purchases"]["24h"]["total"] == 2
    assert set(variables) == {"purchases"}
    assert variables["user"] == {"id": "u"}
    with pytest.raises(KeyError):
        variables["nope"]


def test_every_503_asks_for_the_same_retry_after() -> None:
    unavailable = [
        web.not_ready(),
        web.redis_unavailable(ConnectionError("refused")),
        web.problem(503, "kafka-unavailable", "Events not stored", "send the whole batch again"),
    ]
    for reply in unavailable:
        assert reply.status == 503
        assert reply.content_type == web.PROBLEM_JSON
        assert dict(reply.headers)[b"retry-after"] == b"2"
    assert b"retry-after" not in dict(web.problem(400, "x", "X", "x").headers)


def receiving(*chunks: bytes) -> web.Receive:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> web.Message:
        return messages.pop(0)

    return receive


async def test_a_body_is_refused_by_its_declared_length_before_it_is_read() -> None:
    async def never() -> web.Message:
        raise AssertionError("the body was read although its length already said no")

    scope = {"headers": [(b"content-length", b"5000")]}
    with pytest.raises(web.BodyTooLarge, match="5000 bytes; at most 4096"):
        await web.read_body(scope, never, 4096)


async def test_a_body_longer_than_it_claims_is_cut_off_as_it_arrives() -> None:
    scope = {"headers": [(b"content-length", b"10")]}
    with pytest.raises(web.BodyTooLarge, match="over 150 bytes"):
        await web.read_body(scope, receiving(b"x" * 100, b"x" * 100, b"x" * 100), 150)
    assert await web.read_body({"headers": []}, receiving(b"ab", b"cd"), 4) == b"abcd"


async def test_a_body_trickled_slower_than_allowed_is_refused_with_a_408() -> None:
    async def trickle() -> web.Message:
        await asyncio.sleep(0.02)
        return {"type": "http.request", "body": b" ", "more_body": True}

    with pytest.raises(web.BodyTooSlow, match=r"within 0.2 s \(\d+ bytes came\)") as refused:
        await web.read_body({"headers": []}, trickle, 4096, seconds=0.2)
    assert refused.value.reply().status == 408
