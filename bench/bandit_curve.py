"""Benchmark: the contextual bandit's learning curve beside the plain bandit's and the per-segment oracle's.

    .venv/bin/python bench/bandit_curve.py [--seeds 8] [--impressions 5000] [--svg docs/img/bandit-curve.svg]
    .venv/bin/python bench/bandit_curve.py --cost   # also: what the context costs per decision (µs)

The simulated shop of tests/bandit_simulation.py (four segments whose hidden click-through rates
differ, each with its own best variant), decided by the content API's own decision code; the three
policies meet the same visitors and click draws in the same run. Prints, averaged over the seeds: the
CTR of what each policy served per block of impressions (the hidden rate of the variant served, so the
curve shows the policy, not the click noise), the whole run's CTR, realized clicks and regret (expected
clicks lost against the oracle), and writes the curve as an SVG (written by hand: no plotting library).
Pure CPU, one process; the machine's load is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/bandit_simulation.py: the simulated shop, not shipped

import bandit_simulation as sim  # noqa: E402

COLOURS = {"contextual": "#1f77b4", "plain": "#d62728", "oracle": "#2ca02c"}
LABELS = {
    "contextual": "contextual bandit (rotation.context)",
    "plain": "plain bandit",
    "oracle": "per-segment oracle",
}


def curve(expected: list[tuple[float, ...]], step: int) -> list[tuple[int, float]]:
    """(impressions so far, mean CTR over the last `step` impressions, averaged over the runs)."""
    total = len(expected[0])
    return [
        (end, statistics.fmean(sum(run[end - step : end]) / step for run in expected))
        for end in range(step, total + 1, step)
    ]


def cumulative_regret(runs: list[tuple[sim.Run, list[float]]], step: int) -> list[tuple[int, float]]:
    """(impressions so far, expected clicks lost against the oracle so far, averaged over the runs)."""
    total = len(runs[0][0].expected)
    return [(0, 0.0)] + [
        (
            end,
            statistics.fmean(
                sum(b - g for b, g in zip(best[:end], r.expected[:end], strict=True)) for r, best in runs
            ),
        )
        for end in range(step, total + 1, step)
    ]


def _panel(
    parts: list[str],
    top: int,
    title: str,
    ylabel: str,
    curves: dict[str, list[tuple[int, float]]],
    ymax: float,
    ytick: float,
    impressions: int,
    target: float | None = None,
) -> None:
    width, height, left, right = 760, 330, 70, 20
    plot_w, plot_h = width - left - right, height - 90
    top += 40

    def x(n: float) -> float:
        return left + plot_w * n / impressions

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    parts.append(f'<text x="{left}" y="{top - 18}" font-size="14">{title}</text>')
    for i in range(round(ymax / ytick) + 1):
        v = i * ytick
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for tick in range(0, impressions + 1, 1000):
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{x(tick):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{tick}</text>')
    middle = top + plot_h / 2
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">impressions</text>'
        f'<text x="16" y="{middle}" transform="rotate(-90 16 {middle})" text-anchor="middle">{ylabel}</text>'
    )
    if target is not None:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
            f'stroke="{COLOURS["oracle"]}" stroke-dasharray="5 4"/>'
            f'<text x="{width - right - 4}" y="{y(target) + 14:.1f}" text-anchor="end" '
            f'fill="{COLOURS["oracle"]}">90 % of the oracle</text>'
        )
    for policy, points in curves.items():
        path = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in points)
        parts.append(f'<polyline fill="none" stroke="{COLOURS[policy]}" stroke-width="2" points="{path}"/>')
    legend_top = top + plot_h - 18 * len(curves) - 8 if target is not None else top + 16
    for i, policy in enumerate(p for p in ("oracle", "contextual", "plain") if p in curves):
        ly = legend_top + 18 * i
        parts.append(
            f'<line x1="{left + plot_w - 250}" x2="{left + plot_w - 225}" y1="{ly}" y2="{ly}" '
            f'stroke="{COLOURS[policy]}" stroke-width="2"/>'
            f'<text x="{left + plot_w - 220}" y="{ly + 4}">{LABELS[policy]}</text>'
        )


def svg(
    ctr: dict[str, list[tuple[int, float]]],
    regret: dict[str, list[tuple[int, float]]],
    target: float,
    impressions: int,
    note: str,
) -> str:
    """Two panels, drawn by hand: CTR per block of impressions, and cumulative regret."""
    width, height = 760, 700
    step = impressions // len(ctr["oracle"])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    _panel(parts, 0, f"CTR of what is served, per {step} impressions (mean of the seeds)",
           "click-through rate", ctr, 0.09, 0.01, impressions, target)  # fmt: skip
    most = max(v for points in regret.values() for _, v in points)
    tick = 20.0 if most <= 200 else 50.0
    _panel(parts, 330, "Regret: expected clicks lost against the per-segment oracle, so far",
           "clicks lost", regret, tick * (most // tick + 1), tick, impressions)  # fmt: skip
    parts.append(f'<text x="70" y="{height - 8}" font-size="10" fill="#666">{note}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def decide_cost(calls: int, rounds: int) -> None:
    """µs per `decide.decide_slot` for the plain and the contextual bandit rule, interleaved rounds,
    on a profile with 20 categories in the window and counts for 8 segments (what a replica holds)."""
    from tailor.core import stats
    from tailor.core.decision import contextual, decide
    from tailor.core.profile import Profile

    counts = {"views": 60, **{f"views|category|c{i}": 1 + i for i in range(20)}}
    profile = Profile(user="u1", counts={"24h": counts})
    everyone = {v: stats.VariantStats(4000, 200 + 40 * i) for i, v in enumerate(sim.VARIANTS)}
    per_segment = {f"c{i}": {v: stats.VariantStats(500, 20 + i) for v in sim.VARIANTS} for i in range(12, 20)}
    segments = {"hero-bandit": contextual.bound(per_segment, 8)}
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, contextual_rule in (("plain", False), ("contextual", True)):
            built = sim.build_engine(contextual_rule)
            plan = built.slots["hero"]
            context = decide.UserContext(profile=profile, session="s1")
            started = time.perf_counter()
            for _ in range(calls):
                cel = decide.CelActivation(built, profile)
                decide.decide_slot(
                    built, plan, context, 0.0, {"hero-bandit": everyone}, cel, segments=segments
                )
            micros = (time.perf_counter() - started) / calls * 1e6
            best[name] = min(best.get(name, micros), micros)
    print(f"decide_slot, best of {rounds} interleaved rounds of {calls}: "
          f"plain bandit {best['plain']:.1f} µs, contextual {best['contextual']:.1f} µs "
          f"(x {best['contextual'] / best['plain']:.2f}); "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--impressions", type=int, default=5000)
    parser.add_argument("--refresh", type=int, default=50, help="impressions between the bandit's reads")
    parser.add_argument("--step", type=int, default=250, help="impressions per point of the curve")
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "img" / "bandit-curve.svg")
    parser.add_argument("--cost", action="store_true", help="also time decide_slot, plain vs contextual")
    args = parser.parse_args()
    if args.cost:
        decide_cost(20_000, 3)
    load_before = os.getloadavg()
    started = time.monotonic()
    seeds = range(101, 101 + args.seeds)
    runs = {p: [sim.run(p, seed, args.impressions, args.refresh) for seed in seeds] for p in sim.POLICIES}
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    oracle_best = [best for _, best in runs["oracle"]]
    expected = {p: [r.expected for r, _ in runs[p]] for p in sim.POLICIES}
    blocks = [(start, min(start + 1000, args.impressions)) for start in range(0, args.impressions, 1000)]
    print(f"{args.seeds} seeds x {args.impressions} impressions, bandit reads every {args.refresh}; "
          f"{elapsed:.1f} s; load {load_before[0]:.1f} -> {load_after[0]:.1f}")  # fmt: skip
    print(f"converged CTRs: oracle {sim.expected_ctr(sim.SHOP, 'oracle'):.4f}, "
          f"best single variant {sim.expected_ctr(sim.SHOP, 'plain'):.4f}")  # fmt: skip
    header = "| policy | " + " | ".join(f"CTR {a + 1}-{b}" for a, b in blocks)
    print(header + " | CTR all | clicks (mean) | regret (mean, min-max) | last 1000: CTR / oracle's |")
    print("|---" * (len(blocks) + 5) + "|")
    tail_start = max(0, args.impressions - 1000)
    oracle_tail = statistics.fmean(r.ctr_between(tail_start, args.impressions) for r, _ in runs["oracle"])
    for policy in sim.POLICIES:
        mine = [r for r, _ in runs[policy]]
        per_block = [statistics.fmean(r.ctr_between(a, b) for r in mine) for a, b in blocks]
        regrets = [r.regret(best) for r, best in zip(mine, oracle_best, strict=True)]
        tail = statistics.fmean(r.ctr_between(tail_start, args.impressions) for r in mine)
        print(
            f"| {policy} | " + " | ".join(f"{c:.4f}" for c in per_block)
            + f" | {statistics.fmean(r.ctr_between(0, args.impressions) for r in mine):.4f}"
            f" | {statistics.fmean(sum(r.clicks) for r in mine):.1f}"
            f" | {statistics.fmean(regrets):.1f} ({min(regrets):.1f}-{max(regrets):.1f})"
            f" | {tail / oracle_tail:.3f} |"
        )  # fmt: skip
    curves = {p: curve(expected[p], args.step) for p in ("oracle", "contextual", "plain")}
    regret = {p: cumulative_regret(runs[p], args.step) for p in ("contextual", "plain")}
    target = 0.9 * statistics.fmean(ctr for _, ctr in curves["oracle"])
    note = (f"bench/bandit_curve.py --seeds {args.seeds} --impressions {args.impressions} "
            f"--refresh {args.refresh}; tests/bandit_simulation.py SHOP")  # fmt: skip
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    args.svg.write_text(svg(curves, regret, target, args.impressions, note))
    print(f"curve written to {args.svg.relative_to(ROOT) if args.svg.is_relative_to(ROOT) else args.svg}")


if __name__ == "__main__":
    main()
