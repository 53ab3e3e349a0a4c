"""Translation of a CEL parse tree (celpy's lark grammar) into the source of two Python functions.

`Translator(variables).function_source(tree)` writes `def _cel(_a)` (the value; CEL errors
raise) and `def _match(_a)` (is it boolean true; errors are false) over the activation `_a`. The
source's only free names are those in NAMESPACE, which maps them to tailor.core.cel.runtime, plus the
translator's `constants` (compiled patterns, sets for `in`); tailor.core.cel compiles it with no
builtins. Nothing from a CEL expression ever becomes a Python name: variables are `_a["name"]`,
fields are string keys, literals are repr()s, iteration variables are numbered locals.

Shape of the output: each node is a Python expression. `&&`, `||`, `?:` whose branches need
statements, and macros emit statements first (into the current block, or a captured block that the
caller places under a branch) and stand for a temporary. `&&`/`||` evaluate each operand under `try`
and keep a raised exception as a value, which gives CEL's commutative error absorption without
threading error values through every other operation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from lark import Token, Tree

from tailor.core.cel import runtime


class TranslationError(Exception):
    """Why a tree cannot be translated, and where (1-based line and column when known)."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column


# The names generated code may use besides its own locals: nothing else is reachable from a program.
NAMESPACE: dict[str, Any] = {
    "Exception": Exception,  # for the `try` around && / || operands and macro predicates
    "int": int,  # for the exact type checks of inlined comparisons
    "float": float,
    "str": str,
    "list": list,
    "dict": dict,
    "len": len,  # for the budget's charge when a comprehension starts
    "_Stopped": runtime.BudgetExceeded,
    "_logic_fail": runtime.logic_fail,
    "_condition": runtime.condition,
    "_predicate": runtime.predicate,
    "_predicate_error": runtime.predicate_error,
    "_not": runtime.logical_not,
    "_eq": runtime.equals,
    "_ne": runtime.not_equals,
    "_lt": runtime.less,
    "_le": runtime.less_equal,
    "_gt": runtime.greater,
    "_ge": runtime.greater_equal,
    "_in": runtime.contained,
    "_add": runtime.add,
    "_sub": runtime.subtract,
    "_mul": runtime.multiply,
    "_div": runtime.divide,
    "_mod": runtime.modulo,
    "_neg": runtime.negate,
    "_index": runtime.index,
    "_select": runtime.select,
    "_has": runtime.has_field,
    "_make_map": runtime.make_map,
    "_iterable": runtime.iterable,
    "_iterable_within": runtime.iterable_within,
    "_iterable_charged": runtime.iterable_charged,
    "_size": runtime.size,
    "_contains": runtime.contains,
    "_starts_with": runtime.starts_with,
    "_ends_with": runtime.ends_with,
    "_matches": runtime.matches,
    "_int": runtime.to_int,
    "_double": runtime.to_double,
    "_string": runtime.to_string,
    "_duration": runtime.to_duration,
    "_get_hours": runtime.get_hours,
    "_get_minutes": runtime.get_minutes,
    "_get_seconds": runtime.get_seconds,
}

_RELATIONS = {
    "relation_eq": "_eq",
    "relation_ne": "_ne",
    "relation_lt": "_lt",
    "relation_le": "_le",
    "relation_gt": "_gt",
    "relation_ge": "_ge",
    "relation_in": "_in",
}
_PYTHON_RELATIONS = {
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
}
# CEL types whose values compare in Python exactly as in CEL when both sides have that type.
_PYTHON_TYPES = {"int": "int", "double": "float", "string": "str"}
# Values known not to be maps are never subscripted inline with a string (`[x]["k"]` warns in CPython).
_NOT_MAPS = frozenset({"bool", "int", "double", "string", "null", "list", "duration"})
_ARITHMETIC = {
    "addition_add": "_add",
    "addition_sub": "_sub",
    "multiplication_mul": "_mul",
    "multiplication_div": "_div",
    "multiplication_mod": "_mod",
}
# Global functions: name -> (arity, runtime helper, static result kind). `has` is a macro, below.
_FUNCTIONS: dict[str, tuple[int, str, str | None]] = {
    "size": (1, "_size", "int"),
    "int": (1, "_int", "int"),
    "double": (1, "_double", "double"),
    "string": (1, "_string", "string"),
    "duration": (1, "_duration", "duration"),
    "matches": (2, "_matches", "bool"),
}
# Receiver-style functions: target.name(args) -> helper(target, *args).
_METHODS: dict[str, tuple[int, str, str | None]] = {
    "size": (0, "_size", "int"),
    "contains": (1, "_contains", "bool"),
    "startsWith": (1, "_starts_with", "bool"),
    "endsWith": (1, "_ends_with", "bool"),
    "matches": (1, "_matches", "bool"),
    "getHours": (0, "_get_hours", "int"),
    "getMinutes": (0, "_get_minutes", "int"),
    "getSeconds": (0, "_get_seconds", "int"),
}
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

# Wrappers that hold a single child carry no meaning of their own.
WRAPPERS = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)

_ESCAPE = re.compile(
    r"""\\(?:([abfnrtv"'\\`?])|([0-3][0-7]{2})|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))""",
    re.DOTALL,
)
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "`": "`",
    "?": "?",
}


@dataclass(frozen=True, slots=True)
class _Code:
    """A Python expression, and what is known statically about its CEL value."""

    text: str
    kind: str | None = None  # "bool", "int", "double", "string", "null", "list", "map", "duration"
    literal: bool = False
    value: Any = None  # the value of a literal


class Translator:
    """Walks celpy's parse tree and writes the body of `def _cel(_a):`.

    Each node becomes a Python expression; nodes that need control flow (&&, ||, ?: with side
    statements, macros) first emit statements into the current block and stand for a temporary."""

    def __init__(
        self, variables: frozenset[str], weights: Mapping[int, int] | None = None, budget: int | None = None
    ) -> None:
        """`budget`: stop an evaluation whose comprehensions charge more than this, each charging
        `weights[id(its macro node)]` (tailor.core.cel.cost) per element when it starts."""
        self._variables = variables
        self._weights = weights or {}
        self._budget = budget
        self._charged = False  # whether comprehensions keep a running total of their charges
        self._stoppable = False  # whether some comprehension checks the budget
        self.references: set[str] = set()  # the declared variables the expression uses
        self._lines: list[str] = []
        self._depth = 0
        self._count = 0
        self._scope: dict[str, str] = {}  # macro iteration variables: CEL name -> Python local
        self.constants: dict[str, Any] = {}

    def function_source(self, tree: Tree[Any]) -> str:
        """Two functions over the same body: `_cel` returns the value (errors raise), `_match` returns
        whether it is boolean true (errors are false), so that matches() costs no extra call."""
        self._depth = 1
        result = self._expr(tree)
        if self._charged:
            self._lines.insert(0, "    _b = 0")  # what the comprehensions have charged so far
        body = "".join(line + "\n" for line in self._lines)
        guarded = "".join("    " + line + "\n" for line in self._lines)
        is_true = repr(result.value is True) if result.literal else f"{result.text} is True"
        # A budget stop is no CEL error (nothing absorbs it), but it is no match either.
        stopped = "    except _Stopped:\n        return False\n" if self._stoppable else ""
        return (
            f"def _cel(_a):\n{body}    return {result.text}\n"
            f"def _match(_a):\n    try:\n{guarded}        return {is_true}\n"
            f"    except Exception:\n        return False\n{stopped}"
        )

    # -- emitting --------------------------------------------------------------------------------------

    def _emit(self, line: str) -> None:
        self._lines.append("    " * self._depth + line)

    def _temp(self, prefix: str = "_t") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _constant(self, value: Any) -> str:
        name = self._temp("_k")
        self.constants[name] = value
        return name

    def _capture(self, tree: Tree[Any]) -> tuple[list[str], _Code]:
        """Translate `tree` into a separate block, to be placed under a branch by the caller."""
        saved = self._lines, self._depth
        self._lines, self._depth = [], 0
        try:
            code = self._expr(tree)
            return self._lines, code
        finally:
            self._lines, self._depth = saved

    def _splice(self, lines: list[str]) -> None:
        prefix = "    " * self._depth
        self._lines.extend(prefix + line for line in lines)

    def _guarded(self, tree: Tree[Any]) -> str:
        """Evaluate `tree` into a temporary that holds either its value or the exception it raised."""
        lines, code = self._capture(tree)
        value = self._temp()
        error = self._temp("_e")
        self._emit("try:")
        self._depth += 1
        self._splice(lines)
        self._emit(f"{value} = {code.text}")
        self._depth -= 1
        self._emit(f"except Exception as {error}:")
        self._emit(f"    {value} = {error}")
        return value

    # -- errors ----------------------------------------------------------------------------------------

    def _error(self, reason: str, node: Tree[Any] | Token) -> TranslationError:
        if isinstance(node, Token):
            return TranslationError(reason, node.line, node.column)
        meta = node.meta
        if getattr(meta, "empty", True):
            return TranslationError(reason)
        return TranslationError(reason, meta.line, meta.column)

    # -- dispatch --------------------------------------------------------------------------------------

    def _expr(self, tree: Tree[Any]) -> _Code:
        while tree.data in WRAPPERS and len(tree.children) == 1 and isinstance(tree.children[0], Tree):
            tree = tree.children[0]
        kind = tree.data
        if kind == "expr":
            return self._ternary(tree)
        if kind == "conditionalor":
            return self._logical(tree, "conditionalor")
        if kind == "conditionaland":
            return self._logical(tree, "conditionaland")
        if kind == "relation":
            return self._relation(tree)
        if kind in ("addition", "multiplication"):
            return self._arithmetic(tree)
        if kind == "unary":
            return self._unary(tree)
        if kind == "member_dot":
            return self._select(tree)
        if kind == "member_dot_arg":
            return self._method(tree)
        if kind == "member_index":
            return self._index(tree)
        if kind == "literal":
            return self._literal(cast(Token, tree.children[0]))
        if kind == "ident":
            return self._ident(cast(Token, tree.children[0]))
        if kind == "ident_arg":
            return self._function(tree)
        if kind == "list_lit":
            return self._list(tree)
        if kind == "map_lit":
            return self._map(tree)
        if kind == "member_object":
            raise self._error("unsupported: message construction", tree)
        if kind in ("dot_ident", "dot_ident_arg"):
            raise self._error("unsupported: leading-dot (root namespace) names", tree)
        raise self._error(f"unsupported: {kind}", tree)

    # -- logic -----------------------------------------------------------------------------------------

    def _ternary(self, tree: Tree[Any]) -> _Code:
        condition_tree, then_tree, else_tree = tree.children
        condition = self._expr(condition_tree)
        then_lines, then_code = self._capture(then_tree)
        else_lines, else_code = self._capture(else_tree)
        kind = then_code.kind if then_code.kind == else_code.kind else None
        test = condition.text if condition.kind == "bool" else f"_condition({condition.text})"
        if not then_lines and not else_lines:
            return _Code(f"({then_code.text} if {test} else {else_code.text})", kind)
        result = self._temp()
        self._emit(f"if {test}:")
        self._depth += 1
        self._splice(then_lines)
        self._emit(f"{result} = {then_code.text}")
        self._depth -= 1
        self._emit("else:")
        self._depth += 1
        self._splice(else_lines)
        self._emit(f"{result} = {else_code.text}")
        self._depth -= 1
        return _Code(result, kind)

    def _logical(self, tree: Tree[Any], node: str) -> _Code:
        operands: list[Tree[Any]] = []
        while tree.data == node and len(tree.children) == 2:
            operands.append(tree.children[1])
            tree = tree.children[0]
        operands.append(tree)
        operands.reverse()
        is_and = node == "conditionaland"
        absorbing, other = ("False", "True") if is_and else ("True", "False")
        operator = "_&&_" if is_and else "_||_"
        result = self._temp()
        self._emit(f"{result} = {absorbing}")
        # A one-pass loop, so that the absorbing value can `break` out without nesting every operand.
        self._emit("while True:")
        self._depth += 1
        values = []
        for operand in operands:
            value = self._guarded(operand)
            self._emit(f"if {value} is {absorbing}:")
            self._emit("    break")
            values.append(value)
        undecided = " or ".join(f"{value} is not {other}" for value in values)
        self._emit(f"if {undecided}:")
        self._emit(f"    _logic_fail({operator!r}, {', '.join(values)})")
        self._emit(f"{result} = {other}")
        self._emit("break")
        self._depth -= 1
        return _Code(result, "bool")

    def _unary(self, tree: Tree[Any]) -> _Code:
        operators = []
        while tree.data == "unary" and len(tree.children) == 2:
            operators.append(tree.children[0].data)
            tree = tree.children[1]
        code = self._expr(tree)
        for operator in reversed(operators):
            if operator == "unary_not":
                text = f"(not {code.text})" if code.kind == "bool" else f"_not({code.text})"
                code = _Code(text, "bool")
            else:
                kind = code.kind if code.kind in ("int", "double") else None
                code = _Code(f"_neg({code.text})", kind)
        return code

    # -- operators -------------------------------------------------------------------------------------

    def _relation(self, tree: Tree[Any]) -> _Code:
        operator, right_tree = tree.children
        left = self._expr(operator.children[0])
        right = self._expr(right_tree)
        relation = operator.data
        helper = _RELATIONS[relation]
        symbol = _PYTHON_RELATIONS.get(relation)
        if symbol is not None:
            # Against a literal, the common case `views["30m"].total >= 3` compares inline when the
            # other side has the literal's type, and leaves every other case (errors too) to the helper.
            null_test = left.kind == "null" or right.kind == "null"
            if symbol in ("==", "!=") and null_test and left.literal != right.literal:
                other = right if left.literal else left
                return _Code(f"({other.text} {'is' if symbol == '==' else 'is not'} None)", "bool")
            if right.literal and right.kind in _PYTHON_TYPES and not left.literal:
                value = self._temp()
                check = f"({value} := {left.text}).__class__ is {_PYTHON_TYPES[right.kind]}"
                fallback = f"{helper}({value}, {right.text})"
                return _Code(f"({value} {symbol} {right.text} if {check} else {fallback})", "bool")
            if left.literal and left.kind in _PYTHON_TYPES and not right.literal:
                value = self._temp()
                check = f"({value} := {right.text}).__class__ is {_PYTHON_TYPES[left.kind]}"
                fallback = f"{helper}({left.text}, {value})"
                return _Code(f"({left.text} {symbol} {value} if {check} else {fallback})", "bool")
        if relation == "relation_in":
            strings = right.literal and right.kind == "list" and all(type(v) is str for v in right.value)
            if strings and right.value:
                value = self._temp()
                names = self._constant(frozenset(right.value))
                elements = self._constant(list(right.value))
                check = f"({value} := {left.text}).__class__ is str"
                return _Code(f"({value} in {names} if {check} else _in({value}, {elements}))", "bool")
            if left.literal and left.kind == "string" and not right.literal:
                value = self._temp()
                found = f"({value} := {right.text}).__class__ is list and {left.text} in {value}"
                return _Code(f"(True if {found} else _in({left.text}, {value}))", "bool")
        return _Code(f"{helper}({left.text}, {right.text})", "bool")

    def _arithmetic(self, tree: Tree[Any]) -> _Code:
        operator, right_tree = tree.children
        left = self._expr(operator.children[0])
        right = self._expr(right_tree)
        kind = left.kind if left.kind == right.kind else None
        return _Code(f"{_ARITHMETIC[operator.data]}({left.text}, {right.text})", kind)

    # -- selection -------------------------------------------------------------------------------------

    def _select(self, tree: Tree[Any]) -> _Code:
        target_tree, field = tree.children
        target = self._expr(target_tree)
        if target.literal or target.kind in _NOT_MAPS:  # Python warns at compile time about "abc"["x"]
            return _Code(f"_select({target.text}, {str(field)!r})")
        # A map's field is its string key: a dict lookup that raises KeyError when absent and
        # TypeError for a list, string, number or null, which are exactly CEL's errors.
        return _Code(f"{target.text}[{str(field)!r}]")

    def _index(self, tree: Tree[Any]) -> _Code:
        target_tree, key_tree = tree.children
        target = self._expr(target_tree)
        key = self._expr(key_tree)
        if key.literal and key.kind == "string" and not (target.literal or target.kind in _NOT_MAPS):
            return _Code(f"{target.text}[{key.text}]")
        return _Code(f"_index({target.text}, {key.text})")

    def _ident(self, token: Token) -> _Code:
        name = str(token)
        local = self._scope.get(name)
        if local is not None:
            return _Code(local)
        if name not in self._variables:
            raise self._error(f"undeclared reference to {name!r}", token)
        self.references.add(name)
        return _Code(f"_a[{name!r}]")

    # -- calls -----------------------------------------------------------------------------------------

    def _arguments(self, exprlist: Any) -> list[Tree[Any]]:
        if exprlist is None:
            return []
        return [child for child in exprlist.children if isinstance(child, Tree)]

    def _function(self, tree: Tree[Any]) -> _Code:
        name_token = tree.children[0]
        name = str(name_token)
        arguments = self._arguments(tree.children[1] if len(tree.children) > 1 else None)
        if name == "has":
            return self._has(arguments, tree)
        if name == "dyn":
            if len(arguments) != 1:
                raise self._error("dyn() takes one argument", tree)
            code = self._expr(arguments[0])
            return _Code(code.text, None, code.literal, code.value)  # the same value, its type unknown
        signature = _FUNCTIONS.get(name)
        if signature is None:
            raise self._error(f"unsupported: function {name}()", name_token)
        arity, helper, kind = signature
        if len(arguments) != arity:
            raise self._error(f"{name}() takes {arity} argument{'s' if arity != 1 else ''}", tree)
        codes = [self._expr(argument) for argument in arguments]
        if name == "matches":
            return self._matches(codes[0], codes[1], tree)
        return _Code(f"{helper}({', '.join(code.text for code in codes)})", kind)

    def _method(self, tree: Tree[Any]) -> _Code:
        target_tree, name_token = tree.children[0], tree.children[1]
        name = str(name_token)
        arguments = self._arguments(tree.children[2] if len(tree.children) > 2 else None)
        if name in _MACROS:
            return self._macro(name, target_tree, arguments, tree)
        signature = _METHODS.get(name)
        if signature is None:
            raise self._error(f"unsupported: method .{name}()", name_token)
        arity, helper, kind = signature
        if len(arguments) != arity:
            raise self._error(f".{name}() takes {arity} argument{'s' if arity != 1 else ''}", tree)
        target = self._expr(target_tree)
        codes = [self._expr(argument) for argument in arguments]
        if name == "matches":
            return self._matches(target, codes[0], tree)
        return _Code(f"{helper}({', '.join([target.text, *(code.text for code in codes)])})", kind)

    def _matches(self, text: _Code, pattern: _Code, tree: Tree[Any]) -> _Code:
        if pattern.literal and pattern.kind == "string":
            try:
                compiled = runtime.Pattern(pattern.value)
            except runtime.EvalFailure as error:
                raise self._error(str(error), tree) from None
            return _Code(f"{self._constant(compiled)}.search({text.text})", "bool")
        return _Code(f"_matches({text.text}, {pattern.text})", "bool")

    def _has(self, arguments: list[Tree[Any]], tree: Tree[Any]) -> _Code:
        argument = arguments[0] if len(arguments) == 1 else None
        while argument is not None and argument.data in WRAPPERS and len(argument.children) == 1:
            argument = argument.children[0]
        if argument is None or argument.data != "member_dot":
            raise self._error("has() takes one field selection, like has(self.spec.url)", tree)
        target_tree, field = argument.children
        target = self._expr(target_tree)
        return _Code(f"_has({target.text}, {str(field)!r})", "bool")

    # -- macros ----------------------------------------------------------------------------------------

    def _macro(self, name: str, target_tree: Tree[Any], arguments: list[Tree[Any]], tree: Tree[Any]) -> _Code:
        arities = (2, 3) if name == "map" else (2,)
        if len(arguments) not in arities:
            wanted = "one or two expressions" if name == "map" else "a predicate"
            raise self._error(f".{name}() takes a variable and {wanted}", tree)
        variable = arguments[0]
        while variable.data in WRAPPERS and len(variable.children) == 1:
            variable = variable.children[0]
        if variable.data != "ident":
            raise self._error(f".{name}() needs a variable name as its first argument", arguments[0])
        target = self._expr(target_tree)
        items = self._temp()
        budget = self._budget
        if budget is None:
            self._emit(f"{items} = _iterable({target.text})")
        else:
            # Charged once per start, for all its elements: a loop that would overspend never runs. The
            # type and the charge are checked inline (cheaper than the call to _iterable they replace);
            # the only comprehension of a program starts at most once and needs no running total.
            weight = self._weights.get(id(tree), budget + 1)
            self._emit(f"{items} = {target.text}")
            kind = f"{items}.__class__"
            if len(self._weights) == 1:
                most = budget // weight
                self._emit(f"if not (({kind} is list or {kind} is dict) and len({items}) <= {most}):")
                self._emit(f"    _iterable_within({items}, {most}, {weight}, {budget})")
            else:
                charged = f"(_b := _b + len({items}) * {weight}) <= {budget}"
                self._emit(f"if not (({kind} is list or {kind} is dict) and {charged}):")
                self._emit(f"    _iterable_charged({items}, _b, {budget})")
                self._charged = True
            self._stoppable = True
        local = self._temp("_v")
        outer = self._scope
        self._scope = {**outer, str(variable.children[0]): local}
        try:
            if name in ("all", "exists"):
                return self._quantifier(name, items, local, arguments[1])
            if name == "exists_one":
                return self._exists_one(items, local, arguments[1])
            return self._collect(name, items, local, arguments[1:])
        finally:
            self._scope = outer

    def _quantifier(self, name: str, items: str, local: str, predicate: Tree[Any]) -> _Code:
        # all/exists are && and || over the elements: a deciding element absorbs any other's error.
        deciding, other = ("False", "True") if name == "all" else ("True", "False")
        result = self._temp()
        error = self._temp("_err")
        self._emit(f"{result} = {other}")
        self._emit(f"{error} = None")
        self._emit(f"for {local} in {items}:")
        self._depth += 1
        value = self._guarded(predicate)
        self._emit(f"if {value} is {deciding}:")
        self._emit(f"    {result} = {deciding}")
        self._emit("    break")
        self._emit(f"if {value} is not {other}:")
        self._emit(f"    {error} = _predicate_error({name!r}, {value})")
        self._depth -= 1
        self._emit(f"if {result} is {other} and {error} is not None:")
        self._emit(f"    raise {error}")
        return _Code(result, "bool")

    def _exists_one(self, items: str, local: str, predicate: Tree[Any]) -> _Code:
        count = self._temp()
        self._emit(f"{count} = 0")
        self._emit(f"for {local} in {items}:")
        self._depth += 1
        lines, code = self._capture(predicate)
        self._splice(lines)
        self._emit(f"if _predicate('exists_one', {code.text}):")
        self._emit(f"    {count} += 1")
        self._depth -= 1
        return _Code(f"({count} == 1)", "bool")

    def _collect(self, name: str, items: str, local: str, expressions: list[Tree[Any]]) -> _Code:
        result = self._temp()
        self._emit(f"{result} = []")
        self._emit(f"for {local} in {items}:")
        self._depth += 1
        if name == "filter" or len(expressions) == 2:
            lines, code = self._capture(expressions[0])
            self._splice(lines)
            self._emit(f"if not _predicate({name!r}, {code.text}):")
            self._emit("    continue")
        if name == "filter":
            self._emit(f"{result}.append({local})")
        else:
            lines, code = self._capture(expressions[-1])
            self._splice(lines)
            self._emit(f"{result}.append({code.text})")
        self._depth -= 1
        return _Code(result, "list")

    # -- literals --------------------------------------------------------------------------------------

    def _literal(self, token: Token) -> _Code:
        text = str(token)
        if token.type == "BOOL_LIT":
            return _Code(text.capitalize(), "bool", True, text == "true")
        if token.type == "NULL_LIT":
            return _Code("None", "null", True, None)
        if token.type == "INT_LIT":
            negative = text.startswith("-")
            digits = text.lstrip("-")
            value = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits)
            value = -value if negative else value
            if not runtime.INT_MIN <= value <= runtime.INT_MAX:
                raise self._error(f"integer literal out of range: {text}", token)
            return _Code(repr(value), "int", True, value)
        if token.type == "FLOAT_LIT":
            number = float(text)
            source = repr(number) if math.isfinite(number) else self._constant(number)
            return _Code(source, "double", True, number)
        if token.type in ("STRING_LIT", "MLSTRING_LIT"):
            string = self._string(text, token)
            return _Code(repr(string), "string", True, string)
        if token.type == "UINT_LIT":
            raise self._error(f"unsupported: unsigned integer literal {text} (use an int)", token)
        if token.type == "BYTES_LIT":
            raise self._error("unsupported: bytes literal", token)
        raise self._error(f"unsupported: literal {text}", token)

    def _string(self, text: str, token: Token) -> str:
        raw = text[0] in "rR"
        if raw:
            text = text[1:]
        quote = 3 if text[:3] in ('"""', "'''") else 1
        body = text[quote:-quote]
        if raw:
            return body

        def decode(match: re.Match[str]) -> str:
            simple, octal, hex2, hex4, hex8, other = match.groups()
            if simple is not None:
                return _SIMPLE_ESCAPES[simple]
            if other is not None:
                raise self._error(f"invalid escape sequence \\{other} in string literal", token)
            code = int(octal, 8) if octal else int(hex2 or hex4 or hex8, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise self._error(f"invalid code point \\{match.group(0)[1:]} in string literal", token)
            return chr(code)

        return _ESCAPE.sub(decode, body)

    def _list(self, tree: Tree[Any]) -> _Code:
        elements = [
            self._expr(child) for child in self._arguments(tree.children[0] if tree.children else None)
        ]
        text = f"[{', '.join(code.text for code in elements)}]"
        if all(code.literal for code in elements):
            return _Code(text, "list", True, [code.value for code in elements])
        return _Code(text, "list")

    def _map(self, tree: Tree[Any]) -> _Code:
        children = self._arguments(tree.children[0] if tree.children else None)
        pairs = [(self._expr(children[i]), self._expr(children[i + 1])) for i in range(0, len(children), 2)]
        keys = [key.value for key, _ in pairs if key.literal and key.kind == "string"]
        if len(keys) == len(pairs) and len(set(keys)) == len(keys):
            return _Code("{" + ", ".join(f"{key.text}: {value.text}" for key, value in pairs) + "}", "map")
        entries = ", ".join(f"({key.text}, {value.text})" for key, value in pairs)
        return _Code(f"_make_map(({entries},))" if pairs else "{}", "map")
