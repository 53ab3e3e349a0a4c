"""Benchmark: what a `spec.when` costs at its worst, in time, beside its estimated cost.

The cost limit (tailor.core.rules.environment.COST_LIMIT) is in the estimate's units; this says what a
unit is in CPU time here. For expressions over a profile as large as the data plane lets one grow
(30,720 counters per dimension map, `recentLimit` 200 values of 512 characters), it prints the
estimate, the CPU time of one evaluation (the best of a few), nanoseconds per unit, and the same
condition written by hand in Python (the ceiling: no CEL evaluator in Python can beat it). Then what
the limit means in milliseconds at the slowest unit measured, and how fast the runtime budget stops an
evaluation whose values outgrew their bounds (a profile written under a larger recentLimit).

    .venv/bin/python bench/cel_cost.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import string
import time
from collections.abc import Callable
from typing import Any

from tailor.core import cel, constants
from tailor.core.rules import compiler, environment, ruleset

WINDOWS = (("5m", 300), ("30m", 1800), ("24h", 86400))
DIMENSIONS = ("category", "productId", "query")
L30 = "[" + ", ".join(str(i) for i in range(30)) + "]"


def features(recent_limit: int) -> ruleset.FeatureConfig:
    windows = tuple(
        ruleset.Window(name=name, seconds=seconds, bucket_seconds=compiler.bucket_seconds(seconds))
        for name, seconds in WINDOWS
    )
    return ruleset.FeatureConfig(
        windows=windows, dimensions=DIMENSIONS, allowed_lateness_seconds=0, recent_limit=recent_limit
    )


def text(length: int, rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=length))


def largest_profile(recent_limit: int) -> dict[str, Any]:
    """The CEL variables of a profile at every bound environment.schemas declares."""
    rng = random.Random(7)
    bound = features(recent_limit)
    entry_schema = environment.schemas(bound)["views"]["properties"]["24h"]
    counters = entry_schema["properties"]["category"]["maxProperties"]
    category = {text(environment.DIMENSION_VALUE_LENGTH, rng): 3 for _ in range(counters)}
    entry = {"total": 5, "category": category, "productId": {}, "query": {}}
    activation: dict[str, Any] = {f: {name: entry for name, _ in WINDOWS} for f in constants.FEATURES}
    activation["recent"] = {
        d: [text(environment.DIMENSION_VALUE_LENGTH, rng) for _ in range(recent_limit)] for d in DIMENSIONS
    }
    activation["session"] = {"id": "s" * 128, "pageViews": 3, "events": 4, "durationSeconds": 10}
    activation["user"] = {"id": "u" * 128}
    return activation


# (CEL, the same by hand in Python). Each ranges over everything: no early exit.
CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    (
        'views["24h"].category.exists(c, c.startsWith("shoe") && views["24h"].category[c] > 2)',
        lambda a: any(c.startswith("shoe") and n > 2 for c, n in a["views"]["24h"]["category"].items()),
    ),
    (
        'views["24h"].category.all(c, views["24h"].category[c] < 100)',
        lambda a: all(n < 100 for n in a["views"]["24h"]["category"].values()),
    ),
    (
        'views["24h"].category.filter(c, c.endsWith("zz")).size() >= 0',
        lambda a: len([c for c in a["views"]["24h"]["category"] if c.endswith("zz")]) >= 0,
    ),
    (
        "recent.category.all(a, !(a in recent.query))",
        lambda a: all(c not in a["recent"]["query"] for c in a["recent"]["category"]),
    ),
    (
        'recent.query.exists(q, q.matches("^z+$"))',
        lambda a: any(q.startswith("z") and set(q) == {"z"} for q in a["recent"]["query"]),
    ),
    (
        f"{L30}.map(a, {L30}.map(b, {L30}.map(c, a + b + c))).size() > 0",
        lambda a: len([[[x + y + z for z in range(30)] for y in range(30)] for x in range(30)]) > 0,
    ),
]


def best(function: Callable[[], object], rounds: int) -> float:
    """CPU seconds of the cheapest of `rounds` calls: an evaluation of tens of milliseconds is almost
    always preempted on a busy box, and CPU time is what a request loop spends on it."""
    times = []
    for _ in range(rounds):
        started = time.thread_time()
        function()
        times.append(time.thread_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="evaluations per expression (the best counts)")
    rounds = parser.parse_args().rounds
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bound = features(200)
    activation = largest_profile(200)
    header = f"{'expression':<60} {'estimate':>10} {'CPU ms':>7} {'ns/unit':>8} {'by hand ms':>10}"
    print(header)
    print("-" * len(header))
    slowest = 0.0
    for source, by_hand in CASES:
        program = compiler.compile_when(source, bound)
        assert program.estimate is not None
        assert program.matches(activation) is by_hand(activation), source
        ours = ceiling = float("inf")
        for _ in range(rounds):  # in turns, so that load from other processes weighs on both alike
            ours = min(ours, best(lambda program=program: program.matches(activation), 1))
            ceiling = min(ceiling, best(lambda by_hand=by_hand: by_hand(activation), 1))
        per_unit = ours * 1e9 / program.estimate.cost
        slowest = max(slowest, per_unit)
        label = source if len(source) <= 60 else source[:57] + "..."
        figures = f"{program.estimate.cost:>10,} {ours * 1e3:>7.2f} {per_unit:>8.1f} {ceiling * 1e3:>10.2f}"
        print(f"{label:<60} {figures}")
    limit = environment.COST_LIMIT
    print(f"the limit, {limit:,} units, at the slowest unit measured: {limit * slowest / 1e6:.1f} ms")

    # The budget: five nested maps (never accepted, but compiled here with the budget alone) and a
    # profile written under recentLimit 200 read by a rule accepted under recentLimit 5.
    nested = "1"
    for level in range(5):
        nested = f"{L30}.map(x{level}, {nested})"
    nested += ".size() > 0"
    stopped = cel.compile(nested, (), schemas={}, budget=limit)
    stale = 'recent.category.all(a, recent.query.all(b, recent.productId.all(c, a + b + c != "")))'
    accepted = compiler.compile_when(stale, features(5))
    assert accepted.estimate is not None
    assert accepted.estimate.cost <= limit
    for label, program, variables in (
        ("5 nested map over 30 elements", stopped, {}),
        (f"3 nested all over recent (estimated {accepted.estimate.cost:,} at recentLimit 5, lists of 200)",
         accepted, activation),
    ):  # fmt: skip
        took = best(lambda program=program, variables=variables: program.matches(variables), rounds)
        print(f"budget stop: {label}: matches() False after {took * 1e3:.3f} ms")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
