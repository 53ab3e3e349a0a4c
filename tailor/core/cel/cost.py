"""The worst-case cost of a CEL expression, estimated from its parse tree before it ever runs.

The approach of Kubernetes' own CEL cost estimator (cel-go's `checker.Cost`, which the API server
runs on every `x-kubernetes-validations` rule): every operation has a cost in abstract units (about
one field selection or function call each), a comprehension costs the size of what it ranges over
times the cost of one iteration, and the sizes come from bounds declared for the variables (a
schema's `maxItems`, `maxLength`, `maxProperties`) and from the expression itself (a literal list
has its length). What has no bound is unbounded, so a comprehension over it never fits a limit.

`estimate(tree, schemas)` returns an `Estimate`: the cost, the costliest comprehension (for the
message an author reads) and, per comprehension, the cost of one of its iterations leaving out the
comprehensions nested in it (`weights`): tailor.core.cel.translate charges that weight times the
actual number of elements when a loop starts, so an evaluation counts the same units at run time
and stops at a budget (program.compile's `budget`). With the declared bounds held, what is charged
never exceeds the estimate; a budget catches values larger than their bounds.

The units and weights follow cel-go's where Tailor has the same operation (documented in
docs/cel.md); they are not calibrated per operation, the limit is (docs/cel.md, "Cost limits").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from lark import Token, Tree

from tailor.core.cel import translate

# A size or cost with no bound (and the ceiling of every sum and product, so numbers stay printable).
UNBOUNDED = 2**63 - 1

IDENT_COST = 1  # reading a variable
SELECT_COST = 1  # a field selection or an index
CALL_COST = 1  # a function, an operator
LIST_COST = 10  # making a list
MAP_COST = 30  # making a map
STRING_TRAVERSAL = 0.1  # per character a string operation reads
IN_LIST_ELEMENT = 4  # `x in list`, per element: runtime.contained's typed comparison
REGEX_PATTERN = 0.25  # per character of a pattern (about one RE2 state per 4 characters)
# One iteration's own cost besides its expressions, as each macro expands in CEL: the loop condition
# and the step that folds the result (`map` and `filter` append a one-element list).
ITERATION_COST = {"all": 3, "exists": 3, "exists_one": 3, "map": 12, "filter": 13}
# Characters of string(x) for each kind of x.
STRING_SIZES = {"bool": 5, "int": 20, "double": 32, "duration": 32, "null": 0}


def _add(*values: int) -> int:
    return min(UNBOUNDED, sum(values))


def _mul(left: int, right: int) -> int:
    return min(UNBOUNDED, left * right)


def _factor(size: int, factor: float) -> int:
    return UNBOUNDED if size >= UNBOUNDED else math.ceil(size * factor)


@dataclass(frozen=True, slots=True)
class Shape:
    """What the estimate knows of a value: its CEL kind (None: unknown), the largest `size()` it can
    have (characters, items or entries; UNBOUNDED when nothing bounds it), what a list holds or a map
    maps to (`item`), a map's keys, and an object's named fields (`closed`: no other key exists)."""

    kind: str | None = None
    size: int = UNBOUNDED
    item: Shape | None = None
    key: Shape | None = None
    fields: Mapping[str, Shape] | None = None
    closed: bool = False

    def member(self, name: str | None) -> Shape:
        """The shape of `self.name`, `self[name]` (name None: a key known only at run time)."""
        if self.fields is not None:
            if name is not None and name in self.fields:
                return self.fields[name]
            if name is not None and self.closed:
                return NEVER  # an error at run time: no value, nothing to iterate
            if name is None and self.closed:
                return _union_all(list(self.fields.values()))
        return self.item if self.item is not None else UNKNOWN

    def element(self) -> Shape:
        """What a comprehension's variable holds: a list's items, a map's keys."""
        if self.kind == "map":
            return self.key if self.key is not None else UNKNOWN
        return self.item if self.item is not None else UNKNOWN


UNKNOWN = Shape()
NEVER = Shape(size=0)


def _scalar(kind: str) -> Shape:
    return Shape(kind, 0)


def union(left: Shape, right: Shape) -> Shape:
    """A value that is one or the other (the branches of `?:`, the elements of a list literal)."""
    if left is NEVER:
        return right
    if right is NEVER:
        return left
    return Shape(
        left.kind if left.kind == right.kind else None,
        max(left.size, right.size),
        _union_optional(left.item, right.item),
        _union_optional(left.key, right.key),
    )


def _union_optional(left: Shape | None, right: Shape | None) -> Shape | None:
    if left is None or right is None:
        return None
    return union(left, right)


def _union_all(shapes: list[Shape]) -> Shape:
    result = NEVER
    for shape in shapes:
        result = union(result, shape)
    return result


def shape_of(schema: Mapping[str, Any]) -> Shape:
    """A Shape from an OpenAPI v3 schema (the subset the API server's estimator reads): `type`,
    `properties`, `additionalProperties`, `items`, `maxItems`, `maxLength`, `maxProperties`, and JSON
    Schema's `propertyNames` for the length of a map's keys."""
    kind = schema.get("type")
    if kind == "string":
        return Shape("string", int(schema.get("maxLength", UNBOUNDED)))
    if kind == "array":
        items = schema.get("items")
        item = shape_of(items) if isinstance(items, Mapping) else UNKNOWN
        return Shape("list", int(schema.get("maxItems", UNBOUNDED)), item)
    if kind == "object":
        properties = {name: shape_of(value) for name, value in (schema.get("properties") or {}).items()}
        additional = schema.get("additionalProperties", True)
        closed = additional is False
        names = schema.get("propertyNames")
        key = shape_of({"type": "string", **names}) if isinstance(names, Mapping) else Shape("string")
        if closed:
            key = Shape("string", max((len(name) for name in properties), default=0))
        size = int(schema.get("maxProperties", len(properties) if closed else UNBOUNDED))
        values = shape_of(additional) if isinstance(additional, Mapping) else None
        return Shape("map", size, values, key, properties or None, closed)
    scalars = {"integer": "int", "number": "double", "boolean": "bool"}
    if kind in scalars:
        return _scalar(scalars[kind])
    return UNKNOWN


@dataclass(frozen=True, slots=True)
class Part:
    """The comprehension that costs the most, as an author finds it in the expression."""

    text: str  # the comprehension's source, shortened
    line: int
    column: int
    cost: int
    iterations: tuple[int, ...]  # the largest number of elements of it and of the costliest nested in it

    def describe(self) -> str:
        sizes = " x ".join(_count(size) for size in self.iterations)
        total = math.prod(self.iterations)
        product = f" = {_count(min(total, UNBOUNDED))}" if len(self.iterations) > 1 else ""
        return (
            f"`{self.text}` (line {self.line}, column {self.column}) runs its innermost step up to "
            f"{sizes}{product} times"
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    """The worst-case cost of an expression, in the units of docs/cel.md."""

    cost: int
    costliest: Part | None = None
    # id() of each macro's tree node -> cost of one iteration without the comprehensions inside it
    weights: Mapping[int, int] = field(default_factory=dict)

    def over(self, limit: int) -> str | None:
        """None if the estimate fits `limit`, else why not, in words an author can act on (like the
        API server's "estimated rule cost exceeds budget by factor of N")."""
        if self.cost <= limit:
            return None
        if self.cost >= UNBOUNDED:
            message = f"estimated cost is unbounded (the limit is {_count(limit)})"
        else:
            factor = self.cost / limit
            shown = f"{factor:.1f}" if factor < 10 else _count(round(factor))
            message = (
                f"estimated cost {_count(self.cost)} exceeds the limit of {_count(limit)} "
                f"by a factor of {shown}"
            )
        if self.costliest is not None:
            message += f"; the costliest part: {self.costliest.describe()}"
        return message + "; nest fewer comprehensions or range over fewer elements"


def _count(number: int) -> str:
    return "unbounded" if number >= UNBOUNDED else f"{number:,}"


@dataclass(frozen=True, slots=True)
class _Node:
    cost: int  # the whole subtree, worst case
    flat: int  # the same without the iterations of the comprehensions in it (they charge their own)
    shape: Shape
    iterations: tuple[int, ...] = ()  # sizes along its costliest chain of nested comprehensions


def estimate(tree: Tree[Any], source: str, schemas: Mapping[str, Mapping[str, Any]]) -> Estimate:
    """The estimate of a parsed (and already translated, hence valid) expression over variables of
    these schemas; a variable without one is of unknown size."""
    estimator = _Estimator(source, {name: shape_of(schema) for name, schema in schemas.items()})
    root = estimator.node(tree)
    return Estimate(root.cost, estimator.costliest, estimator.weights)


class _Estimator:
    def __init__(self, source: str, variables: Mapping[str, Shape]) -> None:
        self._source = source
        self._variables = variables
        self._scope: dict[str, Shape] = {}
        self.weights: dict[int, int] = {}
        self.costliest: Part | None = None

    def node(self, tree: Tree[Any]) -> _Node:
        wrappers = translate.WRAPPERS
        while tree.data in wrappers and len(tree.children) == 1 and isinstance(tree.children[0], Tree):
            tree = tree.children[0]
        kind = tree.data
        if kind == "expr":
            condition, then, otherwise = (self.node(child) for child in tree.children)
            branch = then if then.cost >= otherwise.cost else otherwise
            return _Node(
                _add(condition.cost, branch.cost),
                _add(condition.flat, max(then.flat, otherwise.flat)),
                union(then.shape, otherwise.shape),
                _longest(condition, branch),
            )
        if kind in ("conditionalor", "conditionaland"):
            return self._combine([self.node(child) for child in tree.children], 0, _scalar("bool"))
        if kind == "relation":
            return self._relation(tree)
        if kind in ("addition", "multiplication"):
            return self._arithmetic(tree)
        if kind == "unary":
            operators = 0
            while tree.data == "unary" and len(tree.children) == 2:
                operators += 1
                tree = tree.children[1]
            inner = self.node(tree)
            return _Node(_add(inner.cost, operators), _add(inner.flat, operators), Shape(inner.shape.kind, 0))
        if kind == "member_dot":
            target = self.node(tree.children[0])
            return self._combine([target], SELECT_COST, target.shape.member(str(tree.children[1])))
        if kind == "member_dot_arg":
            return self._method(tree)
        if kind == "member_index":
            target, key = self.node(tree.children[0]), self.node(tree.children[1])
            name = self._literal_string(tree.children[1])
            return self._combine([target, key], SELECT_COST, target.shape.member(name))
        if kind == "literal":
            return _Node(0, 0, _literal_shape(cast(Token, tree.children[0])))
        if kind == "ident":
            name = str(tree.children[0])
            shape = self._scope.get(name) or self._variables.get(name, UNKNOWN)
            return _Node(IDENT_COST, IDENT_COST, shape)
        if kind == "ident_arg":
            return self._function(tree)
        if kind == "list_lit":
            elements = [self.node(child) for child in _arguments(tree)]
            item = _union_all([element.shape for element in elements])
            return self._combine(elements, LIST_COST, Shape("list", len(elements), item))
        if kind == "map_lit":
            entries = [self.node(child) for child in _arguments(tree)]
            keys = _union_all([entry.shape for entry in entries[0::2]])
            values = _union_all([entry.shape for entry in entries[1::2]])
            return self._combine(entries, MAP_COST, Shape("map", len(entries) // 2, values, keys))
        return _Node(UNBOUNDED, UNBOUNDED, UNKNOWN)  # the translator refused it already

    @staticmethod
    def _combine(children: list[_Node], own: int, shape: Shape) -> _Node:
        chains = [child.iterations for child in sorted(children, key=lambda child: child.cost)]
        return _Node(
            _add(own, *(child.cost for child in children)),
            _add(own, *(child.flat for child in children)),
            shape,
            chains[-1] if chains else (),
        )

    # -- operators -------------------------------------------------------------------------------------

    def _relation(self, tree: Tree[Any]) -> _Node:
        operator, right_tree = tree.children
        left, right = self.node(operator.children[0]), self.node(right_tree)
        if operator.data == "relation_in":
            # A list is searched element by element (CEL equality, in Python: a few units each), a
            # map's keys are looked up.
            own = 1 if right.shape.kind == "map" else max(1, _mul(right.shape.size, IN_LIST_ELEMENT))
        else:
            own = max(CALL_COST, _factor(min(left.shape.size, right.shape.size), STRING_TRAVERSAL))
        return self._combine([left, right], own, _scalar("bool"))

    def _arithmetic(self, tree: Tree[Any]) -> _Node:
        operator, right_tree = tree.children
        left, right = self.node(operator.children[0]), self.node(right_tree)
        kind = left.shape.kind if left.shape.kind == right.shape.kind else None
        if operator.data != "addition_add" or kind not in ("string", "list", None):
            return self._combine([left, right], CALL_COST, Shape(kind, 0))
        # Concatenation copies both operands.
        size = _add(left.shape.size, right.shape.size)
        shape = Shape(kind, size, _union_optional(left.shape.item, right.shape.item))
        return self._combine([left, right], max(CALL_COST, _factor(size, STRING_TRAVERSAL)), shape)

    # -- calls -----------------------------------------------------------------------------------------

    def _function(self, tree: Tree[Any]) -> _Node:
        name = str(tree.children[0])
        arguments = [self.node(child) for child in _arguments(tree, 1)]
        if name == "dyn":
            return self._combine(arguments, CALL_COST, arguments[0].shape)
        if name == "has":
            return self._combine(arguments, CALL_COST, _scalar("bool"))
        if name == "matches":
            return self._call("matches", arguments[0], arguments[1:])
        return self._call(name, arguments[0], [])

    def _method(self, tree: Tree[Any]) -> _Node:
        name = str(tree.children[1])
        argument_trees = _arguments(tree, 2)
        if name in ITERATION_COST:
            return self._macro(name, tree, argument_trees)
        target = self.node(tree.children[0])
        return self._call(name, target, [self.node(child) for child in argument_trees])

    def _call(self, name: str, target: _Node, arguments: list[_Node]) -> _Node:
        """A function over `target` (the receiver, or the only argument): its cost and result."""
        size = target.shape.size
        if name in ("contains", "startsWith", "endsWith", "matches"):
            argument = arguments[0].shape.size
            if name == "contains":
                # Linear, not cel-go's product: CPython's substring search is linear in both (3.10+).
                own = _factor(_add(size, argument), STRING_TRAVERSAL)
            elif name == "matches":
                own = _mul(_factor(_add(size, 1), STRING_TRAVERSAL), _factor(argument, REGEX_PATTERN))
            else:
                own = _factor(argument, STRING_TRAVERSAL)
            return self._combine([target, *arguments], max(CALL_COST, own), _scalar("bool"))
        if name == "string":
            kind = target.shape.kind
            result = size if kind == "string" else STRING_SIZES.get(kind or "", max(STRING_SIZES.values()))
            return self._combine([target], CALL_COST, Shape("string", result))
        if name in ("int", "double", "duration"):
            own = max(CALL_COST, _factor(size, STRING_TRAVERSAL)) if target.shape.kind != "int" else CALL_COST
            return self._combine([target], own, _scalar(name))
        return self._combine([target, *arguments], CALL_COST, _scalar("int"))  # size(), getHours()...

    def _macro(self, name: str, tree: Tree[Any], arguments: list[Tree[Any]]) -> _Node:
        target = self.node(tree.children[0])
        variable = arguments[0]
        while variable.data in translate.WRAPPERS and len(variable.children) == 1:
            variable = variable.children[0]
        outer = self._scope
        self._scope = {**outer, str(variable.children[0]): target.shape.element()}
        try:
            body = [self.node(child) for child in arguments[1:]]
        finally:
            self._scope = outer
        own = ITERATION_COST[name] + (1 if name == "map" and len(body) == 2 else 0)
        iteration = _add(own, *(part.cost for part in body))
        count = target.shape.size if target.shape.kind in ("list", "map", None) else 0
        self.weights[id(tree)] = _add(own, *(part.flat for part in body))
        inner = max(body, key=lambda part: part.cost).iterations if body else ()
        cost = _add(target.cost, _mul(count, iteration), IDENT_COST)
        if name == "map":
            shape = Shape("list", count, body[-1].shape)
        elif name == "filter":
            shape = Shape("list", count, target.shape.element())
        else:
            shape = _scalar("bool")
        node = _Node(cost, _add(target.flat, IDENT_COST), shape, (count, *inner))
        if self.costliest is None or cost > self.costliest.cost:
            self.costliest = self._part(tree, cost, node.iterations)
        return node

    def _part(self, tree: Tree[Any], cost: int, iterations: tuple[int, ...]) -> Part:
        meta = tree.meta
        text = " ".join(self._source[meta.start_pos : meta.end_pos].split())
        if len(text) > 60:
            text = text[:57] + "..."
        return Part(text, meta.line, meta.column, cost, iterations)

    @staticmethod
    def _literal_string(tree: Tree[Any]) -> str | None:
        while isinstance(tree, Tree) and tree.data in translate.WRAPPERS and len(tree.children) == 1:
            tree = tree.children[0]
        if isinstance(tree, Tree) and tree.data == "literal":
            token = cast(Token, tree.children[0])
            if token.type == "STRING_LIT" and token[:1] in "\"'" and "\\" not in token:
                quote = 3 if token[:3] in ('"""', "'''") else 1
                return str(token[quote:-quote])
        return None


def _longest(*nodes: _Node) -> tuple[int, ...]:
    return max(nodes, key=lambda node: node.cost).iterations


def _arguments(tree: Tree[Any], index: int = 0) -> list[Tree[Any]]:
    if len(tree.children) <= index or tree.children[index] is None:
        return []
    holder = tree.children[index]
    return [child for child in holder.children if isinstance(child, Tree)]


def _literal_shape(token: Token) -> Shape:
    if token.type in ("STRING_LIT", "MLSTRING_LIT"):
        return Shape("string", len(token))  # the source text is at least as long as the string
    kinds = {"INT_LIT": "int", "FLOAT_LIT": "double", "BOOL_LIT": "bool", "NULL_LIT": "null"}
    return _scalar(kinds.get(token.type, "int"))
