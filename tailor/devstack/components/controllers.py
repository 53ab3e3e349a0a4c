"""kube-controller-manager and kube-scheduler: Deployments become scheduled Pods.

Both talk to the apiserver through the stack's admin kubeconfig, run without leader
election (one replica), and serve /healthz on a free loopback port with a self-signed
certificate kept in their own data dir (their default cert dir is /var/run/kubernetes).
"""

from __future__ import annotations

from tailor.devstack import probes
from tailor.devstack.components.base import Component


class _KubeController(Component):
    depends_on = ("kube-apiserver",)

    def common_flags(self) -> list[str]:
        # No --authentication/--authorization-kubeconfig: /healthz is always allowed, and
        # delegated authentication would poll for a request-header CA we do not configure.
        return [
            f"--kubeconfig={self.context.paths.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.context.port(self.port_keys[0])}",
            f"--cert-dir={self.data_dir}",
        ]

    def healthy(self) -> bool:
        status, _ = probes.https_request(
            self.context.port(self.port_keys[0]), "/healthz", probes.insecure_tls()
        )
        return status == 200


class ControllerManager(_KubeController):
    name = "kube-controller-manager"
    port_keys = ("controller-manager",)

    def argv(self) -> list[str]:
        certs = self.context.certs
        return [
            str(self.context.tools.kube.controller_manager),
            *self.common_flags(),
            # Signs tokens of legacy token Secrets and publishes kube-root-ca.crt.
            f"--service-account-private-key-file={certs.service_account_key}",
            f"--root-ca-file={certs.ca_cert}",
            # kwok's heartbeat stage renews the fake node's status every 20-45 s; the
            # default grace (50 s) is too close to that and would flap the node NotReady.
            "--node-monitor-grace-period=5m",
            # The HPA controller looks at each HPA every second, not every 15 s: a change of an
            # HPA's bounds is acted on in about a second, which the operator's autoscaling tests
            # wait for (tests/integration/test_operator_pods.py).
            "--horizontal-pod-autoscaler-sync-period=1s",
        ]


class Scheduler(_KubeController):
    name = "kube-scheduler"
    port_keys = ("scheduler",)

    def argv(self) -> list[str]:
        return [str(self.context.tools.kube.scheduler), *self.common_flags()]
