"""KEDA's CRDs, for testing the operator's KEDA mode against the local API server.

They come from KEDA's own source, its Go module (github.com/kedacore/keda/v2, config/crd/bases/),
downloaded through the Go module proxy like every other Go source the stack builds from and kept in
Go's module cache: the CRDs the API server then enforces are KEDA's, not a copy in this repository.
KEDA's controllers do not run here; the tests scale through the scale subresource as KEDA's HPA would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tailor.devstack import gobuild, versions

MODULE: Final = "github.com/kedacore/keda/v2"
CRDS: Final = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")


def crd_paths(log: Path, version: str = versions.KEDA) -> list[Path]:
    """The CRD files of KEDA `version`, downloaded once into Go's module cache."""
    log.parent.mkdir(parents=True, exist_ok=True)
    info = gobuild.module_info(MODULE, version, gobuild.go_env(), log)
    bases = Path(info["Dir"]) / "config" / "crd" / "bases"
    return [bases / name for name in CRDS]
