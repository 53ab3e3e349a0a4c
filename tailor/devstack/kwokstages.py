"""kwok's stage file: the fake-kubelet behaviour, taken from the kwok module's own stages.

kwok refuses to start without stages. The module ships them under ``kustomize/stage/``; we
read the ones we need from the Go module cache (not copied into git) and join them into
one multi-document YAML in the build cache.
"""

from __future__ import annotations

from pathlib import Path

from tailor.devstack import gobuild
from tailor.devstack.errors import BuildFailed

#: Node initialize + heartbeat keep the fake Node Ready; pod ready/complete/delete move
#: Pods through their lifecycle the way a kubelet would (the "fast" variants: no delays).
STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def stages_path(program: gobuild.GoProgram) -> Path:
    return program.root / "stages.yaml"


def join(documents: list[str]) -> str:
    """Multi-document YAML from single documents (each without a trailing separator)."""
    return "---\n" + "\n---\n".join(doc.strip() + "\n" for doc in documents)


def ensure(program: gobuild.GoProgram) -> Path:
    """Write stages.yaml next to kwok's binary unless it exists; return its path."""
    target = stages_path(program)
    if target.exists():
        return target
    source = gobuild.module_dir(program)
    missing = [name for name in STAGE_FILES if not (source / name).exists()]
    if missing:
        raise BuildFailed(
            f"kwok {program.version} has no {', '.join(missing)} under {source}: "
            "pin a kwok version that ships these stages in tailor/devstack/versions.py"
        )
    partial = target.with_suffix(".partial")
    partial.write_text(join([(source / name).read_text() for name in STAGE_FILES]))
    partial.rename(target)
    return target
