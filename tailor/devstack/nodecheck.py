"""The real node's start-up check: a pod from the stack's registry, Ready by its probe, reached
from the host through a ClusterIP Service.

`tailor dev up --node real` succeeds only when this passes, so "up" means pods really run:
the image was pulled by reference through containerd, the sandbox got an address from CNI,
the kubelet ran the readiness probe, and kube-proxy's rules route the Service to the pod.
The check's pod and Service are deleted afterwards.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from tailor.devstack import nodenet, probes
from tailor.devstack.errors import ComponentFailed

NAMESPACE = "tailor-node-check"
SERVICE_PORT = 80

Api = Callable[..., tuple[int, dict[str, Any]]]


def pod_manifest(name: str, image: str, container_port: int) -> dict[str, Any]:
    """A pod of the test workload on the real node, Ready when /healthz answers."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": nodenet.NODE_NAME},
            "terminationGracePeriodSeconds": 2,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "hello",
                    "image": image,
                    "ports": [{"containerPort": container_port}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": container_port},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }


def service_manifest(name: str, container_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"port": SERVICE_PORT, "targetPort": container_port}],
        },
    }


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def http_json(host: str, port: int, path: str = "/", timeout: float = 2.0) -> dict[str, Any]:
    """GET ``path`` from ``host:port``; the JSON answer (raises on anything else)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{host}:{port}{path} answered {response.status}")
        answer: dict[str, Any] = json.loads(body)
        return answer
    finally:
        connection.close()


def run(api: Api, image: str, container_port: int, timeout: float = 120.0) -> float:
    """Run the check; return its duration in seconds or raise ComponentFailed saying what failed."""
    started = time.monotonic()
    name = f"node-check-{uuid.uuid4().hex[:6]}"
    status, body = api("GET", f"/api/v1/namespaces/{NAMESPACE}")
    if status == 404:
        status, body = api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
    if status not in (200, 201, 409):
        raise ComponentFailed(f"node check: creating namespace {NAMESPACE} failed: {status} {body}")
    base = f"/api/v1/namespaces/{NAMESPACE}"
    try:
        for kind, manifest in (
            ("pods", pod_manifest(name, image, container_port)),
            ("services", service_manifest(name, container_port)),
        ):
            status, body = api("POST", f"{base}/{kind}", manifest)
            if status != 201:
                raise ComponentFailed(f"node check: creating {kind}/{name} failed: {status} {body}")
        deadline = started + timeout

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        def describe() -> str:
            pod = api("GET", f"{base}/pods/{name}")[1]
            return json.dumps(pod.get("status", {}), indent=1)[-1500:]

        try:
            probes.wait_until(
                lambda: pod_ready(api("GET", f"{base}/pods/{name}")[1]),
                what=f"node check: pod {NAMESPACE}/{name} ({image}) Ready on {nodenet.NODE_NAME}",
                timeout=remaining(),
                interval=0.2,
            )
            cluster_ip = api("GET", f"{base}/services/{name}")[1]["spec"]["clusterIP"]
            probes.wait_until(
                lambda: http_json(cluster_ip, SERVICE_PORT).get("pod") == name,
                what=f"node check: Service {NAMESPACE}/{name} ({cluster_ip}:{SERVICE_PORT}) from the host",
                timeout=remaining(),
                interval=0.2,
            )
        except ComponentFailed as error:
            raise ComponentFailed(f"{error}\npod status: {describe()}") from None
    finally:
        for kind in ("services", "pods"):
            api("DELETE", f"{base}/{kind}/{name}")
    return time.monotonic() - started
