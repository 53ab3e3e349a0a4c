"""How every Kafka client of a stack connects, and how its failures are named.

`client_config` is the one place a stack's Kafka settings become librdkafka's: the servers and the
security of the published ruleset (never a secret's value: the ruleset is readable by every pod) and
the Secret keys the operator mounted beside it. The collector's producer, the API's readiness check,
the worker's consumer and dead-letter producer, the topic admin and the operator's probe all start
from it and add only what is their own (group, acks, callbacks).

`diagnose` names what a client's error means for the stack (a refused password, an untrusted
certificate, a listener that speaks another protocol...) and what to fix; `Health` keeps the last such
cause of one component's clients, logs it at a bounded rate and answers readiness; `probe` connects
once and says whether the settings work (the operator's check of a stack, the API's readiness).

Secret keys are files at `<secrets dir>/<secret>/<key>` (constants.KAFKA_SECRETS_DIR in a pod, where
the operator mounts them; TAILOR_KAFKA_SECRETS_DIR elsewhere). librdkafka reads the CA, certificate and
key from their files itself; passwords and client secrets are read here, when a client is made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import admin as kafka_admin

from tailor.core import constants
from tailor.core.logthrottle import RepeatThrottle
from tailor.core.rules.ruleset import KafkaConfig, KafkaSecurity, KafkaTls, SecretFile

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())  # one line per cause every few seconds, however often clients retry
# librdkafka's own lines (a failed connection every few hundred ms per client, while it lasts).
librdkafka_log = logging.getLogger("tailor.kafkaclient.librdkafka")
librdkafka_log.addFilter(RepeatThrottle())

DEFAULT_SECRETS_DIR: Final = Path(constants.KAFKA_SECRETS_DIR)
Config = dict[str, Any]


class SecretUnreadable(Exception):
    """A Secret key the stack's Kafka settings name is not where the operator mounts it."""


def secret_path(secrets_dir: Path, file: SecretFile) -> Path:
    return secrets_dir / file.secret / file.key


def _located(secrets_dir: Path, file: SecretFile) -> str:
    path = secret_path(secrets_dir, file)
    if not path.is_file():
        raise SecretUnreadable(_unmounted(file, path))
    return str(path)


def _read(secrets_dir: Path, file: SecretFile) -> str:
    path = secret_path(secrets_dir, file)
    try:
        text = path.read_text()
    except OSError:
        raise SecretUnreadable(_unmounted(file, path)) from None
    # `kubectl create secret --from-file` keeps the file's last newline; no password ends in one.
    return text.rstrip("\r\n")


def _unmounted(file: SecretFile, path: Path) -> str:
    return (
        f"Secret {file.secret} key {file.key} is not at {path}: the operator mounts it into the pod "
        "(a pod started before the stack named it is replaced), or set TAILOR_KAFKA_SECRETS_DIR outside one"
    )


def client_config(kafka: KafkaConfig, secrets_dir: Path = DEFAULT_SECRETS_DIR) -> Config:
    """librdkafka's settings to reach the stack's brokers: servers, protocol, TLS and SASL.

    Raises SecretUnreadable when a Secret key the settings name is not mounted.
    """
    security = kafka.security
    config: Config = {"bootstrap.servers": kafka.bootstrap_servers, "security.protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        tls = security.tls or KafkaTls()
        # Without a CA of its own: the system's trusted CAs (MSK, Confluent Cloud), which librdkafka
        # looks for in the usual places only when told to probe.
        config["ssl.ca.location"] = _located(secrets_dir, tls.ca) if tls.ca else "probe"
        if tls.certificate is not None and tls.key is not None:
            config["ssl.certificate.location"] = _located(secrets_dir, tls.certificate)
            config["ssl.key.location"] = _located(secrets_dir, tls.key)
        config["ssl.endpoint.identification.algorithm"] = "https" if tls.verify_hostname else "none"
    sasl = security.sasl
    if sasl is not None and security.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        config["sasl.mechanism"] = sasl.mechanism
        if sasl.mechanism != "OAUTHBEARER":
            # The CRD requires both for PLAIN and SCRAM.
            assert sasl.username is not None
            assert sasl.password is not None
            config["sasl.username"] = sasl.username
            config["sasl.password"] = _read(secrets_dir, sasl.password)
        elif sasl.oidc is not None:
            oidc = sasl.oidc
            config["sasl.oauthbearer.method"] = "oidc"
            config["sasl.oauthbearer.token.endpoint.url"] = oidc.token_endpoint
            config["sasl.oauthbearer.client.id"] = oidc.client_id
            config["sasl.oauthbearer.client.secret"] = _read(secrets_dir, oidc.client_secret)
            if oidc.scope:
                config["sasl.oauthbearer.scope"] = oidc.scope
            if oidc.ca is not None:
                config["https.ca.location"] = _located(secrets_dir, oidc.ca)
            if oidc.extensions:
                config["sasl.oauthbearer.extensions"] = ",".join(
                    f"{name}={value}" for name, value in sorted(oidc.extensions.items())
                )
        elif sasl.aws_msk_iam_region is not None:
            config["oauth_cb"] = msk_iam_token_provider(sasl.aws_msk_iam_region)
    return config


def msk_iam_token_provider(region: str) -> Callable[[str], tuple[str, float]]:
    """confluent-kafka's `oauth_cb` for AWS MSK IAM: a token signed (SigV4) with the credentials of the
    AWS default chain, which in a pod is its service account's role (IRSA or EKS Pod Identity)."""
    # botocore is large: imported only by stacks that use MSK IAM.
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    def token(_oauthbearer_config: str) -> tuple[str, float]:
        value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return value, expiry_ms / 1000  # librdkafka wants the expiry in seconds since the epoch

    return token


# --- what went wrong ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A client's failure, named for the stack's status and logs."""

    reason: str  # CamelCase: the Ready condition's reason
    message: str  # what happened, and what to fix
    # The settings or the Secrets are wrong: every pod fails alike and retrying alone will not help.
    # False: the network or the brokers, which may come back.
    blocking: bool


UNREACHABLE: Final = "KafkaUnreachable"
_AUTHORIZATION_CODES: Final = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
# librdkafka's and OpenSSL's wording, lowercased, for the causes a user can fix. Order matters: the
# first match names the cause (an expired certificate also fails verification).
_EXPIRED = ("certificate has expired", "certificate expired")
_HOSTNAME = ("hostname mismatch", "ip address mismatch")
_UNTRUSTED = (
    "certificate verify failed",
    "unable to get local issuer certificate",
    "self-signed certificate",
    "self signed certificate",
    "broker certificate could not be verified",
)
_CLIENT_CERTIFICATE = ("alert bad certificate", "alert certificate required", "alert unknown ca",
                       "alert certificate unknown", "alert certificate expired")  # fmt: skip
_PROTOCOL = (
    "incorrect security.protocol",
    "plaintext broker listener",  # TLS to a plaintext listener: librdkafka says so itself
    "wrong version number",
    "packet length too long",
    "record layer failure",
    "http request",
)
_MECHANISM = ("unsupported sasl mechanism", "broker's supported mechanisms", "no worthy mechs")
_TOKEN = ("oauthbearer token", "oidc", "token endpoint", "oauth_cb")
_AUTHENTICATION = ("sasl authentication error", "authentication failed", "invalid username or password",
                   "invalid credentials")  # fmt: skip


def diagnose(error: KafkaError | str, kafka: KafkaConfig) -> Diagnosis:
    """What `error` (a client's error, or its text) means for the stack, with what to fix."""
    text = error.str() if isinstance(error, KafkaError) else str(error)
    code = error.code() if isinstance(error, KafkaError) else None
    lowered = text.lower()
    security = kafka.security
    detail = f" (librdkafka: {text})"

    def has(words: Iterable[str]) -> bool:
        return any(word in lowered for word in words)

    if code in _AUTHORIZATION_CODES or "authorization failed" in lowered or "not authorized" in lowered:
        return Diagnosis(
            "KafkaNotAuthorized",
            "Kafka authenticated the client but its ACLs refuse an operation: grant the component's ACLs "
            f"(docs/operating.md, Kafka security){detail}",
            True,
        )
    if has(_EXPIRED):
        return Diagnosis(
            "KafkaCertificateExpired",
            f"a certificate has expired (the broker's, its CA's or the client's): renew it{detail}",
            True,
        )
    if has(_HOSTNAME):
        return Diagnosis(
            "KafkaHostnameMismatch",
            f"the broker's certificate does not name the address the client connected to "
            f"({kafka.bootstrap_servers}, or the broker's advertised listener): connect by a name the "
            f"certificate holds, or set tls.verifyHostname: false as a last resort{detail}",
            True,
        )
    if has(_CLIENT_CERTIFICATE):
        return Diagnosis(
            "KafkaClientCertificateRejected", _client_certificate_advice(security) + detail, True
        )
    if has(_UNTRUSTED):
        return Diagnosis("KafkaCertificateUntrusted", _trust_advice(security) + detail, True)
    # Plaintext to a TLS listener: the broker drops the connection at the first request it cannot read.
    plain_to_tls = (
        security.protocol in ("PLAINTEXT", "SASL_PLAINTEXT")
        and "disconnected" in lowered
        and "state apiversion_query" in lowered
    )
    if has(_PROTOCOL) or plain_to_tls:
        return Diagnosis(
            "KafkaProtocolMismatch",
            f"the listener at {kafka.bootstrap_servers} does not speak {security.protocol}: check "
            "spec.kafka.security.protocol against the port (MSK: 9092 plaintext, 9094 TLS, 9096 SASL/SCRAM, "
            f"9098 IAM; Confluent Cloud: 9092 SASL_SSL){detail}",
            True,
        )
    if has(_MECHANISM):
        mechanism = security.sasl.mechanism if security.sasl else "none"
        return Diagnosis(
            "KafkaMechanismUnsupported",
            f"the listener does not accept SASL mechanism {mechanism}: use one it enables{detail}",
            True,
        )
    if security.sasl is not None and security.sasl.mechanism == "OAUTHBEARER" and has(_TOKEN):
        return Diagnosis("KafkaTokenUnavailable", _token_advice(security) + detail, True)
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) or has(_AUTHENTICATION):
        return Diagnosis("KafkaAuthenticationFailed", _credentials_advice(security) + detail, True)
    if code == KafkaError._SSL or "ssl handshake failed" in lowered:
        return Diagnosis(
            "KafkaTlsFailed",
            f"the TLS handshake with the broker failed: check spec.kafka.security.tls{detail}",
            True,
        )
    return Diagnosis(
        UNREACHABLE,
        f"no broker of {kafka.bootstrap_servers} answered: check the servers and the network between "
        f"(NetworkPolicies, security groups){detail}",
        False,
    )


def unreadable(error: SecretUnreadable) -> Diagnosis:
    return Diagnosis("KafkaSecretUnreadable", str(error), True)


def _secret(file: SecretFile | None) -> str:
    return f"Secret {file.secret} (key {file.key})" if file else "no Secret"


def _trust_advice(security: KafkaSecurity) -> str:
    ca = security.tls.ca if security.tls else None
    where = f"a CA in {_secret(ca)}" if ca else "a CA the system trusts"
    return (
        f"the broker's certificate is not signed by {where}: put the CA that signed the brokers' "
        "certificates in spec.kafka.security.tls.caSecretRef (Strimzi: <cluster>-cluster-ca-cert, key ca.crt)"
    )


def _client_certificate_advice(security: KafkaSecurity) -> str:
    certificate = security.tls.certificate if security.tls else None
    if certificate is None:
        return (
            "the listener requires a client certificate (mutual TLS) and none is configured: set "
            "spec.kafka.security.tls.clientCertificateSecretRef"
        )
    return (
        f"the broker refused the client certificate in {_secret(certificate)}: it must be valid and signed "
        "by a CA the listener trusts (Strimzi: the clients CA, as a KafkaUser with authentication: tls has)"
    )


def _credentials_advice(security: KafkaSecurity) -> str:
    sasl = security.sasl
    if sasl is None:
        return "Kafka refused the client: the listener requires authentication; set spec.kafka.security.sasl"
    if sasl.mechanism == "OAUTHBEARER":
        who = "AWS MSK IAM token" if sasl.aws_msk_iam_region else "OIDC token"
        return (
            f"Kafka refused the {who}: check that the identity it carries may connect (MSK: an IAM policy "
            "with kafka-cluster:Connect on the cluster; OIDC: the broker's issuer, audience and JWKS)"
        )
    return (
        f"Kafka refused the {sasl.mechanism} credentials of user {sasl.username}: the password in "
        f"{_secret(sasl.password)} is wrong or the user does not exist on the cluster (SCRAM: "
        "kafka-configs --alter --add-config SCRAM-SHA-512=...; Strimzi: a KafkaUser)"
    )


def _token_advice(security: KafkaSecurity) -> str:
    sasl = security.sasl
    if sasl is not None and sasl.aws_msk_iam_region:
        return (
            "no AWS MSK IAM token could be signed: the pod needs an AWS identity (a service account with an "
            "IAM role: IRSA or EKS Pod Identity) and the region must be right"
        )
    endpoint = sasl.oidc.token_endpoint if sasl is not None and sasl.oidc else "the token endpoint"
    return (
        f"no OAUTHBEARER token from {endpoint}: check the endpoint, the client id and the client secret "
        "in spec.kafka.security.sasl.oidc"
    )


# --- one component's view ----------------------------------------------------------------------------


class Health:
    """What one component's Kafka clients last said about the connection, named (diagnose), logged at
    a bounded rate, and asked by readiness. Clients report through `on_error` (librdkafka's error_cb);
    the component says when a call to the brokers succeeded (`connected`)."""

    def __init__(self, kafka: KafkaConfig, component: str) -> None:
        self.kafka = kafka
        self.component = component
        self.problem: Diagnosis | None = None
        self.ever_connected = False

    def on_error(self, error: KafkaError) -> None:
        self.failed(diagnose(error, self.kafka))

    def failed(self, diagnosis: Diagnosis) -> None:
        self.problem = diagnosis
        log.warning(
            "%s cannot use Kafka: %s: %s",
            self.component,
            diagnosis.reason,
            diagnosis.message,
            extra={"throttle_key": f"{self.component}:{diagnosis.reason}"},
        )

    def connected(self) -> None:
        if self.problem is not None:
            log.info("%s reaches Kafka again (%s is over)", self.component, self.problem.reason)
        self.problem = None
        self.ever_connected = True

    def readiness(self) -> tuple[bool, str]:
        if self.problem is not None:
            return False, f"{self.problem.reason}: {self.problem.message}"
        if not self.ever_connected:
            return False, "not connected to Kafka yet"
        return True, "ok"

    def callbacks(self) -> Config:
        """The client settings that report here, and librdkafka's own lines through a throttled log."""
        return {"error_cb": self.on_error, "logger": librdkafka_log}


def probe(
    kafka: KafkaConfig,
    secrets_dir: Path = DEFAULT_SECRETS_DIR,
    timeout: float = 10.0,
    *,
    require_topic: bool = False,
    stop: threading.Event | None = None,
) -> Diagnosis | None:
    """Connect once with the stack's settings and read the events topic's metadata (which needs the
    TLS handshake, authentication and Describe on the topic): None when that works, else the cause.

    Returns as soon as a client reports a cause the settings own (a refused password needs no ten
    seconds to be sure of). A missing topic fails only with `require_topic` (the collector or a
    worker creates it). `stop` ends the wait early (the caller is shutting down).
    """
    try:
        config = client_config(kafka, secrets_dir)
    except SecretUnreadable as error:
        return unreadable(error)
    reported: list[KafkaError] = []
    lines: list[str] = []
    collector = logging.Logger("tailor.kafkaclient.probe")  # not registered: its records stay here
    collector.addHandler(_Collect(lines))
    settings: Config = {
        **config,
        "error_cb": reported.append,
        "logger": collector,
        "socket.timeout.ms": int(timeout * 1000),
        # Asking for a topic's metadata must never make it (a broker with auto.create.topics.enable
        # would): topics are the operator's, with the stack's settings (docs/topics.md).
        "allow.auto.create.topics": False,
    }
    client = kafka_admin.AdminClient(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = client.list_topics(kafka.events_topic, timeout=min(1.0, timeout))
        except KafkaException as error:
            reported.append(error.args[0])
        else:
            found = metadata.topics.get(kafka.events_topic)
            if found is not None and found.error is not None and found.error.code() in _AUTHORIZATION_CODES:
                return diagnose(found.error, kafka)
            if require_topic and (found is None or found.error is not None):
                why = found.error.str() if found is not None and found.error is not None else "missing"
                return Diagnosis("KafkaTopicMissing", f"topic {kafka.events_topic}: {why}", False)
            return None
        client.poll(0)  # serves error_cb and the log lines
        causes = [diagnose(error, kafka) for error in reported] + [diagnose(line, kafka) for line in lines]
        worst = most_telling(causes)
        # Sure once a cause the settings own is reported twice (a broker restarting may drop one
        # connection in a way that reads like a wrong protocol); else at the deadline.
        sure = worst is not None and worst.blocking and sum(c.reason == worst.reason for c in causes) > 1
        if sure or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return worst or diagnose("no answer", kafka)


def most_telling(diagnoses: Iterable[Diagnosis]) -> Diagnosis | None:
    """The cause to report among several: one the settings own before the network's."""
    found = list(diagnoses)
    return next((d for d in found if d.blocking), found[0] if found else None)


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def merged(config: Mapping[str, Any], **own: Any) -> Config:
    """`config` (client_config's) with a client's own settings; theirs win where both set one."""
    return {**config, **own}
