"""Signed user identity: the shop's backend vouches for who a request is for (docs/identity.md).

The backend issues a short-lived JWT (RFC 7519) per signed-in user: `sub` the user id, `sid` the
session, `iat` and `exp`, a `kid` header naming the key. The browser sends it as
`Authorization: Bearer <token>` on decide, events and feedback; the API verifies it with the keys of
the Secret `spec.contentApi.identity.secretRef` mounted at TAILOR_IDENTITY_KEYS_DIR, one file per key,
named `<kid>.hs256` (a shared secret of at least 32 bytes) or `<kid>.pem` (an ES256 or EdDSA public
key). Several keys at once let a shop rotate: add the new one, switch the issuer, remove the old one.
Kubernetes updates a mounted Secret in place; `KeyDirectory.reload` notices and swaps the verifier.

`off` never looks at the header (today's behaviour, no cost); `optional` verifies a token when one is
sent and its user wins; `required` refuses a request without a valid token. Every refusal is a 401
whose problem type says what was wrong (missing, expired, bad-signature, unknown-kid, invalid,
mismatch). Verified tokens are cached until they expire: a page sends the same token on every call,
so the signature is checked once per token and replica, not once per request (docs/performance.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tailor_api import metrics, validation, web

log = logging.getLogger(__name__)

Mode = Literal["off", "optional", "required"]
Algorithm = Literal["HS256", "ES256", "EdDSA"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = ("HS256", "ES256", "EdDSA")
MIN_SECRET_BYTES: Final = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
LEEWAY_SECONDS: Final = 30  # clock skew between the shop's backend and the API
CACHE_SIZE: Final = 20_000  # verified tokens remembered per replica (~200 B each)
_REQUIRED_CLAIMS: Final = ["sub", "sid", "iat", "exp"]
_TITLES: Final = {
    "missing": "Identity token missing",
    "expired": "Identity token expired",
    "bad-signature": "Identity token signature invalid",
    "unknown-kid": "Identity token key unknown",
    "invalid": "Identity token invalid",
    "mismatch": "Identity does not match the request",
}


class IdentityError(Exception):
    """Why a request's identity is refused: `kind` is the problem type's suffix, the message the detail."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token vouches for."""

    user: str
    session: str
    expires_at: float
    kid: str


@dataclass(frozen=True, slots=True)
class Key:
    kid: str
    algorithm: Algorithm
    material: Any  # bytes for HS256, a cryptography public key otherwise


def parse_key(name: str, content: bytes) -> Key:
    """The key a file of the identity Secret holds, named `<kid>.hs256` or `<kid>.pem`; ValueError
    saying what is wrong otherwise."""
    kid, _, suffix = name.rpartition(".")
    if not kid:
        raise ValueError(f"{name}: name key files <kid>.hs256 or <kid>.pem")
    if suffix == "hs256":
        secret = content.strip()
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"{name}: an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, it has {len(secret)}"
            )
        return Key(kid, "HS256", secret)
    if suffix == "pem":
        public = serialization.load_pem_public_key(content)
        if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
            return Key(kid, "ES256", public)
        if isinstance(public, ed25519.Ed25519PublicKey):
            return Key(kid, "EdDSA", public)
        raise ValueError(f"{name}: a public key must be EC P-256 (ES256) or Ed25519 (EdDSA)")
    raise ValueError(f"{name}: unknown key type .{suffix}; name key files <kid>.hs256 or <kid>.pem")


class Verifier:
    """Verifies identity tokens against a fixed set of keys; pure, apart from its cache."""

    def __init__(self, keys: Mapping[str, Key], *, max_lifetime_seconds: float, cache_size: int = CACHE_SIZE):
        self.keys = dict(keys)
        self.max_lifetime_seconds = max_lifetime_seconds
        self._cache: dict[str, Identity] = {}
        self._cache_size = cache_size

    def verify(self, token: str, now: float) -> Identity:
        known = self._cache.get(token)
        if known is not None:
            if now > known.expires_at + LEEWAY_SECONDS:
                del self._cache[token]
                raise IdentityError(
                    "expired", "the identity token has expired: get a fresh one from the shop"
                )
            return known
        verified = self._verify(token, now)
        if not self._cache_size:
            return verified
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]  # the oldest entry: dicts keep insertion order
        self._cache[token] = verified
        return verified

    def _verify(self, token: str, now: float) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise IdentityError("invalid", f"the identity token is not a JWT: {error}") from error
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise IdentityError("unknown-kid", "the identity token has no `kid` header naming its key")
        key = self.keys.get(kid)
        if key is None:
            raise IdentityError(
                "unknown-kid",
                f"no key {kid[:64]!r} in the stack's identity Secret (removed, or not added yet)",
            )
        if header.get("alg") != key.algorithm:  # never let the token choose how it is checked
            raise IdentityError(
                "invalid", f"key {kid!r} is {key.algorithm}; the token says {header.get('alg')!r}"
            )
        try:
            # Times are checked below against `now`, as every other check here: one clock, testable.
            claims = jwt.decode(
                token,
                key.material,
                algorithms=[key.algorithm],
                options={"require": _REQUIRED_CLAIMS, "verify_aud": False, "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )  # fmt: skip
        except jwt.InvalidSignatureError as error:
            raise IdentityError(
                "bad-signature", f"the identity token's signature does not verify with key {kid!r}"
            ) from error
        except jwt.InvalidTokenError as error:
            raise IdentityError("invalid", f"the identity token is invalid: {error}") from error
        issued, expires, not_before = claims["iat"], claims["exp"], claims.get("nbf", 0)
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires, not_before)
        ):
            raise IdentityError("invalid", "`iat`, `exp` and `nbf` must be numbers (seconds since the epoch)")
        if now > expires + LEEWAY_SECONDS:
            raise IdentityError("expired", "the identity token has expired: get a fresh one from the shop")
        if max(issued, not_before) > now + LEEWAY_SECONDS:
            raise IdentityError(
                "invalid", "the identity token is not valid yet (`iat` or `nbf` ahead of the clock)"
            )
        if expires - issued > self.max_lifetime_seconds:
            raise IdentityError(
                "invalid",
                f"the identity token lives {int(expires - issued)} s; at most "
                f"{int(self.max_lifetime_seconds)} s are accepted: issue short-lived tokens",
            )
        try:
            user = validation.user(claims["sub"] if isinstance(claims["sub"], str) else None, "sub")
            session = validation.session(claims["sid"] if isinstance(claims["sid"], str) else None)
        except validation.InvalidParameter as error:
            raise IdentityError(
                "invalid", f"the identity token's claim {error.parameter}: {error}"
            ) from error
        return Identity(user, session, float(expires), kid)


class KeyDirectory:
    """The mounted identity Secret: keys read from its files, and read again when they change."""

    def __init__(
        self, path: str, algorithms: tuple[Algorithm, ...], max_lifetime_seconds: float,
        cache_size: int = CACHE_SIZE,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.cache_size = cache_size
        self.algorithms = algorithms
        self.max_lifetime_seconds = max_lifetime_seconds
        self._fingerprint: str | None = None
        self.problems: list[str] = []
        self.kids: tuple[str, ...] = ()  # the usable keys' ids, for readiness
        self.verifier = Verifier({}, max_lifetime_seconds=max_lifetime_seconds, cache_size=cache_size)

    def reload(self) -> bool:
        """Read the directory; a new verifier (and an empty cache) when its content changed. True then."""
        files: dict[str, bytes] = {}
        try:
            # Kubernetes' Secret volume: each key a symlink into `..data`, replaced atomically on update.
            for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
                if not entry.name.startswith(".") and entry.is_file():
                    files[entry.name] = Path(entry.path).read_bytes()
        except OSError as error:
            files = {}
            problems = [f"{self.path}: {error.strerror or error}"]
        else:
            problems = []
        digest = hashlib.sha256()
        for name, content in files.items():
            digest.update(b"%d:%s%d:%s" % (len(name), name.encode(), len(content), content))
        fingerprint = digest.hexdigest() + "|".join(problems)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        keys: dict[str, Key] = {}
        for name, content in files.items():
            try:
                key = parse_key(name, content)
            except ValueError as error:
                problems.append(str(error))
                continue
            if key.algorithm not in self.algorithms:
                problems.append(
                    f"{name}: {key.algorithm} is not among the allowed algorithms "
                    + ", ".join(self.algorithms)
                )
                continue
            keys[key.kid] = key
        self.problems = problems
        self.kids = tuple(sorted(keys))
        for problem in problems:
            log.error("identity key ignored: %s", problem)
        if not keys:
            log.error("no usable identity key in %s: every identity token is refused", self.path)
        log.info("identity keys loaded from %s: %s", self.path, ", ".join(sorted(keys)) or "none")
        self.verifier = Verifier(
            keys, max_lifetime_seconds=self.max_lifetime_seconds, cache_size=self.cache_size
        )
        metrics.identity_keys.set(len(keys))
        return True


class Gate:
    """What a route asks: who is this request for, if anyone says so (None: unsigned, allowed)."""

    def __init__(self, mode: Mode, keys: KeyDirectory | None) -> None:
        if mode != "off" and keys is None:
            raise ValueError(f"identity mode {mode} needs a key directory (TAILOR_IDENTITY_KEYS_DIR)")
        self.mode = mode
        self.keys = keys

    def check(self, scope: web.Scope, now: float) -> Identity | None:
        if self.mode == "off" or self.keys is None:
            return None
        raw = web.header(scope, b"authorization")
        if raw is None:
            if self.mode == "required":
                raise IdentityError(
                    "missing", "this stack requires a signed identity: send Authorization: Bearer <token>"
                )
            return None
        scheme, _, token = raw.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise IdentityError("invalid", "send the identity token as Authorization: Bearer <token>")
        return self.keys.verifier.verify(token, now)


def matched(who: Identity | None, field: str, given: str | None, claimed: str, claim: str) -> str | None:
    """The request's `field` (user, session): the token's when the request leaves it out; IdentityError
    when the two differ; `given` unchanged when no token was sent."""
    if who is None:
        return given
    if given is not None and given != claimed:
        raise IdentityError(
            "mismatch", f"`{field}` is {given[:128]!r} but the identity token's `{claim}` is {claimed!r}"
        )
    return claimed


def refusal(error: IdentityError) -> web.Reply:
    """The 401 for `error`, with the WWW-Authenticate challenge RFC 6750 asks for; counted by reason."""
    metrics.identity_refused.labels(error.kind).inc()
    reply = web.problem(
        401, f"identity-{error.kind}", _TITLES.get(error.kind, "Identity refused"), str(error)
    )
    challenge = (
        b'Bearer realm="tailor"'
        if error.kind == "missing"
        else b'Bearer realm="tailor", error="invalid_token"'
    )
    reply.headers = [(b"www-authenticate", challenge)]
    return reply
