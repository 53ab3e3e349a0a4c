"""kwok and its one fake Node: Pods get scheduled and become Ready with no container runtime."""

from __future__ import annotations

import json
from typing import Any

from tailor.devstack import probes
from tailor.devstack.components.base import Component
from tailor.devstack.errors import ComponentFailed

NODE_NAME = "kwok-node-0"
POD_CIDR = "10.244.0.0/16"


def fake_node(name: str = NODE_NAME) -> dict[str, Any]:
    """The Node object kwok will manage (no taint: workloads need no toleration)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
            # kwok's convention for nodes it fakes.
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
        },
    }


def node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Kwok(Component):
    name = "kwok"
    depends_on = ("kube-apiserver",)
    port_keys = ("kwok",)

    def argv(self) -> list[str]:
        return [
            str(self.context.tools.kube.kwok),
            f"--kubeconfig={self.context.paths.kubeconfig}",
            f"--config={self.context.tools.kube.kwok_stages}",
            "--manage-all-nodes=true",
            # kwok's default pod CIDR (10.0.0.0/24) is our Service range; keep them apart.
            f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{self.context.port('kwok')}",
        ]

    def healthy(self) -> bool:
        status, _ = probes.http_get(self.context.port("kwok"), "/healthz")
        return status == 200

    def _api(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        status, raw = probes.https_request(
            self.context.port("apiserver"),
            path,
            probes.client_tls(self.context.certs),
            method=method,
            body=body,
        )
        return status, json.loads(raw) if raw else {}

    def after_healthy(self) -> None:
        """Register the fake Node (idempotent) and wait until kwok reports it Ready."""
        status, _ = self._api("GET", f"/api/v1/nodes/{NODE_NAME}")
        if status == 404:
            status, body = self._api("POST", "/api/v1/nodes", fake_node())
            if status not in (201, 409):
                raise ComponentFailed(f"creating node {NODE_NAME} failed: {status} {body}")
        probes.wait_until(
            lambda: node_ready(self._api("GET", f"/api/v1/nodes/{NODE_NAME}")[1]),
            what=f"fake node {NODE_NAME} Ready (kwok)",
            timeout=self.start_timeout,
            log=self.log,
        )
