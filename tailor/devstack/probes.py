"""Health probes for the components, and a wait loop that fails fast with the log's tail."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailor.devstack.certs import CertPaths
from tailor.devstack.errors import ComponentFailed
from tailor.devstack.runner import tail

Probe = Callable[[], bool]


def wait_until(
    probe: Probe,
    *,
    what: str,
    timeout: float,
    log: Path | None = None,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``probe`` until it is true; raise ComponentFailed on timeout or early exit."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if probe():
                return
        except Exception as error:  # probes fail in many ways while a server boots
            last_error = f"{type(error).__name__}: {error}"
        if alive is not None and not alive():
            raise ComponentFailed(_failure(f"{what}: the process exited", log, last_error))
        if time.monotonic() >= deadline:
            raise ComponentFailed(_failure(f"{what}: not healthy after {timeout:.0f}s", log, last_error))
        time.sleep(interval)


def _failure(headline: str, log: Path | None, last_error: str) -> str:
    parts = [headline]
    if last_error:
        parts.append(f"last probe error: {last_error}")
    if log is not None:
        parts.append(f"log: {log}\n--- last lines ---\n{tail(log)}")
    return "\n".join(parts)


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def client_tls(certs: CertPaths) -> ssl.SSLContext:
    """TLS context that trusts the stack's CA and presents the admin client certificate."""
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return context


def insecure_tls() -> ssl.SSLContext:
    """For controller-manager/scheduler /healthz: they serve self-signed certs on loopback."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https_request(
    port: int,
    path: str,
    context: ssl.SSLContext,
    method: str = "GET",
    body: Any = None,
    timeout: float = 5.0,
    host: str = "127.0.0.1",
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    """One HTTPS request to ``host``:``port``; returns (status, body)."""
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def redis_ping(port: int) -> bool:
    """PING over the raw protocol: no client library needed to know Redis answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(64).startswith(b"+PONG")


def kafka_metadata(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request and lists itself as a broker."""
    from confluent_kafka.admin import AdminClient  # heavy import, only when probing Kafka

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    metadata = admin.list_topics(timeout=timeout)
    return bool(metadata.brokers)


def until_conditions_set(kubectl_wait: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Call `kubectl_wait(*args, **kwargs)` (a `kubectl wait --for=condition=Established` on CRDs just
    applied) again while it fails because a CRD's status.conditions is still null: kubectl 1.37 fails
    at once on that ("accessor error: <nil>"; a jsonpath wait fails alike) instead of waiting. The
    null lasts until the API server has compiled the CRD's schema, 0.1-0.7 s for the
    PersonalizationStack CRD; 30 s at most."""
    deadline = time.monotonic() + 30
    while True:
        try:
            kubectl_wait(*args, **kwargs)
            return
        except Exception as error:
            if "<nil>" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
