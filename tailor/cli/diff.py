"""`tailor diff PATH… [--against PATH… | --stack NS/NAME]`: what applying the manifests would change.

The manifests are checked and compiled offline, exactly as `tailor validate` and the operator do, and
the resulting ruleset of each namespace is compared with a baseline:

  --against PATH…   the same namespaces compiled from other manifests (the base branch's checkout:
                    the usual pull-request check)
  --stack NS/NAME   the ruleset the operator published in Redis for that stack (TAILOR_REDIS_URL
                    or --redis-url)
  neither           nothing: everything is new (a first apply)

It prints the rules and variants added, removed and changed (field, old → new) per slot, the stack's
changed settings, and which users are affected, in words. `--format markdown` is made for a
pull-request comment.

Exit status: 0 no change, 2 changes, 1 invalid manifests (the `file: Kind/name: message` lines of
`tailor validate`) or no baseline to compare with (Redis unreachable; the reason on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tailor.cli import validate
from tailor.core import constants, redis_target
from tailor.core.rules import rulediff, ruleset
from tailor.core.rules.describe import code

NO_CHANGES, CHANGES, INVALID = 0, 2, 1
MARKER = "<!-- tailor-diff -->"  # lets a CI job find and update its own PR comment


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="show what applying manifests would change in the published ruleset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="manifest files or directories")
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        "--against", nargs="+", metavar="PATH", type=Path, help="compare with these manifests (base branch)"
    )
    baseline.add_argument(
        "--stack", metavar="NS/NAME", help="compare with the ruleset published for this stack"
    )
    parser.add_argument(
        "--redis-url",
        help=f"Redis of the stack (default: ${constants.ENV_REDIS_URL}); credentials and TLS files come "
        f"from ${constants.ENV_REDIS_USERNAME}, ${constants.ENV_REDIS_PASSWORD}, "
        f"${constants.ENV_REDIS_TLS_CA_FILE} (_CERT_FILE, _KEY_FILE)",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        help="namespace of manifests that name none (default: that of --stack, else default)",
    )
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class Comparison:
    """One namespace: the baseline, the ruleset the manifests compile to, and what changes."""

    namespace: str
    baseline: str  # in words: "the base manifests", "version 7 published for shop/shop", …
    diff: rulediff.RulesetDiff
    stack: str | None  # `namespace/name` of the stack the manifests define, if they define one


def run(args: argparse.Namespace) -> int:
    if args.namespace is None:
        stack_namespace = (args.stack or "").partition("/")[0]
        args.namespace = stack_namespace or validate.DEFAULT_NAMESPACE
    checked = validate.check(args.paths, args.namespace)
    for note in checked.notes:
        print(note, file=sys.stderr)
    if checked.lines:
        print(render_invalid(checked.lines, args.format))
        return INVALID
    try:
        comparisons = compare(args, checked)
    except BaselineError as error:
        print(f"tailor diff: {error}", file=sys.stderr)
        return INVALID
    print(render(comparisons, args.format))
    return CHANGES if any(c.diff.changed for c in comparisons) else NO_CHANGES


class BaselineError(Exception):
    """There is nothing to compare with (bad --stack, Redis unreachable)."""


def _ruleset(checked: validate.Checked, namespace: str) -> ruleset.Ruleset | None:
    result = checked.results.get(namespace)
    return result.ruleset if result is not None else None


def _stack(checked: validate.Checked, namespace: str) -> str | None:
    compiled = _ruleset(checked, namespace)
    return compiled.stack if compiled is not None and namespace not in checked.stand_ins else None


def compare(args: argparse.Namespace, checked: validate.Checked) -> list[Comparison]:
    if args.stack:
        namespace, slash, name = args.stack.partition("/")
        if not slash or not namespace or not name:
            raise BaselineError(f"--stack {args.stack!r} must be NAMESPACE/NAME")
        if namespace not in checked.results:
            found = ", ".join(sorted(checked.results)) or "none"
            raise BaselineError(f"the manifests hold nothing for namespace {namespace} (namespaces: {found})")
        published = load_published(args.redis_url or os.environ.get(constants.ENV_REDIS_URL), args.stack)
        after = _ruleset(checked, namespace)
        if after is not None and after.stack != args.stack and namespace not in checked.stand_ins:
            print(
                f"note: the manifests define stack {after.stack}, compared with {args.stack}", file=sys.stderr
            )
        baseline = (
            f"version {published.version} published for {args.stack}"
            if published is not None
            else f"nothing published for {args.stack}"
        )
        compare_config = namespace not in checked.stand_ins
        diff = rulediff.diff(published, after, compare_config=compare_config)
        return [Comparison(namespace, baseline, diff, _stack(checked, namespace) or args.stack)]
    if args.against:
        base = validate.check(args.against, args.namespace)
        for line in base.lines:
            print(f"note: the baseline has a problem (compared without it): {line}", file=sys.stderr)
        comparisons = []
        for namespace in sorted(base.results.keys() | checked.results.keys()):
            compare_config = namespace not in base.stand_ins and namespace not in checked.stand_ins
            before, after = _ruleset(base, namespace), _ruleset(checked, namespace)
            diff = rulediff.diff(before, after, compare_config=compare_config)
            stack = _stack(checked, namespace) or _stack(base, namespace)
            comparisons.append(Comparison(namespace, "the base manifests", diff, stack))
        return comparisons
    comparisons = []
    for namespace in sorted(checked.results):
        compare_config = namespace not in checked.stand_ins
        diff = rulediff.diff(None, _ruleset(checked, namespace), compare_config=compare_config)
        comparisons.append(Comparison(namespace, "nothing (first apply)", diff, _stack(checked, namespace)))
    return comparisons


def load_published(url: str | None, stack: str) -> ruleset.Ruleset | None:
    """The ruleset currently served for `stack`, or None if none is published."""
    import redis

    from tailor.core.rules import versions

    if not url:
        raise BaselineError(
            f"set {constants.ENV_REDIS_URL} or --redis-url to compare with a published ruleset"
        )
    try:
        target = redis_target.RedisTarget.from_environment(url=url)
    except ValueError as error:
        raise BaselineError(str(error)) from None
    url = target.url
    client = target.client(socket_connect_timeout=5, socket_timeout=10)
    try:
        return versions.load_sync(client, stack)
    except versions.Unreadable as refused:
        raise BaselineError(str(refused)) from None
    except (redis.RedisError, OSError) as error:
        raise BaselineError(f"cannot read the ruleset of {stack} from {url}: {error}") from None
    finally:
        client.close()


# --- rendering ---------------------------------------------------------------------------------------

SIGNS = {"added": "+", "removed": "-", "changed": "~"}


def render(comparisons: list[Comparison], fmt: str) -> str:
    if fmt == "json":
        document = [
            {"namespace": c.namespace, "baseline": c.baseline, **c.diff.to_json()} for c in comparisons
        ]
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    if fmt == "markdown":
        return render_markdown(comparisons)
    return render_text(comparisons)


def render_invalid(lines: list[str], fmt: str) -> str:
    if fmt == "markdown":
        fence = "\n".join(lines)
        return f"{MARKER}\n## Tailor diff: invalid manifests\n\n```\n{fence}\n```"
    if fmt == "json":
        return orjson.dumps({"invalid": lines}, option=orjson.OPT_INDENT_2).decode()
    return "\n".join(lines)


def _stack_of(comparison: Comparison) -> str:
    return f" (stack {comparison.stack})" if comparison.stack else ""


def render_text(comparisons: list[Comparison]) -> str:
    out: list[str] = []
    for comparison in comparisons:
        diff = comparison.diff
        out.append(
            f"namespace {comparison.namespace}{_stack_of(comparison)} against {comparison.baseline}: "
            f"{diff.headline()}"
        )
        for change in diff.stack:
            out.append(f"  {SIGNS[change.action]} stack {change.name}")
            out.extend(f"      {f.field}: {f.before} → {f.after}" for f in change.fields)
        out.extend(f"    * {effect}" for effect in diff.stack_effects)
        for slot in diff.slots:
            out.append(f"\n  slot {slot.slot}")
            for change in slot.changes:
                noun = rulediff.NOUNS[change.kind]
                out.append(f"    {SIGNS[change.action]} {noun} {change.name}: {change.summary}")
                out.extend(f"        {f.field}: {f.before} → {f.after}" for f in change.fields)
            if slot.effects:
                out.append("    who is affected:")
                out.extend(f"      * {effect}" for effect in slot.effects)
        out.append("")
    return "\n".join(out).rstrip()


def _cell(text: str) -> str:
    """Text for a GitHub table cell: pipes escaped (also inside code), no line breaks."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(comparisons: list[Comparison]) -> str:
    out = [MARKER, "## Tailor diff", ""]
    for comparison in comparisons:
        diff = comparison.diff
        out.append(f"### Namespace {code(comparison.namespace)}{_stack_of(comparison)}")
        out.append(f"Compared with {comparison.baseline}: **{diff.headline()}**.")
        out.append("")
        if diff.stack:
            out += ["#### Stack settings", "", "| field | before | after |", "|---|---|---|"]
            for change in diff.stack:
                if not change.fields:
                    out.append(f"| stack {_cell(code(change.name))} {change.action} | | |")
                out.extend(
                    f"| {_cell(code(f.field))} | {_cell(code(f.before))} | {_cell(code(f.after))} |"
                    for f in change.fields
                )
            out.append("")
            out.extend(f"- {_cell(effect)}" for effect in diff.stack_effects)
            out.append("")
        for slot in diff.slots:
            out.append(f"#### Slot {code(slot.slot)}")
            out.append("")
            if slot.changes:
                out += ["| | resource | field | before | after |", "|---|---|---|---|---|"]
                for change in slot.changes:
                    resource = f"{rulediff.NOUNS[change.kind]} {code(change.name)}"
                    if change.action == "changed":
                        out.extend(
                            f"| {change.action} | {resource} | {_cell(code(f.field))} | "
                            f"{_cell(code(f.before))} | {_cell(code(f.after))} |"
                            for f in change.fields
                        )
                    else:
                        before, after = (
                            ("", change.summary) if change.action == "added" else (change.summary, "")
                        )
                        out.append(f"| {change.action} | {resource} | | {_cell(before)} | {_cell(after)} |")
                out.append("")
            if slot.effects:
                out.append("**Who is affected**")
                out.append("")
                out.extend(f"- {effect}" for effect in slot.effects)
                out.append("")
    return "\n".join(out).rstrip() + "\n"
