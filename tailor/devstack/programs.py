"""The Go programs of the stack: Kubernetes control plane, etcd, kwok, helm, and the real node's.

Each is a ``GoProgram`` recipe for ``gobuild.build``. The Kubernetes recipe needs the
staging-module replace list, generated from the release's own go.mod (not typed here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tailor.devstack import gobuild, gomod, versions

KUBE_MODULE = "k8s.io/kubernetes"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: The real node's Kubernetes programs, built apart so the default (kwok) stack never pays for them.
NODE_COMMANDS = ("kubelet", "kube-proxy")
CNI_MODULE = "github.com/containernetworking/plugins"
#: What the node's CNI configuration chains: a bridge with host-local addresses, the pod's
#: loopback, and hostPort mappings.
CNI_PLUGINS = (
    "plugins/main/bridge",
    "plugins/ipam/host-local",
    "plugins/main/loopback",
    "plugins/meta/portmap",
)


def _kube_version_ldflags(version: str) -> list[str]:
    """Stamp the release into the binaries; without it they report v0.0.0-master."""
    major, minor, _ = version.removeprefix("v").split(".", 2)
    flags: list[str] = []
    # component-base serves /version and --version; client-go's copy is what clients see.
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return flags


def kube() -> gobuild.GoProgram:
    """kube-apiserver, kube-controller-manager and kube-scheduler in one build."""
    return _kube_program("kubernetes", KUBE_COMMANDS)


def kube_node() -> gobuild.GoProgram:
    """The kubelet and kube-proxy of the same release as the control plane."""
    return _kube_program("kubernetes-node", NODE_COMMANDS)


def _kube_program(name: str, commands: tuple[str, ...]) -> gobuild.GoProgram:
    template = gobuild.GoProgram(
        name=name,
        module=KUBE_MODULE,
        version=versions.KUBERNETES,
        packages=[f"{KUBE_MODULE}/cmd/{cmd}" for cmd in commands],
        ldflags=_kube_version_ldflags(versions.KUBERNETES),
    )
    if template.is_built():
        return template  # the replace list only matters for building
    info = gobuild.module_info(
        KUBE_MODULE, versions.KUBERNETES, gobuild.go_env(), template.root / "download.log"
    )
    replaces = gomod.staging_replacements(Path(info["GoMod"]).read_text(), versions.KUBERNETES_STAGING)
    return dataclasses.replace(template, replaces=replaces)


def etcd() -> gobuild.GoProgram:
    """etcd's server module: its root package is the `etcd` main."""
    return gobuild.GoProgram(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=versions.ETCD,
        packages=["go.etcd.io/etcd/server/v3"],
        renames=[("server", "etcd")],
    )


def kwok() -> gobuild.GoProgram:
    """kwok: fakes kubelets so Pods on a fake Node become Ready without a container runtime."""
    return gobuild.GoProgram(
        name="kwok",
        module="sigs.k8s.io/kwok",
        version=versions.KWOK,
        packages=["sigs.k8s.io/kwok/cmd/kwok"],
        ldflags=[f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.KWOK.removeprefix('v')}"],
    )


def helm() -> gobuild.GoProgram:
    """helm v3, stamped as helm's own release build is: its version (otherwise it reports only
    "v3.22") and the Kubernetes version `helm template` assumes without a cluster (otherwise 1.20)."""
    major, minor = versions.HELM_KUBE_VERSION
    return gobuild.GoProgram(
        name="helm",
        module="helm.sh/helm/v3",
        version=versions.HELM,
        packages=["helm.sh/helm/v3/cmd/helm"],
        ldflags=[
            f"-X helm.sh/helm/v3/internal/version.version={versions.HELM}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            *(
                f"-X helm.sh/helm/v3/pkg/{package}.k8sVersion{part}={value}"
                for package in ("chartutil", "lint/rules")
                for part, value in (("Major", major), ("Minor", minor))
            ),
        ],
        variant=f"-kube{major}.{minor}",
    )


def cni_plugins() -> gobuild.GoProgram:
    """bridge, host-local, loopback and portmap from containernetworking/plugins."""
    return gobuild.GoProgram(
        name="cni-plugins",
        module=CNI_MODULE,
        version=versions.CNI_PLUGINS,
        packages=[f"{CNI_MODULE}/{package}" for package in CNI_PLUGINS],
    )


def registry() -> gobuild.GoProgram:
    """The CNCF distribution registry: the OCI registry the real node pulls images from."""
    return gobuild.GoProgram(
        name="registry",
        module="github.com/distribution/distribution/v3",
        version=versions.DISTRIBUTION,
        packages=["github.com/distribution/distribution/v3/cmd/registry"],
        ldflags=[f"-X github.com/distribution/distribution/v3/version.version={versions.DISTRIBUTION}"],
    )


def crictl() -> gobuild.GoProgram:
    """crictl: `tailor dev down` removes the node's pod sandboxes through the CRI with it."""
    return gobuild.GoProgram(
        name="crictl",
        module="sigs.k8s.io/cri-tools",
        version=versions.CRI_TOOLS,
        packages=["sigs.k8s.io/cri-tools/cmd/crictl"],
        ldflags=[f"-X sigs.k8s.io/cri-tools/pkg/version.Version={versions.CRI_TOOLS}"],
    )


def coredns() -> gobuild.GoProgram:
    """CoreDNS: the real node's cluster DNS (its root package is the `coredns` main)."""
    return gobuild.GoProgram(
        name="coredns",
        module="github.com/coredns/coredns",
        version=versions.COREDNS,
        packages=["github.com/coredns/coredns"],
    )
