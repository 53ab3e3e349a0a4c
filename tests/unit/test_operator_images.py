"""The operator's image allowlist (tailor_operator.images): which references a pattern allows."""

from __future__ import annotations

import pytest
from tailor_operator import images

from tailor.core.rules import specs

ALLOWLIST = ("registry.example.com/tailor/*", "docker.io/library/redis:7.*")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("registry.example.com/tailor/tailor:0.1.0", True),
        ("registry.example.com/tailor/tailor@sha256:" + "a" * 64, True),
        ("redis:7.4-alpine", True),  # Docker Hub's short form, matched in its qualified form
        ("docker.io/library/redis:7.4-alpine", True),
        ("redis:8.0", False),
        ("registry.example.com/tailor-evil/tailor:0.1.0", False),  # a neighbour's path is not ours
        ("evil.example.com/registry.example.com/tailor/x:1", False),
        ("ghcr.io/tailor-dev/tailor:0.1.0", False),
    ],
)
def test_a_pattern_allows_the_images_under_it_and_nothing_beside(reference: str, expected: bool) -> None:
    assert images.allowed(reference, ALLOWLIST) is expected


def test_no_allowlist_allows_every_image() -> None:
    assert images.allowed("anything.example/at:all", ())


def test_qualified_adds_what_a_runtime_adds() -> None:
    assert images.qualified("redis") == "docker.io/library/redis"
    assert images.qualified("bitnami/redis:7") == "docker.io/bitnami/redis:7"
    assert images.qualified("localhost/tailor:dev") == "localhost/tailor:dev"
    assert images.qualified("127.0.0.1:5000/tailor:dev") == "127.0.0.1:5000/tailor:dev"


def test_the_refusal_names_the_field_the_image_and_the_allowlist() -> None:
    spec = specs.StackSpec.model_validate(
        {"image": "registry.example.com/tailor/tailor:1", "kafka": {"bootstrapServers": "k:9092"},
         "redis": {"managed": True, "image": "redis:8.0"}}
    )  # fmt: skip
    with pytest.raises(images.ImageNotAllowed) as refused:
        images.check(spec, ALLOWLIST)
    message = str(refused.value)
    assert message.startswith("spec.redis.image redis:8.0 is not in the operator's image allowlist")
    assert "registry.example.com/tailor/*, docker.io/library/redis:7.*" in message
    # Your own Redis runs no image of the stack's: only spec.image is checked then.
    own = spec.model_copy(update={"redis": spec.redis.model_copy(update={"managed": False})})
    images.check(own, ALLOWLIST)
