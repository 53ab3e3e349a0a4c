"""Identity tokens, verified offline: every reason a token is refused, with keys as the Secret holds them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from tailor_api import identity

SECRET = b"s" * 32
NOW = 1_900_000_000.0


def token(kid: str = "k1", key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    body = {"sub": "alice", "sid": "s1", "iat": int(NOW), "exp": int(NOW) + 600, **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def verifier(**keys: identity.Key) -> identity.Verifier:
    keys = keys or {"k1": identity.Key("k1", "HS256", SECRET)}
    return identity.Verifier(keys, max_lifetime_seconds=3600)


def refused(verify: identity.Verifier, raw: str, now: float = NOW) -> str:
    with pytest.raises(identity.IdentityError) as caught:
        verify.verify(raw, now)
    return caught.value.kind


def test_a_valid_token_says_who_and_which_session() -> None:
    who = verifier().verify(token(), NOW)
    assert (who.user, who.session, who.kid, who.expires_at) == ("alice", "s1", "k1", NOW + 600)


def test_a_forged_signature_is_refused() -> None:
    assert refused(verifier(), token(key=b"x" * 32)) == "bad-signature"


def test_an_expired_token_is_refused_even_once_cached() -> None:
    verify = verifier()
    assert refused(verify, token(exp=int(NOW) - 60)) == "expired"
    cached = token()
    verify.verify(cached, NOW)
    assert refused(verify, cached, NOW + 600 + identity.LEEWAY_SECONDS + 1) == "expired"


def test_an_unknown_or_absent_kid_is_refused() -> None:
    assert refused(verifier(), token(kid="k2")) == "unknown-kid"
    no_kid = jwt.encode({"sub": "a", "sid": "", "iat": int(NOW), "exp": int(NOW) + 60}, SECRET, "HS256")
    assert refused(verifier(), no_kid) == "unknown-kid"


def test_the_token_cannot_choose_the_algorithm() -> None:
    """A public key used as an HMAC secret (the classic confusion) is refused before any check."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verify = verifier(k1=identity.parse_key("k1.pem", pem))
    assert refused(verify, token(key=b"p" * 32)) == "invalid"  # HS256 against an ES256 key


@pytest.mark.parametrize(
    "claims",
    [{"sub": None}, {"sid": None}, {"exp": None}, {"iat": None}, {"sub": "has space"}, {"sub": "a\n"},
     {"sid": "{x}"}, {"exp": int(NOW) + 7200}],
)  # fmt: skip
def test_missing_or_malformed_claims_and_long_lives_are_refused(claims: dict[str, Any]) -> None:
    assert refused(verifier(), token(**claims)) == "invalid"


def test_garbage_is_not_a_token() -> None:
    assert refused(verifier(), "not-a-jwt") == "invalid"


@pytest.mark.parametrize("kind", ["es256", "eddsa"])
def test_public_keys_verify_es256_and_eddsa(kind: str) -> None:
    private: Any = (
        ec.generate_private_key(ec.SECP256R1()) if kind == "es256" else ed25519.Ed25519PrivateKey.generate()
    )
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = identity.parse_key("shop.pem", pem)
    assert key.algorithm == ("ES256" if kind == "es256" else "EdDSA")
    assert verifier(shop=key).verify(token("shop", private, key.algorithm), NOW).user == "alice"


def test_a_short_secret_or_an_unknown_file_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        identity.parse_key("k.hs256", b"short")
    with pytest.raises(ValueError, match="unknown key type"):
        identity.parse_key("k.txt", SECRET)


def test_the_key_directory_follows_its_files(tmp_path: Path) -> None:
    """Rotation as a shop does it: add the new key, switch, remove the old; the directory is read again."""
    keys = identity.KeyDirectory(str(tmp_path), ("HS256",), 3600)
    keys.reload()
    now = time.time()
    old = token("old", iat=int(now), exp=int(now) + 600)
    assert refused(keys.verifier, old, now) == "unknown-kid"
    (tmp_path / "old.hs256").write_bytes(SECRET)
    assert keys.reload()
    assert keys.verifier.verify(old, now).kid == "old"
    (tmp_path / "new.hs256").write_bytes(b"n" * 32)
    assert keys.reload()
    assert not keys.reload()
    new = jwt.encode({"sub": "a", "sid": "", "iat": int(now), "exp": int(now) + 60}, b"n" * 32, "HS256",
                     headers={"kid": "new"})  # fmt: skip
    assert keys.verifier.verify(new, now).kid == "new"
    (tmp_path / "old.hs256").unlink()
    assert keys.reload()
    assert refused(keys.verifier, old, now) == "unknown-kid"  # even though it verified (cached) before
    assert keys.verifier.verify(new, now).kid == "new"


def test_a_key_of_an_algorithm_not_allowed_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "k1.hs256").write_bytes(SECRET)
    keys = identity.KeyDirectory(str(tmp_path), ("ES256",), 3600)
    keys.reload()
    assert keys.verifier.keys == {}
    assert "not among the allowed" in keys.problems[0]
