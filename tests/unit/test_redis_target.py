"""How a Redis URL, credentials and TLS files become one target (tailor.core.redis_target)."""

from __future__ import annotations

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry
from tailor_api.settings import ApiSettings

from tailor.core import redis_target

RedisTarget = redis_target.RedisTarget


def test_the_url_gives_the_address_and_credentials_come_apart_with_any_character() -> None:
    target = RedisTarget.parse("rediss://redis.example:6380/3", username="app", password="p@ss:w/rd%40")
    assert (target.host, target.port, target.db, target.tls) == ("redis.example", 6380, 3, True)
    options = target.client_options()
    assert (options["username"], options["password"]) == ("app", "p@ss:w/rd%40")  # as given, not decoded
    assert options["ssl"] is True
    assert options["ssl_check_hostname"] is True
    assert options["ssl_cert_reqs"] == "required"
    assert "p@ss" not in repr(target)
    plain = RedisTarget.parse("redis://127.0.0.1:6379")
    assert (plain.db, plain.tls, plain.password) == (0, False, None)
    assert "ssl" not in plain.client_options()
    assert plain.ssl_context() is None
    assert RedisTarget.parse("redis://[::1]:7000/0").url == "redis://[::1]:7000/0"


def test_clients_do_not_retry_behind_our_back() -> None:
    """redis-py's constructors retry a failed call 10 times unless told not to; ours must fail at once
    so the worker counts the error and resends its batch itself (test_worker's Redis restart test)."""
    target = RedisTarget.parse("redis://127.0.0.1:6379")
    assert target.client().get_retry() is None
    assert target.async_client().get_retry() is None
    once = Retry(NoBackoff(), 1)
    chosen = target.client(retry=once).get_retry()  # a caller's own choice wins (redis-py copies it)
    assert chosen is not None
    assert chosen.get_retries() == 1


@pytest.mark.parametrize(
    ("url", "files", "message"),
    [
        ("redis://:s3cret@r:6379/0", {}, "put no credentials in the Redis URL"),
        ("rediss://app:s3cret@r:6379/0", {}, "put no credentials in the Redis URL"),
        ("http://r:6379", {}, "starts with redis:// or rediss://"),
        ("redis://r:6379/zero", {}, "the path is the database number"),
        ("redis://r:6379/0?password=s3cret", {}, "no query parameters"),
        ("redis://r:6379/0", {"ca_file": "/ca.crt"}, "use rediss://"),
        ("rediss://r:6379/0", {"cert_file": "/c.crt"}, "needs its key"),
        ("redis://r:6379/1", {"mode": "cluster"}, "database 0 only"),
        ("redis://r:6379/0", {"mode": "sharded"}, "use standalone or cluster"),
    ],
)
def test_what_cannot_work_is_refused_saying_what_to_do_and_never_showing_a_password(
    url: str, files: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        RedisTarget.parse(url, **files)
    assert "s3cret" not in str(refused.value)


def test_the_environment_round_trips_and_component_settings_read_it() -> None:
    target = RedisTarget.parse(
        "rediss://r:6380/1", username="u", password="p@:/%", ca_file="/ca", cert_file="/c", key_file="/k"
    )
    environment = target.environment()
    assert environment == {
        "TAILOR_REDIS_URL": "rediss://r:6380/1", "TAILOR_REDIS_USERNAME": "u",
        "TAILOR_REDIS_PASSWORD": "p@:/%", "TAILOR_REDIS_TLS_CA_FILE": "/ca",
        "TAILOR_REDIS_TLS_CERT_FILE": "/c", "TAILOR_REDIS_TLS_KEY_FILE": "/k",
    }  # fmt: skip
    assert RedisTarget.from_environment(environment) == target
    settings = ApiSettings.model_validate({"redis_url": "rediss://r:6380/1", "redis_password": "p@:/%"})
    assert settings.redis_target().password == "p@:/%"
    with pytest.raises(ValueError, match="put no credentials"):
        ApiSettings.model_validate({"redis_url": "redis://:x@r:6379/0"})


def test_cluster_mode_comes_from_the_environment_and_settings_and_goes_back_into_it() -> None:
    target = RedisTarget.parse("redis://seed:7000", mode="Cluster")
    assert (target.cluster, target.mode, target.db) == (True, "cluster", 0)
    assert target.environment() == {"TAILOR_REDIS_URL": "redis://seed:7000/0", "TAILOR_REDIS_MODE": "cluster"}
    assert RedisTarget.from_environment(target.environment()) == target
    assert RedisTarget.parse("redis://seed:7000").environment() == {"TAILOR_REDIS_URL": "redis://seed:7000/0"}
    settings = ApiSettings.model_validate({"redis_url": "redis://seed:7000/0", "redis_mode": "cluster"})
    assert settings.redis_target() == target
    options = target.cluster_options()
    assert not {"db", "retry"} & options.keys()  # the cluster client's own retries follow failovers


def test_a_client_error_is_explained_by_its_cause() -> None:
    """The texts are the real ones (redis-server 7 and OpenSSL 3, seen in test_redis_security)."""
    target = RedisTarget.parse("rediss://r:6380/0")
    cases = {
        "WRONGPASS invalid username-password pair or user is disabled.": "RedisAuthenticationFailed",
        "Error 1 connecting to r:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "unable to get local issuer certificate (_ssl.c:1006).": "RedisCertificateUntrusted",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch, certificate is "
        "not valid for '127.0.0.2'. (_ssl.c:1006)": "RedisCertificateNameMismatch",
        "OOM command not allowed when used memory > 'maxmemory'.": "RedisOutOfMemory",
        "NOPERM User app has no permissions to run the 'function' command": "RedisPermissionDenied",
        "Error 111 connecting to r:6380. Connection refused.": "RedisUnavailable",
    }
    for text, reason in cases.items():
        assert redis_target.explain(ConnectionError(text), target).reason == reason, text
    wrapped = ConnectionError("Redis of shop/shop unreachable")
    wrapped.__cause__ = ConnectionError("WRONGPASS invalid username-password pair")
    assert redis_target.explain(wrapped).reason == "RedisAuthenticationFailed"
