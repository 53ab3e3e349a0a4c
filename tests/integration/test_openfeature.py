"""OFREP on the content API, through OpenFeature's own Python SDK and OFREP provider against the real
`tailor api` process: a slot is a flag whose value is the chosen variant, its content and decisionId in
the metadata; behaviour recorded the workers' way changes it; errors arrive as OpenFeature's error codes;
the bulk evaluation's ETag answers 304 until what the user sees changes. Identity and rate limits are
decide's own (in-process API on the real Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import api_process
import httpx
import jwt
import orjson
import pytest
import redis
import sample
from api_harness import Live, live_factory, page_view
from openfeature import api as openfeature
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tailor.core.events import Event, occurrence
from tailor.core.profile import store
from tailor.core.rules import ruleset

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.timeout(180)]
SHOE_VARIANTS = ("hero-shoes-a", "hero-shoes-b")


@pytest.fixture(scope="module")
def served(
    redis_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[api_process.Served]:
    log = tmp_path_factory.mktemp("ofrep") / "api.log"
    with api_process.serve(redis_url, kafka_bootstrap, log) as served:
        yield served


@pytest.fixture(scope="module")
def client(served: api_process.Served) -> Iterator[OpenFeatureClient]:
    openfeature.set_provider(OFREPProvider(served.url, timeout=5), domain="tailor")
    yield openfeature.get_client("tailor")
    openfeature.shutdown()


def behave(redis_url: str, stack: str, user: str, events: list[dict[str, Any]]) -> None:
    """Write events into the user's profile exactly as a worker does (the profile store's write)."""
    config = sample.shop(stack).config
    now = time.time()
    occurrences = [
        occurrence.from_event(Event.model_validate(e), now, config.features.dimensions) for e in events
    ]
    with redis.Redis.from_url(redis_url) as connection:
        store.ProfileWriter(config).write(connection, {user: occurrences}, now)


def context(user: str, session: str = "s1", **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=user, attributes={"session": session, **attributes})


def test_a_slot_is_a_flag_whose_value_is_the_variant_shown_and_behaviour_changes_it(
    served: api_process.Served, client: OpenFeatureClient, redis_url: str
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    newcomer = client.get_string_details("hero", "code-default", context(user))
    assert newcomer.error_code is None, newcomer.error_message
    assert (newcomer.value, newcomer.variant, newcomer.reason) == (
        "hero-default",
        "hero-default",
        Reason.DEFAULT,
    )
    assert newcomer.error_code is None
    content = orjson.loads(newcomer.flag_metadata["content"])
    assert content == {"type": "html", "body": "<p>hero-default</p>"}
    feedback = {"decisionId": newcomer.flag_metadata["decisionId"], "type": "click"}
    assert httpx.post(f"{served.url}/v1/feedback", json=feedback).status_code == 202

    behave(redis_url, served.stack, user, page_view(user, "shoes", 2))
    lover = client.get_string_details("hero", "code-default", context(user))
    assert lover.reason == Reason.TARGETING_MATCH
    assert lover.value in SHOE_VARIANTS
    assert lover.variant == lover.value
    assert lover.flag_metadata["rule"] == "shoe-lovers"
    assert orjson.loads(lover.flag_metadata["content"])["body"] == f"<p>{lover.value}</p>"
    # One decision path: REST's decide for the same user and session serves what OFREP served (the
    # session remembers it), and OFREP again too.
    rest = httpx.get(f"{served.url}/v1/decide", params={"slot": "hero", "user": user, "session": "s1"})
    assert rest.json()["decisions"][0]["variant"] == lover.value
    assert client.get_string_value("hero", "code-default", context(user)) == lover.value


def test_errors_arrive_as_openfeature_error_codes_with_the_code_default(
    served: api_process.Served, client: OpenFeatureClient
) -> None:
    unknown = client.get_string_details("no-such-slot", "code-default", context("alice"))
    assert (unknown.value, unknown.error_code) == ("code-default", ErrorCode.FLAG_NOT_FOUND)
    assert "known slots: hero" in (unknown.error_message or "")
    anonymous = client.get_string_details("hero", "code-default", EvaluationContext(attributes={"a": 1}))
    assert (anonymous.value, anonymous.error_code) == ("code-default", ErrorCode.TARGETING_KEY_MISSING)
    braces = client.get_string_details("hero", "code-default", context("{alice}"))
    assert (braces.value, braces.error_code) == ("code-default", ErrorCode.INVALID_CONTEXT)
    assert "targetingKey" in (braces.error_message or "")
    session = client.get_string_details("hero", "code-default", context("alice", session="a b"))
    assert session.error_code == ErrorCode.INVALID_CONTEXT
    typed = client.get_boolean_details("hero", False, context("alice"))
    assert (typed.value, typed.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    garbled = httpx.post(f"{served.url}/ofrep/v1/evaluate/flags/hero", content=b"{not json")
    assert garbled.status_code == 400
    assert garbled.json()["errorCode"] == "PARSE_ERROR"


def test_bulk_evaluation_answers_304_until_what_the_user_sees_changes(
    served: api_process.Served, redis_url: str
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    url = f"{served.url}/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": user, "session": "s1"}}
    first = httpx.post(url, json=body)
    assert first.status_code == 200
    (hero,) = first.json()["flags"]
    assert (hero["key"], hero["value"], hero["reason"]) == ("hero", "hero-default", "DEFAULT")
    tag = first.headers["etag"]
    again = httpx.post(url, json=body, headers={"if-none-match": tag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag)
    # Control: a tag of another evaluation does not match.
    assert httpx.post(url, json=body, headers={"if-none-match": '"other"'}).status_code == 200

    behave(redis_url, served.stack, user, page_view(user, "shoes", 2))
    changed = httpx.post(url, json=body, headers={"if-none-match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag
    assert changed.json()["flags"][0]["reason"] == "TARGETING_MATCH"
    # A page may name its slots; an unknown one is reported beside the others, not as a failure.
    named = httpx.post(url, json={"context": {"targetingKey": user, "slots": ["hero", "nope"]}}).json()
    assert [(f["key"], f.get("errorCode")) for f in named["flags"]] == [
        ("hero", None),
        ("nope", "FLAG_NOT_FOUND"),
    ]
    too_many = httpx.post(
        url, json={"context": {"targetingKey": user, "slots": [f"s{i}" for i in range(17)]}}
    )
    assert too_many.status_code == 400
    assert too_many.json()["errorCode"] == "INVALID_CONTEXT"


# --- identity and rate limits: decide's own, on the in-process API --------------------------------

KEY = b"k" * 32


@pytest.fixture
def live(redis_url: str, kafka_bootstrap: str) -> Live:
    return live_factory(redis_url, kafka_bootstrap)


def signed(user: str, session: str = "s1") -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user, "sid": session, "iat": now, "exp": now + 300}
    return {"authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="HS256", headers={"kid": "k"})}


@pytest.mark.asyncio(loop_scope="session")
async def test_identity_decides_for_the_tokens_user_and_refuses_another(live: Live, tmp_path: Path) -> None:
    (tmp_path / "k.hs256").write_bytes(KEY)
    async with live(sample.shop(), identity_mode="required", identity_keys_dir=str(tmp_path)) as api:
        path = "/ofrep/v1/evaluate/flags/hero"
        unsigned = await api.client.post(path, json={"context": {"targetingKey": "alice"}})
        assert unsigned.status_code == 401
        assert unsigned.json()["type"].endswith("identity-missing")
        other = await api.client.post(
            path, json={"context": {"targetingKey": "mallory"}}, headers=signed("alice")
        )
        assert other.status_code == 401
        assert other.json()["type"].endswith("identity-mismatch")
        # The token says who: the context may leave targetingKey out, and the decision is signed for alice.
        own = await api.client.post(path, json={"context": {}}, headers=signed("alice"))
        assert own.status_code == 200
        ref = api.app.runtime.signer.verify(own.json()["metadata"]["decisionId"])  # type: ignore[union-attr]
        assert (ref.user, ref.session, ref.verified) == ("alice", "s1", True)


@pytest.mark.asyncio(loop_scope="session")
async def test_evaluations_and_decides_share_one_rate_limit_per_user(live: Live) -> None:
    shop = sample.shop()
    limits = ruleset.RateLimits(per_user=ruleset.RateLimit(requests=3, seconds=3600))
    published = shop.model_copy(
        update={
            "config": shop.config.model_copy(
                update={"api": shop.config.api.model_copy(update={"rate_limits": limits})}
            )
        }
    )
    async with live(published) as api:
        body = {"context": {"targetingKey": "busy"}}
        assert (await api.decide("busy")).status_code == 200
        assert (await api.client.post("/ofrep/v1/evaluate/flags/hero", json=body)).status_code == 200
        assert (await api.client.post("/ofrep/v1/evaluate/flags", json=body)).status_code == 200
        over = await api.client.post("/ofrep/v1/evaluate/flags", json=body)
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) > 0
        assert over.json()["errorCode"] == "GENERAL"
        assert (await api.decide("busy")).status_code == 429
        # Control: another user has a budget of their own.
        other = await api.client.post(
            "/ofrep/v1/evaluate/flags/hero", json={"context": {"targetingKey": "calm"}}
        )
        assert other.status_code == 200


@pytest.mark.asyncio(loop_scope="session")
async def test_a_slot_with_nothing_to_show_leaves_the_value_to_the_code_default(live: Live) -> None:
    shoes = ruleset.Matcher(feature="views", dimension="category", value="shoes", window="30m", threshold=2)
    no_fallback = sample.build(
        [sample.html_variant("promo", "hero")],
        [ruleset.Rule(name="promo", slot="hero", audience=(shoes,), variants=("promo",))],
    )
    async with live(no_fallback) as api:
        response = await api.client.post(
            "/ofrep/v1/evaluate/flags/hero", json={"context": {"targetingKey": "new"}}
        )
        assert response.status_code == 200
        evaluation = response.json()
        assert (evaluation["key"], evaluation["reason"]) == ("hero", "DEFAULT")
        assert "value" not in evaluation  # OFREP's code default: the caller's own value
        assert "variant" not in evaluation
        assert set(evaluation["metadata"]) == {"decisionId", "rulesetVersion"}
