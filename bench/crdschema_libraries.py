"""Benchmark: tailor/core/rules/crdschema.py against jsonschema, jsonschema_rs and the API server itself.

crdschema checks a manifest offline the way the API server checks it against its CRD (for `tailor
validate` and the compiler's callers): defaults, structural checks, unknown fields, list types and the
`x-kubernetes-validations` CEL rules. Issue 16 asks whether a library could do it. This script answers
with numbers: for the shop example (17 valid manifests) and a few broken ones it prints µs per manifest
and what each implementation reports about the broken ones, side by side:

- `crdschema`            tailor.core.rules.crdschema.check: everything above;
- `jsonschema`           jsonschema's Draft4Validator (OpenAPI 3.0 schemas are a draft-4 dialect) over the
                         CRD schema translated for it (`nullable` -> a null type, `additionalProperties:
                         false` where Kubernetes prunes unknown fields): types, bounds, enums, patterns,
                         required, unknown fields; no defaults, no CEL rules, no list types;
- `jsonschema+cel`       the same validator extended with an `x-kubernetes-validations` keyword that runs
                         tailor.core.cel, after crdschema.apply_defaults: what replacing crdschema's
                         structural walk (and keeping the rest) would give;
- `jsonschema_rs`        the Rust validator (installed with schemathesis), structural only, same schema;
- `apiserver dry-run`    with KUBECONFIG set (`eval "$(tailor dev env)"`): a create with dryRun=All and
                         fieldValidation=Strict against a real kube-apiserver (CRDs from crds/ applied
                         first), i.e. exactly what `kubectl apply --dry-run=server` reports.

    .venv/bin/pip install -e '.[bench-libs]'   # jsonschema
    .venv/bin/python bench/crdschema_libraries.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tailor.core import cel, constants
from tailor.core.rules import crdschema

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"

BROKEN = """\
apiVersion: tailor.dev/v1alpha1
kind: PersonalizationRule
metadata: {name: bad-schema}
spec:
  slot: home-hero
  audience: [{feature: views, window: 5mins, op: ">="}]
  variants: {names: [hero-welcome], selector: {matchLabels: {a: b}}}
  rollout: {percentage: 150}
  colour: red
---
apiVersion: tailor.dev/v1alpha1
kind: PersonalizationStack
metadata: {name: both-redis}
spec:
  kafka: {bootstrapServers: "k:9092"}
  redis: {managed: true, url: "redis://r:6379/0"}
---
apiVersion: tailor.dev/v1alpha1
kind: ContentVariant
metadata: {name: wrong-types}
spec:
  slot: home-hero
  content: {type: video, body: 42}
  weight: "heavy"
  tags: [a, a]
"""


def manifests(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def valid_manifests() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(SHOP.glob("*.yaml")):
        found += manifests(path.read_text())
    return found


# --- the CRD schema as plain JSON Schema ------------------------------------------------------------


def json_schema(schema: Mapping[str, Any], root: bool = True) -> dict[str, Any]:
    """The OpenAPI v3 structural schema as draft-4 JSON Schema: `nullable` becomes a null type, and an
    object with properties rejects unknown ones unless Kubernetes keeps them (preserve-unknown-fields)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: json_schema(sub, root=False) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = json_schema(value, root=False)
        else:
            out[key] = value
    if schema.get("nullable") and "type" in schema:
        out["type"] = [schema["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        out["additionalProperties"] = False
    if root:  # ObjectMeta is the API server's own validation, not the CRD's
        out["properties"] = {**out["properties"], "metadata": {"type": "object"}}
    return out


def path_of(error: Any) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"


def jsonschema_implementations() -> dict[str, Callable[[dict[str, Any]], list[str]]]:
    import jsonschema
    from jsonschema import validators

    def rules(validator: Any, listed: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
        for validation in listed:
            try:
                holds = (
                    cel.validation_rule(validation["rule"]).evaluate(
                        {"self": cel.kubernetes_value(instance, schema)}
                    )
                    is True
                )
            except cel.CelError:
                holds = False
            if not holds:
                yield jsonschema.ValidationError(
                    validation.get("message") or f"failed rule: {validation['rule']}"
                )

    with_cel = validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-validations": rules})
    plain: dict[str, Any] = {}
    extended: dict[str, Any] = {}
    for kind, schema in crdschema.schemas().items():
        translated = json_schema(schema)
        plain[kind] = jsonschema.Draft4Validator(translated)
        extended[kind] = with_cel(translated)

    def structural(manifest: dict[str, Any]) -> list[str]:
        body = {k: v for k, v in manifest.items() if k != "status"}
        return [f"{path_of(e)}: {e.message}" for e in plain[manifest["kind"]].iter_errors(body)]

    def with_rules(manifest: dict[str, Any]) -> list[str]:
        kind = manifest["kind"]
        defaulted = crdschema.apply_defaults(copy.deepcopy(manifest), crdschema.schemas()[kind])
        body = {k: v for k, v in defaulted.items() if k != "status"}
        return [f"{path_of(e)}: {e.message}" for e in extended[kind].iter_errors(body)]

    return {"jsonschema": structural, "jsonschema+cel": with_rules}


def jsonschema_rs_implementation() -> dict[str, Callable[[dict[str, Any]], list[str]]]:
    import jsonschema_rs

    compiled = {
        kind: jsonschema_rs.Draft4Validator(json_schema(schema))
        for kind, schema in crdschema.schemas().items()
    }

    def structural(manifest: dict[str, Any]) -> list[str]:
        body = {k: v for k, v in manifest.items() if k != "status"}
        return [
            f"{'.'.join(str(p) for p in e.instance_path) or '<root>'}: {e.message}"
            for e in compiled[manifest["kind"]].iter_errors(body)
        ]

    return {"jsonschema_rs": structural}


def crdschema_check(manifest: dict[str, Any]) -> list[str]:
    return [str(error) for error in crdschema.check(manifest)[1]]


# --- the API server ---------------------------------------------------------------------------------


def apiserver_implementation() -> dict[str, Callable[[dict[str, Any]], list[str]]]:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return {}
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    subprocess.run(
        ["kubectl", "apply", "--server-side", "-f", str(ROOT / "crds")], check=True, capture_output=True
    )
    config.load_kube_config(config_file=kubeconfig)
    api = client.CustomObjectsApi()
    core = client.CoreV1Api()
    namespace = f"bench-schema-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    plurals = {
        constants.STACK_KIND: constants.STACK_PLURAL,
        constants.RULE_KIND: constants.RULE_PLURAL,
        constants.VARIANT_KIND: constants.VARIANT_PLURAL,
    }

    def dry_run(manifest: dict[str, Any]) -> list[str]:
        try:
            api.create_namespaced_custom_object(
                constants.API_GROUP, constants.API_VERSION, namespace, plurals[manifest["kind"]], manifest,
                dry_run="All", field_validation="Strict",
            )  # fmt: skip
        except ApiException as error:
            import json

            body = json.loads(error.body or "{}")
            causes = (body.get("details") or {}).get("causes") or []
            return [f"{c.get('field', '')}: {c.get('message', '')}" for c in causes] or [
                body.get("message", "")
            ]
        return []

    dry_run.namespace = namespace  # type: ignore[attr-defined]
    return {"apiserver dry-run": dry_run}


# --- measuring --------------------------------------------------------------------------------------


def per_manifest(
    function: Callable[[dict[str, Any]], list[str]], documents: list[dict[str, Any]], seconds: float
) -> float:
    """Best seconds per manifest over 5 rounds of about seconds/5 each."""
    best = float("inf")
    for _ in range(5):
        done, started = 0, time.perf_counter()
        while True:
            for document in documents:
                function(document)
            done += len(documents)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds / 5:
                break
        best = min(best, elapsed / done)
    return best


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per implementation and set")
    args = parser.parse_args()

    implementations: dict[str, Callable[[dict[str, Any]], list[str]]] = {"crdschema": crdschema_check}
    for extra in (jsonschema_implementations, jsonschema_rs_implementation, apiserver_implementation):
        try:
            implementations.update(extra())
        except ImportError as error:
            print(f"{extra.__name__}: not installed ({error.name}); pip install -e '.[bench-libs]'")
    valid, broken = valid_manifests(), manifests(BROKEN)
    print(
        f"load average before: {load_average()}; {len(valid)} valid manifests (examples/shop),"
        f" {len(broken)} broken"
    )
    for name, function in implementations.items():
        reported = [m for m in valid if function(m)]
        if reported:
            print(
                f"  {name} reports problems in valid manifests:"
                f" {[m['metadata']['name'] for m in reported]}: {function(reported[0])}"
            )
    header = f"{'implementation':<20} {'µs / valid':>11} {'µs / broken':>12} {'problems found in broken':>26}"
    print(header)
    print("-" * len(header))
    found = {name: [function(m) for m in broken] for name, function in implementations.items()}
    base = None
    for name, function in implementations.items():
        valid_time = per_manifest(function, valid, args.seconds)
        broken_time = per_manifest(function, broken, args.seconds)
        base = base or valid_time
        counts = " + ".join(str(len(problems)) for problems in found[name])
        print(
            f"{name:<20} {valid_time * 1e6:>11,.1f} {broken_time * 1e6:>12,.1f} {counts:>26}"
            f"   ({valid_time / base:.2f}x crdschema's time)"
        )
    print(f"load average after: {load_average()}")
    for index, manifest in enumerate(broken):
        print(f"\n{manifest['kind']}/{manifest['metadata']['name']}:")
        for name in implementations:
            print(f"  {name}:")
            for line in found[name][index] or ["(nothing)"]:
                print(f"    {line}")
    dry_run = implementations.get("apiserver dry-run")
    if dry_run is not None:
        subprocess.run(
            ["kubectl", "delete", "namespace", dry_run.namespace, "--wait=false"], capture_output=True
        )  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
