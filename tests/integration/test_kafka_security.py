"""Kafka security end to end on the real broker's secured listeners (tailor.devstack's Kafka):
SASL_SSL with SCRAM-SHA-512, with PLAIN and with OAUTHBEARER (OIDC client credentials from a stand-in
provider, tokens checked by Kafka's own JWT validator), and mutual TLS, certificates from the stack's CA.

Every Kafka client of a stack goes through tailor.core.kafkaclient: the topic admin (the ruleset's
publication makes the topics), the content API's readiness check and its collector's producer
(POST /v1/events), the worker's consumer (events counted in Redis) and its dead-letter producer.
Each listener's test drives them all through real `tailor api` and `tailor worker` processes that
find the Secret keys as a pod finds them (files under TAILOR_KAFKA_SECRETS_DIR).

Then what a user sees when the settings are wrong: a refused password or an untrusted CA leaves the
worker running (unready, with the cause) and the API unready, each logging at a bounded rate; and the
operator, checking the stack's Kafka with the stack's own Secrets, sets Ready=False with the cause.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s_client
from oidc_provider import Provider
from pipeline_harness import Process, read_topic, running_pipeline, wait_until
from test_operator import Operator, get, ready, wait_for

from tailor import devstack
from tailor.core import kafkaclient
from tailor.core.rules import compiler, specs
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import certs, ports, scratch
from tailor.devstack.components.kafka import SecureEndpoints

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CA = {"name": "kafka-ca"}  # caSecretRef, key ca.crt: as SecureEndpoints.stack_spec names it
STRIMZI_USER_KEYS = {"certificate": "user.crt", "key": "user.key"}  # a KafkaUser's Secret (tls)


@pytest.fixture(scope="module")
def secure(stack: devstack.Stack) -> SecureEndpoints:
    return stack.kafka_secure()


@pytest.fixture(scope="module")
def oidc(stack: devstack.Stack, secure: SecureEndpoints) -> Iterator[Provider]:
    """The token endpoint of the OAUTHBEARER tests (a stand-in for the team's OIDC provider)."""
    with Provider(secure, certs.CertPaths(stack.paths.certs).kafka_server).running() as provider:
        yield provider


def secret_files(secure: SecureEndpoints, **replaced: bytes) -> dict[str, bytes]:
    """The Secrets' keys, as a namespace holds them (<secret>/<key> -> value), some `replaced`."""
    return {**secure.secret_files(), **replaced}


def mounted(directory: Path, files: dict[str, bytes]) -> Path:
    """`files` laid out as the operator mounts them into a pod (<dir>/<secret>/<key>)."""
    for name, data in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def security(
    listener: str, secure: SecureEndpoints, oidc: Provider | None = None
) -> tuple[str, dict[str, Any]]:
    """(bootstrap servers, spec.kafka.security) of one listener, as a user writes them."""
    return secure.stack_spec(listener, oidc.url if oidc else "")


def secured_config(bootstrap: str, spec: dict[str, Any], partitions: int = 2) -> StackConfig:
    """A throwaway stack (topics of its own) whose Kafka settings the compiler made of `spec`."""
    config = scratch.stack_config(bootstrap, "kafkasec", prefix="sec-", partitions=partitions)
    settings = compiler.kafka_security(specs.KafkaSecuritySpec.model_validate(spec))
    return config.model_copy(update={"kafka": config.kafka.model_copy(update={"security": settings})})


def page_views(user: str, n: int) -> list[dict[str, Any]]:
    return [
        {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": "s1",
         "properties": {"category": "shoes"}}
        for _ in range(n)
    ]  # fmt: skip


# --- every client over each listener ----------------------------------------------------------------


@pytest.mark.parametrize("listener", ["sasl-ssl-scram-sha-512", "sasl-ssl-plain", "sasl-ssl-oidc", "mtls"])
def test_every_client_works_over_the_secured_listener(
    listener: str,
    secure: SecureEndpoints,
    oidc: Provider,
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tokens_before = oidc.issued
    bootstrap, spec = security(listener, secure, oidc)
    config = secured_config(bootstrap, spec)
    secrets = mounted(tmp_path / "secrets", secret_files(secure))
    kafka = config.kafka
    # Publishing made the topics through the admin client over the secured listener.
    with running_pipeline(
        config, redis_url, {"TAILOR_WORKER_POLL_SECONDS": "0.1"}, kafka_secrets=secrets
    ) as (pipeline):
        plain_view = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
        assert len(plain_view[kafka.events_topic].partitions) == kafka.partitions
        assert len(plain_view[kafka.dead_letter_topic].partitions) == kafka.partitions
        # The collector is ready (running_pipeline waited for /readyz/collector): its check of Kafka
        # connected too.
        kafka_check = httpx.get(f"{pipeline.admin_url}/readyz/collector", timeout=10).json()["checks"][
            "kafka"
        ]
        assert (kafka_check["ok"], kafka_check["detail"]) == (True, "ok")

        user = f"sec-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=pipeline.api_url, timeout=15) as http:
            reply = http.post("/v1/events", json={"events": page_views(user, 3)})
            assert reply.status_code == 202, reply.text  # the collector's producer: acks=all
            wait_until(lambda: pipeline.views(user) == 3, 60, pipeline.outputs)

        # A message no event can be read from, put on the topic by a client with the same settings:
        # the worker dead-letters it over the secured listener.
        producer = Producer(kafkaclient.client_config(kafka, secrets))
        producer.produce(kafka.events_topic, b"\x00 not json", user.encode())
        assert producer.flush(30) == 0
        wait_until(
            lambda: pipeline.worker_metric("tailor_worker_dead_letters_total") >= 1, 60, pipeline.outputs
        )
        letters = read_topic(kafka_bootstrap, kafka.dead_letter_topic, kafka.partitions)
        assert [dict(m.headers() or [])["tailor-dlq-reason"] for m in letters] == [b"undecodable"]
        assert letters[0].value() == b"\x00 not json"

        worker_ready = httpx.get(pipeline.worker_metrics.replace("/metrics", "/readyz"), timeout=10)
        assert worker_ready.status_code == 200, worker_ready.text
    if listener == "sasl-ssl-oidc":  # every client of both processes got its token from the provider
        assert oidc.issued - tokens_before >= 4, oidc.issued


# --- wrong settings: named, bounded, no crash loop ------------------------------------------------------


def other_ca() -> bytes:
    """A CA that signed nothing the broker has: what a stale or wrong CA bundle looks like."""
    cert, _ = certs.make_ca()
    return cert.public_bytes(serialization.Encoding.PEM)


WRONG_SETTINGS = {"wrong-password": "KafkaAuthenticationFailed", "untrusted-ca": "KafkaCertificateUntrusted"}


@dataclass
class Misconfigured:
    """A worker and an API whose mounted Kafka Secrets are wrong in one way, and when they started."""

    worker: Process
    api: Process
    metrics_port: int
    admin_port: int
    started: float

    def close(self) -> None:
        self.worker.close()
        self.api.close()


def start_misconfigured(case: str, secure: SecureEndpoints, redis_url: str, directory: Path) -> Misconfigured:
    bootstrap, spec = security("sasl-ssl-scram-sha-512", secure)
    config = secured_config(bootstrap, spec)
    right = mounted(directory / "right", secret_files(secure))
    wrong = {"tailor-scram/password": b"not-the-password"} if case == "wrong-password" else {}
    wrong |= {"kafka-ca/ca.crt": other_ca()} if case == "untrusted-ca" else {}
    # The published settings are right (the topics are made with the right Secrets); the pods'
    # Secrets are not, as when a Secret is edited wrong or a CA bundle is stale.
    scratch.publish(redis_url, config, right)
    secrets = {"TAILOR_KAFKA_SECRETS_DIR": str(mounted(directory / "wrong", secret_files(secure, **wrong)))}
    metrics_port, api_port, admin_port = ports.pick(None), ports.pick(None), ports.pick(None)
    worker = Process(
        ["worker", "--stack", config.key, "--metrics-port", str(metrics_port)],
        {"TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_METRICS_HOST": "127.0.0.1", **secrets},
    )
    api = Process(
        [
            "api",
            "--stack",
            config.key,
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--admin-port",
            str(admin_port),
            "--log-level",
            "warning",
        ],
        {"TAILOR_REDIS_URL": redis_url, **secrets},
    )
    return Misconfigured(worker, api, metrics_port, admin_port, time.monotonic())


@pytest.fixture(scope="module")
def misconfigured(
    secure: SecureEndpoints, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Misconfigured]]:
    """Every case's worker and API, started together when the first case is tested: each test still
    watches its own processes for half a minute from their start, but the half minutes overlap."""
    running: dict[str, Misconfigured] = {}
    try:
        for case in WRONG_SETTINGS:
            running[case] = start_misconfigured(case, secure, redis_url, tmp_path_factory.mktemp(case))
        yield running
    finally:
        for processes in running.values():
            processes.close()


@pytest.mark.parametrize(("case", "reason"), WRONG_SETTINGS.items())
def test_wrong_settings_leave_the_worker_running_unready_and_logging_the_cause_at_a_bounded_rate(
    case: str, reason: str, misconfigured: dict[str, Misconfigured]
) -> None:
    running = misconfigured[case]
    worker, api = running.worker, running.api
    try:

        def worker_readiness() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{running.metrics_port}/readyz", timeout=5)
            except httpx.HTTPError:
                return None

        def unready_with_reason() -> bool:
            answer = worker_readiness()
            return answer is not None and answer.status_code == 503 and reason in answer.text

        wait_until(unready_with_reason, 60, lambda: worker.output())

        def api_readiness() -> dict[str, Any]:
            try:
                url = f"http://127.0.0.1:{running.admin_port}/readyz/collector"
                return dict(httpx.get(url, timeout=10).json())
            except httpx.HTTPError:
                return {}

        wait_until(
            lambda: reason in str(api_readiness().get("checks", {}).get("kafka", {}).get("detail", "")),
            60,
            lambda: f"{api_readiness()}\n{api.output()}",
        )
        # Half a minute of retrying: the worker is alive, still unready, and its log says why in a
        # bounded number of lines (librdkafka alone retries every few hundred ms per client).
        time.sleep(max(0.0, 30 - (time.monotonic() - running.started)))
        assert worker.alive, worker.output()
        assert api.alive, api.output()
        assert unready_with_reason()
        log = worker.output(200_000)
        assert reason in log
        kafka_lines = [line for line in log.splitlines() if re.search(r"kafka|librdkafka", line, re.I)]
        assert 0 < len(kafka_lines) <= 30, "\n".join(kafka_lines)
        api_log = api.output(200_000)
        assert reason in api_log
        assert len([line for line in api_log.splitlines() if reason in line]) <= 15, api_log
    finally:
        running.close()  # not left retrying through the module's other tests


# --- the operator's view: Ready=False with the cause ------------------------------------------------------


@pytest.fixture(scope="module")
def operator_crds(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    # Polled rather than `kubectl wait`, which fails outright on a CRD so new it has no conditions yet.
    established = '{.status.conditions[?(@.type=="Established")].status}'
    crd = ("get", "crd/personalizationstacks.tailor.dev", "-o", f"jsonpath={established}")
    wait_for("the PersonalizationStack CRD Established", lambda: kubectl(*crd, check=False).stdout == "True")


@pytest.fixture
def operator(
    operator_crds: None, kubeconfig: Path, redis_url: str, namespace: str, tmp_path: Path
) -> Iterator[Operator]:
    # Drift every 2 s: a Secret's change is seen by the next reconcile (the operator does not watch
    # Secrets), which re-applies the children and checks the stack's Kafka again.
    running = Operator(
        kubeconfig,
        tmp_path / "operator.log",
        "--redis-url", redis_url, "--namespace", namespace, "--standalone",
        env={"TAILOR_OPERATOR_DRIFT_INTERVAL_SECONDS": "2"},
    )  # fmt: skip
    yield running
    running.stop()


def put_secret(kube_api: k8s_client.ApiClient, namespace: str, name: str, data: dict[str, bytes]) -> None:
    core = k8s_client.CoreV1Api(kube_api)
    body = k8s_client.V1Secret(
        metadata=k8s_client.V1ObjectMeta(name=name), string_data={k: v.decode() for k, v in data.items()}
    )
    try:
        core.replace_namespaced_secret(name, namespace, body)
    except k8s_client.ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)


def test_the_operator_names_a_refused_password_and_an_untrusted_ca_in_ready_and_rolls_pods_on_a_fix(
    operator: Operator,
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    secure: SecureEndpoints,
    redis_url: str,
) -> None:
    bootstrap, kafka_security = security("sasl-ssl-scram-sha-512", secure)
    put_secret(kube_api, namespace, "kafka-ca", {"ca.crt": secure.ca.read_bytes()})
    put_secret(kube_api, namespace, "tailor-scram", {"password": b"not-the-password"})
    stack = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationStack",
        "metadata": {"name": "shop"},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap, "security": kafka_security,
                      "topics": {"events": f"op-{namespace}", "deadLetter": f"op-dead-{namespace}"}},
            "redis": {"url": redis_url},
        },
    }  # fmt: skip
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(stack))

    def ready_is(status: str, reason: str) -> dict[str, Any] | None:
        condition = ready(get(kube_api, namespace, "personalizationstacks", "shop"))
        return condition if (condition.get("status"), condition.get("reason")) == (status, reason) else None

    refused = wait_for(
        "Ready=False KafkaAuthenticationFailed", lambda: ready_is("False", "KafkaAuthenticationFailed")
    )
    assert "Secret tailor-scram (key password)" in refused["message"], refused
    assert secure.users.scram_user in refused["message"]
    apps = k8s_client.AppsV1Api(kube_api)

    def checksum() -> str:
        template = apps.read_namespaced_deployment("shop-worker", namespace).spec.template
        return str(template.metadata.annotations["tailor.dev/config-checksum"])

    worker_pod = apps.read_namespaced_deployment("shop-worker", namespace).spec.template.spec
    assert worker_pod.volumes[-1].projected.sources[0].secret.name in ("kafka-ca", "tailor-scram")
    assert worker_pod.containers[0].volume_mounts[-1].mount_path == "/etc/tailor/kafka"
    before = checksum()

    # The fix: the Secret gets the right password. The pods roll (they read it at start), Ready returns.
    put_secret(kube_api, namespace, "tailor-scram", {"password": secure.users.scram_password.encode()})
    wait_for("Ready=True", lambda: ready_is("True", "Ready"), timeout=60)
    assert checksum() != before
    connected = next(
        c for c in get(kube_api, namespace, "personalizationstacks", "shop")["status"]["conditions"]
        if c["type"] == "KafkaConnected"
    )  # fmt: skip
    assert connected["status"] == "True", connected

    # A CA bundle that did not sign the brokers' certificates.
    put_secret(kube_api, namespace, "kafka-ca", {"ca.crt": other_ca()})
    untrusted = wait_for(
        "Ready=False KafkaCertificateUntrusted", lambda: ready_is("False", "KafkaCertificateUntrusted")
    )
    assert "Secret kafka-ca (key ca.crt)" in untrusted["message"], untrusted
    assert operator.process.poll() is None, operator.output()


# --- the CRD --------------------------------------------------------------------------------------------


BAD_SECURITY = [
    ({"protocol": "SASL_SSL"}, "security.sasl is required with protocol SASL_SSL or SASL_PLAINTEXT"),
    ({"protocol": "PLAINTEXT", "tls": {}}, "security.tls applies only to protocol SSL or SASL_SSL"),
    ({"protocol": "TLS"}, 'Unsupported value: "TLS"'),
    (
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u"}},
        "sasl.mechanism PLAIN and SCRAM need username and passwordSecretRef",
    ),
    (
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "GSSAPI"}},
        'Unsupported value: "GSSAPI"',
    ),
    (
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER"}},
        "sasl.mechanism OAUTHBEARER needs exactly one of oidc or awsMskIam",
    ),
    (
        {
            "protocol": "SASL_PLAINTEXT",
            "sasl": {"mechanism": "OAUTHBEARER", "awsMskIam": {"region": "eu-west-1"}},
        },
        "sasl.awsMskIam needs protocol SASL_SSL",
    ),
    (
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER", "awsMskIam": {"region": "Europe"}}},
        "spec.kafka.security.sasl.awsMskIam.region",
    ),
    (
        {
            "protocol": "SASL_SSL",
            "sasl": {
                "mechanism": "OAUTHBEARER",
                "oidc": {
                    "tokenEndpoint": "http://idp/token",
                    "clientId": "c",
                    "clientSecretRef": {"name": "s"},
                },
            },
        },
        "oidc.tokenEndpoint must be an https:// URL",
    ),
    (
        {"protocol": "SSL", "tls": {"caSecretRef": {"name": "ca", "key": "../etc/passwd"}}},
        "spec.kafka.security.tls.caSecretRef.key",
    ),
]


def stack_manifest(security_spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "tailor.dev/v1alpha1",
            "kind": "PersonalizationStack",
            "metadata": {"name": "secured"},
            "spec": {
                "kafka": {"bootstrapServers": "b-1:9096", "security": security_spec},
                "redis": {"managed": True},
            },
        }
    )


@pytest.mark.parametrize(("spec", "message"), BAD_SECURITY, ids=[m for _, m in BAD_SECURITY])
def test_the_api_server_refuses_bad_kafka_security_with_our_message(
    operator_crds: None, kubectl: Callable[..., Any], namespace: str, spec: dict[str, Any], message: str
) -> None:
    refused = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=stack_manifest(spec), check=False
    )
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr


def test_the_api_server_accepts_each_documented_kafka_security_shape(
    operator_crds: None, kubectl: Callable[..., Any], namespace: str
) -> None:
    """The control for the refusals above: the shapes docs/operating.md shows all pass."""
    shapes = [
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER", "awsMskIam": {"region": "eu-west-1"}}},
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "SCRAM-SHA-512", "username": "tailor",
                                          "passwordSecretRef": {"name": "tailor-kafka"}}},
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN", "username": "APIKEY123",
                                          "passwordSecretRef": {"name": "confluent", "key": "apiSecret"}}},
        {"protocol": "SSL", "tls": {"caSecretRef": {"name": "my-cluster-cluster-ca-cert"},
                                    "clientCertificateSecretRef": {"name": "tailor", **STRIMZI_USER_KEYS}}},
        {"protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER", "oidc": {
            "tokenEndpoint": "https://idp.example/oauth2/token", "clientId": "tailor",
            "clientSecretRef": {"name": "tailor-oidc"}, "scope": "kafka",
            "extensions": {"logicalCluster": "lkc-123", "identityPoolId": "pool-abc"}}}},
    ]  # fmt: skip
    for shape in shapes:
        accepted = kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=stack_manifest(shape)
        )
        assert "(server dry run)" in accepted.stdout


def test_the_msk_iam_token_is_handed_to_librdkafka_which_sends_it_to_the_broker(
    secure: SecureEndpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSK IAM needs AWS, which is out of reach here: what is tested is the wiring. A token signed
    (locally, SigV4) with static credentials from the default chain, fetched by librdkafka through
    oauth_cb when the client starts, and sent to the broker's OAUTHBEARER, whose JWT validator refuses
    it (an MSK token is a signed URL, not a JWT): the broker did receive it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    spec = {"protocol": "SASL_SSL", "tls": {"caSecretRef": CA},
            "sasl": {"mechanism": "OAUTHBEARER", "awsMskIam": {"region": "eu-west-1"}}}  # fmt: skip
    config = secured_config(secure.sasl_ssl, spec)
    secrets = mounted(tmp_path, secret_files(secure))
    settings = kafkaclient.client_config(config.kafka, secrets)
    tokens: list[str] = []
    signer = settings["oauth_cb"]

    def counted(oauthbearer_config: str) -> tuple[str, float]:
        token, expiry = signer(oauthbearer_config)
        tokens.append(token)
        return token, expiry

    errors: list[str] = []
    quiet = logging.Logger("msk-iam-wiring")  # librdkafka's lines: kept out of the test's output
    client = AdminClient(
        {**settings, "oauth_cb": counted, "error_cb": lambda e: errors.append(e.str()), "logger": quiet}
    )
    with pytest.raises(Exception, match=r"transport failure|timed out"):
        client.list_topics(timeout=3)
    assert len(tokens) >= 1  # librdkafka asked for the token by itself, before any poll
    client.poll(0)  # serves error_cb
    del client
    assert any("invalid_token" in error for error in errors), errors
    # The check the worker and the API run names it.
    problem = kafkaclient.probe(config.kafka, secrets, timeout=5)
    assert problem is not None
    assert problem.reason == "KafkaAuthenticationFailed", problem
    assert "AWS MSK IAM token" in problem.message
