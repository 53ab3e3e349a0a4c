"""The Go programs of the stack: Kubernetes control plane, etcd, kwok and helm.

Each is a ``GoProgram`` recipe for ``gobuild.build``. The Kubernetes recipe needs the
staging-module replace list, generated from the release's own go.mod (not typed here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tailor.devstack import gobuild, gomod, versions

KUBE_MODULE = "k8s.io/kubernetes"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


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
    template = gobuild.GoProgram(
        name="kubernetes",
        module=KUBE_MODULE,
        version=versions.KUBERNETES,
        packages=[f"{KUBE_MODULE}/cmd/{cmd}" for cmd in KUBE_COMMANDS],
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
    """helm v3, stamped with its release version (otherwise it reports only "v3.22")."""
    return gobuild.GoProgram(
        name="helm",
        module="helm.sh/helm/v3",
        version=versions.HELM,
        packages=["helm.sh/helm/v3/cmd/helm"],
        ldflags=[
            f"-X helm.sh/helm/v3/internal/version.version={versions.HELM}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        ],
    )
