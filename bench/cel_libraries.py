"""Benchmark: the decide path with tailor.core.cel against maintained CEL libraries, in one run.

Issue 16 asks whether a maintained CEL library could replace the hand-written CEL-to-Python compiler
(tailor/core/cel*.py) without losing more than a fifth of the decide throughput. Each implementation
is plugged into the content API's own decision engine through `engine.load(published, compile_when=…)`
(the seam the engine already has), and measured the same way, interleaved round by round:

- `tailor`    tailor.core.cel, what the content API serves with today;
- `celpy-compiled`  cel-python's CompiledRunner (its transpiler to Python; values converted to celpy's
                    types per decision);
- `cel-rust`  `common-expression-language` (PyPI; Rust `cel` crate bindings; a Context per decision);
- `cel-cpp`   `cel-expr-python` (PyPI; Google's cel-cpp bindings; an Activation per decision).

Two levels, on two rulesets (`--rulesets`):
1. engine: `decide.decide_slot` for one slot over profiles read from Redis beforehand — the decision's
   pure CPU work, where the CEL implementation weighs most;
2. decide: GET /v1/decide through the ASGI app in this process (routing, one pipelined Redis read,
   the engine, the signed decisionId, JSON) with `--concurrency` requests in flight; decisions per
   second of wall time and per CPU-second of this process. No HTTP server: its cost is the same for
   every implementation, so the ratios here are lower bounds of the ratios behind a server.

Rulesets: `when` — 8 rules in one slot, each with a `spec.when` (a user is tested against several
before one matches); `bench` — bench/decide.py's ruleset (6 audience rules, 1 `when`, a rollout).
Every library's decisions are first checked equal to tailor's for every user (same rule, same
variant); a library that disagrees is reported and not timed.

The libraries are optional: `.venv/bin/pip install -e '.[bench-cel]'` (celpy is a dependency already).

    .venv/bin/python bench/cel_libraries.py [--users 2000] [--seconds 1.0] [--rounds 5]

TAILOR_REDIS_URL is used if set; otherwise a private redis-server is started (Debian's redis-server).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from tailor_api import app as app_module
from tailor_api import decide_endpoint
from tailor_api.settings import ApiSettings

from tailor.core import cel as tailor_cel
from tailor.core import constants
from tailor.core.decision import decide, engine
from tailor.core.events import Event, occurrence
from tailor.core.profile import store
from tailor.core.rules import ruleset, versions
from tailor.devstack import ports

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/sample.py (fixtures)
import sample

CATEGORIES = ("shoes", "hats", "bags", "coats", "watches", "socks")
QUERIES = ("running shoes", "rain coat", "red hat", "leather bag")
ADOPTION_RATIO = 0.8  # issue 16: adopt a library if it keeps 0.8 of today's decide throughput


def _import_library(name: str) -> Any:
    """`name` from site-packages, never bench/cel.py (this script's folder is first on sys.path)."""
    here = str(Path(__file__).resolve().parent)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in ("", here) and Path(p or ".").resolve() != Path(here)]
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


# --- the implementations, each as the engine's CompileWhen -------------------------------------------

VARIABLES = constants.CEL_VARIABLES


def _references(source: str) -> tuple[str, ...]:
    """The top-level variables an expression reads (static analysis at compile time, not timed): only
    those are converted into a library's values per decision, as an adopter would do."""
    return tuple(sorted(tailor_cel.compile(source, VARIABLES).references))


class _PerRequest:
    """Converted variables cached for the activation of the request in hand: the engine hands every
    `when` of one decision the same activation, so each variable is converted once per decision. The
    activation is held (not only its id), so a new one can never reuse the id of the last."""

    __slots__ = ("_activation", "_converted")

    def __init__(self) -> None:
        self._activation: object = None
        self._converted: dict[tuple[str, ...], Any] = {}

    def get(self, activation: Mapping[str, Any], names: tuple[str, ...], make: Callable[[], Any]) -> Any:
        if activation is not self._activation:
            self._activation, self._converted = activation, {}
        converted = self._converted.get(names)
        if converted is None:
            converted = self._converted[names] = make()
        return converted


def celpy_compiled() -> engine.CompileWhen:
    import celpy
    from celpy import adapter, celtypes

    limit = sys.getrecursionlimit()
    environment = celpy.Environment(runner_class=celpy.CompiledRunner)
    sys.setrecursionlimit(limit)
    cache = _PerRequest()

    def compile_when(
        source: str, variables: Sequence[str], features: ruleset.FeatureConfig
    ) -> engine.Expression:  # no cost budget: the other libraries have none to give
        runner = environment.program(environment.compile(source))
        names = _references(source)

        def evaluate(activation: Mapping[str, Any]) -> Any:
            context = cache.get(
                activation, names, lambda: {n: adapter.json_to_cel(activation[n]) for n in names}
            )
            result = runner.evaluate(context)
            if isinstance(result, Exception):  # celpy returns CEL errors as values
                raise result
            # celpy's BoolType is an int subclass; the engine matches only on a real True
            return bool(result) if isinstance(result, celtypes.BoolType) else result

        return evaluate

    return compile_when


def cel_rust() -> engine.CompileWhen:
    library = _import_library("cel")
    cache = _PerRequest()

    def compile_when(
        source: str, variables: Sequence[str], features: ruleset.FeatureConfig
    ) -> engine.Expression:  # no cost budget: the other libraries have none to give
        program = library.compile(source)
        names = _references(source)

        def evaluate(activation: Mapping[str, Any]) -> Any:
            context = cache.get(
                activation, names, lambda: library.Context(variables={n: activation[n] for n in names})
            )
            return program.execute(context)

        return evaluate

    return compile_when


def cel_cpp() -> engine.CompileWhen:
    library = _import_library("cel_expr_python.cel")
    environment = library.NewEnv(variables={name: library.Type.DYN for name in VARIABLES})
    cache = _PerRequest()

    def compile_when(
        source: str, variables: Sequence[str], features: ruleset.FeatureConfig
    ) -> engine.Expression:  # no cost budget: the other libraries have none to give
        expression = environment.compile(source)
        names = _references(source)

        def evaluate(activation: Mapping[str, Any]) -> Any:
            prepared = cache.get(
                activation, names, lambda: environment.Activation(data={n: activation[n] for n in names})
            )
            result = expression.eval(activation=prepared)
            if result.type() == library.Type.ERROR:
                raise ValueError(str(result.value()))
            return result.value()

        return evaluate

    return compile_when


IMPLEMENTATIONS: dict[str, Callable[[], engine.CompileWhen]] = {
    "tailor": lambda: engine.compile_when,
    "celpy-compiled": celpy_compiled,
    "cel-rust": cel_rust,
    "cel-cpp": cel_cpp,
}
PACKAGES = {
    "celpy-compiled": "cel-python",
    "cel-rust": "common-expression-language",
    "cel-cpp": "cel-expr-python",
}


# --- rulesets and profiles ---------------------------------------------------------------------------


def when_ruleset(stack: str) -> ruleset.Ruleset:
    """8 rules in one slot, all with `spec.when`, from rare to common, and a fallback."""
    whens = [
        ("big-buyers", 'purchases["24h"].total >= 3 && size(recent.productId) >= 4'),
        ("coat-browsers", 'views["30m"].total >= 4 && "coats" in recent.category'),
        ("carts", 'cartAdds["30m"].total > 0 && !(user.id in ["u1", "u2", "u3"])'),
        ("runners", 'session.pageViews > 3 && recent.query.exists(q, q.startsWith("run"))'),
        ("loyal", 'views["24h"].category.exists(c, views["24h"].category[c] >= 4 && c != "bags")'),
        ("shoe-fans", '"shoes" in views["24h"].category && views["24h"].category["shoes"] >= 2'),
        ("searchers", 'searches["24h"].total >= 1 || clicks["5m"].total > 2'),
        ("anyone", 'views["24h"].total >= 1'),
    ]
    variants = [sample.html_variant("hero-default", "hero", fallback=True)]
    rules = []
    for priority, (name, when) in enumerate(reversed(whens), start=10):
        names = (f"hero-{name}-a", f"hero-{name}-b")
        variants += [sample.html_variant(n, "hero") for n in names]
        rules.append(ruleset.Rule(name=name, slot="hero", priority=priority, when=when, variants=names))
    return sample.build(variants, rules, stack=stack)


def bench_ruleset(stack: str) -> ruleset.Ruleset:
    """bench/decide.py's: 6 per-category audience rules, 1 `when`, a 50 % rollout, a fallback."""
    variants = [sample.html_variant("hero-default", "hero", fallback=True)]
    rules = []
    for priority, category in enumerate(CATEGORIES, start=10):
        names = (f"hero-{category}-a", f"hero-{category}-b")
        variants += [sample.html_variant(n, "hero", tags=(category,)) for n in names]
        matcher = ruleset.Matcher(
            feature="views", dimension="category", value=category, window="30m", threshold=3
        )
        rules.append(ruleset.Rule(name=f"{category}-fans", slot="hero", priority=priority,
                                  audience=(matcher,), variants=names))  # fmt: skip
    variants.append(sample.html_variant("hero-buyer", "hero"))
    rules.append(ruleset.Rule(name="buyers", slot="hero", priority=50, when='purchases["24h"].total >= 2',
                              variants=("hero-buyer",)))  # fmt: skip
    variants.append(sample.html_variant("hero-trial", "hero"))
    rules.append(
        ruleset.Rule(name="trial", slot="hero", priority=1, variants=("hero-trial",), rollout_percentage=50)
    )
    return sample.build(variants, rules, stack=stack)


RULESETS: dict[str, Callable[[str], ruleset.Ruleset]] = {"when": when_ruleset, "bench": bench_ruleset}


def user_events(i: int) -> list[dict[str, Any]]:
    """A varied, deterministic history: page views across categories and products, some searches,
    cart adds and purchases, all in session s<i>."""
    user, session = f"u{i}", f"s{i}"
    events: list[dict[str, Any]] = [
        {"id": f"{user}-v{n}", "type": "page_view", "userId": user, "sessionId": session,
         "properties": {"category": CATEGORIES[(i + n // 3) % len(CATEGORIES)],
                        "productId": f"p{(i * 7 + n) % 50}"}}
        for n in range(1 + i % 7)
    ]  # fmt: skip
    events += [
        {"id": f"{user}-s{n}", "type": "search", "userId": user, "sessionId": session,
         "properties": {"query": QUERIES[(i + n) % len(QUERIES)]}}
        for n in range(i % 3 == 0)
    ]  # fmt: skip
    events += [
        {"id": f"{user}-c{n}", "type": "add_to_cart", "userId": user, "sessionId": session,
         "properties": {"productId": f"p{i % 50}"}}
        for n in range(i % 5 == 1)
    ]  # fmt: skip
    events += [
        {"id": f"{user}-p{n}", "type": "purchase", "userId": user, "sessionId": session, "properties": {}}
        for n in range(i % 4)
    ]
    return events


def populate(client: redis.Redis, published: ruleset.Ruleset, users: int) -> None:
    store.install(client)
    writer = store.ProfileWriter(published.config)
    dimensions = published.config.features.dimensions
    now = time.time()
    for start in range(0, users, 500):
        batch = {
            f"u{i}": [occurrence.from_event(Event.model_validate(e), now, dimensions) for e in user_events(i)]
            for i in range(start, min(users, start + 500))
        }
        writer.write(client, batch, now)


# --- measuring ---------------------------------------------------------------------------------------


@dataclass
class Figures:
    engine_per_s: float = 0.0  # best round
    decide_per_s: float = 0.0
    decide_per_cpu_s: float = 0.0


def asgi_scope(user: int) -> dict[str, Any]:
    query = f"slot=hero&user=u{user}&session=s{user}".encode()
    return {"type": "http", "method": "GET", "path": "/v1/decide", "query_string": query, "headers": []}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class _Reply:
    __slots__ = ("body", "status")

    def __init__(self) -> None:
        self.status, self.body = 0, b""

    async def __call__(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body = message["body"]


async def decide_round(
    app: app_module.TailorApp, users: int, seconds: float, concurrency: int
) -> tuple[int, float, float]:
    """(decisions, wall seconds, CPU seconds of this process) of `concurrency` loops for ~`seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(offset: int) -> None:
        nonlocal done
        n = offset
        while time.perf_counter() < deadline:
            reply = _Reply()
            await app(asgi_scope(n % users), _receive, reply)
            if reply.status != 200:
                raise RuntimeError(f"GET /v1/decide answered {reply.status}: {reply.body[:300]!r}")
            done += 1
            n += concurrency

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return done, time.perf_counter() - started, time.process_time() - cpu


def engine_round(
    built: engine.Engine, states: Sequence[decide.UserContext], now: float, seconds: float
) -> tuple[int, float]:
    plan = built.slots["hero"]
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for state in states:
            cel = decide.CelActivation(built, state.profile)
            decide.decide_slot(built, plan, state, now, {}, cel)
        done += len(states)
    return done, time.perf_counter() - started


def outcomes(built: engine.Engine, states: Sequence[decide.UserContext], now: float) -> list[tuple[str, str]]:
    plan = built.slots["hero"]
    result = []
    for state in states:
        decision = decide.decide_slot(built, plan, state, now, {}, decide.CelActivation(built, state.profile))
        chosen = decision.candidates[0] if decision.candidates else None
        fallback = decision.fallback.name if decision.fallback else ""
        result.append((chosen.rule.name, chosen.variant.name) if chosen else ("", fallback))
    return result


def when_evaluations(published: ruleset.Ruleset, states: Sequence[decide.UserContext], now: float) -> float:
    """Average `when` evaluations per decision (counted in a separate, untimed pass)."""
    calls = 0

    def counting(source: str, variables: Sequence[str], features: ruleset.FeatureConfig) -> engine.Expression:
        inner = engine.compile_when(source, variables, features)

        def evaluate(activation: Mapping[str, Any]) -> Any:
            nonlocal calls
            calls += 1
            return inner(activation)

        return evaluate

    outcomes(engine.load(published, compile_when=counting), states, now)
    return calls / max(1, len(states))


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("TAILOR_REDIS_URL"):
        return os.environ["TAILOR_REDIS_URL"], None
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("bench/cel_libraries.py: set TAILOR_REDIS_URL or install redis-server")
    port = ports.pick(None)
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return url, process


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def bench_ruleset_kind(kind: str, url: str, names: list[str], args: argparse.Namespace) -> None:
    stack = f"bench-cel-{uuid.uuid4().hex[:8]}/main"
    client = redis.Redis.from_url(url)
    published = RULESETS[kind](stack)
    populate(client, published, args.users)
    settings = ApiSettings.model_validate(
        {"redis_url": url, "stack": stack, "api_routes": "decide",
         "impressions_flush_seconds": 1.0, "bandit_refresh_seconds": 60.0}
    )  # fmt: skip
    app = app_module.create_app(settings)
    runtime = app.runtime
    try:
        async_client = aioredis.Redis.from_url(url)
        published = await versions.publish(async_client, published)
        await async_client.aclose()
        await runtime.start()
        deadline = time.monotonic() + 10
        while runtime.engine is None:
            if time.monotonic() > deadline:
                sys.exit("the content API did not load the published ruleset within 10 s")
            await asyncio.sleep(0.01)
        served = runtime.engine
        now = time.time()
        plans = [served.slots["hero"]]
        states = [
            await decide_endpoint.read_context(runtime, served, f"u{i}", f"s{i}", plans, now)
            for i in range(args.users)
        ]
        engines: dict[str, engine.Engine] = {}
        reference = outcomes(served, states, now)
        for name in names:
            try:
                built = engine.load(published, compile_when=IMPLEMENTATIONS[name]())
            except Exception as error:  # a library that refuses one of the rules
                print(f"  {name}: cannot compile the ruleset ({error}): not timed")
                continue
            differ = sum(a != b for a, b in zip(outcomes(built, states, now), reference, strict=True))
            if differ:
                print(f"  {name}: {differ} of {len(states)} decisions differ from tailor's: not timed")
                continue
            engines[name] = built
        matched = sum(1 for rule, _ in reference if rule)
        with_when = sum(1 for r in published.rules if r.when)
        print(
            f"\nruleset `{kind}`: {len(published.rules)} rules, {with_when} with `when`;"
            f" {args.users} users; {when_evaluations(published, states, now):.2f} `when` evaluations"
            f" per decision; {matched / len(states):.0%} of decisions served by a rule"
        )
        figures = {name: Figures() for name in engines}
        for round_number in range(args.rounds):
            order = (
                list(engines)[round_number % len(engines) :] + list(engines)[: round_number % len(engines)]
            )
            for name in order:
                runtime.engine = engines[name]  # the swap the runtime itself makes: one assignment
                n, wall = engine_round(engines[name], states, now, args.seconds / 2)
                figures[name].engine_per_s = max(figures[name].engine_per_s, n / wall)
                n, wall, cpu = await decide_round(app, args.users, args.seconds, args.concurrency)
                figures[name].decide_per_s = max(figures[name].decide_per_s, n / wall)
                figures[name].decide_per_cpu_s = max(figures[name].decide_per_cpu_s, n / cpu if cpu else 0.0)
        runtime.engine = served
        ours = figures.get("tailor")
        header = (
            f"{'implementation':<16} {'engine dec/s':>13} {'ratio':>6} {'decide dec/s':>13} {'ratio':>6}"
            f" {'dec/CPU-s':>10} {'ratio':>6} {'CPU µs/dec':>10}"
            f"  verdict (dec/CPU-s ≥ {ADOPTION_RATIO} of tailor's)"
        )
        print(header)
        print("-" * len(header))
        for name, f in figures.items():
            r_engine = f.engine_per_s / ours.engine_per_s if ours else float("nan")
            r_decide = f.decide_per_s / ours.decide_per_s if ours else float("nan")
            r_cpu = f.decide_per_cpu_s / ours.decide_per_cpu_s if ours else float("nan")
            verdict = "—" if name == "tailor" else ("reaches" if r_cpu >= ADOPTION_RATIO else "below")
            print(
                f"{name:<16} {f.engine_per_s:>13,.0f} {r_engine:>6.2f}"
                f" {f.decide_per_s:>13,.0f} {r_decide:>6.2f}"
                f" {f.decide_per_cpu_s:>10,.0f} {r_cpu:>6.2f} {1e6 / f.decide_per_cpu_s:>10.1f}  {verdict}"
            )
    finally:
        await runtime.stop()
        for key in client.scan_iter(match=f"tailor:{{{stack}}}*", count=1000):
            client.delete(key)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=1.0, help="per implementation per round (decide)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="decide requests in flight")
    parser.add_argument("--rulesets", default="when,bench", help="comma-separated: when, bench")
    parser.add_argument("--only", default="", help="comma-separated implementations (default: all installed)")
    args = parser.parse_args()

    names = []
    for name in args.only.split(",") if args.only else IMPLEMENTATIONS:
        try:
            IMPLEMENTATIONS[name]()
        except ImportError as error:
            print(f"{name}: not installed ({error.name}); pip install -e '.[bench-cel]' for {PACKAGES[name]}")
            continue
        names.append(name)
    versions = {
        package: importlib.metadata.version(package)
        for package in ("cel-python", "common-expression-language", "cel-expr-python")
        if _installed(package)
    }
    print(f"load average before: {load_average()}; versions: {versions}")
    with tempfile.TemporaryDirectory(prefix="tailor-bench-cel-") as workdir:
        url, process = start_redis(Path(workdir))
        try:
            for kind in args.rulesets.split(","):
                asyncio.run(bench_ruleset_kind(kind, url, names, args))
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
    print(f"\nload average after: {load_average()}")
    print(
        "engine = decide_slot over profiles read beforehand (CPU only); decide = GET /v1/decide through the"
        " ASGI app, Redis included, no HTTP server; ratio = / tailor's in the same run (best of rounds);"
        " dec/CPU-s (this process's CPU) is the figure a busy machine does not bend, dec/s the wall rate"
    )


def _installed(package: str) -> bool:
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
