"""Where the stack keeps its cached builds and its per-stack runtime state.

Builds live outside the checkout (CI clones afresh, and a second run must not rebuild):
``$TAILOR_CACHE`` or ``~/.cache/tailor``. Runtime state of one named stack (data dirs,
certificates, logs, pid files, the state JSON) lives under
``$TAILOR_HOME/<name>`` or ``~/.local/state/tailor/<name>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STACK_NAME = "default"


def cache_root() -> Path:
    """The build cache shared by every stack on this machine."""
    configured = os.environ.get("TAILOR_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "tailor"


def state_root() -> Path:
    """The parent directory of every stack's runtime state."""
    configured = os.environ.get("TAILOR_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".local" / "state" / "tailor"


@dataclass(frozen=True)
class StackPaths:
    """The files and directories of one named stack."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def data_dir(self, component: str) -> Path:
        return self.data / component

    def pid_file(self, component: str) -> Path:
        return self.root / "pids" / f"{component}.json"
