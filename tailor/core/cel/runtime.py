"""The operations that compiled CEL programs call, with CEL's typing rules over plain Python values.

tailor.core.cel translates an expression into Python source whose only free names are the functions
here. Values are plain Python: bool, int (CEL int, 64-bit), float (double), str (string), None (null),
list, dict (map) and Duration. CEL is strict where Python is lenient: `1 + 1.0`, `true == 1`,
`"a" < 1` and `-true` are errors, not coercions. Every error raises (Python's own KeyError, IndexError
and TypeError where they already say the right thing, EvalFailure otherwise); a program's caller turns
any exception into one CEL evaluation error.

Operands are checked with `type(x) is T` rather than isinstance: bool is a subclass of int in Python
but a different type in CEL, and exact checks are also the fastest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, NoReturn

import re2  # type: ignore[import-untyped]  # RE2 syntax and linear-time matching, as CEL specifies

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_NANOS = 1_000_000_000


class EvalFailure(Exception):
    """A CEL evaluation error raised by an operation (no matching overload, overflow, bad argument)."""


class BudgetExceeded(BaseException):  # a stop, like KeyboardInterrupt, not an error
    """An evaluation stopped because its comprehensions spent its cost budget (tailor.core.cel.cost).

    A BaseException on purpose: generated code catches Exception to give && and || CEL's error
    absorption, and a spent budget must stop the whole evaluation whatever the other operand holds."""


def over_budget(spent: int, budget: int) -> NoReturn:
    raise BudgetExceeded(
        f"evaluation stopped: its comprehensions would cost {spent:,}, over the budget of {budget:,}"
    )


class Duration:
    """CEL's google.protobuf.Duration: a signed span of nanoseconds (Go's time.Duration range)."""

    __slots__ = ("nanos",)

    def __init__(self, nanos: int) -> None:
        if not INT_MIN <= nanos <= INT_MAX:
            raise EvalFailure("duration out of range")
        self.nanos = nanos

    @property
    def seconds(self) -> float:
        return self.nanos / _NANOS

    def __eq__(self, other: object) -> bool:
        return type(other) is Duration and other.nanos == self.nanos

    def __hash__(self) -> int:
        return hash(self.nanos)

    def __lt__(self, other: Duration) -> bool:
        return self.nanos < other.nanos

    def __le__(self, other: Duration) -> bool:
        return self.nanos <= other.nanos

    def __gt__(self, other: Duration) -> bool:
        return self.nanos > other.nanos

    def __ge__(self, other: Duration) -> bool:
        return self.nanos >= other.nanos

    def __str__(self) -> str:
        # CEL's string(duration): seconds with only the fractional digits needed, like "5400s", "1.5s".
        whole, fraction = divmod(abs(self.nanos), _NANOS)
        sign = "-" if self.nanos < 0 else ""
        if not fraction:
            return f"{sign}{whole}s"
        return f"{sign}{whole}.{fraction:09d}".rstrip("0") + "s"

    def __repr__(self) -> str:
        return f"Duration({self})"


# ---------------------------------------------------------------------------------------------------
# Type names and errors

_TYPE_NAMES: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "double",
    str: "string",
    type(None): "null_type",
    list: "list",
    dict: "map",
    Duration: "google.protobuf.Duration",
}


def type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def no_overload(operator: str, *operands: object) -> EvalFailure:
    types = ", ".join(type_name(operand) for operand in operands)
    return EvalFailure(f"no matching overload for '{operator}' applied to ({types})")


# ---------------------------------------------------------------------------------------------------
# Logic: && and || absorb errors from either side (CEL's commutative short-circuit), so generated code
# evaluates each operand under try, keeps an exception as a value, and calls these only when no operand
# decided the result.


def logic_fail(operator: str, *operands: object) -> NoReturn:
    """No operand was the absorbing value: the first error wins, else a non-bool operand is an error."""
    for operand in operands:
        if isinstance(operand, BaseException):
            raise operand
    raise no_overload(operator, *(operand for operand in operands if type(operand) is not bool))


def condition(value: object) -> bool:
    """The condition of `c ? a : b` must be a bool."""
    if value is True or value is False:
        return value
    raise no_overload("_?_:_", value)


def predicate_error(macro: str, value: object) -> BaseException:
    """A macro predicate that is not a bool (or already an error) as an error value."""
    if isinstance(value, BaseException):
        return value
    return no_overload(macro, value)


def predicate(macro: str, value: object) -> bool:
    if value is True or value is False:
        return value
    raise no_overload(macro, value)


def logical_not(value: object) -> bool:
    if value is True:
        return False
    if value is False:
        return True
    raise no_overload("!_", value)


# ---------------------------------------------------------------------------------------------------
# Equality and ordering


def equals(left: object, right: object) -> bool:
    kind = type(left)
    if kind is type(right):
        if kind is list:
            return _lists_equal(left, right)  # type: ignore[arg-type]
        if kind is dict:
            return _maps_equal(left, right)  # type: ignore[arg-type]
        return left == right
    if left is None or right is None:
        return False  # null equals only null
    raise no_overload("_==_", left, right)


def not_equals(left: object, right: object) -> bool:
    return not equals(left, right)


def _lists_equal(left: list[Any], right: list[Any]) -> bool:
    if len(left) != len(right):
        return False
    # Like &&: any unequal pair decides false even when another pair cannot be compared.
    error: EvalFailure | None = None
    for a, b in zip(left, right, strict=True):
        try:
            if not equals(a, b):
                return False
        except EvalFailure as failure:
            error = error or failure
    if error is not None:
        raise error
    return True


def _maps_equal(left: dict[Any, Any], right: dict[Any, Any]) -> bool:
    if len(left) != len(right):
        return False
    error: EvalFailure | None = None
    for key, value in left.items():
        if not _has_key(right, key):
            return False
        try:
            if not equals(value, right[key]):
                return False
        except EvalFailure as failure:
            error = error or failure
    if error is not None:
        raise error
    return True


_ORDERED = frozenset({int, float, str, bool, Duration})


def less(left: Any, right: Any) -> bool:
    kind = type(left)
    if kind is type(right) and kind in _ORDERED:
        return bool(left < right)
    raise no_overload("_<_", left, right)


def less_equal(left: Any, right: Any) -> bool:
    kind = type(left)
    if kind is type(right) and kind in _ORDERED:
        return bool(left <= right)
    raise no_overload("_<=_", left, right)


def greater(left: Any, right: Any) -> bool:
    kind = type(left)
    if kind is type(right) and kind in _ORDERED:
        return bool(left > right)
    raise no_overload("_>_", left, right)


def greater_equal(left: Any, right: Any) -> bool:
    kind = type(left)
    if kind is type(right) and kind in _ORDERED:
        return bool(left >= right)
    raise no_overload("_>=_", left, right)


def contained(item: Any, container: Any) -> bool:
    """`item in container`: list membership by CEL equality, or presence of a map key."""
    kind = type(container)
    if kind is dict:
        return _has_key(container, item)
    if kind is list:
        item_kind = type(item)
        error = False
        for element in container:
            element_kind = type(element)
            if element_kind is item_kind:
                if element_kind is list or element_kind is dict:
                    try:
                        if equals(element, item):
                            return True
                    except EvalFailure:
                        error = True
                elif element == item:
                    return True
            elif element is not None and item is not None:
                error = True  # an element of another type cannot be compared
        if error:
            raise no_overload("@in", item, container)
        return False
    raise no_overload("@in", item, container)


# ---------------------------------------------------------------------------------------------------
# Maps, lists, selection


def _has_key(mapping: dict[Any, Any], key: Any) -> bool:
    kind = type(key)
    if kind is str:
        return key in mapping
    if kind is int or kind is bool:
        # Python's dict treats 1, 1.0 and True as one key; CEL does not.
        return any(type(existing) is kind and existing == key for existing in mapping)
    raise no_overload("_[_]", mapping, key)


def index(container: Any, key: Any) -> Any:
    kind = type(container)
    if kind is list:
        if type(key) is not int:
            raise no_overload("_[_]", container, key)
        if not 0 <= key < len(container):
            raise EvalFailure(f"index out of range: {key}")
        return container[key]
    if kind is dict:
        if type(key) is str:
            return container[key]
        if _has_key(container, key):
            return next(v for k, v in container.items() if type(k) is type(key) and k == key)
        raise KeyError(key)
    raise no_overload("_[_]", container, key)


def select(value: Any, field: str) -> Any:
    """`value.field` on a map (what the generated code inlines as value[field], spelled out)."""
    if type(value) is dict:
        return value[field]
    raise EvalFailure(f"{type_name(value)} does not support field selection")


def has_field(value: Any, field: str) -> bool:
    if type(value) is dict:
        return field in value
    raise EvalFailure(f"has() does not apply to a {type_name(value)}")


def make_map(entries: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for key, value in entries:
        if type(key) not in (str, int, bool):
            raise EvalFailure(f"unsupported map key type: {type_name(key)}")
        if key in result:
            if not _has_key(result, key):  # Python's dict cannot hold both 1 and true as keys
                raise EvalFailure("unsupported: a map with both 1 and true (or 0 and false) as keys")
            raise EvalFailure(f"repeated key in map literal: {to_string(key)}")
        result[key] = value
    return result


def iterable(value: Any) -> Any:
    """What a macro ranges over: a list's elements or a map's keys."""
    kind = type(value)
    if kind is list or kind is dict:
        return value
    raise EvalFailure(f"a macro cannot range over a {type_name(value)}")


def iterable_within(value: Any, most: int, weight: int, budget: int) -> NoReturn:
    """The slow path of a program's only comprehension, whose generated code accepts a list or map of
    at most `most` elements (budget // weight) inline: anything else is an error or a budget stop."""
    iterable(value)
    over_budget(len(value) * weight, budget)


def iterable_charged(value: Any, spent: int, budget: int) -> NoReturn:
    """The slow path of a comprehension among several, whose generated code accepts a list or map inline
    while the running total `spent` stays within `budget`: anything else is an error or a budget stop."""
    iterable(value)
    over_budget(spent, budget)


def size(value: Any) -> int:
    kind = type(value)
    if kind is str or kind is list or kind is dict:
        return len(value)
    raise no_overload("size", value)


# ---------------------------------------------------------------------------------------------------
# Arithmetic


def _checked(result: int) -> int:
    if INT_MIN <= result <= INT_MAX:
        return result
    raise EvalFailure("integer overflow")


def add(left: Any, right: Any) -> Any:
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _checked(left + right)
        if kind is float or kind is str or kind is list:
            return left + right
        if kind is Duration:
            return Duration(left.nanos + right.nanos)
    raise no_overload("_+_", left, right)


def subtract(left: Any, right: Any) -> Any:
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _checked(left - right)
        if kind is float:
            return left - right
        if kind is Duration:
            return Duration(left.nanos - right.nanos)
    raise no_overload("_-_", left, right)


def multiply(left: Any, right: Any) -> Any:
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _checked(left * right)
        if kind is float:
            return left * right
    raise no_overload("_*_", left, right)


def divide(left: Any, right: Any) -> Any:
    kind = type(left)
    if kind is type(right):
        if kind is int:
            if right == 0:
                raise EvalFailure("division by zero")
            quotient = abs(left) // abs(right)  # CEL (like Go) truncates toward zero
            return _checked(-quotient if (left < 0) != (right < 0) else quotient)
        if kind is float:
            if right == 0.0:  # IEEE 754, as CEL specifies: ±inf, or NaN for 0/0
                if left == 0.0 or math.isnan(left):
                    return math.nan
                return math.copysign(math.inf, left) * math.copysign(1.0, right)
            return left / right
    raise no_overload("_/_", left, right)


def modulo(left: Any, right: Any) -> Any:
    if type(left) is int and type(right) is int:
        if right == 0:
            raise EvalFailure("modulus by zero")
        remainder = abs(left) % abs(right)  # the sign of the dividend, as in Go
        return -remainder if left < 0 else remainder
    raise no_overload("_%_", left, right)


def negate(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return _checked(-value)
    if kind is float:
        return -value
    if kind is Duration:
        return Duration(-value.nanos)
    raise no_overload("-_", value)


# ---------------------------------------------------------------------------------------------------
# Strings


def _strings(function: str, text: Any, argument: Any) -> None:
    if type(text) is not str or type(argument) is not str:
        raise no_overload(function, text, argument)


def contains(text: Any, fragment: Any) -> bool:
    _strings("contains", text, fragment)
    return fragment in text


def starts_with(text: Any, prefix: Any) -> bool:
    _strings("startsWith", text, prefix)
    return text.startswith(prefix)  # type: ignore[no-any-return]


def ends_with(text: Any, suffix: Any) -> bool:
    _strings("endsWith", text, suffix)
    return text.endswith(suffix)  # type: ignore[no-any-return]


class Pattern:
    """An RE2 pattern for matches(). RE2 (not Python's re) because CEL specifies its syntax, and because
    its matching time is linear: a rule's pattern over shopper-supplied text can never stall a replica."""

    __slots__ = ("_set", "text")

    def __init__(self, text: str) -> None:
        options = re2.Options()
        options.log_errors = False
        try:
            re2.compile(text, options)  # for the error message: RE2::Set only reports failure
        except re2.error as error:
            detail = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
            raise EvalFailure(f"invalid regular expression {text!r}: {detail}") from None
        # RE2::Set is the cheapest public entry point: no Match object, no group offsets.
        self._set = re2.Set.SearchSet(options)
        self._set.Add(text)
        self._set.Compile()
        self.text = text

    def search(self, subject: Any) -> bool:
        if type(subject) is not str:
            raise no_overload("matches", subject, self.text)
        return self._set.Match(subject) is not None


_PATTERNS: dict[str, Pattern] = {}


def matches(text: Any, pattern: Any) -> bool:
    """matches() with a pattern computed at run time (a literal one is compiled once, with the program)."""
    if type(pattern) is not str:
        raise no_overload("matches", text, pattern)
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = Pattern(pattern)
        if len(_PATTERNS) >= 256:
            _PATTERNS.clear()
        _PATTERNS[pattern] = compiled
    return compiled.search(text)


# ---------------------------------------------------------------------------------------------------
# Conversions

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
# What Go's strconv.ParseFloat accepts (CEL's double(string)); Python's float() also takes spaces and "_".
_DOUBLE_TEXT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)


def to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float:
        if math.isnan(value) or math.isinf(value):
            raise EvalFailure(f"cannot convert {value} to int")
        return _checked(int(value))  # truncates toward zero
    if kind is str:
        if not _INT_TEXT.fullmatch(value):
            raise EvalFailure(f"cannot convert {value!r} to int")
        return _checked(int(value))
    raise no_overload("int", value)


def to_double(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    if kind is str:
        if not _DOUBLE_TEXT.fullmatch(value):
            raise EvalFailure(f"cannot convert {value!r} to double")
        return float(value)
    raise no_overload("double", value)


def to_string(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float or kind is Duration:
        return str(value)
    raise no_overload("string", value)


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": _NANOS,
    "m": 60 * _NANOS,
    "h": 3600 * _NANOS,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> Duration:
    """Go's time.ParseDuration: "300ms", "-1.5h", "2h45m"; "0" alone needs no unit."""
    sign, rest = 1, text
    if rest[:1] in ("+", "-"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return Duration(0)
    if not rest:
        raise EvalFailure(f"invalid duration {text!r}")
    nanos = 0
    position = 0
    while position < len(rest):
        part = _DURATION_PART.match(rest, position)
        if part is None or part.group(1) in ("", "."):
            raise EvalFailure(f"invalid duration {text!r}: use a number and a unit (h, m, s, ms, us, ns)")
        whole, _, fraction = part.group(1).partition(".")
        unit = _DURATION_UNITS[part.group(2)]
        nanos += int(whole or "0") * unit
        if fraction:
            nanos += int(fraction) * unit // 10 ** len(fraction)
        position = part.end()
    return Duration(sign * nanos)


def to_duration(value: Any) -> Duration:
    kind = type(value)
    if kind is Duration:
        return value  # type: ignore[no-any-return]
    if kind is str:
        return parse_duration(value)
    raise no_overload("duration", value)


def _duration(function: str, value: Any) -> int:
    if type(value) is not Duration:
        raise no_overload(function, value)
    return value.nanos


def _truncate(nanos: int, unit: int) -> int:
    return -(-nanos // unit) if nanos < 0 else nanos // unit


def get_hours(value: Any) -> int:
    return _truncate(_duration("getHours", value), 3600 * _NANOS)


def get_minutes(value: Any) -> int:
    return _truncate(_duration("getMinutes", value), 60 * _NANOS)


def get_seconds(value: Any) -> int:
    return _truncate(_duration("getSeconds", value), _NANOS)
