"""Decision ids: signed, verifiable, unique, and refused when altered or foreign."""

from __future__ import annotations

import pytest
from tailor_api import tokens, validation


def test_a_decision_id_round_trips_and_matches_the_published_pattern() -> None:
    signer = tokens.Signer(b"k" * 32)
    token = signer.issue(7, "hero", "rule", "variant", "user@example.com", "s1", 1_800_000_000.5)
    assert validation.decision_id(token) == token
    ref = signer.verify(token)
    assert (ref.version, ref.slot, ref.rule, ref.variant, ref.user, ref.session, ref.issued_at) == (
        7, "hero", "rule", "variant", "user@example.com", "s1", 1_800_000_000,
    )  # fmt: skip


def test_every_decision_gets_its_own_nonce() -> None:
    signer = tokens.Signer(b"k" * 32)
    nonces = {signer.verify(signer.issue(1, "s", None, None, "u", "", 0)).nonce for _ in range(1000)}
    assert len(nonces) == 1000


@pytest.mark.parametrize("mutate", [lambda t: "x" + t, lambda t: t[:-2] + "AA", lambda t: t.replace(".", "")])
def test_an_altered_decision_id_is_refused(mutate: object) -> None:
    signer = tokens.Signer(b"k" * 32)
    token = signer.issue(1, "hero", "r", "v", "u", "s", 0)
    with pytest.raises(tokens.InvalidToken):
        signer.verify(mutate(token))  # type: ignore[operator]


def test_a_decision_id_from_another_stack_is_refused() -> None:
    token = tokens.Signer(b"a" * 32).issue(1, "hero", "r", "v", "u", "s", 0)
    with pytest.raises(tokens.InvalidToken, match="signature"):
        tokens.Signer(b"b" * 32).verify(token)
