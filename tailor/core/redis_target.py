"""Where a Redis is and how to log in to it: one parse of the URL, with credentials and TLS kept apart.

Every Redis client of Tailor is built from a RedisTarget: redis-py's (the worker, the operator, the
content API off its hot path, the CLI) and the content API's multiplexed connection
(tailor_api.resp). So all of them log in, encrypt and verify alike:

- No credentials in URLs. The username and password come on their own (TAILOR_REDIS_USERNAME,
  TAILOR_REDIS_PASSWORD; in a cluster from Secrets), so any character works in them (no
  URL-encoding) and nothing that shows a URL (logs, `ps`, a pod's spec) shows a secret. A URL that
  holds credentials is refused, naming the variables to use instead.
- `rediss://` turns TLS on. The server's certificate must chain to a trusted CA (the system's, plus
  the bundle in TAILOR_REDIS_TLS_CA_FILE: a private CA such as Memorystore's server CA) and name the
  host of the URL. A client certificate (TAILOR_REDIS_TLS_CERT_FILE and _KEY_FILE) is presented when
  given, for servers with `tls-auth-clients yes`.

Standalone or cluster (`mode`, TAILOR_REDIS_MODE, a stack's `spec.redis.mode`): in cluster mode the
URL names one seed node of a Redis Cluster (any node; clients discover the rest from it), the
database must be 0 (a cluster has no others), and `client()` / `async_client()` build redis-py's
cluster clients (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster), which route each
command to the primary of its key's slot and follow MOVED, ASK and failovers by refreshing the slot
map. They answer the same commands as redis.Redis for keys, scripts and pipelines, and are typed as
redis.Redis here so every caller keeps one path; what differs, and what every caller must keep to:

- Every multi-key command, script and transaction touches keys of one slot only: Tailor's keys put
  what must stay together in one {hash tag} (a user's keys share the user's tag, a stack's ruleset
  keys the stack's; docs/architecture.md lists them). A pipeline without a transaction may mix slots
  (it is split by node).
- Pub/sub: PUBLISH reaches subscribers on every node, but costs the whole cluster's bus; Tailor's
  ruleset notifications use sharded pub/sub instead (SPUBLISH/SSUBSCRIBE on the stack's hash-tagged
  channel: `RedisTarget.cluster` tells which to use).
- No database numbers, and SCAN/KEYS reach one node only: iterate the primaries (get_primaries()).

A client of its own (the content API's tailor_api.resp) reads `cluster`, `host`, `port`, the
credentials and `ssl_context()` and speaks the cluster protocol itself.

`explain` turns what a client raised into a reason and advice (a wrong password, an untrusted CA, a
full Redis): the operator's RedisReady condition, readiness details and log lines use it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiorediscluster
import redis.cluster as rediscluster
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from tailor.core import constants

DEFAULT_PORT = 6379
STANDALONE = "standalone"
CLUSTER = "cluster"
MODES = (STANDALONE, CLUSTER)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A Redis endpoint and how to log in to it. Build it with `parse`."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # PEM bundle trusted besides the system's CAs
    ca_data: str | None = field(default=None, repr=False)  # the same as PEM text (the operator's)
    cert_file: str | None = None  # client certificate (PEM) and its key, for tls-auth-clients
    key_file: str | None = None
    cluster: bool = False  # a Redis Cluster: host:port is a seed node (module docstring)

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        ca_data: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        mode: str | None = None,
    ) -> RedisTarget:
        """The target of `url` (`redis://host:port/db` or `rediss://…`) with these credentials and
        TLS files, in `mode` (standalone, the default, or cluster); ValueError, saying what to change,
        for anything it cannot use."""
        mode = (mode or STANDALONE).strip().lower()
        if mode not in MODES:
            raise ValueError(
                f"Redis mode {mode!r}: use standalone or cluster ({constants.ENV_REDIS_MODE}, "
                "spec.redis.mode)"
            )
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"{_shown(parts)}: a Redis URL starts with redis:// or rediss://")
        if parts.username or parts.password or "@" in parts.netloc:
            raise ValueError(
                f"{_shown(parts)}: put no credentials in the Redis URL; give the username and password "
                f"on their own ({constants.ENV_REDIS_USERNAME}, {constants.ENV_REDIS_PASSWORD}; in a "
                "stack spec.redis.usernameSecretRef and passwordSecretRef)"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{_shown(parts)}: the port is not a number from 1 to 65535") from None
        if parts.query or parts.fragment:
            raise ValueError(f"{_shown(parts)}: a Redis URL takes no query parameters")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"{_shown(parts)}: the path is the database number, e.g. /0")
        tls = parts.scheme == "rediss"
        if not tls and (ca_file or ca_data or cert_file or key_file):
            raise ValueError(
                f"{_shown(parts)}: TLS files are given but the URL starts with redis://; "
                "use rediss:// to connect with TLS"
            )
        if bool(cert_file) != bool(key_file):
            raise ValueError("a TLS client certificate needs its key, and the key its certificate")
        if mode == CLUSTER and int(path or 0) != 0:
            raise ValueError(f"{_shown(parts)}: a Redis Cluster has database 0 only; end the URL in /0")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=int(path or 0),
            tls=tls,
            username=username or None,
            password=password,  # an empty password is a password (a server may have one)
            ca_file=ca_file or None,
            ca_data=ca_data or None,
            cert_file=cert_file or None,
            key_file=key_file or None,
            cluster=mode == CLUSTER,
        )

    @property
    def mode(self) -> str:
        return CLUSTER if self.cluster else STANDALONE

    @property
    def address(self) -> str:
        """host:port, for messages (never credentials)."""
        host = f"[{self.host}]" if _is_ipv6(self.host) else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL without credentials."""
        return f"{'rediss' if self.tls else 'redis'}://{self.address}/{self.db}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """What redis-py builds from the same settings (tailor_api.resp uses it): the system's CAs and
        the bundle given, the host's name checked, the client certificate loaded when given."""
        if not self.tls:
            return None
        context = ssl.create_default_context()
        if self.ca_file or self.ca_data:
            context.load_verify_locations(cafile=self.ca_file, cadata=self.ca_data)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis and redis.asyncio.Redis."""
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
            # No silent retries (redis-py's constructors retry 10 times, from_url not at all): a failed
            # call reaches our own retry loops, which count it, say so and decide what to resend (the
            # worker's batch write is resent from what Redis holds, under its version guard).
            "retry": None,
        }
        if self.tls:
            options.update(
                ssl=True,
                ssl_cert_reqs="required",
                ssl_check_hostname=True,
                ssl_ca_certs=self.ca_file,
                ssl_ca_data=self.ca_data,
                ssl_certfile=self.cert_file,
                ssl_keyfile=self.key_file,
            )
        return options

    def cluster_options(self) -> dict[str, Any]:
        """Keyword arguments for redis-py's cluster clients: the node options without a database,
        and the cluster's own retries left on. They are what follows a failover or a resharding: a
        command that meets a dead node or CLUSTERDOWN is sent again after the slot map is refreshed
        (at most three times, with backoff), where a standalone client would fail at once."""
        options = self.client_options()
        del options["db"], options["retry"]
        return options

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client; in cluster mode a redis.cluster.RedisCluster (module docstring)."""
        if self.cluster:
            return cast(redis.Redis, rediscluster.RedisCluster(**{**self.cluster_options(), **options}))
        return redis.Redis(**{**self.client_options(), **options})

    def async_client(self, **options: Any) -> aioredis.Redis:
        """An asyncio redis-py client; in cluster mode a redis.asyncio.cluster.RedisCluster."""
        if self.cluster:
            return cast(aioredis.Redis, aiorediscluster.RedisCluster(**{**self.cluster_options(), **options}))
        return aioredis.Redis(**{**self.client_options(), **options})

    def environment(self) -> dict[str, str]:
        """The TAILOR_REDIS_* variables that give a `tailor` process this target (tests, benchmarks)."""
        if self.ca_data:
            raise ValueError("a CA given as text cannot be passed on in the environment: write it to a file")
        variables = {
            constants.ENV_REDIS_URL: self.url,
            constants.ENV_REDIS_USERNAME: self.username,
            constants.ENV_REDIS_PASSWORD: self.password,
            constants.ENV_REDIS_TLS_CA_FILE: self.ca_file,
            constants.ENV_REDIS_TLS_CERT_FILE: self.cert_file,
            constants.ENV_REDIS_TLS_KEY_FILE: self.key_file,
            constants.ENV_REDIS_MODE: CLUSTER if self.cluster else None,
        }
        return {name: value for name, value in variables.items() if value is not None}

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, url: str | None = None
    ) -> RedisTarget:
        """The target the TAILOR_REDIS_* variables describe; `url` replaces TAILOR_REDIS_URL."""
        env = os.environ if environ is None else environ
        given = url or env.get(constants.ENV_REDIS_URL)
        if not given:
            raise ValueError(f"set {constants.ENV_REDIS_URL}")
        return cls.parse(
            given,
            username=env.get(constants.ENV_REDIS_USERNAME),
            password=env.get(constants.ENV_REDIS_PASSWORD),
            ca_file=env.get(constants.ENV_REDIS_TLS_CA_FILE),
            cert_file=env.get(constants.ENV_REDIS_TLS_CERT_FILE),
            key_file=env.get(constants.ENV_REDIS_TLS_KEY_FILE),
            mode=env.get(constants.ENV_REDIS_MODE),
        )


class RedisClientSettings(BaseSettings):
    """The Redis settings every component reads (TAILOR_REDIS_*, whatever its own prefix): the
    content API's and the worker's settings extend this."""

    redis_url: str = Field(
        validation_alias=AliasChoices(constants.ENV_REDIS_URL, "redis_url"),
        description="Redis holding the stack's rulesets, profiles and state (no credentials in it)",
    )
    redis_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices(constants.ENV_REDIS_USERNAME, "redis_username"),
        description="ACL user to log in as (none: the default user)",
    )
    redis_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices(constants.ENV_REDIS_PASSWORD, "redis_password")
    )
    redis_tls_ca_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices(constants.ENV_REDIS_TLS_CA_FILE, "redis_tls_ca_file"),
        description="PEM bundle of the CA that signed the server's certificate (rediss://)",
    )
    redis_tls_cert_file: str | None = Field(
        default=None, validation_alias=AliasChoices(constants.ENV_REDIS_TLS_CERT_FILE, "redis_tls_cert_file")
    )
    redis_tls_key_file: str | None = Field(
        default=None, validation_alias=AliasChoices(constants.ENV_REDIS_TLS_KEY_FILE, "redis_tls_key_file")
    )

    redis_mode: str = Field(
        default=STANDALONE,
        validation_alias=AliasChoices(constants.ENV_REDIS_MODE, "redis_mode"),
        description="standalone (one Redis) or cluster (Redis Cluster; the URL names a seed node)",
    )

    @model_validator(mode="after")
    def _usable(self) -> RedisClientSettings:
        self.redis_target()  # a URL with credentials, TLS files without rediss://: refused here
        return self

    def redis_target(self) -> RedisTarget:
        return RedisTarget.parse(
            self.redis_url,
            username=self.redis_username,
            password=self.redis_password.get_secret_value() if self.redis_password is not None else None,
            ca_file=self.redis_tls_ca_file,
            cert_file=self.redis_tls_cert_file,
            key_file=self.redis_tls_key_file,
            mode=self.redis_mode,
        )


# --- what went wrong -----------------------------------------------------------------------------------


class Failure(NamedTuple):
    """Why Redis could not be used: a CamelCase reason and a message that says what to do."""

    reason: str
    message: str


_AUTH = re.compile(r"WRONGPASS|invalid username-password|invalid password|NOAUTH|Authentication required")
_UNTRUSTED = re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed")
_NAME_MISMATCH = re.compile(r"[Hh]ostname mismatch|IP address mismatch|doesn't match")
_TLS = re.compile(r"\[SSL[:\]]|SSL|TLS|WRONG_VERSION_NUMBER|record layer|handshake", re.IGNORECASE)


def explain(error: BaseException, target: RedisTarget | None = None) -> Failure:
    """The reason `error` (raised by a Redis client) names, with advice. The text of the chain
    is read (redis-py wraps ssl's errors in its ConnectionError, resp in RedisUnavailable)."""
    where = f"Redis at {target.address}" if target is not None else "Redis"
    text = _chain_text(error)
    if isinstance(error, redis.AuthenticationError) or _AUTH.search(text):
        return Failure(
            "RedisAuthenticationFailed",
            f"{where} refused the username or password ({_first_line(text)}): check the Secret the "
            "password comes from (spec.redis.passwordSecretRef) and the ACL user (spec.redis.username)",
        )
    if isinstance(error, redis.exceptions.NoPermissionError) or "NOPERM" in text:
        return Failure(
            "RedisPermissionDenied",
            f"{where}: the ACL user may not run a command Tailor needs ({_first_line(text)}); "
            "grant it ~* &* +@all, or the categories listed in docs/operating.md#redis-security",
        )
    if _NAME_MISMATCH.search(text) and _UNTRUSTED.search(text):
        return Failure(
            "RedisCertificateNameMismatch",
            f"{where}: the server's certificate does not name this host ({_first_line(text)}); "
            "connect by a name the certificate lists",
        )
    if _UNTRUSTED.search(text):
        return Failure(
            "RedisCertificateUntrusted",
            f"{where}: the server's certificate is not signed by a trusted CA ({_first_line(text)}); "
            "put the CA that signed it in the Secret of spec.redis.tls.caSecretRef",
        )
    if is_out_of_memory(error):
        return Failure(
            "RedisOutOfMemory",
            f"{where} is full and refuses writes ({_first_line(text)}): raise its maxmemory (and memory "
            "limit) or lower what is kept (windows, recentLimit); nothing is evicted under noeviction",
        )
    if target is not None and target.tls and _TLS.search(text):
        return Failure(
            "RedisTLSFailed",
            f"{where}: the TLS handshake failed ({_first_line(text)}); is TLS on at that port?",
        )
    return Failure("RedisUnavailable", f"{where}: {_first_line(text) or type(error).__name__}")


def is_out_of_memory(error: BaseException) -> bool:
    """Redis at maxmemory under `noeviction` refuses every write with -OOM (redis-py raises its
    OutOfMemoryError without the prefix; hiredis in tailor_api.resp keeps it)."""
    return isinstance(error, redis.exceptions.OutOfMemoryError) or (
        "command not allowed when used memory" in _chain_text(error)
    )


def _chain_text(error: BaseException) -> str:
    parts, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " | ".join(part for part in parts if part)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _shown(parts: urllib.parse.SplitResult) -> str:
    """The URL as it may be shown: scheme, host, port and path, never what precedes an @."""
    if parts.scheme not in ("redis", "rediss"):
        return "the Redis URL"  # not ours to parse: it may hold anything
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
