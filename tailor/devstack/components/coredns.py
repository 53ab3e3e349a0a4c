"""CoreDNS, the real node's cluster DNS: `<service>.<namespace>.svc.cluster.local` resolves in pods.

It runs on the host (not as a pod) and serves port 53 on the node's address, the nameserver the
kubelet writes into every pod's resolv.conf (``clusterDNS``). It watches Services and
EndpointSlices through the stack's admin kubeconfig. Every name outside the cluster domain is
answered NXDOMAIN here: there is no upstream, so no pod's lookup ever leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

from tailor.devstack import nodenet, probes
from tailor.devstack.components.base import Component

CLUSTER_DOMAIN = "cluster.local"
DNS_PORT = 53


def corefile(kubeconfig: Path, health_port: int, ready_port: int) -> str:
    address = nodenet.GATEWAY
    return f"""\
{CLUSTER_DOMAIN}:{DNS_PORT} in-addr.arpa:{DNS_PORT} ip6.arpa:{DNS_PORT} {{
    bind {address}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
    }}
    cache 5
}}

.:{DNS_PORT} {{
    bind {address}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


class CoreDns(Component):
    name = "coredns"
    depends_on = ("kube-apiserver",)
    port_keys = ("coredns-health", "coredns-ready")
    start_timeout = 60.0

    @property
    def corefile(self) -> Path:
        return self.data_dir / "Corefile"

    def endpoint(self) -> str:
        return f"{nodenet.GATEWAY}:{DNS_PORT}"

    def prepare(self) -> None:
        self.corefile.write_text(
            corefile(
                self.context.paths.kubeconfig,
                self.context.port("coredns-health"),
                self.context.port("coredns-ready"),
            )
        )

    def argv(self) -> list[str]:
        return [str(self.context.tools.node.coredns), "-conf", str(self.corefile)]

    def healthy(self) -> bool:
        # /ready answers 200 once every plugin is ready: kubernetes has listed Services.
        status, _ = probes.http_get(self.context.port("coredns-ready"), "/ready")
        return status == 200
