"""Pure helpers for the scratch Go modules that build upstream programs.

``k8s.io/kubernetes`` requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
``v0.0.0`` and replaces them with ``./staging/src/...``; replace directives of a dependency
are ignored, so a module that depends on it must replace each staging module with its
published ``v0.<minor>.<patch>`` itself (kubernetes/kubernetes#79384). The list comes from
the release's own go.mod so it stays right when Kubernetes adds or drops a staging module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_BLOCK_RE = re.compile(r"^(require|replace)\s*\(\s*$")
_SINGLE_RE = re.compile(r"^(require|replace)\s+(.+)$")


def _directives(go_mod: str) -> Iterable[tuple[str, str]]:
    """Yield (verb, body) for every require/replace entry, in blocks or on single lines."""
    block: str | None = None
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block is not None:
            if line == ")":
                block = None
            else:
                yield block, line
            continue
        opened = _BLOCK_RE.match(line)
        if opened:
            block = opened.group(1)
            continue
        single = _SINGLE_RE.match(line)
        if single:
            yield single.group(1), single.group(2).strip()


def local_replacements(go_mod: str) -> dict[str, str]:
    """Modules that ``go_mod`` replaces with a local directory, mapped to that directory."""
    result: dict[str, str] = {}
    for verb, body in _directives(go_mod):
        if verb != "replace" or "=>" not in body:
            continue
        old, new = (part.strip().split() for part in body.split("=>", 1))
        target = new[0]
        # Only filesystem targets are staging copies; "mod => othermod vX" is kept upstream.
        if target.startswith(("./", "../", "/")):
            result[old[0]] = target
    return result


def required_modules(go_mod: str) -> dict[str, str]:
    """Every module ``go_mod`` requires, mapped to its required version."""
    result: dict[str, str] = {}
    for verb, body in _directives(go_mod):
        if verb == "require":
            parts = body.split()
            if len(parts) >= 2:
                result[parts[0]] = parts[1]
    return result


def staging_replacements(go_mod: str, published_version: str) -> list[tuple[str, str]]:
    """(module, version) replace pairs for every staging module the release requires.

    Modules that are replaced locally but not required (e.g. sample-cli-plugin, which is
    not even published) are left out: a replace pointing at an unpublished version fails.
    """
    required = required_modules(go_mod)
    return sorted((module, published_version) for module in local_replacements(go_mod) if module in required)


def render_go_mod(
    module: str,
    go_version: str,
    requires: Sequence[tuple[str, str]],
    replaces: Sequence[tuple[str, str]] = (),
) -> str:
    """The text of a scratch go.mod with the given requirements and version replacements."""
    lines = [f"module {module}", "", f"go {go_version}", ""]
    if requires:
        lines.append("require (")
        lines.extend(f"\t{path} {version}" for path, version in requires)
        lines.append(")")
        lines.append("")
    if replaces:
        lines.append("replace (")
        lines.extend(f"\t{path} => {path} {version}" for path, version in replaces)
        lines.append(")")
        lines.append("")
    return "\n".join(lines)
