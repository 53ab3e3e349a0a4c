"""GraphQL on the real `tailor api` process (granian), Redis and Kafka, through a real GraphQL client
(gql): decide with content typed by kind, feedback, events acknowledged by Kafka, and REST's own
validation, identity, rate limits and errors; GraphQL's depth, cost and introspection limits.

One server for the module, identity optional (a bad token is refused, no token passes), a per-user
limit of USER_LIMIT decisions a minute (every test uses users of its own)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import sample
from api_process import Served, serve
from confluent_kafka import Consumer, TopicPartition
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport

from tailor.core.rules import ruleset

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.timeout(180)]  # fmt: skip
KEY = b"k" * 32
USER_LIMIT = 6

DECIDE = gql(
    """
    query Decide($slots: [String!]!, $user: String, $session: String) {
      decide(slots: $slots, user: $user, session: $session) {
        slot variant rule decisionId rulesetVersion
        content {
          type
          ... on HtmlContent { body }
          ... on TextContent { body }
          ... on JsonContent { data }
          ... on ImageContent { src alt href }
        }
      }
    }
    """
)
FEEDBACK = gql(
    "mutation Feedback($id: String!, $type: String!) { feedback(decisionId: $id, type: $type) { status } }"
)
EVENTS = gql(
    "mutation Events($events: [JSON!]!) { events(events: $events) { accepted rejected notCounted } }"
)


def kinds(stack: str) -> ruleset.Ruleset:
    """sample.shop's hero (html), and a fallback of each other kind in slots of their own."""
    shop = sample.shop(stack)
    limits = ruleset.RateLimits(per_user=ruleset.RateLimit(requests=USER_LIMIT, seconds=60))
    config = shop.config.model_copy(update={"api": ruleset.ApiConfig(rate_limits=limits)})
    others = [
        ruleset.Variant(name="note", slot="note", content_type="text", body="Free returns", fallback=True),
        ruleset.Variant(name="offer", slot="offer", content_type="json", data={"percent": 10}, fallback=True),
        ruleset.Variant(name="banner", slot="banner", content_type="image", fallback=True,
                        data={"src": "https://cdn.example/b.png", "alt": "Sale"}),
    ]  # fmt: skip
    return sample.build([*shop.variants.values(), *others], shop.rules, stack=stack, config=config)


@pytest.fixture(scope="module")
def server(
    redis_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    keys = tmp_path_factory.mktemp("identity-keys")
    (keys / "shop.hs256").write_bytes(KEY)
    log = tmp_path_factory.mktemp("graphql") / "api.log"
    with serve(redis_url, kafka_bootstrap, log, rules=kinds, TAILOR_IDENTITY_MODE="optional",
               TAILOR_IDENTITY_KEYS_DIR=str(keys)) as served:  # fmt: skip
        yield served


def token(user: str, session: str = "s1", key: bytes = KEY) -> str:
    now = int(time.time())
    claims = {"sub": user, "sid": session, "iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "shop"})


def ask(document: GraphQLRequest, variables: dict[str, Any]) -> GraphQLRequest:
    return GraphQLRequest(document, variable_values=variables)


def user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


class GraphQL:
    """A gql session on /v1/graphql; `headers` are sent with every request."""

    def __init__(self, served: Served, headers: dict[str, str] | None = None) -> None:
        self.transport = HTTPXAsyncTransport(url=f"{served.url}/v1/graphql", headers=headers, timeout=10)
        self.client = Client(transport=self.transport, fetch_schema_from_transport=False)

    async def __aenter__(self) -> Any:
        return await self.client.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)


@pytest.fixture
async def session(server: Served) -> AsyncIterator[Any]:
    async with GraphQL(server) as opened:
        yield opened


async def refused(client: Any, document: Any, **variables: Any) -> list[dict[str, Any]]:
    """The errors of a request that gets no data."""
    with pytest.raises(TransportQueryError) as caught:
        await client.execute(ask(document, variables))
    assert caught.value.errors
    return caught.value.errors


async def test_decide_serves_every_slot_with_its_content_typed_by_kind_as_rest_does(
    server: Served, session: Any
) -> None:
    who = user()
    result = await session.execute(
        ask(DECIDE, {"slots": ["hero", "note", "offer", "banner"], "user": who, "session": "s1"})
    )
    by_slot = {d["slot"]: d for d in result["decide"]}
    assert by_slot["hero"]["content"] == {"type": "html", "body": "<p>hero-default</p>"}
    assert by_slot["note"]["content"] == {"type": "text", "body": "Free returns"}
    assert by_slot["offer"]["content"] == {"type": "json", "data": {"percent": 10}}
    banner = {"type": "image", "src": "https://cdn.example/b.png", "alt": "Sale", "href": None}
    assert by_slot["banner"]["content"] == banner
    async with httpx.AsyncClient(base_url=server.url) as rest:
        slots = ["hero", "note", "offer", "banner"]
        answer = await rest.get("/v1/decide", params={"slot": slots, "user": who, "session": "s1"})
    for made in answer.json()["decisions"]:
        mine = by_slot[made["slot"]]
        assert (mine["variant"], mine["rule"], mine["rulesetVersion"]) == (
            made["variant"], made["rule"], made["rulesetVersion"])  # fmt: skip


async def test_the_decide_plan_answers_as_graphql_cores_own_execution(server: Served) -> None:
    """The DECIDE document is served by its plan (tailor_api.graphql_plan); the same document with an
    @include, which no plan serves, by graphql-core's execute: the same JSON, decisionIds aside."""
    source = DECIDE.document.loc.source.body  # type: ignore[union-attr]
    executed = source.replace("slot variant", "slot @include(if: true) variant")
    who = user()
    variables = {"slots": ["hero", "note", "offer", "banner"], "user": who, "session": "s1"}
    answers = []
    async with httpx.AsyncClient(base_url=server.url) as client:
        for document in (source, executed):
            reply = await client.post("/v1/graphql", json={"query": document, "variables": variables})
            answers.append(
                reply.json(object_hook=lambda o: {k: v for k, v in o.items() if k != "decisionId"})
            )
    assert answers[0] == answers[1]
    assert list(answers[0]["data"]["decide"][0]) == ["slot", "variant", "rule", "rulesetVersion", "content"]


async def test_feedback_counts_once_and_refuses_what_rest_refuses(server: Served, session: Any) -> None:
    made = await session.execute(ask(DECIDE, {"slots": ["hero"], "user": user()}))
    decision_id = made["decide"][0]["decisionId"]
    first = await session.execute(ask(FEEDBACK, {"id": decision_id, "type": "click"}))
    again = await session.execute(ask(FEEDBACK, {"id": decision_id, "type": "click"}))
    assert (first["feedback"]["status"], again["feedback"]["status"]) == ("accepted", "duplicate")

    altered = decision_id[:-2] + ("AA" if not decision_id.endswith("AA") else "BB")
    (error,) = await refused(session, FEEDBACK, id=altered, type="click")
    assert error["extensions"]["status"] == 403
    assert error["extensions"]["type"].endswith("/decision-not-verified")
    assert error["path"] == ["feedback"]
    (error,) = await refused(session, FEEDBACK, id=decision_id, type="like")
    async with httpx.AsyncClient(base_url=server.url) as rest:
        same = await rest.post("/v1/feedback", json={"decisionId": decision_id, "type": "like"})
    assert error["extensions"] == same.json()  # REST's very problem, status 400, parameter "type"
    assert error["message"] == same.json()["detail"]


async def test_events_are_acknowledged_by_kafka_and_invalid_ones_named(
    server: Served, session: Any, kafka_bootstrap: str
) -> None:
    who, ids = user(), [uuid.uuid4().hex, uuid.uuid4().hex]
    topic = "tailor.events"  # sample.stack_config's
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions
        ]
        shoes = {"category": "shoes"}
        batch = [
            {"id": ids[0], "type": "page_view", "userId": who, "properties": shoes},
            {"id": "x", "type": "hover", "userId": who},  # no such type
            {"id": ids[1], "type": "page_view", "userId": who, "properties": shoes},
        ]
        result = (await session.execute(ask(EVENTS, {"events": batch})))["events"]
        assert result["accepted"] == 2
        assert [r["index"] for r in result["rejected"]] == [1]
        assert result["notCounted"] == []
        # Acknowledged means on the topic, now: read from where the partitions ended before the post.
        consumer.assign(ends)
        found: set[str] = set()
        deadline = time.monotonic() + 15
        while found != set(ids) and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                header = dict(message.headers() or []).get("ce_id")
                if message.error() is None and header is not None and header.decode() in ids:
                    found.add(header.decode())
        assert found == set(ids)
    finally:
        consumer.close()
    (error,) = await refused(session, EVENTS, events=[{"type": "click"}])
    assert (error["extensions"]["status"], error["extensions"]["type"].rsplit("/", 1)[1]) == (
        400,
        "invalid-events",
    )


async def test_validation_errors_are_rests_problems(server: Served, session: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url) as rest:
        for slots, who, session_id in [
            (["hero"], "bad user!", "s1"),  # invalid user
            (["hero"], user(), "{s}"),  # invalid session
            (["nowhere"], user(), "s1"),  # unknown slot: 404
            (["hero", "bad slot"], user(), "s1"),  # invalid slot
            ([], user(), "s1"),  # no slot
        ]:
            (error,) = await refused(session, DECIDE, **{"slots": slots, "user": who, "session": session_id})
            same = await rest.get("/v1/decide", params={"slot": slots, "user": who, "session": session_id})
            assert error["extensions"] == same.json(), slots
            assert error["extensions"]["status"] == same.status_code in (400, 404)


async def test_identity_is_the_authorization_token_as_on_rest(server: Served) -> None:
    alice = user()
    async with GraphQL(server, {"Authorization": f"Bearer {token(alice)}"}) as signed:
        result = await signed.execute(ask(DECIDE, {"slots": ["hero"]}))  # user from the token
        (error,) = await refused(signed, DECIDE, slots=["hero"], user=user())
        assert error["extensions"]["type"].endswith("/identity-mismatch")
    forged = GraphQL(server, {"Authorization": f"Bearer {token(alice, key=b'f' * 32)}"})
    async with forged as session:
        (error,) = await refused(session, DECIDE, slots=["hero"], user=alice)
        challenge = forged.transport.response_headers.get("www-authenticate")
    assert (error["extensions"]["status"], error["extensions"]["type"].rsplit("/", 1)[1]) == (
        401, "identity-bad-signature")  # fmt: skip
    assert challenge is not None
    assert "invalid_token" in challenge
    assert result["decide"][0]["decisionId"]


async def test_one_users_limit_counts_rest_and_graphql_together(server: Served) -> None:
    who = user()
    async with httpx.AsyncClient(base_url=server.url) as rest:
        for _ in range(USER_LIMIT // 2):
            assert (await rest.get("/v1/decide", params={"slot": "hero", "user": who})).status_code == 200
    graphql = GraphQL(server)
    async with graphql as session:
        for _ in range(USER_LIMIT - USER_LIMIT // 2):
            await session.execute(ask(DECIDE, {"slots": ["hero"], "user": who}))
        (error,) = await refused(session, DECIDE, slots=["hero"], user=who)
        retry_after = graphql.transport.response_headers.get("retry-after")
        await session.execute(ask(DECIDE, {"slots": ["hero"], "user": user()}))  # others go on
    assert (error["extensions"]["status"], error["extensions"]["scope"]) == (429, "user")
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 61


async def test_too_deep_or_too_costly_queries_are_refused_before_they_run(server: Served) -> None:
    deep = '{ decide(slots: ["banner"]) { content { ... on ImageContent { data { a { b { c } } } } } } }'
    aliased = " ".join(
        f'd{i}: decide(slots: ["hero", "note"], user: "{user()}") {{ slot }}' for i in range(9)
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        answers = [
            await client.post("/v1/graphql", json={"query": query, "variables": variables})
            for query, variables in [
                (deep, {}),
                ('query($s: [String!]!) { decide(slots: $s, user: "u1") { slot } }', {"s": ["hero"] * 17}),
                ("{ " + aliased + " }", {}),
                ('{ a: decide(slots: ["hero"], user: "u1") { slot } }', {}),  # the control: within limits
            ]
        ]
    codes = [[e.get("extensions", {}).get("code") for e in a.json().get("errors", [])] for a in answers]
    assert [a.status_code for a in answers] == [200] * 4  # GraphQL over HTTP: errors in a 200
    assert [a.json().get("data") for a in answers[:3]] == [None] * 3  # nothing ran
    assert "too-deep" in codes[0]
    assert codes[1] == codes[2] == ["too-costly"]
    assert "at most 16" in answers[1].json()["errors"][0]["message"]
    assert answers[3].json()["data"]["a"][0]["slot"] == "hero"


async def test_introspection_is_off_by_default(server: Served, session: Any) -> None:
    errors = await refused(session, gql("{ __schema { queryType { name } } }"))
    assert any("introspection" in e["message"].lower() for e in errors)
    with pytest.raises(TransportQueryError):
        await session.execute(gql('{ __type(name: "Decision") { name } }'))
    typed = await session.execute(gql('{ decide(slots: ["note"], user: "u2") { __typename } }'))
    assert typed["decide"] == [{"__typename": "Decision"}]  # __typename is not introspection


async def test_only_json_posts_are_taken(server: Served) -> None:
    """A form or text/plain POST crosses origins without a preflight: refused, so another site cannot
    send feedback with a shopper's browser."""
    query = '{"query": "{ decide(slots: [\\"hero\\"], user: \\"u3\\") { slot } }"}'
    async with httpx.AsyncClient(base_url=server.url) as client:
        plain = await client.post("/v1/graphql", content=query, headers={"content-type": "text/plain"})
        got = await client.get("/v1/graphql")
        fine = await client.post("/v1/graphql", content=query, headers={"content-type": "application/json"})
    assert (plain.status_code, got.status_code, fine.status_code) == (415, 405, 200)
