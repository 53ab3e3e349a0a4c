"""Ruleset signatures and the reader's checks (tailor.core.rules.signing, versions.decode), offline."""

from __future__ import annotations

import orjson
import pytest
import sample

from tailor.core.rules import ruleset, signing, versions

STACK = "shop/main"


def published(version: int = 3) -> bytes:
    return sample.shop().model_copy(update={"stack": STACK, "version": version}).sealed().to_json()


def test_a_signed_document_verifies_and_decodes() -> None:
    signer = signing.Signer.generate()
    document = published()
    assert versions.decode(STACK, 3, document, signer.sign(document), signer.verifier()).version == 3


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (None, "unsigned"),
        (signing.DEVELOPMENT.sign(published()), "not one of the trusted"),
        (b"garbage", "not one of the trusted"),
    ],
)
def test_what_the_stacks_key_did_not_sign_is_refused(signature: bytes | None, message: str) -> None:
    stack_key = signing.Signer.generate()
    with pytest.raises(versions.Unreadable) as refused:
        versions.decode(STACK, 3, published(), signature, stack_key.verifier())
    assert refused.value.reason == "signature"
    assert message in refused.value.detail


def test_one_changed_byte_breaks_the_signature() -> None:
    signer = signing.Signer.generate()
    document = published()
    tampered = document.replace(b'"killSwitch":false', b'"killSwitch":true')
    assert tampered != document
    with pytest.raises(versions.Unreadable, match="does not match"):
        versions.decode(STACK, 3, tampered, signer.sign(document), signer.verifier())


def test_a_verifier_trusts_every_key_it_lists_during_a_rotation() -> None:
    old, new = signing.Signer.generate(), signing.Signer.generate()
    both = signing.Verifier.from_text(f"{old.encode_public()}, {new.encode_public()}")
    document = published()
    for signer in (old, new):
        versions.decode(STACK, 3, document, signer.sign(document), both)
    assert not both.development


def test_no_keys_means_the_public_development_key() -> None:
    assert signing.Verifier.from_text("").development
    assert signing.signer_from_text(None) is signing.DEVELOPMENT
    # Its private half round-trips, as the Secret holds it.
    assert signing.Signer.from_text(signing.DEVELOPMENT.encode_private()).key_id == signing.DEVELOPMENT.key_id


def test_a_key_that_is_not_one_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="TAILOR_RULESET_KEYS"):
        signing.Verifier.from_text("not-base64!")
    with pytest.raises(ValueError, match="Ed25519 private key"):
        signing.Signer.from_text("c2hvcnQ=")


def test_a_newer_format_and_an_unparseable_document_are_told_apart() -> None:
    newer = orjson.loads(published())
    newer.update(format=ruleset.FORMAT + 1, audiences=[])
    signer = signing.DEVELOPMENT
    for raw, reason in ((orjson.dumps(newer), "format"), (b'{"rules": [', "invalid"), (b"[]", "invalid")):
        with pytest.raises(versions.Unreadable) as refused:
            versions.decode(STACK, 3, raw, signer.sign(raw), signer.verifier())
        assert refused.value.reason == reason, refused.value


def test_a_document_of_another_stack_or_version_is_refused() -> None:
    signer = signing.DEVELOPMENT
    document = published(version=2)  # a genuinely signed older version, replayed under number 3
    with pytest.raises(versions.Unreadable, match="the document is shop/main v2"):
        versions.decode(STACK, 3, document, signer.sign(document), signer.verifier())
    with pytest.raises(versions.Unreadable, match="the document is shop/main v3"):
        versions.decode("other/main", 3, published(), signer.sign(published()), signer.verifier())
