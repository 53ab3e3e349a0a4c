"""CEL for Tailor: compile an expression once into a fast Python function over plain values.

PersonalizationRules carry `spec.when`, a CEL expression the content API evaluates on every decision,
and `tailor validate` checks the CRDs' `x-kubernetes-validations` rules offline. celpy's interpreter
is about a thousand times slower per evaluation (docs/cel.md); this module reuses only celpy's parser
(its lark grammar is what the dependency is for), translates the tree into Python source
(tailor.core.cel.translate) and compiles it with no builtins; operations whose CEL typing differs
from Python's call tailor.core.cel.runtime.

Why generated source: measured side by side on the rule expressions of bench/cel.py, it took about
half the time of the same translation as nested closures (docs/performance.md); the `try` that gives
&& and || CEL's error absorption is free in CPython 3.11.

    program = cel.compile('views["30m"].total >= 3 && "shoes" in recent.category', variables)
    program.matches(profile.as_cel(...))   # bool; any evaluation error is False, never raises
    program.evaluate(activation)           # the value; EvaluationError on a CEL error
    cel.validation_rule("self.managed != has(self.url)").matches({"self": spec.redis})

Values are plain: bool, int, float (double), str, None (null), list, dict (map), and Duration from
duration(). The supported subset and where it follows the CEL specification rather than celpy:
docs/cel.md. Anything outside it is a CelError "unsupported: ..." at compile time.
"""

from __future__ import annotations

import builtins
import functools
import json
import re
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

import celpy
from celpy import celparser
from lark import Token, Tree

from tailor.core.cel import cost, runtime, translate
from tailor.core.cel.cost import Estimate
from tailor.core.cel.runtime import Duration

__all__ = [
    "CelError",
    "CostLimitExceeded",
    "Duration",
    "Estimate",
    "EvaluationError",
    "Program",
    "compile",
    "kubernetes_value",
    "validation_rule",
]

VALIDATION_VARIABLES = frozenset({"self", "oldSelf"})


class CelError(ValueError):
    """An expression that cannot be compiled: a syntax error, an undeclared name, an unsupported construct.

    `reason` is the message without the position; `line` and `column` are 1-based when known."""

    def __init__(self, reason: str, *, line: int | None = None, column: int | None = None) -> None:
        where = f" (line {line}, column {column})" if line is not None and column is not None else ""
        super().__init__(f"{reason}{where}")
        self.reason = reason
        self.line = line
        self.column = column


class EvaluationError(CelError):
    """A CEL evaluation error raised by Program.evaluate: a missing key, a type mismatch, an overflow..."""


class CostLimitExceeded(EvaluationError):
    """Program.evaluate stopped an evaluation that spent the program's budget (`compile(budget=...)`)."""


Function = Callable[[Mapping[str, Any]], Any]
Matcher = Callable[[Mapping[str, Any]], bool]


class Program:
    """A compiled expression. Immutable and thread-safe; evaluate it as often as you like.

    `matches(activation) -> bool` is True only when the expression evaluates to boolean true; any
    error (a missing key, a type mismatch) counts as no match, and it never raises: it is the content
    API's hot path, so it is the generated function itself rather than a method wrapping it."""

    __slots__ = (
        "_function",
        "budget",
        "estimate",
        "matches",
        "python_source",
        "references",
        "source",
        "variables",
    )

    matches: Matcher

    def __init__(
        self,
        source: str,
        variables: frozenset[str],
        references: frozenset[str],
        python_source: str,
        function: Function,
        match: Matcher,
        estimate: Estimate | None = None,
        budget: int | None = None,
    ) -> None:
        self.source = source
        self.variables = variables
        # The worst-case cost over the variables' size bounds (compile's `schemas`), None without them;
        # `estimate.over(limit)` says whether it fits, in words. `budget`: where evaluation stops.
        self.estimate = estimate
        self.budget = budget
        # The declared variables the expression uses: a validation rule that uses oldSelf is a
        # transition rule (checked on update only); a `when` without profile variables needs no profile.
        self.references = references
        self.python_source = python_source  # what the expression became, for debugging
        self._function = function
        self.matches = match

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The expression's value; EvaluationError when CEL says the result is an error."""
        try:
            return self._function(activation)
        except runtime.BudgetExceeded as stop:
            raise CostLimitExceeded(str(stop)) from None
        except Exception as error:
            raise EvaluationError(_describe(error)) from error

    def __repr__(self) -> str:
        return f"Program({self.source!r})"


def compile(
    source: str,
    variables: Collection[str],
    *,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
    budget: int | None = None,
) -> Program:
    """Compile CEL `source` over the named variables; CelError says what is wrong and where.

    `schemas`: an OpenAPI v3 schema per variable whose `maxItems`, `maxLength` and `maxProperties`
    bound its sizes (tailor.core.cel.cost); with them the program carries its worst-case `estimate`.
    `budget`: an evaluation whose comprehensions would spend more (in the estimate's units) stops:
    `matches` is False, `evaluate` raises CostLimitExceeded. Without a budget nothing is counted."""
    frozen = None if schemas is None else json.dumps(schemas, sort_keys=True)
    return _compile(source, frozenset(variables), frozen, budget)


def validation_rule(source: str) -> Program:
    """A CRD `x-kubernetes-validations` rule: variables `self` and `oldSelf`."""
    return _compile(source, VALIDATION_VARIABLES)


def kubernetes_value(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` (parsed YAML/JSON) as the API server hands it to a validation rule at a node of this
    OpenAPI v3 schema: `type: number` is a double even when written `100`, a string with
    `format: duration` is a duration; objects, additionalProperties and items recursively."""
    kind = schema.get("type")
    if kind == "number" and type(value) is int:
        return float(value)
    if kind == "string" and schema.get("format") == "duration" and type(value) is str:
        try:
            return runtime.parse_duration(value)
        except runtime.EvalFailure:
            return value  # the schema's own format check reports it
    if type(value) is dict:
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        other = additional if isinstance(additional, Mapping) else {}
        return {key: kubernetes_value(item, properties.get(key, other)) for key, item in value.items()}
    if type(value) is list:
        items = schema.get("items")
        return [kubernetes_value(item, items if isinstance(items, Mapping) else {}) for item in value]
    return value


@functools.lru_cache(maxsize=4096)
def _compile(
    source: str, variables: frozenset[str], schemas: str | None = None, budget: int | None = None
) -> Program:
    tree = _parse(source)
    nested_too_deeply = "unsupported: expression nested too deeply"
    estimate: Estimate | None = None
    misestimated: Exception | None = None
    if schemas is not None or budget is not None:
        # Before translating: the translator charges the estimate's weights. An expression the
        # translator refuses may trip the estimator up; the translator's error is the one to report.
        try:
            estimate = cost.estimate(tree, source, json.loads(schemas) if schemas else {})
        except RecursionError:
            raise CelError(nested_too_deeply) from None
        except Exception as error:  # reported below unless the translator explains it
            misestimated = error
    translator = translate.Translator(variables, estimate.weights if estimate else None, budget)
    try:
        python_source = translator.function_source(tree)
    except translate.TranslationError as problem:
        raise CelError(problem.reason, line=problem.line, column=problem.column) from None
    except RecursionError:
        raise CelError(nested_too_deeply) from None
    if misestimated is not None:
        raise CelError(f"internal error: the cost estimate failed: {misestimated!r}") from misestimated
    namespace: dict[str, Any] = {"__builtins__": {}, **translate.NAMESPACE, **translator.constants}
    try:
        code = builtins.compile(python_source, "<cel>", "exec")
        exec(code, namespace)
    except (SyntaxError, RecursionError, MemoryError) as error:
        # CPython limits statically nested blocks (20) and parser depth; CEL rules never come close.
        if isinstance(error, SyntaxError) and not re.search(r"nest|too many|recursion", str(error)):
            raise CelError(f"internal error: the translation does not compile: {error}") from error
        raise CelError(f"{nested_too_deeply} ({error})") from None
    return Program(
        source,
        variables,
        frozenset(translator.references),
        python_source,
        namespace["_cel"],
        namespace["_match"],
        estimate,
        budget,
    )


# ---------------------------------------------------------------------------------------------------
# Parsing (celpy's lark parser)

_environment: celpy.Environment | None = None


def _parse(source: str) -> Tree[Any]:
    global _environment
    if _environment is None:
        # Environment() sets the interpreter's recursion limit for celpy's own evaluator, which we
        # do not use: keep the process's limit as it was.
        limit = sys.getrecursionlimit()
        _environment = celpy.Environment()
        sys.setrecursionlimit(limit)
    try:
        tree: Tree[Any] = _environment.compile(source)
    except celparser.CELParseError as error:
        raise CelError(
            f"syntax error: {_parse_problem(error)}", line=error.line, column=error.column
        ) from None
    return tree


def _parse_problem(error: Exception) -> str:
    cause = error.__context__
    token = getattr(cause, "token", None)
    if isinstance(token, Token):
        if token.type == "$END":
            return "unexpected end of expression"
        return f"unexpected {token.value!r}"
    char = getattr(cause, "char", None)
    if isinstance(char, str):
        return f"unexpected character {char!r}"
    return str(error).splitlines()[0] if str(error) else "cannot parse"


_UNSUBSCRIPTABLE = re.compile(r"'(\w+)' object is not subscriptable|(string|list) indices must be integers")
_CEL_TYPE_NAMES = {
    "float": "double",
    "str": "string",
    "NoneType": "null_type",
    "Duration": "google.protobuf.Duration",
}


def _describe(error: BaseException) -> str:
    if isinstance(error, runtime.EvalFailure):
        return str(error)
    if isinstance(error, KeyError):
        return f"no such key: {error.args[0]!r}" if error.args else "no such key"
    if isinstance(error, TypeError):
        # Inlined field selection on something that is not a map: say it as the helpers do.
        unsubscriptable = _UNSUBSCRIPTABLE.match(str(error))
        if unsubscriptable:
            python_type = unsubscriptable.group(1) or unsubscriptable.group(2)
            return f"{_CEL_TYPE_NAMES.get(python_type, python_type)} does not support field selection"
        return f"no matching overload: {error}"
    if isinstance(error, RecursionError):
        return "value nested too deeply"
    return f"{type(error).__name__}: {error}"
