"""Argo CD's health checks for Tailor's kinds (docs/argocd/*.lua), run as Argo CD runs them: Lua 5.1
(Argo CD embeds gopher-lua, a Lua 5.1), the resource as the global ``obj``, the chunk's return value
``{status, message}`` the health. Used by tests/unit/test_argocd_health.py (saved statuses) and by
tests/integration/test_helm_e2e.py (statuses as the operator writes them on the real node)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lupa import lua51

ARGOCD_DOCS = Path(__file__).resolve().parents[1] / "docs" / "argocd"
#: kind -> the script docs/gitops.md puts under resource.customizations.health.tailor.dev_<kind>
SCRIPTS = {
    "PersonalizationStack": "personalizationstack.lua",
    "PersonalizationRule": "rule-or-variant.lua",
    "ContentVariant": "rule-or-variant.lua",
}
HEALTH_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")


def health(obj: Mapping[str, Any]) -> tuple[str, str | None]:
    """(status, message) that Argo CD shows for ``obj`` (a resource as the API returns it)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((ARGOCD_DOCS / SCRIPTS[obj["kind"]]).read_text())
    status, message = result["status"], result["message"]
    assert status in HEALTH_STATUSES, f"not an Argo CD health status: {status!r}"
    return str(status), None if message is None else str(message)
