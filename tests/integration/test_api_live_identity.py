"""Signed user identity on the real Redis (and Kafka for events): the shop's backend signs who a request
is for; forged, expired, unknown-key and other users' tokens are refused with a 401 that says why;
feedback counts only for the user and session a decision was made for; keys rotate in place (the
mounted Secret's files change under the running API); optional lets unsigned requests through and
required does not. Decision ids name their key, which rotates and can be revoked in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sample
from api_harness import Api, Live, live_factory, page_view
from prometheus_client import REGISTRY
from tailor_api import tokens

pytestmark = [pytest.mark.redis, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]
OLD, NEW = b"o" * 32, b"n" * 32
# Decision keys: the background refresh (every minute at this period) stays out of the test's way.
PERIOD = 3600


@pytest.fixture
def live(redis_url: str, kafka_bootstrap: str) -> Live:
    return live_factory(redis_url, kafka_bootstrap)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """The identity Secret as Kubernetes mounts it: one file per key."""
    (tmp_path / "old.hs256").write_bytes(OLD)
    return tmp_path


def signed(
    user: str = "alice", session: str = "s1", kid: str = "old", key: bytes = OLD, **claims: Any
) -> dict[str, str]:
    now = int(time.time())
    body = {"sub": user, "sid": session, "iat": now, "exp": now + 300, **claims}
    return {"authorization": "Bearer " + jwt.encode(body, key, algorithm="HS256", headers={"kid": kid})}


def identified(live: Live, keys: Path, mode: str) -> Any:
    return live(sample.shop(), identity_mode=mode, identity_keys_dir=str(keys), identity_reload_seconds=0.05)


async def decide(api: Api, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    return await api.client.get("/v1/decide", params={"slot": "hero", **params}, headers=headers)


async def feedback(api: Api, decision_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await api.client.post(
        "/v1/feedback", json={"decisionId": decision_id, "type": "click"}, headers=headers
    )


def problem(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith('Bearer realm="tailor"')
    return str(response.json()["type"]).rpartition("/")[2]


async def until(check: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


def refused_count(reason: str) -> float:
    return REGISTRY.get_sample_value("tailor_identity_refused_total", {"reason": reason}) or 0.0


async def test_required_refuses_unsigned_forged_expired_and_unknown_key_tokens(
    live: Live, keys: Path
) -> None:
    forged_before = refused_count("bad-signature")
    async with identified(live, keys, "required") as api:
        assert REGISTRY.get_sample_value("tailor_identity_keys") == 1
        assert problem(await decide(api, user="alice", session="s1")) == "identity-missing"
        assert problem(await decide(api, signed(key=b"x" * 32))) == "identity-bad-signature"
        assert problem(await decide(api, signed(exp=int(time.time()) - 120))) == "identity-expired"
        assert problem(await decide(api, signed(kid="nope"))) == "identity-unknown-kid"
        assert problem(await decide(api, {"authorization": "Bearer not.a.jwt"})) == "identity-invalid"
        good = await decide(api, signed())
        assert good.status_code == 200, good.text
    assert refused_count("bad-signature") == forged_before + 1  # counted for the operator's alerts


async def test_a_token_acts_only_for_its_own_user_and_session(live: Live, keys: Path) -> None:
    async with identified(live, keys, "required") as api:
        other = await decide(api, signed("mallory"), user="alice", session="s1")
        assert problem(other) == "identity-mismatch"
        assert "alice" in other.json()["detail"]
        assert (
            problem(await decide(api, signed("alice", "s1"), user="alice", session="s2"))
            == "identity-mismatch"
        )
        # Left out, user and session are the token's.
        await api.record_events("alice", page_view("alice", "shoes", 3), time.time())
        (decision,) = (await decide(api, signed("alice", "s1"))).json()["decisions"]
        assert decision["rule"] == "shoe-lovers"
        ref = api.app.runtime.signer.verify(decision["decisionId"])  # type: ignore[union-attr]
        assert (ref.user, ref.session, ref.verified) == ("alice", "s1", True)


async def test_feedback_counts_only_for_the_user_and_session_of_the_decision(live: Live, keys: Path) -> None:
    async with identified(live, keys, "required") as api:
        decision_id = (await decide(api, signed("alice", "s1"))).json()["decisions"][0]["decisionId"]
        assert problem(await feedback(api, decision_id)) == "identity-missing"
        assert problem(await feedback(api, decision_id, signed("mallory", "s1"))) == "identity-mismatch"
        assert problem(await feedback(api, decision_id, signed("alice", "other"))) == "identity-mismatch"
        accepted = await feedback(api, decision_id, signed("alice", "s1"))
        assert (accepted.status_code, accepted.json()) == (202, {"status": "accepted"})
        # A stack that turns identity off takes feedback on such decisions without a token again.
        dismissed = (await decide(api, signed("alice", "s1"))).json()["decisions"][0]["decisionId"]
        async with live(None, stack=api.stack) as off:
            assert (await feedback(off, dismissed)).status_code == 202


async def test_optional_lets_unsigned_requests_through_and_a_token_wins(live: Live, keys: Path) -> None:
    async with identified(live, keys, "optional") as api:
        unsigned = await decide(api, user="anon-1", session="s9")
        assert unsigned.status_code == 200
        anon_id = unsigned.json()["decisions"][0]["decisionId"]
        assert (await feedback(api, anon_id)).status_code == 202  # today's behaviour, unchanged
        # A token sent is checked all the same: a bad one is refused, not ignored.
        assert problem(await decide(api, signed(key=b"x" * 32), user="alice")) == "identity-bad-signature"
        assert problem(await decide(api, signed("alice"), user="bob")) == "identity-mismatch"
        vouched = (await decide(api, signed("alice", "s1"))).json()["decisions"][0]["decisionId"]
        # A decision made for a vouched-for user takes feedback only with their token.
        assert problem(await feedback(api, vouched)) == "identity-missing"
        assert (await feedback(api, vouched, signed("alice", "s1"))).status_code == 202


async def test_keys_rotate_in_place_and_a_removed_key_is_refused(live: Live, keys: Path) -> None:
    """Add the new key, switch the issuer, remove the old one: no restart, as a Secret update does."""
    async with identified(live, keys, "required") as api:
        old_token, new_token = signed(), signed(kid="new", key=NEW)
        assert (await decide(api, old_token)).status_code == 200
        assert problem(await decide(api, new_token)) == "identity-unknown-kid"
        (keys / "new.hs256").write_bytes(NEW)

        async def both_verify() -> bool:
            return (await decide(api, new_token)).status_code == 200

        await until(both_verify)
        assert (await decide(api, old_token)).status_code == 200
        (keys / "old.hs256").unlink()

        async def old_refused() -> bool:
            return (await decide(api, old_token)).status_code == 401

        await until(old_refused)
        assert problem(await decide(api, old_token)) == "identity-unknown-kid"
        assert (await decide(api, new_token)).status_code == 200
        assert (await api.admin.get("/readyz")).json()["checks"]["identity"] == {
            "ok": True, "detail": "keys: new", "required": False,
        }  # fmt: skip

        (keys / "new.hs256").write_bytes(b"short")  # a Secret edited wrong: no usable key is left

        async def reported() -> bool:
            return not (await api.admin.get("/readyz")).json()["checks"]["identity"]["ok"]

        await until(reported)
        readiness = await api.admin.get("/readyz")
        assert readiness.status_code == 200  # reported, not required: see ops.readyz
        detail = readiness.json()["checks"]["identity"]["detail"]
        assert detail.startswith("no usable key: every token is refused; new.hs256:"), detail


async def test_events_carry_the_tokens_user_and_refuse_another(live: Live, keys: Path) -> None:
    async with identified(live, keys, "required") as api:
        await until(lambda: _collecting(api), within=30)
        event = page_view("alice", "shoes", 1, session="s1")[0]
        assert problem(await api.client.post("/v1/events", json=event)) == "identity-missing"
        mallory = await api.client.post("/v1/events", json=event, headers=signed("mallory"))
        assert problem(mallory) == "identity-mismatch"
        assert "event 0" in mallory.json()["detail"]
        anonymous = {key: value for key, value in event.items() if key not in ("userId", "sessionId")}
        anonymous["anonymousId"] = "cookie-1"
        taken = await api.client.post("/v1/events", json=anonymous, headers=signed("alice"))
        assert taken.status_code == 202, taken.text


async def _collecting(api: Api) -> bool:
    return (await api.admin.get("/readyz/collector")).status_code == 200


async def test_decision_ids_name_a_rotating_key_and_deleting_it_revokes_them(live: Live) -> None:
    async with live(sample.shop(), decision_key_rotation_seconds=PERIOD) as api:
        runtime = api.app.runtime
        first = (await api.decide("u1")).json()["decisions"][0]["decisionId"]
        first_kid = runtime.signer.kid  # type: ignore[union-attr]
        # The next period: another key signs; the previous one still verifies feedback.
        runtime.signer = await runtime.decision_keys.refresh((int(first_kid) + 1) * PERIOD + 1)
        assert runtime.signer.kid == str(int(first_kid) + 1)
        second = (await api.decide("u2")).json()["decisions"][0]["decisionId"]
        assert (await feedback(api, first)).status_code == 202
        # Another replica, started after the rotation, fetches the older key from Redis when asked.
        async with live(None, stack=api.stack, decision_key_rotation_seconds=PERIOD) as other:
            later = other.app.runtime
            later.decision_keys = tokens.StackKeys(later.redis, api.stack, PERIOD, 7 * 86400)
            later.signer = await later.decision_keys.refresh((int(first_kid) + 1) * PERIOD + 1)
            assert first_kid not in later.decision_keys.keys
            duplicate = await feedback(other, first)
            assert (duplicate.status_code, duplicate.json()) == (202, {"status": "duplicate"})
        # Revoked: the key deleted in Redis; at its next refresh the replica no longer verifies its ids.
        assert await api.redis.delete(tokens.key_name(api.stack, first_kid)) == 1
        runtime.signer = await runtime.decision_keys.refresh((int(first_kid) + 1) * PERIOD + 1)
        revoked = await feedback(api, first)
        assert revoked.status_code == 403
        assert "unknown or expired" in revoked.json()["detail"]
        # Within its own period a deleted key is made anew: what it signed no longer verifies either.
        runtime.signer = await runtime.decision_keys.refresh(int(first_kid) * PERIOD + 1)
        assert runtime.signer.kid == first_kid
        assert (await feedback(api, first)).status_code == 403
        assert (await feedback(api, second)).status_code == 202
        ttl = await api.redis.ttl(tokens.key_name(api.stack, runtime.signer.kid))
        assert 0 < ttl <= 2 * PERIOD + 7 * 86400 + 60


async def test_the_openapi_document_shows_the_bearer_scheme_and_the_401s(live: Live, keys: Path) -> None:
    async with identified(live, keys, "required") as api:
        document = (await api.client.get("/openapi.json")).json()
        assert document["components"]["securitySchemes"]["identityToken"]["bearerFormat"] == "JWT"
        for path, method in (("/v1/decide", "get"), ("/v1/feedback", "post"), ("/v1/events", "post")):
            operation = document["paths"][path][method]
            assert {"identityToken": []} in operation["security"], path
            assert "identity-mismatch" in operation["responses"]["401"]["description"], path
