"""Copies the CRDs' spec schemas into the charts' values.schema.json files.

crds/ is the single source of the schema. Helm checks values against values.schema.json before
it renders anything, so carrying the CRDs' spec schemas there makes a typo in a spec fail at
`helm install` with a path, instead of being pruned silently by the API server:

- charts/tailor-stack/values.schema.json: spec (PersonalizationStack), rules.*.spec
  (PersonalizationRule), variants.*.spec (ContentVariant);
- values.schema.json (the tailor chart): stack, the whole tailor-stack schema above, since the
  tailor chart passes its stack.* values to that subchart (so errors name the path `/stack/...`).

Run ``python scripts/sync_values_schema.py`` after changing a CRD or the tailor-stack schema;
tests/integration/test_chart.py fails while they differ.

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
RULE_CRD_PATH = ROOT / "crds" / "tailor.dev_personalizationrules.yaml"
VARIANT_CRD_PATH = ROOT / "crds" / "tailor.dev_contentvariants.yaml"
VALUES_SCHEMA_PATH = ROOT / "values.schema.json"
STACK_CHART_SCHEMA_PATH = ROOT / "charts" / "tailor-stack" / "values.schema.json"


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
    """The JSON Schema of a CRD's spec (PersonalizationStack's by default) in its storage version."""
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return to_json_schema(spec)


# The components whose `template` (pod, container, PodDisruptionBudget) the CRD spells out alike; a CRD
# cannot refer to a shared schema, a JSON Schema can: one definition, referred to from each.
TEMPLATE_COMPONENTS = ("workers", "contentApi", "redis")
POD_TEMPLATE_DEFINITION = "podTemplate"


def share_pod_templates(synced: dict[str, Any]) -> None:
    """Replace the components' identical `template` schemas under spec with a `$ref` to one definition
    (draft-07's `definitions`, the keyword `$defs` was named before 2019-09). A component whose
    template differs from the workers' keeps its own copy."""
    components = synced["properties"]["spec"]["properties"]
    shared = components["workers"]["properties"]["template"]
    for component in TEMPLATE_COMPONENTS:
        properties = components[component]["properties"]
        if properties.get("template") == shared:
            properties["template"] = {"$ref": f"#/definitions/{POD_TEMPLATE_DEFINITION}"}
    synced.setdefault("definitions", {})[POD_TEMPLATE_DEFINITION] = shared


def synced_stack_chart_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """charts/tailor-stack/values.schema.json with spec, rules.*.spec and variants.*.spec from crds/."""
    synced = json.loads(json.dumps(schema))
    properties = synced["properties"]
    properties["spec"] = stack_spec_schema(CRD_PATH)
    properties["rules"]["additionalProperties"]["properties"]["spec"] = stack_spec_schema(RULE_CRD_PATH)
    properties["variants"]["additionalProperties"]["properties"]["spec"] = stack_spec_schema(VARIANT_CRD_PATH)
    share_pod_templates(synced)
    return synced


def synced_values_schema(
    values_schema: dict[str, Any], stack_chart_schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The tailor chart's values.schema.json with stack replaced by the tailor-stack chart's schema."""
    if stack_chart_schema is None:
        stack_chart_schema = json.loads(STACK_CHART_SCHEMA_PATH.read_text())
    stack = {
        key: value
        for key, value in synced_stack_chart_schema(stack_chart_schema).items()
        if key not in ("$schema", "title")
    }
    synced = json.loads(json.dumps(values_schema))
    # A `$ref` is resolved from the document's root: the subchart's definitions move up with it.
    synced["definitions"] = {**synced.get("definitions", {}), **stack.pop("definitions", {})}
    synced["properties"]["stack"] = {"description": "The tailor-stack subchart's values.", **stack}
    return synced


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    changed = []
    stack_chart_current = STACK_CHART_SCHEMA_PATH.read_text()
    stack_chart = synced_stack_chart_schema(json.loads(stack_chart_current))
    if render(stack_chart) != stack_chart_current:
        STACK_CHART_SCHEMA_PATH.write_text(render(stack_chart))
        changed.append(str(STACK_CHART_SCHEMA_PATH.relative_to(ROOT)))
    current = VALUES_SCHEMA_PATH.read_text()
    updated = render(synced_values_schema(json.loads(current), stack_chart))
    if updated != current:
        VALUES_SCHEMA_PATH.write_text(updated)
        changed.append(VALUES_SCHEMA_PATH.name)
    print(f"updated {', '.join(changed)} from crds/" if changed else "the values schemas match crds/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
