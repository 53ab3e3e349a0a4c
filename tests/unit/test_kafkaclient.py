"""The one Kafka client configuration: from a stack spec (as the CRD admits it) and the Secret keys
mounted beside it to librdkafka's settings; what a refused client is named; the MSK IAM token."""

from __future__ import annotations

import base64
import logging
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from tailor.core import kafkaclient, logthrottle
from tailor.core.rules import compiler, specs
from tailor.core.rules.ruleset import KafkaConfig


def kafka(security: dict[str, Any] | None) -> KafkaConfig:
    spec = specs.StackSpec.model_validate(
        {
            "kafka": {"bootstrapServers": "b-1:9096", **({"security": security} if security else {})},
            "redis": {},
        }
    )
    return compiler.stack_config("shop", "shop", spec).kafka


def mount(directory: Path, files: dict[str, str]) -> Path:
    """Secret keys laid out as the operator mounts them: <dir>/<secret>/<key>."""
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def test_no_security_is_plaintext_with_nothing_else() -> None:
    assert kafkaclient.client_config(kafka(None)) == {
        "bootstrap.servers": "b-1:9096",
        "security.protocol": "PLAINTEXT",
    }


def test_scram_over_tls_reads_the_password_and_points_librdkafka_at_the_ca_file(tmp_path: Path) -> None:
    secrets = mount(tmp_path, {"kafka-ca/ca.crt": "CA", "tailor-user/password": "s3cret\n"})
    settings = kafka(
        {
            "protocol": "SASL_SSL",
            "tls": {"caSecretRef": {"name": "kafka-ca"}},
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "tailor",
                     "passwordSecretRef": {"name": "tailor-user"}},
        }
    )  # fmt: skip
    config = kafkaclient.client_config(settings, secrets)
    assert config == {
        "bootstrap.servers": "b-1:9096",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(tmp_path / "kafka-ca" / "ca.crt"),
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tailor",
        "sasl.password": "s3cret",  # the newline `kubectl create secret --from-file` keeps is not part of it
    }
    # The published settings name the Secret keys, never their values.
    assert "s3cret" not in settings.model_dump_json()


def test_mutual_tls_uses_the_certificate_secrets_keys_and_the_system_cas_without_a_ca(tmp_path: Path) -> None:
    secrets = mount(tmp_path, {"tailor-user/user.crt": "CERT", "tailor-user/user.key": "KEY"})
    settings = kafka(
        {
            "protocol": "SSL",
            "tls": {
                "clientCertificateSecretRef": {
                    "name": "tailor-user",
                    "certificate": "user.crt",
                    "key": "user.key",
                },
                "verifyHostname": False,
            },
        }
    )
    config = kafkaclient.client_config(settings, secrets)
    assert config["ssl.ca.location"] == "probe"
    assert config["ssl.certificate.location"] == str(tmp_path / "tailor-user" / "user.crt")
    assert config["ssl.key.location"] == str(tmp_path / "tailor-user" / "user.key")
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.mechanism" not in config


def test_oidc_client_credentials_are_librdkafkas_own(tmp_path: Path) -> None:
    secrets = mount(tmp_path, {"idp/clientSecret": "xyz", "idp-ca/ca.crt": "CA"})
    settings = kafka(
        {
            "protocol": "SASL_SSL",
            "sasl": {
                "mechanism": "OAUTHBEARER",
                "oidc": {
                    "tokenEndpoint": "https://idp.example/oauth2/token",
                    "clientId": "tailor",
                    "clientSecretRef": {"name": "idp"},
                    "scope": "kafka",
                    "extensions": {"logicalCluster": "lkc-1", "identityPoolId": "pool-2"},
                    "caSecretRef": {"name": "idp-ca"},
                },
            },
        }
    )
    config = kafkaclient.client_config(settings, secrets)
    assert {k: v for k, v in config.items() if k.startswith("sasl.")} == {
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/oauth2/token",
        "sasl.oauthbearer.client.id": "tailor",
        "sasl.oauthbearer.client.secret": "xyz",
        "sasl.oauthbearer.scope": "kafka",
        "sasl.oauthbearer.extensions": "identityPoolId=pool-2,logicalCluster=lkc-1",
    }
    assert config["https.ca.location"] == str(tmp_path / "idp-ca" / "ca.crt")  # trusted for the endpoint


def test_msk_iam_signs_a_token_for_the_region_with_the_default_credential_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Static credentials in the environment: the first link of the default chain, as IRSA's web
    # identity is in a pod. Signing is local (SigV4): no AWS endpoint is called.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    settings = kafka(
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER", "awsMskIam": {"region": "eu-west-1"}}}
    )
    config = kafkaclient.client_config(settings)
    assert config["sasl.mechanism"] == "OAUTHBEARER"
    token, expiry = config["oauth_cb"]("")
    url = urllib.parse.urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = urllib.parse.parse_qs(url.query)
    assert url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"][0]
    assert time.time() < expiry < time.time() + 3600  # seconds since the epoch, as librdkafka wants


def test_a_secret_key_that_is_not_mounted_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    password = {"name": "cc", "key": "secret"}
    settings = kafka(
        {
            "protocol": "SASL_SSL",
            "sasl": {"mechanism": "PLAIN", "username": "k", "passwordSecretRef": password},
        }
    )
    with pytest.raises(kafkaclient.SecretUnreadable, match=r"Secret cc key secret is not at .*/cc/secret"):
        kafkaclient.client_config(settings, tmp_path)


@pytest.mark.parametrize(
    ("text", "reason", "advice"),
    [
        (
            "sasl_ssl://127.0.0.1:9096/bootstrap: SASL authentication error: Authentication failed during "
            "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
            "KafkaAuthenticationFailed",
            "password in Secret tailor-user (key password) is wrong or the user does not exist",
        ),
        (
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
            "certificate verify failed: broker certificate could not be verified, verify that "
            "ssl.ca.location is correctly configured or root CA certificates are installed",
            "KafkaCertificateUntrusted",
            "not signed by a CA in Secret kafka-ca (key ca.crt)",
        ),
        (
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: "
            "certificate has expired",
            "KafkaCertificateExpired",
            "renew it",
        ),
    ],
)
def test_a_refused_client_is_named_with_what_to_fix(text: str, reason: str, advice: str) -> None:
    settings = kafka(
        {
            "protocol": "SASL_SSL",
            "tls": {"caSecretRef": {"name": "kafka-ca"}},
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "tailor",
                     "passwordSecretRef": {"name": "tailor-user"}},
        }
    )  # fmt: skip
    diagnosis = kafkaclient.diagnose(KafkaError(KafkaError._AUTHENTICATION, text), settings)
    assert (diagnosis.reason, diagnosis.blocking) == (reason, True)
    assert advice in diagnosis.message


def test_an_unreachable_broker_is_not_blamed_on_the_settings() -> None:
    error = KafkaError(KafkaError._TRANSPORT, "b-1:9096/bootstrap: Connect to ipv4#10.0.0.9:9096 failed")
    diagnosis = kafkaclient.diagnose(error, kafka(None))
    assert (diagnosis.reason, diagnosis.blocking) == ("KafkaUnreachable", False)


def test_librdkafkas_repeats_are_one_report_whatever_their_timings() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kafka", logging.ERROR, __file__, 1, message, (), None)

    first = record("sasl_ssl://b:9096/bootstrap: SSL handshake failed (after 5ms in state SSL_HANDSHAKE)")
    later = record(
        "sasl_ssl://b:9096/bootstrap: SSL handshake failed (after 12ms in state SSL_HANDSHAKE, "
        "4 identical error(s) suppressed)"
    )
    assert logthrottle.repeat_key(first) == logthrottle.repeat_key(later)
    throttle = logthrottle.RepeatThrottle(interval_seconds=10)
    assert throttle.filter(first)
    assert not throttle.filter(later)
