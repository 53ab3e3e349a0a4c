"""The real node's kubelet: registers node `tailor-node` with the stack's apiserver.

Built from the control plane's release. The configuration is what this machine needs
(cgroup v1 in a sandbox, see docs/devstack.md): ``failCgroupV1: false``, the cgroupfs driver,
no QoS cgroups and no node-allocatable enforcement, swap tolerated; every path under the
stack's home (root dir, pod logs, volume plugins) and every port away from the defaults. It
serves on the node's address (the bridge's gateway), where the apiserver reaches it for logs
and exec with the admin client certificate.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

from tailor.devstack import kubeconfig, nodenet, probes
from tailor.devstack.components import coredns
from tailor.devstack.components.base import Component
from tailor.devstack.components.containerd import Containerd

NODE_LABEL = "tailor.dev/node"


def kubelet_configuration(
    *,
    port: int,
    healthz_port: int,
    runtime_endpoint: str,
    client_ca: Path,
    serving: tuple[Path, Path],
    root: Path,
    resolv_conf: Path,
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": nodenet.GATEWAY,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        # This machine: cgroup v1 (hybrid) inside a sandbox.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "containerRuntimeEndpoint": runtime_endpoint,
        "imageServiceEndpoint": runtime_endpoint,
        "podCIDR": nodenet.POD_SUBNET,
        "podLogsDir": str(root / "pod-logs"),
        "volumePluginDir": str(root / "volume-plugins"),
        # The stack's CoreDNS on the node's address answers the cluster's names and nothing
        # else; the host's own resolvers are not given to pods (an empty file), so no pod sends
        # a DNS query off the machine.
        "clusterDNS": [nodenet.GATEWAY],
        "clusterDomain": coredns.CLUSTER_DOMAIN,
        "resolvConf": str(resolv_conf),
        "staticPodPath": "",
        "registerNode": True,
        "rotateCertificates": False,
        "serializeImagePulls": False,
        # A dev machine's disk is shared with everything else: evict only when truly full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Pods' status reaches the apiserver quickly; the default waits up to 10 s.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "maxPods": 110,
    }


def node_ready(node: dict[str, Any], since: datetime.datetime | None = None) -> bool:
    """True when the node's Ready condition is True (and was reported at or after ``since``)."""
    for condition in node.get("status", {}).get("conditions", []):
        if condition.get("type") != "Ready" or condition.get("status") != "True":
            continue
        heartbeat = condition.get("lastHeartbeatTime")
        return since is None or (
            heartbeat is not None
            and datetime.datetime.fromisoformat(heartbeat.replace("Z", "+00:00")) >= since
        )
    return False


class Kubelet(Component):
    name = "kubelet"
    depends_on = ("kube-apiserver", "containerd")
    port_keys = ("kubelet", "kubelet-healthz")
    start_timeout = 90.0
    stop_timeout = 20.0
    _started: datetime.datetime | None = None

    @property
    def config(self) -> Path:
        return self.data_dir / "config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def root_dir(self) -> Path:
        return self.data_dir / "root"

    def endpoint(self) -> str:
        return f"https://{nodenet.GATEWAY}:{self.context.port('kubelet')}"

    def prepare(self) -> None:
        certs = self.context.certs
        resolv_conf = self.data_dir / "resolv.conf"
        resolv_conf.write_text("")
        self.root_dir.mkdir(exist_ok=True)
        self.config.write_text(
            yaml.safe_dump(
                kubelet_configuration(
                    port=self.context.port("kubelet"),
                    healthz_port=self.context.port("kubelet-healthz"),
                    runtime_endpoint=Containerd(self.context).endpoint_url,
                    client_ca=certs.ca_cert,
                    serving=(certs.kubelet_serving_cert, certs.kubelet_serving_key),
                    root=self.root_dir,
                    resolv_conf=resolv_conf,
                ),
                sort_keys=False,
            )
        )
        kubeconfig.write(
            self.kubeconfig,
            self.context.apiserver_url(),
            certs,
            (certs.kubelet_client_cert, certs.kubelet_client_key),
        )

    def argv(self) -> list[str]:
        return [
            str(self.context.tools.node.kubelet),
            f"--config={self.config}",
            f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={self.root_dir}",
            f"--cert-dir={self.data_dir / 'pki'}",
            f"--hostname-override={nodenet.NODE_NAME}",
            f"--node-ip={nodenet.GATEWAY}",
            f"--node-labels={NODE_LABEL}=real",
            "--v=1",
        ]

    def healthy(self) -> bool:
        status, _ = probes.http_get(self.context.port("kubelet-healthz"), "/healthz")
        return status == 200

    def start(self) -> None:
        # The Node object outlives a stopped kubelet with its last status (Ready): only a
        # heartbeat from this start counts. Whole seconds, as the API reports them.
        self._started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        super().start()

    def after_healthy(self) -> None:
        """Wait until the node is registered and Ready (the runtime and CNI answered) by a
        heartbeat of this kubelet, not a status left from before."""
        probes.wait_until(
            lambda: node_ready(self._node(), since=self._started),
            what=f"node {nodenet.NODE_NAME} Ready",
            timeout=self.start_timeout,
            log=self.log,
        )

    def _node(self) -> dict[str, Any]:
        status, node = self.context.api("GET", f"/api/v1/nodes/{nodenet.NODE_NAME}")
        return node if status == 200 else {}
