"""The decide plan (tailor_api.graphql_plan) against graphql-core's execute, the oracle: for each
document and its variables, the plan passes the resolver the same arguments and answers the same
`data`, byte for byte (key order included), over decisions of every content kind; what it does not
plan, or will not serve as it stands, it leaves to graphql-core. The route against the real server:
tests/integration/test_api_live_graphql.py."""

from __future__ import annotations

import asyncio
from inspect import isawaitable
from typing import Any

import orjson
import pytest
from graphql import GraphQLResolveInfo, execute
from tailor_api import graphql_endpoint as endpoint
from tailor_api import graphql_plan

HTML = orjson.Fragment(orjson.dumps({"type": "html", "body": "<p>Hi</p>"}))
TEXT = orjson.Fragment(orjson.dumps({"type": "text", "body": "Free returns"}))
JSON = orjson.Fragment(orjson.dumps({"type": "json", "data": {"percent": 10, "tags": ["a", None]}}))
IMAGE = orjson.Fragment(
    orjson.dumps({"type": "image", "data": {"src": "https://cdn.example/b.png", "alt": "Sale", "w": 3}})
)
IMAGE_LINKED = orjson.Fragment(
    orjson.dumps({"type": "image", "data": {"src": "/a.png", "alt": 7, "href": "https://shop.example/"}})
)


def decision(slot: str, content: orjson.Fragment | None, rule: str | None = "r1") -> dict[str, Any]:
    """One decision as decide_endpoint.listed gives it."""
    variant = f"{slot}-v" if rule else None
    return {"slot": slot, "variant": variant, "rule": rule, "content": content,
            "decisionId": f"id-{slot}", "rulesetVersion": 42}  # fmt: skip


DECISIONS = [
    decision("hero", HTML),
    decision("note", TEXT, rule=None),  # a fallback
    decision("offer", JSON),
    decision("banner", IMAGE),
    decision("promo", IMAGE_LINKED),
    decision("empty", None, rule=None),
]
EVERY_FIELD = """slot variant rule decisionId rulesetVersion
  content { type ... on HtmlContent { body } ... on TextContent { body } ... on JsonContent { data }
            ... on ImageContent { src alt href data } }"""
# (document, variables, operation name): each planned, and answered as graphql-core answers it
PLANNED = [
    ('{ decide(slots: ["hero"], user: "u1", session: "s1") { slot } }', {}, None),
    (
        "query($s: [String!]!, $u: String, $x: String) { decide(slots: $s, user: $u, session: $x) { "
        + EVERY_FIELD
        + " } }",
        {"s": ["hero", "note"], "u": "u1", "x": "s1"},
        None,
    ),
    (
        "query($s: [String!]!, $u: String) { decide(slots: $s, user: $u) { " + EVERY_FIELD + " } }",
        {"s": ["hero"], "u": None},
        None,
    ),
    (
        "query($s: [String!]!, $u: String) { decide(slots: $s, user: $u, session: null) { slot } }",
        {"s": ["hero"]},
        None,
    ),  # $u absent: the argument is left out
    (
        'query($a: String!) { decide(slots: [$a, "note"], user: "u") { rule } }',
        {"a": "hero", "extra": 1},
        None,
    ),
    ('{ decide(slots: "hero") { slot } }', {}, None),  # one string: a list of one
    (
        '{ picks: decide(slots: ["hero"]) { id: decisionId s: slot slot again: slot __typename '
        "content { __typename kind: type ... on HtmlContent { html: body } } } }",
        {},
        None,
    ),
    (
        '{ decide(slots: ["a"]) { ...D content { ...Body } } } fragment D on Decision { slot rule ...V } '
        "fragment V on Decision { variant slot } fragment Body on Content { type ... on HtmlContent { body } "
        "...Image } fragment Image on ImageContent { alt src }",
        {},
        None,
    ),
    (
        '{ decide(slots: ["a"]) { ... on Decision { rulesetVersion } ... { slot } content { type } '
        "content { ... on Content { __typename } ... on JsonContent { data } } } }",
        {},
        None,
    ),
    (
        '{ decide(slots: ["a"]) { a: content { type } b: content { ... on ImageContent { href } } } }',
        {},
        None,
    ),
    (
        'query A { decide(slots: ["a"]) { slot } } query B { decide(slots: ["b"]) { rule content { type } } }'
        ' mutation C { feedback(decisionId: "x", type: "click") { status } }',
        {},
        "B",
    ),
]
UNPLANNED = [
    ('mutation { feedback(decisionId: "d", type: "click") { status } }', None),
    ('{ a: decide(slots: ["a"]) { slot } b: decide(slots: ["b"]) { slot } }', None),  # two decide fields
    ('{ decide(slots: ["a"]) { slot } decide(slots: ["a"]) { rule } }', None),  # merged by graphql-core
    ('{ __typename decide(slots: ["a"]) { slot } }', None),
    ('{ ... on Query { decide(slots: ["a"]) { slot } } }', None),
    ('query($i: Boolean!) { decide(slots: ["a"]) { slot @include(if: $i) } }', None),
    ('{ decide(slots: ["a"]) { ... @skip(if: true) { slot } rule } }', None),
    ('query($u: String = "u1") { decide(slots: ["a"], user: $u) { slot } }', None),  # a default
    ('query($n: Int) { decide(slots: ["a"]) { slot } }', None),  # a variable of another type
    ('query A { decide(slots: ["a"]) { slot } } query B { decide(slots: ["a"]) { slot } }', None),
    ('query A { decide(slots: ["a"]) { slot } }', "B"),
]


@pytest.fixture(scope="module")
def oracle() -> tuple[endpoint.Endpoint, list[tuple[Any, ...]]]:
    """An Endpoint whose decide resolver records its arguments and answers DECISIONS."""
    served = endpoint.Endpoint()
    calls: list[tuple[Any, ...]] = []

    def recorded(
        _: None,
        info: GraphQLResolveInfo[None],
        slots: list[str],
        user: str | None = None,
        session: str | None = None,
    ) -> list[dict[str, Any]]:
        calls.append((slots, user, session))
        return DECISIONS

    query_type = served.schema.query_type
    assert query_type is not None
    query_type.fields["decide"].resolve = recorded
    return served, calls


def graphql_core(
    oracle: tuple[endpoint.Endpoint, list[tuple[Any, ...]]], source: str, variables: dict[str, Any],
    operation: str | None,
) -> tuple[Any, bytes]:  # fmt: skip
    """(the resolver's arguments, the reply) as graphql-core executes the document."""
    served, calls = oracle
    calls.clear()
    checked = served.checked(source)
    assert checked.document is not None
    assert not checked.errors, checked.errors
    result = execute(served.schema, checked.document, variable_values=variables, operation_name=operation)
    assert not isinstance(result, type(None))
    reply: dict[str, Any] = {"data": result.data}  # type: ignore[union-attr]
    if result.errors:  # type: ignore[union-attr]
        reply["errors"] = [error.formatted for error in result.errors]  # type: ignore[union-attr]
    return (calls[0] if calls else None), orjson.dumps(reply)


@pytest.mark.parametrize(("source", "variables", "operation"), PLANNED)
def test_a_planned_document_gets_graphql_cores_arguments_and_answer(
    oracle: tuple[endpoint.Endpoint, list[tuple[Any, ...]]], source: str, variables: dict[str, Any],
    operation: str | None,
) -> None:  # fmt: skip
    arguments, expected = graphql_core(oracle, source, variables, operation)
    plan = oracle[0].checked(source).plan(operation)
    assert plan is not None
    assert plan.arguments(variables) == arguments
    document = oracle[0].checked(source).document
    assert document is not None
    assert endpoint._field_cost(plan.node, variables) == endpoint.cost(document, operation, variables)
    assert orjson.dumps({"data": plan.project(DECISIONS, graphql_plan.Contents())}) == expected
    assert b'"errors"' not in expected  # the control: the oracle answered every field


@pytest.mark.parametrize(("source", "operation"), UNPLANNED)
def test_what_the_plan_cannot_match_exactly_is_left_to_graphql_core(
    oracle: tuple[endpoint.Endpoint, list[tuple[Any, ...]]], source: str, operation: str | None
) -> None:
    assert oracle[0].checked(source).plan(operation) is None


def test_variables_that_coercion_would_change_or_refuse_are_left_to_graphql_core(
    oracle: tuple[endpoint.Endpoint, list[tuple[Any, ...]]],
) -> None:
    declared = "query($s: [String!]!, $u: String, $id: String!)"
    source = declared + " { decide(slots: $s, user: $u, session: $id) { slot } }"
    plan = oracle[0].checked(source).plan(None)
    assert plan is not None
    assert plan.arguments({"s": ["a"], "id": "x"}) == (["a"], None, "x")  # the control
    for variables in (
        {"s": "a", "id": "x"},  # coerced to a list of one
        {"s": ["a", 1], "id": "x"},
        {"s": ["a"], "u": 5, "id": "x"},
        {"s": ["a"]},  # $id is required
        {"s": ["a"], "id": None},
        {"s": None, "id": "x"},
    ):
        assert plan.arguments(variables) is None, variables


def test_values_the_schema_would_not_serve_go_to_graphql_core_with_the_decisions_already_made(
    oracle: tuple[endpoint.Endpoint, list[tuple[Any, ...]]],
) -> None:
    """An image without `src` (String!), an unknown kind: no projection; graphql-core, given the
    decisions (the route's Context.settled), answers with its errors, not with another decision."""
    source = '{ decide(slots: ["a"]) { slot content { type ... on ImageContent { src } } } }'
    plan = oracle[0].checked(source).plan(None)
    assert plan is not None
    assert plan.project(DECISIONS, graphql_plan.Contents()) is not None  # the control
    no_src = orjson.Fragment(orjson.dumps({"type": "image", "data": {"alt": "x"}}))
    video = orjson.Fragment(orjson.dumps({"type": "video", "data": {}}))
    for content in (no_src, video):
        bad = [decision("hero", HTML), decision("x", content)]
        assert plan.project(bad, graphql_plan.Contents()) is None
        served = endpoint.Endpoint()
        checked = served.checked(source)
        assert checked.document is not None
        settled = endpoint.Context(runtime=None, scope={}, settled=bad)  # type: ignore[arg-type]
        result = asyncio.run(_awaited(execute(served.schema, checked.document, context_value=settled)))
        (error,) = result.errors
        assert error.path == (
            ["decide", 1, "content", "src"] if content is no_src else ["decide", 1, "content"]
        )
        served_first = {"slot": "hero", "content": {"type": "html"}}
        assert result.data == {"decide": [served_first, {"slot": "x", "content": None}]}


async def _awaited(result: Any) -> Any:
    return await result if isawaitable(result) else result


def test_contents_are_parsed_once_per_variant_and_shared() -> None:
    contents = graphql_plan.Contents()
    assert contents.parsed(HTML) is contents.parsed(HTML)
    assert contents.parsed(TEXT) == {"type": "text", "body": "Free returns"}
