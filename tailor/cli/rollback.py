"""`tailor rollback --stack NS/NAME --to VERSION`: serve an earlier published ruleset again, now.

For emergencies: the earlier version is published again under a new version number (the history stays
linear) and every content-API replica and worker switches to it within a second, without waiting for
Git, CI or the operator. `--list` shows the versions Redis still keeps (the last 50).

The operator stays the owner of the ruleset: it compiles the namespace again and publishes the result
on the next change of any rule, variant or the stack there, and when it restarts — which undoes the
rollback unless the cluster holds the rolled-back content by then. So: pause the stack first
(`kubectl annotate pstack NAME tailor.dev/paused=true`: the operator then publishes nothing for it),
roll back, revert the change in Git and let it sync, then remove the annotation.

Exit status: 0, or 1 when the version is not kept or Redis is unreachable (the reason on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from tailor.core import constants, redis_target
from tailor.core.rules import describe, ruleset

FAILED = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="serve an earlier published ruleset again (emergency)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", required=True, metavar="NS/NAME", help="the PersonalizationStack")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=int, metavar="VERSION", help="the version to serve again")
    target.add_argument("--list", action="store_true", help="list the versions that can be served again")
    parser.add_argument(
        "--redis-url",
        help=f"Redis of the stack (default: ${constants.ENV_REDIS_URL}); credentials and TLS files come "
        f"from ${constants.ENV_REDIS_USERNAME}, ${constants.ENV_REDIS_PASSWORD}, "
        f"${constants.ENV_REDIS_TLS_CA_FILE} (_CERT_FILE, _KEY_FILE)",
    )
    parser.set_defaults(handler=run)


class RollbackError(Exception):
    """Why nothing was rolled back, in words."""


def run(args: argparse.Namespace) -> int:
    namespace, slash, name = args.stack.partition("/")
    url = args.redis_url or os.environ.get(constants.ENV_REDIS_URL)
    try:
        if not slash or not namespace or not name:
            raise RollbackError(f"--stack {args.stack!r} must be NAMESPACE/NAME")
        if not url:
            raise RollbackError(f"set {constants.ENV_REDIS_URL} or --redis-url")
        try:
            target = redis_target.RedisTarget.from_environment(url=url)
        except ValueError as error:
            raise RollbackError(str(error)) from None
        if args.list:
            print("\n".join(asyncio.run(history(target, args.stack))))
        else:
            print("\n".join(asyncio.run(roll_back(target, args.stack, args.to))))
    except RollbackError as error:
        print(f"tailor rollback: {error}", file=sys.stderr)
        return FAILED
    return 0


def _line(published: ruleset.Ruleset, current: int) -> str:
    marker = "  <- serving" if published.version == current else ""
    return (
        f"v{published.version}  {describe.moment(published.published_at)}  {published.checksum[:12]}  "
        f"{len(published.rules)} rules, {len(published.variants)} variants{marker}"
    )


async def history(target: redis_target.RedisTarget, stack: str) -> list[str]:
    """The kept versions of `stack`, newest first, one line each."""
    import redis

    from tailor.core.rules import versions

    client = target.async_client(socket_connect_timeout=5, socket_timeout=10)
    url = target.url
    try:
        current = await versions.current_version(client, stack)
        newest = int(await client.get(versions.seq_key(stack)) or 0)
        lines = []
        for version in range(newest, max(0, newest - versions.HISTORY), -1):
            try:
                published = await versions.load(client, stack, version)
            except versions.Unreadable as refused:
                lines.append(f"v{version}  unreadable: {refused.reason}: {refused.detail}")
                continue
            if published is not None:
                lines.append(_line(published, current))
    except (redis.RedisError, OSError) as error:
        raise RollbackError(f"cannot read {stack} from {url}: {error}") from None
    finally:
        await client.aclose()
    if not lines:
        raise RollbackError(f"nothing is published for {stack} in {url}")
    return lines


async def roll_back(target: redis_target.RedisTarget, stack: str, version: int) -> list[str]:
    """Serve `version` of `stack` again; lines saying what is served now. Signed with the private key
    in TAILOR_RULESET_SIGNING_KEY (the stack's, from its Secret: docs/operating.md), else the
    development key."""
    import os

    import redis

    from tailor.core.rules import signing, versions

    try:
        signer = signing.signer_from_text(os.environ.get(signing.ENV_SIGNING_KEY))
    except ValueError as error:
        raise RollbackError(f"{signing.ENV_SIGNING_KEY}: {error}") from None

    client = target.async_client(socket_connect_timeout=5, socket_timeout=10)
    url = target.url
    try:
        try:
            current = await versions.load(client, stack, verifier=signer.verifier())
        except versions.Unreadable:
            current = None  # not ours: rolling back replaces it
        earlier = await versions.load(client, stack, version, verifier=signer.verifier())
        if earlier is None:
            kept = f"; see tailor rollback --stack {stack} --list"
            raise RollbackError(f"{stack}: version {version} is not among the versions kept{kept}")
        if current is not None and current.checksum == earlier.checksum:
            return [f"{stack}: version {current.version} already serves the content of version {version}"]
        served = await versions.rollback(client, stack, version, signer)
    except versions.Unreadable as refused:
        raise RollbackError(f"{refused}; set {signing.ENV_SIGNING_KEY} to the key that signed it") from None
    except (redis.RedisError, OSError) as error:
        raise RollbackError(f"cannot roll {stack} back in {url}: {error}") from None
    finally:
        await client.aclose()
    was = f" (was version {current.version})" if current is not None else ""
    namespace = stack.partition("/")[0]
    return [
        f"{stack}: version {served.version} now serves the content of version {version}{was}",
        f"note: the operator publishes what the cluster holds on the next change in namespace {namespace} "
        "or when it restarts; pause the stack (tailor.dev/paused=true) to keep this, and revert the "
        "change in Git",
    ]
