"""tailor.core.cel: compile-time errors, evaluation semantics, matches() never raising."""

from __future__ import annotations

from typing import Any

import pytest

from tailor.core import cel

VARIABLES = ("m", "l", "s", "d", "n", "t", "views", "recent", "session", "user")
ACTIVATION: dict[str, Any] = {
    "m": {"a": 1, "b": {"c": 2}},
    "l": [1, 2, 3],
    "s": "hello",
    "d": 2.5,
    "n": None,
    "t": True,
    "views": {"30m": {"total": 4, "category": {"shoes": 3}}},
    "recent": {"category": ["shoes", "bags"], "query": ["running shoes"]},
    "session": {"id": "s1", "pageViews": 7, "events": 9, "durationSeconds": 120},
    "user": {"id": "u42"},
}


def evaluate(source: str, activation: dict[str, Any] | None = None) -> Any:
    return cel.compile(source, VARIABLES).evaluate(ACTIVATION if activation is None else activation)


def fails(source: str) -> str:
    with pytest.raises(cel.EvaluationError) as caught:
        evaluate(source)
    return str(caught.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('views["30m"].total >= 3', True),
        ('views["30m"].category["shoes"] > 3', False),
        ('"shoes" in recent.category && session.pageViews > 5', True),
        ("recent.query.exists(q, q.startsWith('run'))", True),
        ("user.id in ['u1', 'u2']", False),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("1.0 / 4.0", 0.25),
        ('"a" + "b"', "ab"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("l.map(x, x * 2)", [2, 4, 6]),
        ("l.filter(x, x > 1)", [2, 3]),
        ("l.map(x, x > 1, x * 10)", [20, 30]),
        ("l.exists_one(x, x == 2)", True),
        ("l.all(x, x > 0)", True),
        ('m.all(k, k == "a")', False),
        ("size(s) == s.size() && size(l) == 3 && size(m) == 2", True),
        ("t ? 1 : 2", 1),
        ("n == null", True),
        ("has(m.a) && !has(m.x)", True),
        ('{"x": [1, 2]}.x[1]', 2),
        ("int('12') + int(2.9) + int(-2.9)", 12),
        ("double(3) == 3.0", True),
        ("string(12) + string(true)", "12true"),
        ('duration("1h30m") == duration("90m")', True),
        ('duration("1.5h") > duration("89m")', True),
        ('string(duration("1.5s"))', "1.5s"),
        ('s.matches("^h.*o$") && s.contains("ll") && s.endsWith("lo")', True),
    ],
)
def test_evaluates_like_cel(source: str, expected: Any) -> None:
    result = evaluate(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("m.x", "no such key: 'x'"),
        ("1 + 2.0", "no matching overload for '_+_' applied to (int, double)"),
        ("1 == 1.0", "_==_"),
        ("1 / 0", "division by zero"),
        ("9223372036854775807 + 1", "overflow"),
        ("l[3]", "index out of range"),
        ("true && 1", "_&&_"),
        ("m.a.c", "int does not support field selection"),
    ],
)
def test_errors_are_evaluation_errors(source: str, message: str) -> None:
    assert message in fails(source)


@pytest.mark.parametrize(
    "source",
    ["false && m.x", "m.x && false", "true || m.x", "m.x || true", "[0, 1].exists(x, 1 / x > 0)"],
)
def test_logic_absorbs_errors_in_either_order(source: str) -> None:
    assert evaluate(source) in (True, False)


def test_matches_is_true_only_for_boolean_true_and_never_raises() -> None:
    assert cel.compile('views["30m"].total >= 3', VARIABLES).matches(ACTIVATION) is True
    assert cel.compile("m.x > 1", VARIABLES).matches(ACTIVATION) is False
    assert cel.compile("1", VARIABLES).matches(ACTIVATION) is False
    assert cel.compile("m.a", VARIABLES).matches({}) is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x > 1", "undeclared reference to 'x' (line 1, column 1)"),
        ("m.a >\n  y", "undeclared reference to 'y' (line 2, column 3)"),
        ("m.a > ", "syntax error: unexpected end of expression"),
        ("m.a && && t", "syntax error: unexpected '&&' (line 1, column 8)"),
        ("1u", "unsupported: unsigned integer literal"),
        ("foo(1)", "unsupported: function foo()"),
        ("s.lowerAscii()", "unsupported: method .lowerAscii()"),
        ("type(1)", "unsupported: function type()"),
        ('s.matches("(a)\\\\1")', "invalid regular expression"),
        ("has(m)", "has() takes one field selection"),
        ("9223372036854775808", "integer literal out of range"),
    ],
)
def test_compile_errors_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(cel.CelError) as caught:
        cel.compile(source, VARIABLES)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_validation_rule_has_self_and_old_self() -> None:
    rule = cel.validation_rule(
        "self.managed != has(self.url) && (oldSelf == null || oldSelf.managed == self.managed)"
    )
    assert rule.matches({"self": {"managed": True}, "oldSelf": None}) is True
    assert rule.matches({"self": {"managed": True, "url": "redis://x"}, "oldSelf": None}) is False
    with pytest.raises(cel.CelError, match="undeclared reference to 'other'"):
        cel.validation_rule("self == other")
