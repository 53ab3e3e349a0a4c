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
        self._warned: set[str] = set()

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
            signer = signing.Signer.from_text(base64.b64decode(encoded).decode())
        except ValueError as error:
            raise SigningKeyError(
                f"Secret {stack.namespace}/{name}, {builders.RULESET_PRIVATE_KEY}: {error}"
            ) from None
        if (
            not self._development
            and signer.key_id == signing.DEVELOPMENT.key_id
            and stack.key not in self._warned
        ):
            # Made by an operator that ran outside the cluster: anyone can sign with this key. The
            # operator may not update Secrets, so it says so instead of replacing it.
            self._warned.add(stack.key)
            log.warning("Secret %s/%s holds the public development key: anyone can sign %s's rulesets; "
                        "delete the Secret and the operator generates a key of the stack's own",
                        stack.namespace, name, stack.key)  # fmt: skip
        return signer
