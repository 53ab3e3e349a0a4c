"""Each stack's ruleset signing key: a Secret the operator creates once and signs every publish with.

Only the operator reads the private key; the stack's pods get the public keys from the same Secret
(one key of it, as TAILOR_RULESET_KEYS) and refuse rulesets they do not verify (tailor.core.rules.signing).
An operator running outside the cluster (development, the tests, the demo) puts the public development
key in new Secrets instead, so the API and workers started beside it on the machine, which trust that
key when given none, verify what it publishes; in a pod it generates a key per stack
(OperatorSettings.ruleset_signing). An existing Secret is always used as it is: rotating a key is
editing the Secret (docs/operating.md, "Who can publish a ruleset").
"""

from __future__ import annotations

import base64
import logging

from tailor.core.rules import signing
from tailor_operator import builders, kube

log = logging.getLogger(__name__)


class SigningKeyError(Exception):
    """The stack's signing Secret exists but holds no usable private key."""


class RulesetKeys:
    def __init__(self, client: kube.Kube, development: bool) -> None:
        self._kube = client
        self._development = development

    async def signer(self, stack: builders.Stack) -> signing.Signer:
        """The stack's signer, from its Secret (created first when it does not exist)."""
        name = builders.ruleset_signing_name(stack)
        data = await self._kube.read_secret(stack.namespace, name)
        if data is None:
            fresh = signing.DEVELOPMENT if self._development else signing.Signer.generate()
            if await self._kube.create_unless_exists(builders.ruleset_signing_secret(stack, fresh)):
                kind = "the public development key" if self._development else "a new key"
                log.info(
                    "made Secret %s/%s with %s to sign %s's rulesets", stack.namespace, name, kind, stack.key
                )
                return fresh
            data = await self._kube.read_secret(stack.namespace, name)  # made meanwhile by another round
        encoded = (data or {}).get(builders.RULESET_PRIVATE_KEY)
        if not encoded:
            raise SigningKeyError(f"Secret {stack.namespace}/{name} has no {builders.RULESET_PRIVATE_KEY}")
        try:
            return signing.Signer.from_text(base64.b64decode(encoded).decode())
        except ValueError as error:
            raise SigningKeyError(
                f"Secret {stack.namespace}/{name}, {builders.RULESET_PRIVATE_KEY}: {error}"
            ) from None
