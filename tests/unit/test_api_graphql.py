"""The pure parts of /v1/graphql (tailor_api.graphql_endpoint): cost with variables, aliases and
fragments; depth through fragments; the introspection switch; the document cache; errors from bugs
kept out of replies. The route against the real server: tests/integration/test_api_live_graphql.py."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLError, get_introspection_query, parse
from tailor_api import graphql_endpoint as endpoint
from tailor_api.runtime import Runtime
from tailor_api.settings import ApiSettings


@pytest.fixture(scope="module")
def closed() -> endpoint.Endpoint:
    return endpoint.Endpoint()


@pytest.fixture(scope="module")
def open_schema() -> endpoint.Endpoint:
    return endpoint.Endpoint(introspection=True)


def cost(source: str, variables: dict[str, Any] | None = None, operation: str | None = None) -> int:
    return endpoint.cost(parse(source), operation, variables or {})


def test_cost_counts_every_slot_of_every_decide_through_aliases_fragments_and_variables() -> None:
    assert cost('{ decide(slots: ["a", "b"]) { slot } }') == 2
    assert cost('{ decide(slots: "a") { slot } }') == 1  # one value stands for a list of one
    assert cost("query($s: [String!]!) { decide(slots: $s) { slot } }", {"s": ["a"] * 17}) == 17
    assert cost('query($x: String!) { decide(slots: [$x, "b"]) { slot } }', {"x": "a"}) == 2
    aliased = '{ a: decide(slots: ["a", "b"]) { slot } b: decide(slots: ["c"]) { slot } }'
    assert cost(aliased) == 3
    spread = 'query { ...Two ... on Query { decide(slots: ["z"]) { slot } } } fragment Two on Query { ' \
        'x: decide(slots: ["a", "b"]) { slot } }'  # fmt: skip
    assert cost(spread) == 3
    mutations = 'mutation { a: feedback(decisionId: "d", type: "click") { status } b: events(events: []) ' \
        '{ accepted } c: feedback(decisionId: "e", type: "click") { status } }'  # fmt: skip
    assert cost(mutations) == 3
    two_operations = (
        'query A { decide(slots: ["a"]) { slot } } query B { decide(slots: ["a", "b", "c"]) { slot } }'
    )
    assert (cost(two_operations, operation="A"), cost(two_operations, operation="B")) == (1, 3)


def test_depth_is_counted_through_fragments_and_refused_past_the_limit(closed: endpoint.Endpoint) -> None:
    within = '{ decide(slots: ["a"]) { content { ...Image } } } fragment Image on ImageContent { src }'
    assert closed.checked(within).errors == []
    too_deep = ('{ decide(slots: ["a"]) { ...D } } fragment D on Decision { content { ... on JsonContent '
                "{ data { a { b { c } } } } } }")  # fmt: skip
    errors = closed.checked(too_deep).errors
    assert next(e.extensions for e in errors if e.extensions) == {"code": "too-deep", "limit": 5}
    doubling = " ".join(f"fragment F{n} on Decision {{ ...F{n + 1} ...F{n + 1} }}" for n in range(60))
    chain = '{ decide(slots: ["a"]) { ...F0 } } ' + doubling + " fragment F60 on Decision { slot }"
    assert closed.checked(chain).errors == []  # 2^60 spreads, each fragment's depth worked out once
    cyclic = (
        '{ decide(slots: ["a"]) { ...A } } fragment A on Decision { ...B } fragment B on Decision { ...A }'
    )
    assert any("cycle" in e.message.lower() or "itself" in e.message for e in closed.checked(cyclic).errors)


def test_introspection_is_answered_only_when_enabled(
    closed: endpoint.Endpoint, open_schema: endpoint.Endpoint
) -> None:
    standard = get_introspection_query()  # what gql and GraphiQL send
    assert open_schema.checked(standard).errors == []
    refused = [e.message for e in closed.checked(standard).errors]
    assert refused
    assert all("introspection" in message for message in refused)
    assert closed.checked('{ decide(slots: ["a"]) { __typename } }').errors == []


def test_documents_are_parsed_once_and_the_cache_is_bounded(
    closed: endpoint.Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = '{ decide(slots: ["a"]) { slot } }'
    assert closed.checked(source) is closed.checked(source)
    monkeypatch.setattr(endpoint, "DOCUMENTS_KEPT", 4)
    for n in range(10):
        closed.checked(f'{{ decide(slots: ["s{n}"]) {{ slot }} }}')
    assert len(closed.documents) == 4
    assert '{ decide(slots: ["s9"]) { slot } }' in closed.documents  # the newest stay
    too_long = "{ " + " ".join(f'd{n}: decide(slots: ["a"]) {{ slot }}' for n in range(300)) + " }"
    (error,) = closed.checked(too_long).errors
    assert "token" in error.message.lower()


def test_a_bugs_message_stays_in_the_log_and_a_refusals_reaches_the_client() -> None:
    bug = GraphQLError("oops", original_error=RuntimeError("redis://10.0.0.7:6379 refused"), path=["decide"])
    formatted = endpoint._format_error(bug)
    assert "10.0.0.7" not in str(formatted)
    assert formatted["extensions"]["status"] == 500
    assert formatted["path"] == ["decide"]
    reply = endpoint.web.problem(
        404, "unknown-slot", "Unknown slot", "no rule serves slot x", parameter="slot"
    )
    refusal = GraphQLError("x", original_error=endpoint.Problem(reply), path=["decide"])
    assert endpoint._format_error(refusal)["extensions"]["detail"] == "no rule serves slot x"


def test_events_on_a_decisions_only_replica_are_sent_to_the_collector() -> None:
    """GraphQL serves `--routes decide` too; its events mutation says where events go, as REST's does."""
    settings = ApiSettings(stack="shop/main", redis_url="redis://127.0.0.1:1/0", api_routes="decide")
    refused = Runtime(settings).events_gate({"headers": []})
    assert isinstance(refused, endpoint.web.Reply)
    assert refused.status == 503
    assert b"served-elsewhere" in refused.body
    assert b"main-collector" in refused.body
