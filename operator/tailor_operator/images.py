"""Which images a stack may run: the operator's image allowlist (settings.image_allowlist).

Whoever may create a PersonalizationStack chooses `spec.image` and `spec.redis.image`, and the operator
runs them under its own rights to create Deployments and StatefulSets: without an allowlist, creating a
stack is the right to run any image in its namespace (docs/install.md#security). With one, a stack
whose images do not all match is refused before any child is created or changed (Ready=False,
ImageNotAllowed, naming the image and the allowlist).

Patterns are shell-style (`fnmatch`, case-sensitive): `registry.example.com/tailor/*` allows every
repository, tag and digest under that path. A reference is matched as written and in its fully
qualified form (`redis:7.4-alpine` is `docker.io/library/redis:7.4-alpine`), so either way of writing
a pattern works. Pure functions, no API calls.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from tailor.core.rules import specs

DOCKER_HUB = "docker.io"


class ImageNotAllowed(ValueError):
    """An image of the stack matches no pattern of the allowlist; the message names both."""


def qualified(reference: str) -> str:
    """`reference` with the registry (and Docker Hub's `library/`) a container runtime would add."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return reference  # already names its registry
    path = reference if rest else f"library/{reference}"
    return f"{DOCKER_HUB}/{path}"


def allowed(reference: str, allowlist: Sequence[str]) -> bool:
    """True when the allowlist is empty (no restriction) or a pattern matches the image."""
    if not allowlist:
        return True
    forms = {reference, qualified(reference)}
    return any(fnmatch.fnmatchcase(form, pattern) for pattern in allowlist for form in forms)


def stack_images(spec: specs.StackSpec) -> list[tuple[str, str]]:
    """(field, image) of every image the stack's children would run."""
    images = [("spec.image", spec.image)]
    if spec.redis.managed:
        images.append(("spec.redis.image", spec.redis.image))
    return images


def check(spec: specs.StackSpec, allowlist: Sequence[str]) -> None:
    """Raise ImageNotAllowed for the first image the allowlist does not allow."""
    for field, image in stack_images(spec):
        if not allowed(image, allowlist):
            raise ImageNotAllowed(
                f"{field} {image} is not in the operator's image allowlist ({', '.join(allowlist)}): "
                "use an allowed image, or ask the operator's administrator to add it "
                "(chart value operator.imageAllowlist)"
            )
