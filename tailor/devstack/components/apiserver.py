"""kube-apiserver, configured like controller-runtime's envtest (flags in stack-notes.md)."""

from __future__ import annotations

from tailor.devstack import probes
from tailor.devstack.components.base import Component

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ApiServer(Component):
    name = "kube-apiserver"
    depends_on = ("etcd",)
    port_keys = ("apiserver",)
    start_timeout = 90.0

    def url(self) -> str:
        return f"https://127.0.0.1:{self.context.port('apiserver')}"

    def endpoint(self) -> str:
        return self.url()

    def argv(self) -> list[str]:
        certs = self.context.certs
        return [
            str(self.context.tools.kube.apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.context.port('etcd')}",
            f"--secure-port={self.context.port('apiserver')}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The loopback advertise address is not a valid Endpoints address; without
            # this the apiserver retries reconciling the `kubernetes` Service forever.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.data_dir}",
            f"--tls-cert-file={certs.serving_cert}",
            f"--tls-private-key-file={certs.serving_key}",
            f"--client-ca-file={certs.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs.service_account_pub}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            "--profiling=false",
        ]

    def healthy(self) -> bool:
        status, _ = probes.https_request(
            self.context.port("apiserver"), "/readyz", probes.client_tls(self.context.certs)
        )
        return status == 200
