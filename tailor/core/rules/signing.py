"""Ed25519 signatures on published rulesets: who may publish, and how readers tell.

Redis carries the rulesets but is not trusted with them (docs/operating.md, "Who can publish a
ruleset"): any pod that reaches it could write one. The operator signs the exact bytes it stores with
a private key only it holds; API replicas and workers verify them against public keys they were given
(`TAILOR_RULESET_KEYS`) and refuse what does not verify, keeping the last good ruleset.

A key is written as the standard base64 of its 32 raw bytes; a reader's setting lists one or more
public keys separated by commas (two during a rotation). A key's id is derived from its public half,
so a signature names the key that made it and readers never try every key.

The development key is derived from a fixed phrase and therefore public: it only proves that a
ruleset came from someone who read this file. Readers given no keys trust it (and say so in their
log) so a local stack, the tests and the demo work with no setup; in a cluster the operator always
gives its stacks' pods their own key, and then the development key is refused like any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ENV_KEYS = "TAILOR_RULESET_KEYS"
"""Readers' setting: the public keys that may sign this stack's rulesets."""
ENV_SIGNING_KEY = "TAILOR_RULESET_SIGNING_KEY"
"""Publishing tools' setting (`tailor rollback`, the dev stack): the private key to sign with."""


class SignatureError(ValueError):
    """A ruleset's signature is missing, malformed, by an unknown key, or does not match."""


def key_id(public: ed25519.Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_public(public: ed25519.Ed25519PublicKey) -> str:
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class Signer:
    """Signs documents with one private key; `public` is what readers are given."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def generate(cls) -> Signer:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """From the base64 of the 32-byte private key (as `encode_private` writes it)."""
        try:
            return cls(
                ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip(), validate=True))
            )
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"not an Ed25519 private key (base64 of 32 bytes): {error}") from None

    def encode_private(self) -> str:
        return base64.b64encode(self._private.private_bytes_raw()).decode()

    def encode_public(self) -> str:
        return encode_public(self.public)

    def sign(self, document: bytes) -> bytes:
        """`<key id>:<base64 signature>`, stored beside the document."""
        return f"{self.key_id}:{base64.b64encode(self._private.sign(document)).decode()}".encode()

    def verifier(self) -> Verifier:
        return Verifier([self.public])


class Verifier:
    """Checks signatures against a set of trusted public keys."""

    def __init__(self, keys: Iterable[ed25519.Ed25519PublicKey]) -> None:
        self._keys = {key_id(key): key for key in keys}
        if not self._keys:
            raise ValueError("a verifier needs at least one public key")

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """From comma-separated base64 public keys; an empty text means the development key."""
        entries = [entry.strip() for entry in text.split(",") if entry.strip()]
        if not entries:
            return DEVELOPMENT.verifier()
        keys = []
        for entry in entries:
            try:
                keys.append(
                    ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(entry, validate=True))
                )
            except (binascii.Error, ValueError) as error:
                raise ValueError(f"{ENV_KEYS}: {entry!r} is not an Ed25519 public key: {error}") from None
        return cls(keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    @property
    def development(self) -> bool:
        """Trusts the public development key (anyone can sign with it)."""
        return DEVELOPMENT.key_id in self._keys

    def verify(self, document: bytes, signature: bytes | None) -> None:
        """Raise SignatureError unless `signature` is a valid one of `document` by a trusted key."""
        if not signature:
            raise SignatureError("unsigned")
        kid, _, encoded = signature.decode(errors="replace").partition(":")
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(f"signed by key {kid!r}, not one of the trusted {', '.join(self.key_ids)}")
        try:
            key.verify(base64.b64decode(encoded, validate=True), document)
        except (binascii.Error, ValueError, InvalidSignature):
            raise SignatureError(f"the signature by key {kid} does not match the document") from None


DEVELOPMENT = Signer(
    ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"tailor development ruleset key: public, never for a cluster").digest()
    )
)
"""The public development key (see the module docstring)."""


def signer_from_text(text: str | None) -> Signer:
    """The configured private key, or the development key when none is."""
    return Signer.from_text(text) if text and text.strip() else DEVELOPMENT
