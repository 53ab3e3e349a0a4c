"""A plan per cached decide document: the decision projected into the selected fields, without execute.

graphql-core's `execute` is general: for every field of every decision it builds resolve info,
calls a resolver, checks the value for awaitables and completes it by its type, and most of
/v1/graphql's server time went there, not into the decision (docs/content-api.md#graphql). A page
sends the same few decide documents, already parsed and validated once (graphql_endpoint's cache), so
such a document is compiled once more, into a plan: the `decide` field's arguments (literals or
variables) and, for each response key in graphql-core's order, the field it reads — through aliases,
inline fragments, named fragments and `__typename`, with the content's fields worked out per content
type. Serving it is a dict per decision.

The plan covers only what it can match exactly; anything else is None, and graphql-core runs as
before: an operation other than a query of one `decide` field, directives anywhere (@include and
@skip), fragment variables, variables whose values coercion would change or refuse (then graphql-core
says why), and — after the decision was made, so that it is not made twice — a value the schema
would not serve as it stands (a null in a non-null field, an unknown content type): graphql_endpoint
then hands the decisions already made to graphql-core, whose answer is the reference. The tests hold
the plan's output to graphql-core's, byte for byte, over a set of documents
(tests/unit/test_api_graphql_plan.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    ListTypeNode,
    ListValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    TypeNode,
    ValueNode,
    VariableNode,
)

# The concrete Content type of each content kind (graphql_endpoint's schema).
CONTENT_TYPES: Final = {
    "html": "HtmlContent",
    "text": "TextContent",
    "json": "JsonContent",
    "image": "ImageContent",
}
_FIELDS: Final = {
    "Decision": frozenset(
        {"slot", "variant", "rule", "content", "decisionId", "rulesetVersion", "__typename"}
    ),
    "HtmlContent": frozenset({"type", "body", "__typename"}),
    "TextContent": frozenset({"type", "body", "__typename"}),
    "JsonContent": frozenset({"type", "data", "__typename"}),
    "ImageContent": frozenset({"type", "src", "alt", "href", "data", "__typename"}),
}
_INT_LIMIT: Final = 2**31  # GraphQL's Int is 32-bit signed
_CONTENTS_KEPT: Final = 1024  # parsed contents kept: a ruleset's variants, a few versions


class Unplanned(Exception):
    """The document or value is not one the plan serves exactly: graphql-core takes it."""


Fragments = Mapping[str, FragmentDefinitionNode]
# (response key, field name, the field's nodes: the same key may be selected more than once)
Collected = list[tuple[str, str, list[FieldNode]]]
Argument = Callable[[Mapping[str, Any]], Any]  # the argument's value from the request's variables
_ABSENT: Final = object()


def _collect(
    selections: SelectionSetNode, type_name: str, abstract: str | None, fragments: Fragments,
    into: dict[str, tuple[str, list[FieldNode]]],
) -> None:  # fmt: skip
    """The fields selected on an object of `type_name`, by response key in order of first appearance,
    as graphql-core collects them; fragments whose type condition is neither `type_name` nor
    `abstract` (its interface) do not apply."""
    for selection in selections.selections:
        if selection.directives:
            raise Unplanned("directives")
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            name = selection.name.value
            if name not in _FIELDS[type_name]:
                raise Unplanned(f"field {name} on {type_name}")
            found = into.setdefault(key, (name, []))
            if found[0] != name:
                raise Unplanned("one key, two fields")  # validation refuses it; never guess
            found[1].append(selection)
            continue
        if isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else None
            selected = selection.selection_set
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None or fragment.variable_definitions or fragment.directives:
                raise Unplanned("fragment")
            condition, selected = fragment.type_condition.name.value, fragment.selection_set
        else:  # pragma: no cover - graphql-core has no other selection
            raise Unplanned("selection")
        if condition is None or condition in (type_name, abstract):
            _collect(selected, type_name, abstract, fragments, into)
        elif condition not in _FIELDS and condition != "Content":
            raise Unplanned(f"type condition {condition}")  # validation refuses it; never guess


def _collected(
    selections: Sequence[SelectionSetNode], type_name: str, abstract: str | None, fragments: Fragments
) -> Collected:
    into: dict[str, tuple[str, list[FieldNode]]] = {}
    for selection_set in selections:
        _collect(selection_set, type_name, abstract, fragments, into)
    return [(key, name, nodes) for key, (name, nodes) in into.items()]


# Per concrete content type, the (response key, field) selected on it, in order.
ContentPlan = Mapping[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Plan:
    """One `decide` field's arguments and the projection of its decisions."""

    key: str  # the field's response key (its alias, or decide)
    node: FieldNode
    slots: Argument
    user: Argument
    session: Argument
    fields: tuple[tuple[str, str, ContentPlan | None], ...]  # (response key, Decision field, content's)
    variables: tuple[tuple[str, str], ...]  # every declared variable and its type, checked as coercion would

    def arguments(self, variables: Mapping[str, Any]) -> tuple[list[str], str | None, str | None] | None:
        """(slots, user, session) as graphql-core would pass them to the resolver, or None when the
        variables are not what the plan serves as they stand (graphql-core then coerces or refuses)."""
        try:
            for name, kind in self.variables:
                _check_variable(variables.get(name, _ABSENT), kind)
            slots, user, session = self.slots(variables), self.user(variables), self.session(variables)
        except Unplanned:
            return None
        return slots, (None if user is _ABSENT else user), (None if session is _ABSENT else session)

    def project(self, decisions: Sequence[Mapping[str, Any]], contents: Contents) -> dict[str, Any] | None:
        """`data` as graphql-core would answer it for these decisions (decide_endpoint.listed), or None
        when some value is not one the schema serves as it stands."""
        try:
            return {self.key: [self._decision(made, contents) for made in decisions]}
        except Unplanned:
            return None

    def _decision(self, made: Mapping[str, Any], contents: Contents) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, name, content in self.fields:
            if name == "__typename":
                out[key] = "Decision"
            elif content is not None:
                out[key] = _content(content, made["content"], contents)
            elif name == "rulesetVersion":
                value = made[name]
                if type(value) is not int or not -_INT_LIMIT <= value < _INT_LIMIT:
                    raise Unplanned(name)
                out[key] = value
            else:
                value = made[name]
                if type(value) is not str and (value is not None or name in ("slot", "decisionId")):
                    raise Unplanned(name)
                out[key] = value
        return out


def _content(
    plan: ContentPlan, serialized: orjson.Fragment | None, contents: Contents
) -> dict[str, Any] | None:
    if serialized is None:
        return None
    value = contents.parsed(serialized)
    kind = value.get("type") if isinstance(value, dict) else None
    type_name = CONTENT_TYPES.get(kind) if isinstance(kind, str) else None
    if type_name is None:
        raise Unplanned("content type")
    out: dict[str, Any] = {}
    for key, name in plan[type_name]:
        if name == "__typename":
            out[key] = type_name
        elif name in ("type", "body"):
            found = value.get(name)
            if type(found) is not str:
                raise Unplanned(name)
            out[key] = found
        elif name == "data":
            found = value.get("data")
            if found is None:
                raise Unplanned(name)
            out[key] = found
        else:  # src, alt, href: the image's, from its data
            data = value.get("data")
            if not isinstance(data, dict):
                raise Unplanned("image data")
            found = data.get(name)
            if found is not None and type(found) is not str:
                found = None  # graphql_endpoint's resolver serves only strings
            if found is None and name == "src":
                raise Unplanned(name)
            out[key] = found
    return out


class Contents:
    """Each variant's content parsed once (it is served as pre-serialized JSON, an orjson.Fragment,
    made once per ruleset version): the plan reads fields of it, and shares it read-only."""

    def __init__(self) -> None:
        self._parsed: dict[int, tuple[orjson.Fragment, Any]] = {}

    def parsed(self, serialized: orjson.Fragment) -> Any:
        found = self._parsed.get(id(serialized))
        if found is not None and found[0] is serialized:  # the entry holds it: its id is not reused
            return found[1]
        value = orjson.loads(orjson.dumps(serialized))
        if len(self._parsed) >= _CONTENTS_KEPT:
            self._parsed.clear()  # new ruleset versions: the old ones' contents go
        self._parsed[id(serialized)] = (serialized, value)
        return value


def compile_plan(document: DocumentNode, operation_name: str | None) -> Plan | None:
    """The plan for the operation `operation_name` of a validated document, or None."""
    try:
        return _compile(document, operation_name)
    except Unplanned:
        return None


def _compile(document: DocumentNode, operation_name: str | None) -> Plan:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            raise Unplanned("which operation")
        operation = operations[0]
    else:
        named = [o for o in operations if o.name and o.name.value == operation_name]
        if len(named) != 1:
            raise Unplanned("no such operation")
        operation = named[0]
    if operation.operation is not OperationType.QUERY or operation.directives:
        raise Unplanned("not a plain query")
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root = _collected_root(operation.selection_set, fragments)
    if len(root) != 1 or root[0][1] != "decide":
        raise Unplanned("one decide field")
    root_key, _, nodes = root[0]
    node = nodes[0]
    if len(nodes) != 1:
        raise Unplanned("decide selected twice")
    declared = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    for definition in declared.values():
        if definition.default_value is not None or definition.directives:
            raise Unplanned("variable defaults")
    given = {argument.name.value: argument.value for argument in node.arguments or ()}
    if node.selection_set is None:
        raise Unplanned("no selection")
    decision = _collected([node.selection_set], "Decision", None, fragments)
    fields: list[tuple[str, str, ContentPlan | None]] = []
    for key, name, found in decision:
        content: ContentPlan | None = None
        if name == "content":
            sets = [n.selection_set for n in found if n.selection_set is not None]
            content = {
                type_name: tuple(
                    (k, field) for k, field, _ in _collected(sets, type_name, "Content", fragments)
                )
                for type_name in CONTENT_TYPES.values()
            }
        fields.append((key, name, content))
    kinds = tuple((name, _type_text(definition.type)) for name, definition in declared.items())
    for _, kind in kinds:
        if kind not in _VARIABLE_TYPES:
            raise Unplanned(f"a variable of type {kind}")
    return Plan(
        key=root_key,
        node=node,
        slots=_slots(given.get("slots"), declared),
        user=_string(given.get("user"), declared),
        session=_string(given.get("session"), declared),
        fields=tuple(fields),
        variables=kinds,
    )


def _collected_root(selections: SelectionSetNode, fragments: Fragments) -> Collected:
    into: dict[str, tuple[str, list[FieldNode]]] = {}
    for selection in selections.selections:
        if selection.directives:
            raise Unplanned("directives")
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            into.setdefault(key, (selection.name.value, []))[1].append(selection)
        else:
            raise Unplanned("fragments at the root")
    return [(key, name, nodes) for key, (name, nodes) in into.items()]


_VARIABLE_TYPES: Final = frozenset({"String", "String!", "[String!]!"})  # the arguments' own types


def _check_variable(value: Any, kind: str) -> None:
    """Unplanned unless graphql-core's coercion would take `value` for a variable of `kind` as it is
    (a string for a list, for one, would become a list of one: left to graphql-core)."""
    if kind == "[String!]!":
        if type(value) is not list or any(type(item) is not str for item in value):
            raise Unplanned("not a list of strings")
    elif type(value) is not str and not (kind == "String" and (value is None or value is _ABSENT)):
        raise Unplanned("not a string")


def _type_text(node: TypeNode) -> str:
    if isinstance(node, NonNullTypeNode):
        return _type_text(node.type) + "!"
    if isinstance(node, ListTypeNode):
        return "[" + _type_text(node.type) + "]"
    assert isinstance(node, NamedTypeNode)
    return node.name.value


def _kind(declared: Mapping[str, Any], variable: VariableNode) -> str:
    found = declared.get(variable.name.value)
    return "" if found is None else _type_text(found.type)


def _string(value: ValueNode | None, declared: Mapping[str, Any]) -> Argument:
    """A `String` argument (user, session): absent, null, a literal, or a variable (checked already)."""
    if value is None:
        return lambda _: _ABSENT
    if isinstance(value, NullValueNode):
        return lambda _: None
    if isinstance(value, StringValueNode):
        text = value.value
        return lambda _: text
    if isinstance(value, VariableNode) and _kind(declared, value) in ("String", "String!"):
        name = value.name.value
        return lambda variables: variables.get(name, _ABSENT)
    raise Unplanned("argument")


def _slots(value: ValueNode | None, declared: Mapping[str, Any]) -> Argument:
    """`slots: [String!]!`: a list literal of strings and String! variables, one string (a list of one,
    as input coercion makes it), or a `[String!]!` variable (checked already)."""
    if isinstance(value, StringValueNode):
        text = value.value
        return lambda _: [text]
    if isinstance(value, ListValueNode):
        # Each item: a literal, or the name of a String! variable (checked already).
        items: list[tuple[str | None, str]] = []
        for item in value.values:
            if isinstance(item, StringValueNode):
                items.append((None, item.value))
            elif isinstance(item, VariableNode) and _kind(declared, item) == "String!":
                items.append((item.name.value, ""))
            else:
                raise Unplanned("slot item")
        return lambda variables: [text if name is None else variables[name] for name, text in items]
    if isinstance(value, VariableNode) and _kind(declared, value) == "[String!]!":
        name = value.name.value
        return lambda variables: list(variables[name])
    raise Unplanned("slots")
