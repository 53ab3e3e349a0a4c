"""Benchmark: the control plane. Prints one table.

1. compile: one namespace of 1,000 rules and 5,000 variants compiled cold (fresh cache) by
   tailor.core.rules.compiler, against the 2 s target; beside it, in the same run, the time to load the very
   ruleset it produced back from JSON (Ruleset.from_json, what every reader does): the floor for any
   compiler that builds this model.
2. apply→published: a rule's priority patched through the kube-apiserver, to the new ruleset version
   announced on the stack's Redis channel by a real `tailor operator` subprocess; median and p99 over
   --changes changes (target p99 ≤ 1 s); beside it the apiserver's own PATCH round-trip in the same run.

Uses the stack in the environment (KUBECONFIG + TAILOR_REDIS_URL, e.g. `eval "$(tailor dev env)"`),
else starts a private one with tailor.devstack.

    .venv/bin/python bench/operator.py [--changes 120] [--rules 1000] [--variants 5000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tailor import devstack
from tailor.core.rules import compiler, crdschema, ruleset, specs, versions

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("views", "clicks", "cartAdds", "searches", "purchases")
CATEGORIES = ("shoes", "bags", "outdoor", "kids", "sale", "home", "beauty", "sports")


# --- 1. compile --------------------------------------------------------------------------------------


def synthetic_namespace(rules: int, variants: int) -> list[specs.Source]:
    """A large but realistic namespace: 100 slots, variants spread over them, rules by name or label."""
    slots = [f"slot-{n:03d}" for n in range(100)]
    sources = [
        specs.Source(
            kind="PersonalizationStack",
            name="bench",
            namespace="bench",
            spec={"kafka": {"bootstrapServers": "k:9092"}, "redis": {"managed": True}},
        )
    ]
    for n in range(variants):
        slot = slots[n % len(slots)]
        category = CATEGORIES[n % len(CATEGORIES)]
        link = f'<a href="/c/{category}?v={n}" onclick="x()">Shop {category}</a>'
        body = f'<section class="hero"><h2>Offer {n}</h2>{link}</section>'
        sources.append(
            specs.Source(
                kind="ContentVariant",
                name=f"v-{n:05d}",
                namespace="bench",
                labels={"category": category, "tier": "gold" if n % 3 == 0 else "std"},
                spec={
                    "slot": slot,
                    "content": {"type": "html", "body": body},
                    "weight": 1 + n % 5,
                    "fallback": n < 100,
                },
            )
        )
    per_slot = {
        slot: [f"v-{n:05d}" for n in range(variants) if n % len(slots) == index]
        for index, slot in enumerate(slots)
    }
    for n in range(rules):
        slot = slots[n % len(slots)]
        spec: dict[str, Any] = {
            "slot": slot,
            "priority": n // len(slots),
            "audience": [
                {
                    "feature": FEATURES[n % 5],
                    "dimension": "category",
                    "value": CATEGORIES[n % 8],
                    "window": "30m",
                    "op": "gte",
                    "threshold": 2,
                },
                {"feature": "purchases", "window": "24h", "op": "lt", "threshold": 1},
            ],
            "rotation": {"strategy": ("weighted", "sticky", "roundRobin", "bandit")[n % 4]},
            "frequencyCap": {"perUser": {"count": 5, "window": "24h"}},
            "rollout": {"percentage": 100},
        }
        if n % 2:
            spec["variants"] = {"names": per_slot[slot][: 3 + n % 5]}
        else:
            spec["variants"] = {"selector": {"matchLabels": {"tier": "gold"}}}
        if n % 10 == 0:
            spec["when"] = f'views["30m"].category["{CATEGORIES[n % 8]}"] >= {n % 7} && session.pageViews > 1'
        sources.append(
            specs.Source(
                kind="PersonalizationRule", name=f"r-{n:04d}", namespace="bench", generation=1, spec=spec
            )
        )
    return sources


def bench_compile(rules: int, variants: int, repeats: int = 3) -> tuple[float, float, float, int]:
    """(cold compile s, warm recompile after one change s, reload-from-JSON s, rules compiled)."""
    sources = synthetic_namespace(rules, variants)
    cold = []
    result = None
    for _ in range(repeats):
        compiler._compiled_when.cache_clear()  # cold: the process's compiled `when`s too
        started = time.perf_counter()
        result = compiler.compile_namespace("bench", sources, None, compiler.Cache())
        cold.append(time.perf_counter() - started)
    assert result is not None
    assert result.ruleset is not None, result.problems[:3]
    assert not result.problems, result.problems[:3]
    cache = compiler.Cache()
    compiler.compile_namespace("bench", sources, None, cache)
    changed = list(sources)
    last = changed[-1]
    changed[-1] = last.model_copy(update={"generation": 2, "spec": {**last.spec, "priority": 999}})
    started = time.perf_counter()
    compiler.compile_namespace("bench", changed, result.ruleset, cache)
    warm = time.perf_counter() - started
    raw = result.ruleset.sealed().to_json()
    loads = []
    for _ in range(repeats):
        started = time.perf_counter()
        ruleset.Ruleset.from_json(raw)
        loads.append(time.perf_counter() - started)
    return min(cold), warm, min(loads), len(result.ruleset.rules)


# --- 2. apply -> published ---------------------------------------------------------------------------


@contextmanager
def environment_stack() -> Iterator[tuple[str, str]]:
    kubeconfig, redis_url = os.environ.get("KUBECONFIG"), os.environ.get("TAILOR_REDIS_URL")
    if kubeconfig and redis_url:
        yield kubeconfig, redis_url
        return
    with tempfile.TemporaryDirectory() as home:
        stack = devstack.Stack(
            "bench", Path(home), report=lambda message: print(f"[devstack] {message}", file=sys.stderr)
        )
        stack.up()
        try:
            yield str(stack.kubeconfig), stack.redis_url
        finally:
            stack.down(purge=True)


def shop(redis_url: str) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted((ROOT / "examples" / "shop").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in documents:
        if doc["kind"] == "PersonalizationStack":
            doc["spec"]["redis"] = {"url": redis_url}
    return documents


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> None:
    binary = shutil.which("kubectl") or "kubectl"
    subprocess.run(
        [binary, *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )


def bench_apply(changes: int) -> tuple[list[float], list[float]]:
    """(apply→published latencies, apiserver PATCH round-trips), seconds."""
    with environment_stack() as (kubeconfig, redis_url):
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        api = k8s_config.new_client_from_config(config_file=kubeconfig)
        core, custom = k8s_client.CoreV1Api(api), k8s_client.CustomObjectsApi(api)
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        core.create_namespace({"metadata": {"name": namespace}})
        kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(shop(redis_url)))
        log = open(Path(tempfile.gettempdir()) / f"{namespace}-operator.log", "wb")  # noqa: SIM115
        operator = subprocess.Popen(
            [sys.executable, "-m", "tailor.cli.main", "operator", "--namespace", namespace, "--standalone",
             "--redis-url", redis_url, "--metrics-port", "0", "--liveness", "off"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": kubeconfig},
        )  # fmt: skip
        connection = redis.Redis.from_url(redis_url)
        key = f"{namespace}/shop"
        try:
            deadline = time.monotonic() + 60
            while versions.current_version_sync(connection, key) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the operator published nothing in 60 s; see {log.name}")
                time.sleep(0.1)
            time.sleep(1.0)  # let the first round's status patches settle
            pubsub = connection.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(versions.channel(key))
            latencies, round_trips = [], []
            for change in range(changes):
                before = versions.current_version_sync(connection, key)
                started = time.perf_counter()
                custom.patch_namespaced_custom_object(
                    "tailor.dev", "v1alpha1", namespace, "personalizationrules", "searcher",
                    {"spec": {"priority": 40 + change % 9}},  # 40..48: always a change, never a clash
                )  # fmt: skip
                round_trips.append(time.perf_counter() - started)
                give_up = time.monotonic() + 5.0
                while True:
                    # None also comes for the subscription's confirmation: wait on until the deadline.
                    message = pubsub.get_message(timeout=max(0.0, give_up - time.monotonic()))
                    if message is not None and int(message["data"]) > before:
                        break
                    if time.monotonic() > give_up:
                        raise RuntimeError(f"no publish within 5 s of change {change}; see {log.name}")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
            pubsub.close()
            return latencies, round_trips
        finally:
            operator.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                operator.wait(timeout=15)
            log.close()
            connection.close()
            with suppress(k8s_client.ApiException):
                core.delete_namespace(namespace)
            api.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=120)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--variants", type=int, default=5000)
    parser.add_argument("--skip-apply", action="store_true", help="only the compile benchmark")
    args = parser.parse_args()

    crdschema.schemas()  # warm imports outside the timings
    cold, warm, load, compiled = bench_compile(args.rules, args.variants)
    rows = [
        (f"compile {compiled} rules + {args.variants} variants (cold)", f"{cold * 1000:.0f} ms", "≤ 2000 ms",
         f"{cold / 2.0:.2f}", f"reload from JSON {load * 1000:.0f} ms (x{cold / load:.1f})"),
        ("recompile after one rule change (cached)", f"{warm * 1000:.0f} ms", "—", "—", ""),
    ]  # fmt: skip
    if not args.skip_apply:
        latencies, round_trips = bench_apply(args.changes)
        median, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        patch_median = statistics.median(round_trips)
        rows += [
            (f"apply→published median ({len(latencies)} changes)", f"{median * 1000:.0f} ms", "—", "—",
             f"apiserver PATCH median {patch_median * 1000:.1f} ms (x{median / patch_median:.1f})"),
            (f"apply→published p99 ({len(latencies)} changes)", f"{p99 * 1000:.0f} ms", "≤ 1000 ms",
             f"{p99 / 1.0:.2f}", f"max {max(latencies) * 1000:.0f} ms"),
        ]  # fmt: skip
    widths = [max(len(str(row[i])) for row in [*rows, HEADER]) for i in range(len(HEADER))]
    for row in [HEADER, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


HEADER = ("measure", "value", "target", "ratio to target", "same-run reference")

if __name__ == "__main__":
    sys.exit(main())
