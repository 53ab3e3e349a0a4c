"""kube-proxy for the real node, nftables mode: Services route to pods, from pods and the host.

Its rules live in its own nftables tables (``ip kube-proxy``, ``ip6 kube-proxy``), which
`kube-proxy --cleanup` removes at stop. It leaves the machine's conntrack settings alone
(a dev node has no use for tuning them), serves health and metrics on loopback, and accepts
NodePorts only on the node's address (the bridge's gateway), never on the machine's own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tailor.devstack import kubeconfig, nodenet, probes
from tailor.devstack.components.base import Component

MODE = "nftables"


def kube_proxy_configuration(
    *, kubeconfig_path: Path, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": MODE,
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "hostnameOverride": nodenet.NODE_NAME,
        "bindAddress": nodenet.GATEWAY,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": nodenet.POD_SUBNET,
        "nodePortAddresses": [f"{nodenet.GATEWAY}/32"],
        # 0 everywhere: do not touch the machine's conntrack sysctls.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
    }


class KubeProxy(Component):
    name = "kube-proxy"
    depends_on = ("kube-apiserver", "kubelet")
    port_keys = ("kube-proxy-healthz", "kube-proxy-metrics")
    start_timeout = 60.0

    @property
    def config(self) -> Path:
        return self.data_dir / "config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def prepare(self) -> None:
        certs = self.context.certs
        kubeconfig.write(
            self.kubeconfig,
            self.context.apiserver_url(),
            certs,
            (certs.kube_proxy_cert, certs.kube_proxy_key),
        )
        self.config.write_text(
            yaml.safe_dump(
                kube_proxy_configuration(
                    kubeconfig_path=self.kubeconfig,
                    healthz_port=self.context.port("kube-proxy-healthz"),
                    metrics_port=self.context.port("kube-proxy-metrics"),
                ),
                sort_keys=False,
            )
        )

    def argv(self) -> list[str]:
        return [str(self.context.tools.node.kube_proxy), f"--config={self.config}", "--v=1"]

    def healthy(self) -> bool:
        # /healthz answers 200 once the first full sync of rules is done.
        status, _ = probes.http_get(self.context.port("kube-proxy-healthz"), "/healthz")
        return status == 200

    def stop(self) -> None:
        started = self.record() is not None  # its pid file is removed by a completed stop
        super().stop()
        if started:
            # Removes kube-proxy's nftables tables (and any iptables chains of older modes).
            result = subprocess.run(
                [str(self.context.tools.node.kube_proxy), f"--config={self.config}", "--cleanup"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            with self.log.open("a") as sink:
                sink.write(f"--- kube-proxy --cleanup (exit {result.returncode})\n{result.stderr}\n")
