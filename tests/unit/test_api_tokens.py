"""Decision ids: signed, verifiable, unique, refused when altered or foreign, and verified with the key
their kid names (rotation), the first format's ids with the one key it had."""

from __future__ import annotations

import base64
import hmac

import orjson
import pytest
from tailor_api import tokens, validation


def signer(key: bytes = b"k" * 32, kid: str = "1") -> tokens.Signer:
    return tokens.Signer({kid: key}, kid)


def test_a_decision_id_round_trips_and_matches_the_published_pattern() -> None:
    token = signer().issue(7, "hero", "rule", "variant", "user@example.com", "s1", 1_800_000_000.5, True)
    assert validation.decision_id(token) == token
    ref = signer().verify(token)
    fields = (
        ref.version,
        ref.slot,
        ref.rule,
        ref.variant,
        ref.user,
        ref.session,
        ref.issued_at,
        ref.verified,
    )
    assert fields == (7, "hero", "rule", "variant", "user@example.com", "s1", 1_800_000_000, True)


def test_a_contextual_bandit_decision_carries_its_segment_and_others_none() -> None:
    issued = signer().issue(7, "hero", "rule", "a", "u1", "s1", 1_800_000_000.0, False, "(none)")
    assert validation.decision_id(issued) == issued
    assert signer().verify(issued).segment == "(none)"
    assert (
        signer().verify(signer().issue(7, "hero", "rule", "a", "u1", "s1", 1_800_000_000.0)).segment is None
    )


def test_every_decision_gets_its_own_nonce() -> None:
    issuer = signer()
    nonces = {issuer.verify(issuer.issue(1, "s", None, None, "u", "", 0)).nonce for _ in range(1000)}
    assert len(nonces) == 1000


@pytest.mark.parametrize("mutate", [lambda t: "x" + t, lambda t: t[:-2] + "AA", lambda t: t.replace(".", "")])
def test_an_altered_decision_id_is_refused(mutate: object) -> None:
    token = signer().issue(1, "hero", "r", "v", "u", "s", 0)
    with pytest.raises(tokens.InvalidToken):
        signer().verify(mutate(token))  # type: ignore[operator]


def test_a_decision_id_from_another_stack_is_refused() -> None:
    token = signer(b"a" * 32).issue(1, "hero", "r", "v", "u", "s", 0)
    with pytest.raises(tokens.InvalidToken, match="signature"):
        signer(b"b" * 32).verify(token)


def test_ids_name_their_key_and_verify_after_rotation_until_the_key_is_dropped() -> None:
    old = signer(b"o" * 32, "10")
    token = old.issue(1, "hero", "r", "v", "u", "s", 0)
    rotated = tokens.Signer({"10": b"o" * 32, "11": b"n" * 32}, "11")
    assert rotated.kid == "11"
    assert rotated.verify(token).user == "u"
    with pytest.raises(tokens.UnknownKey) as unknown:
        signer(b"n" * 32, "11").verify(token)
    assert unknown.value.kid == "10"
    assert signer(b"n" * 32, "11").with_key("10", b"o" * 32).verify(token).user == "u"


def test_a_first_format_id_verifies_with_the_legacy_key_only() -> None:
    legacy = b"L" * 32
    payload = base64.urlsafe_b64encode(orjson.dumps([1, 3, "hero", "r", "v", "u", "s", 5, "n1"])).rstrip(b"=")
    mac = base64.urlsafe_b64encode(hmac.digest(legacy, payload, "sha256")[:16]).rstrip(b"=")
    token = (payload + b"." + mac).decode()
    ref = tokens.Signer({"1": b"k" * 32}, "1", legacy).verify(token)
    assert (ref.user, ref.nonce, ref.verified) == ("u", "n1", False)
    with pytest.raises(tokens.InvalidToken, match="first format"):
        signer().verify(token)
