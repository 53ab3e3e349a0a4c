"""etcd: the apiserver's storage, single member, on loopback."""

from __future__ import annotations

import json

from tailor.devstack import probes
from tailor.devstack.components.base import Component


class Etcd(Component):
    name = "etcd"
    port_keys = ("etcd", "etcd-peer")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.context.port('etcd')}"

    def endpoint(self) -> str:
        return self.url()

    def argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.context.port('etcd-peer')}"
        return [
            str(self.context.tools.kube.etcd),
            "--name=tailor",
            f"--data-dir={self.data_dir / 'member-data'}",
            f"--listen-client-urls={self.url()}",
            f"--advertise-client-urls={self.url()}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=tailor={peer}",
            # A dev stack trades crash durability of Kubernetes objects for speed, as
            # envtest does; Redis (our state) keeps its fsync (see components/redis.py).
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def healthy(self) -> bool:
        status, body = probes.http_get(self.context.port("etcd"), "/health")
        return status == 200 and json.loads(body).get("health") == "true"
