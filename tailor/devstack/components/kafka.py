"""Apache Kafka: one KRaft node in combined broker+controller mode, jars from Maven Central.

Besides PLAINTEXT (what every test and the demo use) it serves the secured listeners Kafka
deployments run, for the tests of Tailor's Kafka security (docs/devstack.md):

- SASL_SSL: PLAIN (a user in the broker's JAAS config), SCRAM-SHA-256 and SCRAM-SHA-512 (a user
  created through the admin API once the broker is up), on TLS;
- MTLS: TLS with `ssl.client.auth=required`, a client certificate from the stack's CA.

The broker's certificate names 127.0.0.1 and localhost and is signed by the stack's CA
(tailor.devstack.certs.kafka_tls); `Kafka.secure()` gives clients what they need.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import secrets
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailor.devstack import certs, nodenet, probes, procs
from tailor.devstack.components.base import Component
from tailor.devstack.errors import ComponentFailed

HEAP = "-Xmx512m"

#: log4j2 configuration: INFO to stdout (our log file); request logs and the full config
#: dumps (hundreds of lines per client the broker creates) only from WARN up.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Kafka's own generator never returns an id starting with '-' (it would read as a
    command-line flag), so neither do we.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class Users:
    """The secured listeners' users: made once per stack, kept in its data directory."""

    scram_user: str
    scram_password: str
    plain_user: str
    plain_password: str
    oidc_client_secret: str

    @classmethod
    def load_or_make(cls, path: Path) -> Users:
        if path.exists():
            known = json.loads(path.read_text())
            if set(known) == {field.name for field in dataclasses.fields(cls)}:
                return cls(**known)
        token = functools.partial(secrets.token_urlsafe, 18)
        users = cls("tailor-scram", token(), "tailor-plain", token(), token())
        path.write_text(json.dumps(users.__dict__))
        path.chmod(0o600)
        return users


@dataclass(frozen=True)
class SecureListeners:
    """What server.properties needs for the SASL_SSL and MTLS listeners."""

    sasl_ssl_port: int
    mtls_port: int
    keystore: Path  # the broker's key and certificate chain (PEM)
    truststore: Path  # the CA whose client certificates the MTLS listener accepts
    users: Users
    jwks: Path  # the OIDC provider's keys, which OAUTHBEARER tokens must be signed with


#: The ways of connecting the secured listeners offer, as tests and benchmarks name them
#: (sasl-ssl-oidc needs a token endpoint: tests run a stand-in provider).
SECURED = ("sasl-ssl-scram-sha-512", "sasl-ssl-plain", "mtls")
#: The claims the broker wants in an OAUTHBEARER token.
OIDC_ISSUER = "https://oidc.tailor.devstack"
OIDC_AUDIENCE = "kafka"
OIDC_CLIENT_ID = "tailor"


@dataclass(frozen=True)
class SecureEndpoints:
    """What a client needs to use the broker's secured listeners."""

    sasl_ssl: str  # host:port
    mtls: str
    ca: Path  # signed the broker's certificate
    client_cert: Path  # accepted by the MTLS listener (CN=tailor-kafka-client)
    client_key: Path
    users: Users
    oidc_signing_key: Path  # a provider's signing key: tokens signed with it pass the broker
    oidc_client_secret: str  # what the stand-in provider wants of client OIDC_CLIENT_ID

    def stack_spec(self, way: str, token_endpoint: str = "") -> tuple[str, dict[str, Any]]:
        """(bootstrapServers, spec.kafka.security) of one of SECURED or sasl-ssl-oidc (tokens from
        `token_endpoint`), as a user writes them, naming the Secrets of `secret_files`."""
        ca = {"caSecretRef": {"name": "kafka-ca"}}
        users = self.users
        if way == "sasl-ssl-oidc":
            oidc = {
                "tokenEndpoint": token_endpoint,
                "clientId": OIDC_CLIENT_ID,
                "scope": "kafka",
                "clientSecretRef": {"name": "tailor-oidc"},
                "caSecretRef": {"name": "kafka-ca"},  # the provider's certificate: also the stack's CA
            }
            return self.sasl_ssl, {
                "protocol": "SASL_SSL",
                "tls": ca,
                "sasl": {"mechanism": "OAUTHBEARER", "oidc": oidc},
            }
        if way == "sasl-ssl-scram-sha-512":
            sasl = {"mechanism": "SCRAM-SHA-512", "username": users.scram_user,
                    "passwordSecretRef": {"name": "tailor-scram"}}  # fmt: skip
            return self.sasl_ssl, {"protocol": "SASL_SSL", "tls": ca, "sasl": sasl}
        if way == "sasl-ssl-plain":
            sasl = {
                "mechanism": "PLAIN",
                "username": users.plain_user,
                "passwordSecretRef": {"name": "tailor-plain"},
            }
            return self.sasl_ssl, {"protocol": "SASL_SSL", "tls": ca, "sasl": sasl}
        if way == "mtls":
            return self.mtls, {
                "protocol": "SSL",
                "tls": {**ca, "clientCertificateSecretRef": {"name": "tailor-client"}},
            }
        raise ValueError(f"{way!r}: choose one of {', '.join(SECURED)}")

    def secret_files(self) -> dict[str, bytes]:
        """The Secrets `stack_spec` names, as `<secret>/<key>` -> value (how the operator mounts them)."""
        return {
            "kafka-ca/ca.crt": self.ca.read_bytes(),
            "tailor-client/tls.crt": self.client_cert.read_bytes(),
            "tailor-client/tls.key": self.client_key.read_bytes(),
            "tailor-scram/password": self.users.scram_password.encode(),
            "tailor-plain/password": self.users.plain_password.encode(),
            "tailor-oidc/clientSecret": self.oidc_client_secret.encode(),
        }


def server_properties(
    port: int,
    controller_port: int,
    log_dir: Path,
    pods_listener: str | None = None,
    secure: SecureListeners | None = None,
) -> str:
    """server.properties of a single combined-mode node on loopback.

    ``pods_listener`` (host:port, the real node's address) adds a listener named PODS that
    advertises that address, so clients in pods are sent back to it, not to 127.0.0.1.
    ``secure`` adds the SASL_SSL and MTLS listeners.
    """
    listeners = [f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{controller_port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if pods_listener is not None:
        listeners.append(f"PODS://{pods_listener}")
        protocols.append("PODS:PLAINTEXT")
    if secure is not None:
        listeners += [f"SASL_SSL://127.0.0.1:{secure.sasl_ssl_port}", f"MTLS://127.0.0.1:{secure.mtls_port}"]
        protocols += ["SASL_SSL:SASL_SSL", "MTLS:SSL"]
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"log.dirs={log_dir}",
            # One broker: every internal topic has a single replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Fewer consumer-offsets partitions: the first consumer group joins in
            # milliseconds instead of waiting for 50 partitions to be created.
            "offsets.topic.num.partitions=4",
            # Consumers in tests join at once; do not wait 3 s for more members.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "num.partitions=1",
            *(_secure_properties(secure) if secure is not None else ()),
            "",
        ]
    )


def _secure_properties(secure: SecureListeners) -> list[str]:
    users = secure.users
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{users.plain_user}="{users.plain_password}";'
    )
    oauthbearer = "org.apache.kafka.common.security.oauthbearer"
    lines = [
        "listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
        f"listener.name.sasl_ssl.plain.sasl.jaas.config={plain}",
        f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
        # OAUTHBEARER with Kafka's own validator of signed JWTs (issuer, audience, signature by the
        # provider's JWKS, read from a file: no provider needs to run for the broker to start).
        f"listener.name.sasl_ssl.oauthbearer.sasl.jaas.config={oauthbearer}.OAuthBearerLoginModule required;",
        "listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class="
        f"{oauthbearer}.OAuthBearerValidatorCallbackHandler",
        f"sasl.oauthbearer.jwks.endpoint.url={secure.jwks.as_uri()}",
        f"sasl.oauthbearer.expected.issuer={OIDC_ISSUER}",
        f"sasl.oauthbearer.expected.audience={OIDC_AUDIENCE}",
        "listener.name.mtls.ssl.client.auth=required",
        "listener.name.mtls.ssl.truststore.type=PEM",
        f"listener.name.mtls.ssl.truststore.location={secure.truststore}",
    ]
    for listener in ("sasl_ssl", "mtls"):
        lines += [
            f"listener.name.{listener}.ssl.keystore.type=PEM",
            f"listener.name.{listener}.ssl.keystore.location={secure.keystore}",
        ]
    return lines


class Kafka(Component):
    name = "kafka"
    #: kafka-pods: the listener pods on the real node use (unused without one).
    port_keys: tuple[str, ...] = ("kafka", "kafka-controller", "kafka-pods", "kafka-sasl-ssl", "kafka-mtls")
    start_timeout = 90.0
    stop_timeout = 30.0  # a clean shutdown lets the next start skip log recovery
    #: The SASL_SSL and MTLS listeners (on by default; bench/devstack_kafka.py times a start without).
    secure_listeners = True
    heap = HEAP

    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.context.port('kafka')}"

    def pod_bootstrap(self) -> str:
        """Where pods on the real node reach the broker (the node's address)."""
        return f"{nodenet.GATEWAY}:{self.context.port('kafka-pods')}"

    def endpoint(self) -> str:
        return self.bootstrap()

    def secure(self) -> SecureEndpoints:
        """The SASL_SSL and MTLS listeners, their CA, client certificate and users."""
        return SecureEndpoints(
            sasl_ssl=f"127.0.0.1:{self.context.port('kafka-sasl-ssl')}",
            mtls=f"127.0.0.1:{self.context.port('kafka-mtls')}",
            ca=certs.kafka_tls(self.context.certs),
            client_cert=self.context.certs.kafka_client_cert,
            client_key=self.context.certs.kafka_client_key,
            users=Users.load_or_make(self.users_file),
            oidc_signing_key=self.context.certs.oidc_signing_key,
            oidc_client_secret=Users.load_or_make(self.users_file).oidc_client_secret,
        )

    @property
    def users_file(self) -> Path:
        return self.data_dir / "users.json"

    @property
    def config(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            str(self.context.tools.java),
            self.heap,
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.context.tools.kafka_libs}{os.sep}*",
            main,
            *args,
        ]

    def argv(self) -> list[str]:
        argv = self._java("kafka.Kafka", str(self.config))
        if self.secure_listeners:  # Kafka reads JWKS only from URLs it is told to allow
            allowed = (
                f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.context.certs.oidc_jwks.as_uri()}"
            )
            argv.insert(1, allowed)
        return argv

    def prepare(self) -> None:
        port, controller_port = self.context.port("kafka"), self.context.port("kafka-controller")
        marker = self.data_dir / "formatted-controller-port"
        # The standalone controller's address is written into the metadata log when it is
        # formatted; a stack whose controller port had to change is formatted afresh.
        if marker.exists() and marker.read_text().strip() != str(controller_port):
            shutil.rmtree(self.log_dir, ignore_errors=True)
            marker.unlink()
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        pods = self.pod_bootstrap() if self.context.real_node else None
        secure = (
            SecureListeners(
                sasl_ssl_port=self.context.port("kafka-sasl-ssl"),
                mtls_port=self.context.port("kafka-mtls"),
                keystore=self.context.certs.kafka_server,
                truststore=certs.kafka_tls(self.context.certs),
                users=Users.load_or_make(self.users_file),
                jwks=certs.oidc_issuer(self.context.certs),
            )
            if self.secure_listeners
            else None
        )
        self.config.write_text(server_properties(port, controller_port, self.log_dir, pods, secure))
        if (self.log_dir / "meta.properties").exists():
            return
        record = procs.spawn(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.config),
            ),
            log=self.log,
        )
        probes.wait_until(
            lambda: procs.exited(record),
            what="formatting Kafka storage",
            timeout=60,
            log=self.log,
        )
        if not (self.log_dir / "meta.properties").exists():
            raise ComponentFailed(f"formatting Kafka storage failed; log: {self.log}")
        marker.write_text(str(controller_port))

    def healthy(self) -> bool:
        return probes.kafka_metadata(self.bootstrap())

    def after_healthy(self) -> None:
        """The SCRAM user, as a cluster admin makes one: through the admin API (KRaft keeps SCRAM
        credentials in the metadata log; an upsert, so a restart changes nothing)."""
        if not self.secure_listeners:
            return
        from confluent_kafka import admin  # heavy import, only when Kafka runs
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        users = Users.load_or_make(self.users_file)
        client = admin.AdminClient({"bootstrap.servers": self.bootstrap(), "log_level": 0})
        password = users.scram_password.encode()
        # One request per mechanism: the broker refuses two changes to one user in a request.
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
            upsert: list[Any] = [
                UserScramCredentialUpsertion(users.scram_user, ScramCredentialInfo(mechanism, 4096), password)
            ]
            for future in client.alter_user_scram_credentials(upsert).values():
                future.result(timeout=30)
