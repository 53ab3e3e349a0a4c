"""The CRDs' structural schemas, applied offline the way the API server applies them.

crds/*.yaml is the single source of the schema. `tailor validate` (and the compiler's callers that read
manifest files) use this module to default an object and check it against its CRD's openAPIV3Schema:
types, required fields, enums, patterns, bounds, list uniqueness, unknown fields (as kubectl's strict
field validation reports them) and the `x-kubernetes-validations` CEL rules, evaluated with
tailor.core.cel. Messages are the CRDs' own, so a pull request sees what `kubectl apply` would say.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tailor.core import cel, constants

# The chart's crds/, reached through the package's crds symlink, so installed copies carry it too.
CRD_DIR = Path(__file__).parents[1] / "crds"

Schema = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SchemaError:
    path: str  # e.g. spec.audience[0].window
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@functools.cache
def schemas(crd_dir: Path = CRD_DIR) -> dict[str, Schema]:
    """Kind -> openAPIV3Schema of the served version, for every tailor.dev CRD in `crd_dir`."""
    found: dict[str, Schema] = {}
    if not crd_dir.is_dir():
        raise FileNotFoundError(
            f"no CRD directory at {crd_dir}: this Tailor installation lacks its CRDs (reinstall it)"
        )
    for path in sorted(crd_dir.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            if spec["group"] != constants.API_GROUP:
                continue
            for version in spec["versions"]:
                if version["name"] == constants.API_VERSION:
                    found[spec["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return found


def check(manifest: Mapping[str, Any], crd_dir: Path = CRD_DIR) -> tuple[dict[str, Any], list[SchemaError]]:
    """`manifest` with the schema's defaults applied, and what the API server would refuse in it."""
    kind = str(manifest.get("kind", ""))
    schema = schemas(crd_dir).get(kind)
    if schema is None:
        return dict(manifest), [SchemaError("kind", f"{kind!r} is not a {constants.API_GROUP} kind")]
    if manifest.get("apiVersion") != f"{constants.API_GROUP}/{constants.API_VERSION}":
        return dict(manifest), [
            SchemaError("apiVersion", f"must be {constants.API_GROUP}/{constants.API_VERSION}")
        ]
    defaulted = apply_defaults(copy.deepcopy(dict(manifest)), schema)
    errors: list[SchemaError] = []
    if not (defaulted.get("metadata") or {}).get("name"):
        errors.append(SchemaError("metadata.name", "Required value"))
    # Like the API server on create, the status of a manifest is ignored (it is a subresource).
    body = {key: value for key, value in defaulted.items() if key != "status"}
    _validate(body, schema, "", errors)
    return defaulted, errors


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill absent fields with their defaults, depth first, as the API server does before validating."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for name in value:
                value[name] = apply_defaults(value[name], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    elif schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # the API server's CEL sees every `number` as a double
    return value


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _validate(value: Any, schema: Schema, path: str, errors: list[SchemaError]) -> None:
    before = len(errors)
    where = path or "<root>"
    expected = schema.get("type")
    if value is None:
        if not schema.get("nullable"):
            errors.append(SchemaError(where, f"must be {expected or 'set'}, not null"))
        return
    if expected and not _TYPES[expected](value):
        errors.append(SchemaError(where, f"must be of type {expected}, got {type(value).__name__}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(str(option) for option in schema["enum"])
        errors.append(SchemaError(where, f"unsupported value {value!r}: must be one of {allowed}"))
    if isinstance(value, str):
        _check_string(value, schema, where, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(SchemaError(where, f"must be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(SchemaError(where, f"must be less than or equal to {schema['maximum']}"))
    elif isinstance(value, list):
        _check_list(value, schema, path, errors)
    elif isinstance(value, dict):
        _check_object(value, schema, path, errors)
    # CEL rules run only on values that passed the structural checks, as the API server's do
    # (a rule over a malformed value would only add a confusing evaluation error).
    if len(errors) == before:
        for validation in schema.get("x-kubernetes-validations") or ():
            if not _rule_holds(validation["rule"], value):
                message = validation.get("message") or f"failed rule: {validation['rule']}"
                errors.append(SchemaError(where, message))


def _check_string(value: str, schema: Schema, where: str, errors: list[SchemaError]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(SchemaError(where, f"should be at least {schema['minLength']} chars long"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(SchemaError(where, f"may not be more than {schema['maxLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(SchemaError(where, f"should match '{schema['pattern']}'"))


def _check_list(value: list[Any], schema: Schema, path: str, errors: list[SchemaError]) -> None:
    where = path or "<root>"
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(SchemaError(where, f"should have at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(SchemaError(where, f"must have at most {schema['maxItems']} items"))
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for item in value:
            if item in seen:
                errors.append(SchemaError(where, f"duplicate entries: {item!r}"))
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or ()
        seen_keys: set[tuple[Any, ...]] = set()
        for item in value:
            if isinstance(item, dict):
                identity = tuple(item.get(key) for key in keys)
                if identity in seen_keys:
                    errors.append(SchemaError(where, f"duplicate entries for key {identity!r}"))
                seen_keys.add(identity)
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _validate(item, items, f"{path}[{index}]", errors)


def _check_object(value: dict[str, Any], schema: Schema, path: str, errors: list[SchemaError]) -> None:
    where = path or "<root>"
    properties: Mapping[str, Schema] = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in value:
            errors.append(SchemaError(_join(path, name), "Required value"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(SchemaError(where, f"must have at most {schema['maxProperties']} properties"))
    additional = schema.get("additionalProperties")
    for name, item in value.items():
        child = _join(path, name)
        if name in properties:
            if path == "" and name == "metadata":
                continue  # the API server's own ObjectMeta validation, not ours
            _validate(item, properties[name], child, errors)
        elif isinstance(additional, Mapping):
            _validate(item, additional, child, errors)
        elif not schema.get("x-kubernetes-preserve-unknown-fields") and not (
            additional is True or (path == "" and name in ("apiVersion", "kind"))
        ):
            errors.append(SchemaError(child, "unknown field (not in the CRD's schema)"))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _rule_holds(rule: str, value: Any) -> bool:
    """Whether a CEL validation rule holds; an evaluation error fails it, as on the API server."""
    try:
        return cel.validation_rule(rule).evaluate({"self": value}) is True
    except cel.CelError:
        return False
