"""kube-apiserver, configured like controller-runtime's envtest (flags in docs/devstack.md).

With a real node it serves on the node's address instead of loopback, so pods reach it
through the `kubernetes` Service as in a cluster, and it gains what a kubelet needs: the Node
authorizer, and the client certificate and CA for calls to the kubelet (logs, exec).
"""

from __future__ import annotations

from tailor.devstack.components.base import Component

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ApiServer(Component):
    name = "kube-apiserver"
    depends_on = ("etcd",)
    port_keys = ("apiserver",)
    start_timeout = 90.0

    def url(self) -> str:
        return self.context.apiserver_url()

    def endpoint(self) -> str:
        return self.url()

    def argv(self) -> list[str]:
        certs = self.context.certs
        host = self.context.apiserver_host()
        return [
            str(self.context.tools.kube.apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.context.port('etcd')}",
            f"--secure-port={self.context.port('apiserver')}",
            f"--bind-address={host}",
            f"--advertise-address={host}",
            *(self._real_node_flags() if self.context.real_node else self._loopback_flags()),
            f"--cert-dir={self.data_dir}",
            f"--tls-cert-file={certs.serving_cert}",
            f"--tls-private-key-file={certs.serving_key}",
            f"--client-ca-file={certs.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs.service_account_pub}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            "--profiling=false",
        ]

    def _loopback_flags(self) -> list[str]:
        return [
            # The loopback advertise address is not a valid Endpoints address; without
            # this the apiserver retries reconciling the `kubernetes` Service forever.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
        ]

    def _real_node_flags(self) -> list[str]:
        certs = self.context.certs
        return [
            # The `kubernetes` Service's endpoint is the node's address: pods reach us there.
            "--endpoint-reconciler-type=lease",
            # The kubelet's certificate (system:node:<name>) is authorized for its own node's
            # objects, as in a kubeadm cluster.
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={certs.client_cert}",
            f"--kubelet-client-key={certs.client_key}",
            f"--kubelet-certificate-authority={certs.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def healthy(self) -> bool:
        status, _ = self.context.api("GET", "/readyz")
        return status == 200
