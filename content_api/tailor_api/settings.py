"""Settings of `tailor api`, from the environment (prefix TAILOR_). Only TAILOR_REDIS_URL is required
(its credentials and TLS files: TAILOR_REDIS_*, tailor.core.redis_target): everything else about the
stack comes from the ruleset the operator publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tailor.core import constants, redis_target

Routes = Literal["all", "decide", "collect"]
IdentityMode = Literal["off", "optional", "required"]
IdentityAlgorithm = Literal["HS256", "ES256", "EdDSA"]
# The admin token guards reads of any user's profile: at least this many bytes once trimmed (a random
# 32-byte token is out of reach of guessing; a short or blank one is a configuration mistake).
MIN_ADMIN_TOKEN_BYTES = 32
DEFAULT_ADMIN_PORT = constants.DEFAULT_ADMIN_PORT


class ApiSettings(redis_target.RedisClientSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore", frozen=True)

    stack: str = Field(default="", description="namespace/name of the PersonalizationStack to serve")
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token for /v1/explain, /v1/profiles"
    )
    admin_port: int = Field(
        default=DEFAULT_ADMIN_PORT,
        ge=0,
        le=65535,
        description="the admin listener (explain, profiles, metrics, health, readiness); 0: none",
    )
    admin_host: str = "0.0.0.0"
    admin_port_shared: bool = False  # several worker processes listen on it (`tailor api --workers N`)
    redis_timeout_seconds: float = 2.0
    ruleset_poll_seconds: float = 5.0  # pub/sub brings updates at once; the poll covers missed messages
    ruleset_keys: str = Field(
        default="",
        description="comma-separated Ed25519 public keys (base64) that may sign this stack's rulesets "
        "(TAILOR_RULESET_KEYS; the operator sets it); empty trusts the public development key",
    )
    # How long a replica may serve an older version than the published one before /readyz calls it
    # stale (it stays ready: what it serves was good; tailor_ruleset_published_version shows the gap).
    ruleset_stale_seconds: float = 30.0
    bandit_refresh_seconds: float = 2.0
    impressions_flush_seconds: float = 1.0
    feedback_max_age_seconds: int = 7 * 86400  # decisionIds older than this are refused
    # Each period signs decisionIds with a new key (its kid in the id); a key is kept for the period
    # it was made ahead of, its own, and the feedback window after (tailor_api.tokens).
    decision_key_rotation_seconds: int = Field(default=86400, ge=60)
    identity_mode: IdentityMode = Field(
        default="off",
        description="signed user identity (tailor_api.identity, docs/identity.md): off, optional, required",
    )
    identity_keys_dir: str | None = Field(
        default=None, description="the mounted identity Secret: <kid>.hs256 and <kid>.pem files"
    )
    identity_algorithms: tuple[IdentityAlgorithm, ...] = ("HS256", "ES256", "EdDSA")
    identity_max_lifetime_seconds: int = Field(default=86400, ge=60)  # exp - iat above this is refused
    identity_reload_seconds: float = 5.0  # how often the key files are read again (Secret updates)
    identity_cache_size: int = Field(default=20_000, ge=0)  # verified tokens remembered (0: verify each time)
    kafka_check_seconds: float = 5.0  # how long a check of Kafka (reported by readiness) is reused
    sdk_path: str | None = None  # tailor.js to serve at /sdk/tailor.js; found in the package otherwise
    api_routes: Routes = Field(
        default="all",
        description="what this replica serves: all; decide (decisions, feedback, admin: no Kafka client); "
        "collect (POST /v1/events only, for a collector Deployment of its own)",
    )
    graphql_introspection: bool = Field(
        default=False,
        description="answer GraphQL introspection (__schema, __type) on /v1/graphql; off: the schema is "
        "in docs/content-api.md, and a public endpoint need not describe itself to scrapers",
    )
    # Where the Secret keys of the stack's Kafka security are (the operator mounts them there).
    kafka_secrets_dir: Path = Path(constants.KAFKA_SECRETS_DIR)

    @field_validator("admin_token", mode="after")
    @classmethod
    def _strong_admin_token(cls, token: SecretStr | None) -> SecretStr | None:
        """Trimmed, and refused when shorter than MIN_ADMIN_TOKEN_BYTES: set but empty must never let
        `Authorization: Bearer ` in, and a Secret's trailing newline must not be part of the token."""
        if token is None:
            return None
        trimmed = token.get_secret_value().strip()
        size = len(trimmed.encode())
        if size < MIN_ADMIN_TOKEN_BYTES:
            raise ValueError(
                f"TAILOR_ADMIN_TOKEN has {size} bytes after trimming whitespace; give at least "
                f"{MIN_ADMIN_TOKEN_BYTES} (e.g. `openssl rand -hex 32`), or unset it to disable the "
                "admin endpoints"
            )
        return SecretStr(trimmed)


def from_environment() -> ApiSettings:
    """Settings from TAILOR_* variables; a missing TAILOR_REDIS_URL fails with pydantic's clear error."""
    return ApiSettings()
