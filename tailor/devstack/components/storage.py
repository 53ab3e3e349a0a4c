"""The real node's dynamic volume provisioner (tailor.devstack.provisioner) as a stack component."""

from __future__ import annotations

import sys

from tailor.devstack import nodenet, probes
from tailor.devstack.components.base import Component


class Storage(Component):
    name = "storage"
    depends_on = ("kube-apiserver",)
    port_keys = ("storage-health",)
    start_timeout = 30.0

    def endpoint(self) -> str:
        return f"StorageClass tailor-local, volumes in {self.volumes}"

    @property
    def volumes(self) -> str:
        return str(self.data_dir / "volumes")

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tailor.devstack.provisioner",
            f"--kubeconfig={self.context.paths.kubeconfig}",
            f"--root={self.volumes}",
            f"--node={nodenet.NODE_NAME}",
            f"--health-port={self.context.port('storage-health')}",
        ]

    def healthy(self) -> bool:
        status, _ = probes.http_get(self.context.port("storage-health"), "/healthz")
        return status == 200
