"""`tailor simulate --manifests PATH… --events FILE --user U`: what that user would see, offline.

The manifests are checked and compiled as `tailor validate` and the operator do. The user's events
(v1 events as JSON lines, a JSON array, or {"events": [...]}; validated with the event schema) are
counted the way the workers count them (tailor.core.profile.offline: the workers' own counting
code, tailor.core.profile.state, with what Redis adds kept in memory), as if each arrived when it
happened. Then the content API's own decision engine (tailor.core.decision) decides every slot for
that profile and prints, per slot, the variant, its rule, a summary of its content, and why: each
rule's matchers with the user's counts, the CEL `when`, the rollout bucket. Frequency caps are
assumed fresh (the user has not been served yet), no variant is dismissed, and the bandit has no
click statistics.

  --at TIME      the moment to decide at (RFC 3339 or Unix seconds); events after it are left out.
                 Default: the user's latest event (else the file's latest; else now), so a persona
                 file gives the same answer in CI every day. Events without a timestamp happen at it.
  --session S    default: the session of the user's latest event.

Exit status: 0, or 1 with `file: Kind/name: message` lines for invalid manifests and
`file:line: field: message` lines for invalid events.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tailor.cli import simulation, validate
from tailor.core import events
from tailor.core.profile import SEPARATOR
from tailor.core.rules import describe, ruleset

INVALID = 1
OUTCOMES = {
    "chosen": "chosen",
    "candidate": "chosen (its frequency cap is assumed fresh)",
    "notReached": "not reached: a rule above was chosen",
    "audience": "audience does not match",
    "when": "`when` is not true",
    "rollout": "user is outside the rollout",
    "frequencyCap": "over its frequency cap",
    "noVariant": "none of its variants is live at this time",
    "disabled": "disabled",
    "killSwitch": "kill switch on: rules are not served",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="show, offline, what a user with given events would see in each slot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--manifests", nargs="+", required=True, type=Path, metavar="PATH")
    parser.add_argument("--events", required=True, metavar="FILE", help="events file ('-' for stdin)")
    parser.add_argument("--user", required=True, help="userId or anonymousId of the events to count")
    parser.add_argument("--session", help="session to decide for (default: the user's latest)")
    parser.add_argument("--at", help="moment to decide at: RFC 3339 or Unix seconds")
    parser.add_argument("--slot", action="append", help="only this slot (repeatable; default: all)")
    parser.add_argument(
        "--namespace", "-n", help="namespace to simulate (default: the only one in the manifests)"
    )
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    checked = validate.check(args.manifests, args.namespace or validate.DEFAULT_NAMESPACE)
    for note in checked.notes:
        print(note, file=sys.stderr)
    if checked.lines:
        print("\n".join(checked.lines))
        return INVALID
    try:
        published = choose_ruleset(checked, args.namespace)
        loaded, problems = load_events(args.events)
        if problems:
            print("\n".join(problems))
            return INVALID
        at = parse_moment(args.at) if args.at else default_moment(loaded, args.user)
        result = simulation.simulate(published, loaded, args.user, at, session=args.session, slots=args.slot)
    except simulation.UsageError as error:
        print(f"tailor simulate: {error}", file=sys.stderr)
        return INVALID
    print(render_json(result) if args.format == "json" else render_text(result))
    return 0


def choose_ruleset(checked: validate.Checked, namespace: str | None) -> ruleset.Ruleset:
    if namespace is None:
        if len(checked.results) != 1:
            found = ", ".join(sorted(checked.results)) or "none"
            raise simulation.UsageError(f"choose a namespace with --namespace (the manifests hold: {found})")
        namespace = next(iter(checked.results))
    result = checked.results.get(namespace)
    if result is None or result.ruleset is None:
        raise simulation.UsageError(f"the manifests hold nothing for namespace {namespace}")
    return result.ruleset


# --- events ------------------------------------------------------------------------------------------


def load_events(path: str) -> tuple[list[events.Event], list[str]]:
    """The events of `path` and `location: field: message` lines for those that are invalid."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise simulation.UsageError(f"cannot read {path}: {error}") from None
    items: list[tuple[str, Any]] = []
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        document = None  # not one JSON document: JSON lines
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((f"{path}:{number}", orjson.loads(line)))
                except orjson.JSONDecodeError as error:
                    items.append((f"{path}:{number}", _NotJson(str(error))))
    else:
        if isinstance(document, dict) and isinstance(document.get("events"), list):
            document = document["events"]
        if isinstance(document, list):
            items = [(f"{path}[{index}]", item) for index, item in enumerate(document)]
        else:
            items = [(path, document)]
    found: list[events.Event] = []
    problems: list[str] = []
    for where, data in items:
        if isinstance(data, _NotJson):
            problems.append(f"{where}: not JSON: {data.message}")
            continue
        event, errors = events.validate(data)
        if event is None:
            problems.extend(f"{where}: {error['field']}: {error['message']}" for error in errors)
        else:
            found.append(event)
    return found, problems


@dataclass(frozen=True)
class _NotJson:
    message: str


def parse_moment(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise simulation.UsageError(
            f"--at {text!r}: use RFC 3339 (2026-03-01T12:00:00Z) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def default_moment(loaded: Sequence[events.Event], user: str) -> float:
    """The user's latest event time, else the file's, else now."""
    for chosen in ([e for e in loaded if e.user == user], loaded):
        times = [e.timestamp.timestamp() for e in chosen if e.timestamp is not None]
        if times:
            return max(times)
    return time.time()


# --- rendering ---------------------------------------------------------------------------------------


def counter_text(name: str) -> str:
    """`views|category|shoes` -> `views[category=shoes]`."""
    feature, _, rest = name.partition(SEPARATOR)
    if not rest:
        return feature
    dimension, _, value = rest.partition(SEPARATOR)
    return f"{feature}[{dimension}={value}]"


def render_text(result: simulation.Simulation) -> str:
    moment = describe.moment(result.at)
    session = f"session {result.session}" if result.session else "no session"
    out = [
        f"user {result.user}, {session}, at {moment}: stack {result.stack} "
        "(offline: frequency caps fresh, no dismissals, no click statistics)",
        f"events counted: {result.counted}"
        + (f", duplicates ignored: {result.duplicates}" if result.duplicates else "")
        + (f", later than --at: {result.after_at}" if result.after_at else ""),
        "profile:",
    ]
    for window, counters in result.profile.counts.items():
        ranked = sorted(
            ((n, counter_text(name)) for name, n in counters.items() if n), key=lambda c: (-c[0], c[1])
        )
        listed = ", ".join(f"{name} {n}" for n, name in ranked[:8]) + (", …" if len(ranked) > 8 else "")
        out.append(f"  {window}: {listed or 'nothing'}")
    if result.profile.session is not None:
        stats = result.profile.session
        out.append(f"  session: page views {stats.page_views}, events {stats.events}")
    for outcome in result.slots:
        out.append("")
        if outcome.rule is not None:
            out.append(
                f"slot {outcome.slot}: {outcome.variant} (rule {outcome.rule}, priority {outcome.priority})"
            )
        else:
            out.append(f"slot {outcome.slot}: {outcome.variant or 'nothing'} (fallback)")
        out.append(f"  content: {outcome.summary}")
        out.append(f"  why: {'; '.join(outcome.reasons)}")
        rules = [entry for entry in outcome.trace if entry.get("rule")]
        if rules:
            out.append("  rules, highest priority first:")
        for entry in rules:
            priority = f" (priority {entry['priority']})" if "priority" in entry else ""
            verdict = OUTCOMES.get(entry["outcome"], entry["outcome"])
            detail = (
                simulation.checks(entry, caps=False)
                if entry["outcome"] not in ("chosen", "candidate", "notReached")
                else []
            )
            out.append(
                f"    {entry['rule']}{priority}: {verdict}" + (f": {'; '.join(detail)}" if detail else "")
            )
    return "\n".join(out)


def render_json(result: simulation.Simulation) -> str:
    from tailor_api import admin

    document = {
        "user": result.user,
        "session": result.session,
        "at": describe.moment(result.at),
        "stack": result.stack,
        "events": {"counted": result.counted, "duplicates": result.duplicates, "afterAt": result.after_at},
        "profile": admin.profile_document(result.profile),
        "slots": [
            {
                "slot": o.slot,
                "variant": o.variant,
                "rule": o.rule,
                "fallback": o.rule is None and o.variant is not None,
                "content": o.content,
                "summary": o.summary,
                "reasons": list(o.reasons),
                "rules": o.trace,
            }
            for o in result.slots
        ],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
