"""Connections to each stack's Redis, where the operator publishes rulesets and reads stats.

The operator logs in as the stack's components do (builders._redis_env): the same URL, username,
password and TLS settings, read here from the same Secrets, so a RedisReady=True condition means the
pods' settings work too (tailor.core.redis_target builds every client alike).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

import redis.asyncio as aioredis

from tailor.core import redis_target
from tailor.core.rules import specs
from tailor_operator import builders, kube


class RedisConnections:
    """One client per distinct target (URL and credentials), shared by the stacks that use it.

    `override` replaces every stack's address, scheme included (an operator outside the cluster
    reaching Redis through a port-forward, or tests with a local Redis); the stack's credentials
    still apply, and its TLS settings when the override says rediss://.
    """

    def __init__(self, client: kube.Kube, override: str | None = None) -> None:
        self._kube = client
        self._override = override
        self._clients: dict[str, aioredis.Redis] = {}  # target fingerprint -> client
        self._used: dict[str, str] = {}  # stack key -> the fingerprint of its target
        self._files: Path | None = None  # client certificates and keys, for ssl's load_cert_chain

    async def _secret_value(self, namespace: str, ref: specs.SecretKeyRef, what: str) -> str:
        data = await self._kube.read_secret(namespace, ref.name)
        if data is None or ref.key not in data:
            raise LookupError(f"Secret {ref.name} (key {ref.key}) with the Redis {what} does not exist")
        return base64.b64decode(data[ref.key]).decode()

    async def target(self, stack: builders.Stack) -> redis_target.RedisTarget:
        """The stack's Redis as its pods reach it (or at the override), credentials from its Secrets."""
        redis = stack.spec.redis
        namespace = stack.namespace
        username = redis.username
        if redis.username_secret_ref is not None:
            username = await self._secret_value(namespace, redis.username_secret_ref, "username")
        elif redis.managed:
            username = "default"  # as builders._redis_env gives the pods
        password_ref = builders.redis_password_ref(stack)
        password = None
        if password_ref is not None:
            password = await self._secret_value(namespace, password_ref, "password")
        ca_data = cert_file = key_file = None
        if redis.tls is not None and redis.tls.ca_secret_ref is not None:
            ca_data = await self._secret_value(namespace, redis.tls.ca_secret_ref, "CA bundle")
        if redis.tls is not None and redis.tls.client_certificate_secret_ref is not None:
            pair = redis.tls.client_certificate_secret_ref.name
            cert, key = [
                await self._secret_value(namespace, specs.SecretKeyRef(name=pair, key=key), "client pair")
                for key in ("tls.crt", "tls.key")
            ]
            cert_file, key_file = self._pair_files(cert, key)
        url = self._override or builders.redis_url(stack)
        if url.startswith("redis://"):  # an override without TLS (a port-forward to a plain port)
            ca_data = cert_file = key_file = None
        return redis_target.RedisTarget.parse(
            url,
            username=username,
            password=password,
            ca_data=ca_data,
            cert_file=cert_file,
            key_file=key_file,
            mode=redis.mode,
        )

    def _pair_files(self, cert: str, key: str) -> tuple[str, str]:
        """Files holding a client certificate and key (ssl loads them only from files), private to
        this process and named by their content: written once, rewritten never."""
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix="tailor-redis-tls-"))  # mode 0700
        digest = hashlib.sha256(f"{cert}\0{key}".encode()).hexdigest()[:24]
        cert_path, key_path = self._files / f"{digest}.crt", self._files / f"{digest}.key"
        for path, content in ((cert_path, cert), (key_path, key)):
            if not path.exists():
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as file:
                    file.write(content)
        return str(cert_path), str(key_path)

    async def for_stack(self, stack: builders.Stack) -> aioredis.Redis:
        target = await self.target(stack)
        fingerprint = hashlib.sha256(repr((target, target.password, target.ca_data)).encode()).hexdigest()
        previous = self._used.get(stack.key)
        self._used[stack.key] = fingerprint
        if previous is not None and previous != fingerprint and previous not in self._used.values():
            stale = self._clients.pop(previous, None)  # credentials rotated: nobody uses the old login
            if stale is not None:
                await stale.aclose()
        if fingerprint not in self._clients:
            self._clients[fingerprint] = target.async_client(
                socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
            )
        return self._clients[fingerprint]

    async def check(self, stack: builders.Stack) -> redis_target.Failure | None:
        """None when the stack's Redis answers PING as the stack's user; else why not."""
        target = None
        try:
            target = await self.target(stack)
            client = await self.for_stack(stack)
            await client.ping()
        except LookupError as error:
            return redis_target.Failure("SecretMissing", str(error))
        except ValueError as error:  # a CA that is no PEM, a URL it cannot use
            return redis_target.Failure("RedisSettingsInvalid", str(error))
        except Exception as error:  # what the client raised is the answer: classify it
            return redis_target.explain(error, target)
        return None

    def forget(self, stack_key: str) -> None:
        self._used.pop(stack_key, None)

    async def close(self) -> None:
        for connection in self._clients.values():
            await connection.aclose()
        self._clients.clear()
        self._used.clear()
