"""The stack's state file: ports, endpoints and which parts are external.

Written before components start (so `down` can clean up a half-started stack) and kept
after `down` (so the next `up` reuses the same ports and recognizes its own endpoints).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tailor.devstack.endpoints import Endpoints


@dataclass
class StackState:
    name: str
    ports: dict[str, int] = field(default_factory=dict)
    #: What this stack itself serves (components it started).
    own: Endpoints = field(default_factory=Endpoints)
    #: What the user provided through the environment instead.
    external: Endpoints = field(default_factory=Endpoints)
    #: Names of the components this stack runs (external parts excluded).
    components: list[str] = field(default_factory=list)
    #: "kwok" (a fake node only) or "real" (a kubelet beside it): `tailor dev up --node`.
    node: str = "kwok"
    #: "single" (one redis-server) or "cluster" (six cluster nodes): `tailor dev up --redis`.
    redis: str = "single"
    updated: float = 0.0

    def endpoints(self) -> Endpoints:
        """External where given, else own."""
        return Endpoints(
            kubeconfig=self.external.kubeconfig or self.own.kubeconfig,
            kafka_bootstrap=self.external.kafka_bootstrap or self.own.kafka_bootstrap,
            redis_url=self.external.redis_url or self.own.redis_url,
            redis_mode=self.external.redis_mode if self.external.redis_url else self.own.redis_mode,
        )

    def save(self, path: Path) -> None:
        self.updated = time.time()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        partial.replace(path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: Path, name: str) -> StackState:
        """The saved state, or an empty one when there is none (or it is unreadable)."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(
                name=str(data.get("name", name)),
                ports={str(k): int(v) for k, v in data.get("ports", {}).items()},
                own=Endpoints(**data.get("own", {})),
                external=Endpoints(**data.get("external", {})),
                components=[str(c) for c in data.get("components", [])],
                node=str(data.get("node", "kwok")),
                redis=str(data.get("redis", "single")),
                updated=float(data.get("updated", 0.0)),
            )
        except (OSError, ValueError, TypeError):
            return cls(name=name)
