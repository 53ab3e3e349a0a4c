"""Benchmark: `spec.when` evaluation, tailor.core.cel against celpy's interpreter and hand-written Python.

For a few representative rule expressions over a realistic profile (Profile.as_cel), prints one table:
µs per evaluation and evaluations/s of Program.matches, compiled as the content API's engine compiles
a `when` (tailor.core.rules.compiler.compile_when: with its cost budget) and without the budget
(cel.compile alone: the code every `when` compiled to before issue 14, the same source byte for byte),
of celpy's InterpretedRunner on the same expression (the dependency we replace), and of the same
condition written by hand in Python (the ceiling: what any CEL implementation in Python could at best
approach). Ratios are what to read; the machine is shared and absolute numbers drift.

    .venv/bin/python bench/cel.py [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import celpy
from celpy import adapter

from tailor.core import cel, constants, profile
from tailor.core.rules import compiler, ruleset

WINDOWS = ["5m", "30m", "24h"]
DIMENSIONS = ["category", "productId", "query"]


def features() -> ruleset.FeatureConfig:
    windows = tuple(
        ruleset.Window(name=name, seconds=seconds, bucket_seconds=compiler.bucket_seconds(seconds))
        for name, seconds in (("5m", 300), ("30m", 1800), ("24h", 86400))
    )
    return ruleset.FeatureConfig(windows=windows, dimensions=tuple(DIMENSIONS), allowed_lateness_seconds=0)


def activation() -> dict[str, Any]:
    counts = {
        "5m": {"views": 2, "views|category|shoes": 2},
        "30m": {"views": 5, "views|category|shoes": 3, "views|category|bags": 1, "cartAdds": 1},
        "24h": {"views": 12, "views|category|shoes": 7, "searches": 3, "searches|query|running shoes": 2},
    }
    recent = {"category": ["shoes", "bags"], "query": ["running shoes"], "productId": ["p1", "p2", "p3"]}
    session = profile.Session(id="s1", page_views=7, events=9, started_at=1000.0, last_seen_at=1120.0)
    user = profile.Profile(user="u42", counts=counts, recent=recent, session=session)
    return user.as_cel(WINDOWS, list(constants.FEATURES), DIMENSIONS)


# (CEL expression, the same condition by hand in Python: the ceiling)
CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ('views["30m"].total >= 3', lambda a: a["views"]["30m"]["total"] >= 3),
    (
        'views["30m"].total >= 3 && "shoes" in recent.category',
        lambda a: a["views"]["30m"]["total"] >= 3 and "shoes" in a["recent"]["category"],
    ),
    (
        'views["24h"].category["shoes"] >= 5 || cartAdds["30m"].total > 0',
        lambda a: a["views"]["24h"]["category"]["shoes"] >= 5 or a["cartAdds"]["30m"]["total"] > 0,
    ),
    (
        'session.pageViews > 5 && !(user.id in ["u1", "u2"]) && recent.query.exists(q, q.startsWith("run"))',
        lambda a: (
            a["session"]["pageViews"] > 5
            and a["user"]["id"] not in ("u1", "u2")
            and any(q.startswith("run") for q in a["recent"]["query"])
        ),
    ),
    (
        'purchases["24h"].total == 0 && size(recent.productId) >= 3 && session.durationSeconds < 600',
        lambda a: (
            a["purchases"]["24h"]["total"] == 0
            and len(a["recent"]["productId"]) >= 3
            and a["session"]["durationSeconds"] < 600
        ),
    ),
    (
        'views["24h"].category.exists(c, views["24h"].category[c] >= 5 && c != "bags")',
        lambda a: any(n >= 5 and c != "bags" for c, n in a["views"]["24h"]["category"].items()),
    ),
]


def batch_size(function: Callable[[], object], seconds: float) -> int:
    """How many calls take about `seconds`."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            function()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 10:
            return max(1, int(calls * seconds / elapsed))
        calls *= 4


BATCH_SECONDS = 0.001  # short enough that many batches run between two preemptions on a busy box


def per_call(functions: list[Callable[[], object]], budget: float) -> list[float]:
    """Seconds per call of each function: the best of many short batches that interleave the
    functions (in alternating order), so that load from other processes on the shared machine weighs
    on all of them alike and the best batches are the undisturbed ones."""
    sizes = [batch_size(function, BATCH_SECONDS) for function in functions]
    rounds = max(20, int(budget / (BATCH_SECONDS * len(functions))))
    best = [float("inf")] * len(functions)
    indexed = list(enumerate(zip(functions, sizes, strict=True)))
    for round_number in range(rounds):
        for position, (function, size) in indexed if round_number % 2 else reversed(indexed):
            started = time.perf_counter()
            for _ in range(size):
                function()
            best[position] = min(best[position], (time.perf_counter() - started) / size)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    budget = parser.parse_args().seconds

    plain = activation()
    typed = {name: adapter.json_to_cel(value) for name, value in plain.items()}
    environment = celpy.Environment()

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = (
        f"{'expression':<58} {'tailor µs':>9} {'evals/s':>10} {'no budget':>9} {'budgeted':>8}"
        f" {'celpy µs':>9} {'speedup':>8} {'by hand µs':>10} {'of ceiling':>10}"
    )
    print(header)
    print("-" * len(header))
    for source, by_hand in CASES:
        program = compiler.compile_when(source, features())
        unbudgeted = cel.compile(source, constants.CEL_VARIABLES)
        runner = environment.program(environment.compile(source))
        expected = by_hand(plain)
        assert program.matches(plain) is expected, source
        assert bool(runner.evaluate(typed)) is expected, source

        ours, before, theirs, ceiling = per_call(
            [
                functools.partial(program.matches, plain),
                functools.partial(unbudgeted.matches, plain),
                functools.partial(runner.evaluate, typed),
                functools.partial(by_hand, plain),
            ],
            budget,
        )
        label = source if len(source) <= 58 else source[:55] + "..."
        print(
            f"{label:<58} {ours * 1e6:>9.2f} {1 / ours:>10,.0f} {before * 1e6:>9.2f} {before / ours:>8.2f}"
            f" {theirs * 1e6:>9.1f} {theirs / ours:>7.0f}x {ceiling * 1e6:>10.2f} {ceiling / ours:>9.0%}"
        )
    print(
        "no budget = µs without the cost budget (the code before issue 14); budgeted = its evaluations/s"
        " ratio (1.00 = no cost); speedup = celpy µs / tailor µs; of ceiling = hand-written Python µs /"
        " tailor µs (100% = no overhead)"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
