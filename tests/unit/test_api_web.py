"""Request parsing and validation on the hot path: query strings, parameters, lazy CEL variables."""

from __future__ import annotations

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


@pytest.mark.parametrize("user", ["{tag}", "a b", "", "x" * 129, "-lead", "ü"])
def test_users_that_could_break_keys_or_logs_are_refused(user: str) -> None:
    with pytest.raises(validation.InvalidParameter):
        validation.user(user)


def test_slots_are_deduplicated_and_bounded() -> None:
    assert validation.slots(["hero", "hero", "foot"]) == ("hero", "foot")
    with pytest.raises(validation.InvalidParameter):
        validation.slots([f"s{i}" for i in range(validation.MAX_SLOTS_PER_REQUEST + 1)])


def test_cel_variables_are_built_only_when_an_expression_reads_them() -> None:
    built = engine.build(sample.shop())
    profile = Profile(user="u", counts={"24h": {"purchases": 2}})
    variables = decide.CelActivation(built, profile).get()
    assert variables["purchases"]["24h"]["total"] == 2
    assert set(variables) == {"purchases"}
    assert variables["user"] == {"id": "u"}
    with pytest.raises(KeyError):
        variables["nope"]
