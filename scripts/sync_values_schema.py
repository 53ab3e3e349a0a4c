"""Copies the PersonalizationStack CRD's spec schema into values.schema.json (stack.spec).

crds/ is the single source of the schema. Helm checks values against values.schema.json before
it renders anything, so carrying the CRD's spec schema there makes a typo in `stack.spec` fail
at `helm install` with a path, instead of being pruned silently by the API server. Run
``python scripts/sync_values_schema.py`` after changing the CRD; tests/integration/test_chart.py
fails while the two differ.

The conversion from an OpenAPI v3 structural schema to JSON Schema: `x-kubernetes-*` keys go
(CEL rules stay the API server's job), objects with declared properties get
`additionalProperties: false` (what strict field validation means), and objects marked
`x-kubernetes-preserve-unknown-fields` stay open.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "tailor.dev_personalizationstacks.yaml"
VALUES_SCHEMA_PATH = ROOT / "values.schema.json"


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """One OpenAPI v3 structural schema node as a JSON Schema node."""
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            converted[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            converted[key] = to_json_schema(value)
        else:
            converted[key] = value
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted


def stack_spec_schema(crd_path: Path = CRD_PATH) -> dict[str, Any]:
    """The JSON Schema of PersonalizationStack.spec in the CRD's storage version."""
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return to_json_schema(spec)


def synced_values_schema(values_schema: dict[str, Any], crd_path: Path = CRD_PATH) -> dict[str, Any]:
    """values.schema.json with stack.spec replaced by the CRD's current spec schema."""
    synced = json.loads(json.dumps(values_schema))
    synced["properties"]["stack"]["properties"]["spec"] = stack_spec_schema(crd_path)
    return synced


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    current = VALUES_SCHEMA_PATH.read_text()
    updated = render(synced_values_schema(json.loads(current)))
    if updated == current:
        print(f"{VALUES_SCHEMA_PATH.name} already matches {CRD_PATH.name}")
        return 0
    VALUES_SCHEMA_PATH.write_text(updated)
    print(f"updated stack.spec in {VALUES_SCHEMA_PATH.name} from {CRD_PATH.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
