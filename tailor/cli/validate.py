"""`tailor validate PATH…`: the operator's checks, offline, for pull requests.

Every Tailor manifest under the paths (files, or directories searched for *.yaml / *.yml) is defaulted
and checked against its CRD's schema and CEL rules (crds/, as the API server would), then each
namespace's resources are compiled together for the semantic checks the operator makes (unknown
variants, undeclared windows, bad CEL, priority conflicts, ...). Exit 0 when clean; otherwise 1, with
one `file: Kind/name: message` line per problem on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tailor.core import constants
from tailor.core.rules import compiler, crdschema, specs

DEFAULT_NAMESPACE = "default"
# Used when the files hold rules or variants of a namespace but not its stack.
_STAND_IN_STACK = "stand-in"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check manifests offline: schema, CEL and semantics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="manifest files or directories")
    parser.add_argument(
        "--namespace", "-n", default=DEFAULT_NAMESPACE, help="namespace of manifests that name none"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    lines, notes = validate(args.paths, args.namespace)
    for note in notes:
        print(note, file=sys.stderr)
    for line in lines:
        print(line)
    return 1 if lines else 0


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            found.append(path)
    return found


@dataclass(frozen=True)
class Checked:
    """What `check` found: problem lines, notes, and each namespace's compile result (for `tailor diff`
    and `tailor simulate`, which compare or run what the operator would publish)."""

    lines: list[str]  # `file: Kind/name: message`
    notes: list[str]
    results: dict[str, compiler.CompileResult]  # namespace -> result
    stand_ins: frozenset[str]  # namespaces compiled against the stand-in stack (none in the files)


def validate(
    paths: Sequence[Path], default_namespace: str = DEFAULT_NAMESPACE
) -> tuple[list[str], list[str]]:
    """(problem lines, notes): the lines are `file: Kind/name: message`."""
    checked = check(paths, default_namespace)
    return checked.lines, checked.notes


def check(paths: Sequence[Path], default_namespace: str = DEFAULT_NAMESPACE) -> Checked:
    """Load, schema-check and compile every namespace in the manifests under `paths`."""
    lines: list[str] = []
    notes: list[str] = []
    origin: dict[tuple[str, str, str], Path] = {}  # (namespace, kind, name) -> file
    by_namespace: dict[str, list[specs.Source]] = defaultdict(list)
    for path in manifest_files(paths):
        try:
            documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        except (OSError, yaml.YAMLError) as error:
            lines.append(f"{path}: cannot read YAML: {error}")
            continue
        for document in documents:
            if not isinstance(document, dict) or not specs.is_tailor_manifest(document):
                continue
            name = (document.get("metadata") or {}).get("name", "")
            ref = f"{document['kind']}/{name}"
            defaulted, schema_errors = crdschema.check(document)
            lines.extend(f"{path}: {ref}: {schema_error}" for schema_error in schema_errors)
            if schema_errors:
                continue  # the API server would refuse it: it takes no part in compiling
            source = specs.Source.from_manifest(defaulted, default_namespace)
            key = (source.namespace, source.kind, source.name)
            if key in origin:
                lines.append(f"{path}: {ref}: also defined in {origin[key]} (namespace {source.namespace})")
                continue
            origin[key] = path
            by_namespace[source.namespace].append(source)

    results: dict[str, compiler.CompileResult] = {}
    stand_ins: set[str] = set()
    for namespace, sources in sorted(by_namespace.items()):
        if not any(source.kind == constants.STACK_KIND for source in sources):
            stand_ins.add(namespace)
            notes.append(
                f"note: namespace {namespace} has no PersonalizationStack in these files; its rules are "
                "checked against the default features (windows 5m, 30m, 24h; dimensions category, "
                "productId, query)"
            )
            stand_in = crdschema.apply_defaults(
                {"spec": {"kafka": {"bootstrapServers": "-"}, "redis": {"managed": True}}},
                crdschema.schemas()[constants.STACK_KIND],
            )
            stand_in_source = specs.Source(
                kind=constants.STACK_KIND, name=_STAND_IN_STACK, spec=stand_in["spec"]
            )
            sources = [*sources, stand_in_source]
        result = results[namespace] = compiler.compile_namespace(namespace, sources)
        reported = set()
        for problem in result.problems:
            if problem in reported or problem.name == _STAND_IN_STACK:
                continue
            reported.add(problem)
            where = origin.get((namespace, problem.kind, problem.name))
            lines.append(f"{where or namespace}: {problem.ref}: {problem.message}")
    return Checked(lines, notes, results, frozenset(stand_ins))
