"""What the operator keeps of each watched Tailor resource (kopf indexes hold these): its spec as a
compiler Source, plus the status it last showed, so that status patches are only sent when they say
something new."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tailor.core import constants
from tailor.core.rules import specs


@dataclass(frozen=True, slots=True)
class Observed:
    source: specs.Source
    status: Mapping[str, Any] = field(default_factory=dict)
    resource_version: str = ""
    deleting: bool = False  # metadata.deletionTimestamp is set

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Observed:
        return cls(
            source=specs.Source.from_manifest(body),
            status=dict(body.get("status") or {}),
            resource_version=str((body.get("metadata") or {}).get("resourceVersion", "")),
            deleting=bool((body.get("metadata") or {}).get("deletionTimestamp")),
        )

    def involved(self) -> dict[str, Any]:
        """Enough of the body for an Event's involvedObject."""
        return {
            "apiVersion": f"{constants.API_GROUP}/{constants.API_VERSION}",
            "kind": self.source.kind,
            "metadata": {
                "name": self.source.name,
                "namespace": self.source.namespace,
                "uid": self.source.uid,
                "resourceVersion": self.resource_version,
            },
        }
