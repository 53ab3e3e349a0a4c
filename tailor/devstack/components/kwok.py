"""kwok and its one fake Node: Pods get scheduled and become Ready with no container runtime.

kwok manages only the node it fakes (selected by its annotation): with `--manage-all-nodes` it
would also fake the status of pods on a real node, showing them Running when their sandbox
failed. Beside a real node the fake one is tainted, so workloads run on the real node unless
they tolerate the taint.
"""

from __future__ import annotations

from typing import Any

from tailor.devstack import nodenet, probes
from tailor.devstack.components.base import Component
from tailor.devstack.errors import ComponentFailed

NODE_NAME = "kwok-node-0"
POD_CIDR = "10.244.0.0/16"
FAKE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: Beside a real node: pods go to the real node unless they tolerate this.
FAKE_TAINT = {"key": "tailor.dev/fake-node", "value": "kwok", "effect": "NoSchedule"}


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
            "annotations": {FAKE_ANNOTATION[0]: FAKE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
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
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_ANNOTATION[0]}={FAKE_ANNOTATION[1]}",
            # kwok's default pod CIDR (10.0.0.0/24) is our Service range; keep them apart.
            f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{self.context.port('kwok')}",
        ]

    def healthy(self) -> bool:
        status, _ = probes.http_get(self.context.port("kwok"), "/healthz")
        return status == 200

    def after_healthy(self) -> None:
        """Register the fake Node (idempotent), taint it beside a real node (untaint it
        otherwise), and wait until kwok reports it Ready.

        Without a real node, the Node a previous real-node run registered is deleted: it would
        take new pods for minutes (until the node controller taints it unreachable) and never
        run them. Its pods are then garbage-collected.
        """
        api = self.context.api
        if not self.context.real_node:
            api("DELETE", f"/api/v1/nodes/{nodenet.NODE_NAME}")  # 404 when there is none
        status, node = api("GET", f"/api/v1/nodes/{NODE_NAME}")
        if status == 404:
            status, node = api("POST", "/api/v1/nodes", fake_node())
            if status not in (201, 409):
                raise ComponentFailed(f"creating node {NODE_NAME} failed: {status} {node}")
        self._set_taint(node)
        probes.wait_until(
            lambda: node_ready(api("GET", f"/api/v1/nodes/{NODE_NAME}")[1]),
            what=f"fake node {NODE_NAME} Ready (kwok)",
            timeout=self.start_timeout,
            log=self.log,
        )

    def _set_taint(self, node: dict[str, Any]) -> None:
        taints = [t for t in node.get("spec", {}).get("taints", []) if t.get("key") != FAKE_TAINT["key"]]
        if self.context.real_node:
            taints.append(FAKE_TAINT)
        if taints == node.get("spec", {}).get("taints", []):
            return
        status, body = self.context.api(
            "PATCH",
            f"/api/v1/nodes/{NODE_NAME}",
            {"spec": {"taints": taints}},
            "application/merge-patch+json",
        )
        if status != 200:
            raise ComponentFailed(f"setting the taints of node {NODE_NAME} failed: {status} {body}")
