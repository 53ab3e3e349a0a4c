"""Benchmark: GET /v1/decide (1 slot, Redis-backed profile) against a bare route on the same server.

    .venv/bin/python bench/decide.py [--seconds 10] [--users 10000]
    .venv/bin/python bench/decide.py --baseline /tmp/before [--rounds 3]   # a change's cost, same run

Everything runs on this 2-core machine, so it is split on purpose: the `tailor api` server (granian +
the app, one worker) is pinned to core 0; the load generators to core 1; Redis is left to the
scheduler (pinned beside the generator it starved, beside the server it would count as the server's).
"per core" is decisions per second of one core, and decisions per CPU-second of the server's processes
(read from /proc) as the figure that survives a shared, busy machine. The steps:

1. saturation: wrk (closed loop, 64 connections) against a bare route (CEILING_PATH, a path no route
   serves: the router's 404, since /healthz moved to the admin port) — the ceiling: the same server,
   router, headers and metrics with no work — and against /v1/decide over `--users` users whose
   profiles hold real counters, a ruleset of 8 rules (matchers, CEL, rollout) and a fallback;
2. latency: an open-loop generator (bench/loadgen, Go, built on first use; a fixed arrival rate,
   --load: 70 % of the decide saturation); latency counts from each request's due time, so a slow
   server cannot slow the generator down and hide its own queueing (no coordinated omission). Its
   ceilings: the bare route at the same rate, and at the same share of its own saturation;
3. meanwhile, rule changes: a new ruleset version every 0.4 s, and the time until a decision
   reports it in X-Tailor-Ruleset-Version;
4. the server's own view of the same run: percentiles of tailor_decide_duration_seconds (from the
   histogram's buckets, so upper bounds), which excludes the generator and the kernel queues.

TAILOR_REDIS_URL (with TAILOR_REDIS_USERNAME, _PASSWORD, _TLS_*) is used if set; otherwise a private
redis-server is started (Debian's redis-server).

    .venv/bin/python bench/decide.py --compare-tls [--rounds 2]

measures the cost of TLS to Redis instead: two private redis-servers alike (tailor.devstack.secure_redis:
the same ACL user, no persistence) but for TLS on one, a `tailor api` on each (both pinned to core 0,
measured in turns), decisions/s at saturation, per CPU-second of the server and Redis CPU per
decision, round by round, then p50/p99 at one fixed open-loop rate (--load of the plain saturation);
the ratio TLS / plain and the load average beside each figure.

    .venv/bin/python bench/decide.py --compare-traits [--rounds 3]

measures the cost of per-user traits on decide (docs/traits.md): one server, one Redis, the ruleset
republished without traits and with three declared traits and a first rule on one of them
(`has(traits.churnRisk) && traits.churnRisk > 0.7`, which no user matches, so both serve the same
variants), half the users holding traits; alternating rounds, decisions/s at saturation and per
CPU-second of the server, with / without.

    .venv/bin/python bench/decide.py --compare-rate-limits [--rounds 3]

measures the cost of the rate limits (tailor_api.ratelimit) on decide: one server, one Redis, the
ruleset republished with limits off and on (per client and per user, too high to refuse anything)
in alternating rounds; decisions/s at saturation and per CPU-second of the server, and on / off.

    .venv/bin/python bench/decide.py --redis-cluster [--rounds 3]

measures decide on a Redis Cluster against one Redis (issue 15's per-core ratio): one redis-server and
a Redis Cluster of 3 primaries + 3 replicas (tailor.devstack.redis_cluster), every node persisting
alike (AOF, appendfsync always, as bench/worker.py --redis-cluster), the same ruleset and users on
each, a `tailor api` on each (both pinned to core 0, wrk on core 1), measured in alternating rounds:
decisions/s at saturation, decisions per CPU-second of the server, and Redis CPU per decision (the six
nodes' sum, replicas included, against the one server's); the medians and cluster / single.

    .venv/bin/python bench/decide.py --compare-identity [--rounds 2]

measures the cost of signed user identity (docs/identity.md) on decide: one Redis, one ruleset, a
`tailor api` per mode (identity off; optional without tokens (today's pages); optional and required
with each user's HS256 token; required
with the verified-token cache off, HS256 and ES256, so every request verifies a signature), measured
in turns at saturation; the ratio to `off` and the load average beside each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis
import uvloop

from tailor.core import redis_target
from tailor.core.events import Event, occurrence
from tailor.core.profile import store, traits
from tailor.core.rules import ruleset, versions
from tailor.devstack import gobuild, paths, ports, redis_cluster, scratch, secure_redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/sample.py: the sample rulesets, fixtures not shipped
import sample  # noqa: E402

BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CORE, LOAD_CORE = "0", "1"
CATEGORIES = ("shoes", "hats", "bags", "coats", "watches", "socks")
TARGET_PER_CORE = 5_000
TARGET_P99_MS = 10.0
TARGET_RULE_CHANGE_P99_S = 1.0
# The ceiling's route: answered by the router alone (a problem+json 404), no handler work.
CEILING_PATH = "/bench-ceiling"
# Public port -> admin port (readiness, /metrics) of each server started here.
ADMIN_PORTS: dict[int, int] = {}


# --- setup ---------------------------------------------------------------------------------------


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("TAILOR_REDIS_URL"):
        return os.environ["TAILOR_REDIS_URL"], None
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(
            "bench/decide.py: set TAILOR_REDIS_URL or install redis-server (apt-get install redis-server)"
        )
    port = ports.pick(None)
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
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


def bench_ruleset(stack: str, version_salt: int = 0) -> ruleset.Ruleset:
    """8 rules in one slot: per-category matchers, a CEL rule, a 50 % rollout, and a fallback."""
    variants = [sample.html_variant("hero-default", "hero", fallback=True)]
    rules = []
    for priority, category in enumerate(CATEGORIES, start=10):
        names = (f"hero-{category}-a", f"hero-{category}-b")
        variants += [
            sample.html_variant(n, "hero", weight=1 + version_salt % 3, tags=(category,)) for n in names
        ]
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


def populate(target: redis_target.RedisTarget, published: ruleset.Ruleset, users: int) -> None:
    """Give every user a real profile: a few page views across categories, some purchases."""
    client = target.client()
    store.install(client)
    writer = store.ProfileWriter(published.config)
    dimensions = published.config.features.dimensions
    now = time.time()
    for start in range(0, users, 500):
        batch: dict[str, list[occurrence.Occurrence]] = {}
        for i in range(start, min(users, start + 500)):
            user = f"u{i}"
            raw = [{"id": f"{user}-{n}", "type": "page_view", "userId": user, "sessionId": f"s{i}",
                    "properties": {"category": CATEGORIES[(i + n // 3) % len(CATEGORIES)]}}
                   for n in range(2 + i % 6)]  # fmt: skip
            raw += [
                {"id": f"{user}-p{n}", "type": "purchase", "userId": user, "properties": {}}
                for n in range(i % 3)
            ]
            batch[user] = [occurrence.from_event(Event.model_validate(e), now, dimensions) for e in raw]
        writer.write(client, batch, now)
    client.close()


def start_api(
    target: redis_target.RedisTarget,
    stack: str,
    port: int,
    log: Path,
    app: str | None,
    tree: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`tailor api`, or with `app` (MODULE:FACTORY) granian serving that app as `tailor api` serves
    its own (one worker, uvloop, HTTP/1): how candidate HTTP stacks are compared. With `tree` (another
    checkout, e.g. `git worktree add /tmp/before REV`), the server runs that tree's code."""
    # decisions only: no collector (and no Kafka client threads competing for the server core);
    # TAILOR_COLLECTOR_ENABLED said so before TAILOR_API_ROUTES (2026-12-07), for --baseline trees.
    ADMIN_PORTS[port] = ports.pick(None)
    env = {**os.environ, **target.environment(), "TAILOR_API_ROUTES": "decide", "TAILOR_STACK": stack,
           "TAILOR_COLLECTOR_ENABLED": "false", "TAILOR_ADMIN_PORT": str(ADMIN_PORTS[port]),
           **(extra_env or {})}  # fmt: skip
    if tree is not None:
        # Ahead of the editable install's finder, which Python consults after sys.path.
        paths = [tree, tree / "content_api", tree / "operator", tree / "workers"]
        env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), *filter(None, [env.get("PYTHONPATH")])])
    if app is None:
        command = [str(BIN / "tailor"), "api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port),
                   "--log-level", "error"]  # fmt: skip
    else:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "bench" / "candidates"), env.get("PYTHONPATH")])
        )
        command = [str(BIN / "granian"), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "1", "--no-ws",
                   "--log-level", "error", "--no-access-log", app]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *command], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{admin_url(port)}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"the API did not become ready; its log:\n{log.read_text(errors='replace')[-3000:]}")


def admin_url(port: int) -> str:
    """Where the server on `port` answers /readyz and /metrics: its admin port, or, for a --baseline
    tree from before the admin port, the public port."""
    admin = ADMIN_PORTS.get(port)
    if admin is not None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", admin)) == 0:
                return f"http://127.0.0.1:{admin}"
    return f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its children (granian serves from a child process)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


# --- closed loop: saturation ----------------------------------------------------------------------

WRK_SCRIPT = """
local users = {users}
counter = 0
request = function()
  counter = counter + 1
  local u = counter % users
  return wrk.format("GET", "/v1/decide?slot=hero&user=u" .. u .. "&session=s" .. u)
end
"""


def wrk(url: str, seconds: int, script: Path | None) -> dict[str, float]:
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": rate, "errors": float(errors.group(1)) if errors else 0.0}


def saturate(port: int, pid: int, path: str, seconds: int, script: Path | None) -> dict[str, float]:
    cpu = cpu_seconds(pid)
    result = wrk(f"http://127.0.0.1:{port}{path}", seconds, script)
    result["cpu"] = (cpu_seconds(pid) - cpu) / seconds  # cores used by the server
    return result


def decide_histogram(port: int) -> dict[float, float]:
    """Cumulative counts per bucket bound of tailor_decide_duration_seconds, from /metrics."""
    with urllib.request.urlopen(f"{admin_url(port)}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for match in re.finditer(
        r'^tailor_decide_duration_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', text, re.M
    ):
        buckets[float(match.group(1))] = float(match.group(2))
    return buckets


def histogram_percentile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile of the observations between two scrapes."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= q * total:
            return bound
    return float("inf")


# --- open loop: latency at a fixed arrival rate ---------------------------------------------------


LOADGEN = ROOT / "bench" / "loadgen"


def loadgen_binary() -> Path:
    """bench/loadgen (Go), built once per source version into the tailor cache."""
    sources = [*sorted(LOADGEN.glob("*.go")), LOADGEN / "go.mod"]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:12]
    binary = paths.cache_root() / "bench" / f"loadgen-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=LOADGEN, env=gobuild.go_env(), check=True)
    return binary


async def open_loop(port: int, rate: float, seconds: float, targets: Sequence[str]) -> dict[str, float]:
    """bench/loadgen on the load core: a fixed arrival rate, latency from each request's due time."""
    process = await asyncio.create_subprocess_exec(
        "taskset", "-c", LOAD_CORE, str(loadgen_binary()), "-addr", f"127.0.0.1:{port}",
        "-rate", f"{rate:.1f}", "-seconds", str(seconds), "-connections", "64",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    output, _ = await process.communicate("\n".join(targets).encode())
    if process.returncode != 0:
        sys.exit(f"bench/loadgen failed (exit {process.returncode})")
    result: dict[str, float] = json.loads(output)
    return result


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def rule_changes(
    target: redis_target.RedisTarget, stack: str, port: int, until: float, every: float
) -> list[float]:
    """Publish a new version every `every` s; seconds until a decision carries it (polled every 2 ms)."""
    client = target.async_client()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /v1/decide?slot=hero&user=poller&session=p HTTP/1.1\r\nHost: bench\r\n\r\n"
    latencies: list[float] = []
    salt = 1
    try:
        while time.monotonic() < until:
            salt += 1
            published = await versions.publish(client, bench_ruleset(stack, salt))
            started = time.perf_counter()
            wanted = f"x-tailor-ruleset-version: {published.version}\r\n".encode()
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if wanted in head.lower():
                    break
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(every)
    finally:
        writer.close()
        await client.aclose()
    return latencies


def decide_targets(users: int) -> list[str]:
    return [f"/v1/decide?slot=hero&user=u{i}&session=s{i}" for i in range(users)]


async def latency_phase(
    target: redis_target.RedisTarget,
    stack: str,
    port: int,
    rate: float,
    seconds: int,
    targets: Sequence[str],
    change_every: float,
) -> tuple[dict[str, float], list[float]]:
    """The open loop at `rate`, with rule changes every `change_every` s meanwhile (0: none)."""
    until = time.monotonic() + seconds - 0.5
    changes = (
        asyncio.create_task(rule_changes(target, stack, port, until, change_every)) if change_every else None
    )
    result = await open_loop(port, rate, seconds, targets)
    return result, (await changes) if changes else []


# --- server stacks: the measurement behind granian + lean routing ----------------------------------

HELLO_APPS = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def hello(request):
    return Response(b"hello", media_type="text/plain")


starlette_app = Starlette(routes=[Route("/hello", hello)])


async def raw_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})
"""


def server_stacks(workdir: Path, seconds: int) -> None:
    """A bare hello route on each candidate stack, server pinned to one core: requests/s at
    saturation, and p99 latency at 70 % of it (the open-loop generator)."""
    (workdir / "hello_apps.py").write_text(HELLO_APPS)
    print(f"server stacks — hello route, server on core {SERVER_CORE}, wrk -c64 on core {LOAD_CORE}")
    for server in ("uvicorn", "granian"):
        for app in ("starlette_app", "raw_app"):
            port = ports.pick(None)
            if server == "uvicorn":
                command = [
                    str(BIN / "uvicorn"),
                    f"hello_apps:{app}",
                    "--app-dir",
                    str(workdir),
                    "--port",
                    str(port),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ]
            else:
                command = [str(BIN / "granian"), "--interface", "asgi", "--port", str(port), "--workers", "1",
                           "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
                           "--working-dir", str(workdir), f"hello_apps:{app}"]  # fmt: skip
            process = subprocess.Popen(["taskset", "-c", SERVER_CORE, *command], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                for _ in range(100):
                    with socket.socket() as probe:
                        if probe.connect_ex(("127.0.0.1", port)) == 0:
                            break
                    time.sleep(0.1)
                result = wrk(f"http://127.0.0.1:{port}/hello", seconds, None)
                tail = uvloop.run(open_loop(port, 0.7 * result["rate"], seconds, ["/hello"]))
            finally:
                process.terminate()
                process.wait(10)
            print(
                f"  {server:8s} {app:14s} {result['rate']:>10,.0f}/s   p99 at 70 %: {tail['p99_ms']:6.2f} ms"
            )


# --- the same measurement of two trees, alternating -------------------------------------------------


def compare(workdir: Path, baseline: Path, args: argparse.Namespace) -> None:
    """Saturation of the bare route and /v1/decide, and decisions per CPU-second, served by `baseline`'s code
    and by this tree's in turns (`--rounds` each), on one Redis and one ruleset: a change's cost on the
    hot path, measured in the same run. Each row notes the load average when it ended."""
    url, redis_process = start_redis(workdir)
    target = redis_target.RedisTarget.from_environment(url=url)
    stack = f"bench-{uuid.uuid4().hex[:6]}/main"
    published = bench_ruleset(stack)
    asyncio.run(_publish(target, published))
    populate(target, published, args.users)
    script = workdir / "decide.lua"
    script.write_text(WRK_SCRIPT.format(users=args.users))
    results: dict[str, list[tuple[float, float, float]]] = {"baseline": [], "this tree": []}
    print(f"{'round':>5}  {'code':10} {'ceiling/s':>11} {'decide/s':>9} {'per CPU-s':>10}  load")
    try:
        for index in range(args.rounds):
            for name, tree in (("baseline", baseline), ("this tree", None)):
                port = ports.pick(None)
                api = start_api(target, stack, port, workdir / "api.log", None, tree)
                try:
                    saturate(port, api.pid, "/v1/decide", 3, script)  # warm-up
                    hello = saturate(port, api.pid, CEILING_PATH, args.seconds, None)
                    decide = saturate(port, api.pid, "/v1/decide", args.seconds, script)
                finally:
                    api.terminate()
                    api.wait(10)
                per_cpu = decide["rate"] / decide["cpu"] if decide["cpu"] else float("nan")
                results[name].append((hello["rate"], decide["rate"], per_cpu))
                load = os.getloadavg()[0]
                print(f"{index + 1:>5}  {name:10} {hello['rate']:>11,.0f} {decide['rate']:>9,.0f} "
                      f"{per_cpu:>10,.0f}  {load:.2f}")  # fmt: skip
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)
    for name, measured in results.items():
        medians = [sorted(column)[len(column) // 2] for column in zip(*measured, strict=True)]
        print(f"median {name:10} {medians[0]:>11,.0f} {medians[1]:>9,.0f} {medians[2]:>10,.0f}")


def stop(
    api: subprocess.Popen[bytes], redis_process: subprocess.Popen[bytes] | None, url: str, stack: str
) -> None:
    """The bench's API gone, and its Redis (or, in a Redis it did not start, the stack's keys)."""
    api.terminate()
    api.wait(10)
    if redis_process is not None:
        redis_process.terminate()
        redis_process.wait(10)
    else:
        scratch.forget(url, stack)


Rounds = dict[str, list[tuple[float, float]]]  # per side: (decisions/s, decisions per CPU-second) a round


def medians(results: Rounds, width: int = 6) -> dict[str, list[float]]:
    """Each side's median decisions/s and per CPU-second, printed."""
    middle = {
        name: [sorted(column)[len(column) // 2] for column in zip(*measured, strict=True)]
        for name, measured in results.items()
    }
    for name, (rate, per_cpu) in middle.items():
        print(f"median {name:{width}} {rate:>9,.0f} {per_cpu:>10,.0f}")
    return middle


def round_line(
    results: Rounds, index: int, name: str, run: dict[str, float], width: int = 6, end: str = ""
) -> None:
    """Record one saturated run of side `name` and print its line (`end`: more columns after it)."""
    per_cpu = run["rate"] / run["cpu"] if run["cpu"] else float("nan")
    results[name].append((run["rate"], per_cpu))
    print(f"{index + 1:>5}  {name:{width}} {run['rate']:>9,.0f} {per_cpu:>10,.0f} "
          f"{run['errors']:>8,.0f}  {os.getloadavg()[0]:.2f}{end}")  # fmt: skip


def alternate(
    target: redis_target.RedisTarget, port: int, pid: int, script: Path,
    sides: dict[str, ruleset.Ruleset], args: argparse.Namespace, heading: str,
) -> dict[str, list[float]]:  # fmt: skip
    """Decide under each side's ruleset in turn, `args.rounds` times, on one server: the medians."""
    results: Rounds = {name: [] for name in sides}
    print(f"{'round':>5}  {heading:6} {'decide/s':>9} {'per CPU-s':>10} {'non-2xx':>8}  load")
    saturate(port, pid, "/v1/decide", 3, script)  # warm-up
    for index in range(args.rounds):
        for name, published in sides.items():
            _wait_for_version(port, asyncio.run(_publish(target, published)))
            round_line(results, index, name, saturate(port, pid, "/v1/decide", args.seconds, script))
    return medians(results)


def serve_both(
    workdir: Path, redis: tuple[str, subprocess.Popen[bytes] | None], stack: str,
    off: ruleset.Ruleset, on: ruleset.Ruleset, args: argparse.Namespace, heading: str, title: str,
) -> dict[str, list[float]]:  # fmt: skip
    """One `tailor api` on `redis` (published and populated), deciding under `off` and `on` in turn
    (`alternate`); everything the bench started is stopped after. The medians."""
    url, redis_process = redis
    target = redis_target.RedisTarget.from_environment(url=url)
    script = workdir / "decide.lua"
    script.write_text(WRK_SCRIPT.format(users=args.users))
    port = ports.pick(None)
    api = start_api(target, stack, port, workdir / "api.log", None)
    print(f"bench/decide.py {title}: server on core {SERVER_CORE}, load from core {LOAD_CORE}, "
          f"{args.seconds} s a run")  # fmt: skip
    try:
        return alternate(target, port, api.pid, script, {"off": off, "on": on}, args, heading)
    finally:
        stop(api, redis_process, url, stack)


def compare_rate_limits(workdir: Path, args: argparse.Namespace) -> None:
    """Decide with the rate limits off and on, on one server and Redis, in alternating rounds."""
    url, redis_process = start_redis(workdir)
    target = redis_target.RedisTarget.from_environment(url=url)
    stack = f"bench-{uuid.uuid4().hex[:6]}/main"
    off = bench_ruleset(stack)
    # Both scopes counted, with limits no run reaches: every request pays the limiter, none is refused.
    high = ruleset.RateLimit(requests=100_000_000, seconds=60)
    limits = ruleset.RateLimits(per_client=high, per_user=high)
    api_config = off.config.api.model_copy(update={"rate_limits": limits})
    on = off.model_copy(update={"config": off.config.model_copy(update={"api": api_config})})
    asyncio.run(_publish(target, off))
    populate(target, off, args.users)
    medians = serve_both(workdir, (url, redis_process), stack, off, on, args, "limits",
                         f"--compare-rate-limits: {args.users:,} users")  # fmt: skip
    print(f"on / off, medians: decide/s {medians['on'][0] / medians['off'][0]:.2f}, "
          f"per CPU-s {medians['on'][1] / medians['off'][1]:.2f}; load {os.getloadavg()}")  # fmt: skip


def traits_ruleset(off: ruleset.Ruleset) -> ruleset.Ruleset:
    """`off` with three declared traits and a first rule on one of them that no bench user matches."""
    declared = (
        ruleset.Trait(name="churnRisk", type="number", ttl_seconds=86400, minimum=0, maximum=1),
        ruleset.Trait(name="plan", type="string", ttl_seconds=86400),
        ruleset.Trait(name="newsletter", type="boolean", ttl_seconds=86400),
    )
    features = off.config.features.model_copy(update={"traits": declared})
    at_risk = ruleset.Rule(name="at-risk", slot="hero", priority=1000, variants=("hero-trial",),
                           when="has(traits.churnRisk) && traits.churnRisk > 0.7")  # fmt: skip
    return off.model_copy(
        update={
            "config": off.config.model_copy(update={"features": features}),
            "rules": (at_risk, *off.rules),
        }
    )


def compare_traits(workdir: Path, args: argparse.Namespace) -> None:
    """Decide without and with traits, on one server and Redis, in alternating rounds."""
    url, redis_process = start_redis(workdir)
    target = redis_target.RedisTarget.from_environment(url=url)
    stack = f"bench-{uuid.uuid4().hex[:6]}/main"
    off = bench_ruleset(stack)
    on = traits_ruleset(off)
    asyncio.run(_publish(target, off))
    populate(target, off, args.users)
    client = target.client()
    now = time.time()
    for start in range(0, args.users, 2 * 500):  # every other user holds traits
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(args.users, start + 2 * 500), 2):
            values = {"churnRisk": 0.5, "plan": "gold", "newsletter": True}
            command = traits.write_command(
                stack, f"u{i}", traits.declared(on.config.features.traits), values, now, now
            )
            pipe.eval(traits.SCRIPT, 1, *command[3:])
        pipe.execute()
    client.close()
    medians = serve_both(workdir, (url, redis_process), stack, off, on, args, "traits",
                         f"--compare-traits: {args.users:,} users (half with traits)")  # fmt: skip
    print(f"with / without traits, medians: decide/s {medians['on'][0] / medians['off'][0]:.2f}, "
          f"per CPU-s {medians['on'][1] / medians['off'][1]:.2f}; load {os.getloadavg()}")  # fmt: skip


def _wait_for_version(port: int, version: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/decide?slot=hero&user=u1", timeout=2
        ) as answer:
            if int(answer.headers.get("x-tailor-ruleset-version", 0)) >= version:
                return
        time.sleep(0.05)
    sys.exit(f"the API did not serve ruleset v{version} within 30 s")


# --- the cost of signed identity ----------------------------------------------------------------------

IDENTITY_WRK_SCRIPT = """
local users = {users}
local tokens = {{ {tokens} }}
counter = 0
request = function()
  counter = counter + 1
  local u = counter % users
  return wrk.format("GET", "/v1/decide?slot=hero&user=u" .. u .. "&session=s" .. u,
                    {{["Authorization"] = "Bearer " .. tokens[u + 1]}})
end
"""


def identity_keys(workdir: Path) -> tuple[Path, dict[str, tuple[str, object]]]:
    """A key directory as the operator mounts it: an HS256 secret and an ES256 public key; and the
    signing side of each (kid, key) by algorithm."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    keys = workdir / "identity"
    keys.mkdir()
    secret = os.urandom(32)
    (keys / "hs.hs256").write_bytes(secret)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (keys / "ec.pem").write_bytes(pem)
    return keys, {"HS256": ("hs", secret), "ES256": ("ec", private)}


def identity_script(workdir: Path, users: int, algorithm: str, signing: tuple[str, object]) -> Path:
    import jwt

    kid, key = signing
    now = int(time.time())
    tokens = [
        jwt.encode({"sub": f"u{i}", "sid": f"s{i}", "iat": now, "exp": now + 3600}, key,  # type: ignore[arg-type]
                   algorithm=algorithm, headers={"kid": kid})
        for i in range(users)
    ]  # fmt: skip
    script = workdir / f"decide-{algorithm}.lua"
    script.write_text(IDENTITY_WRK_SCRIPT.format(users=users, tokens=", ".join(f'"{t}"' for t in tokens)))
    return script


def compare_identity(workdir: Path, args: argparse.Namespace) -> None:
    """Decide with identity off, optional and required (and required without the token cache, HS256
    and ES256): one Redis and ruleset, one server per mode on core 0, measured in turns."""
    url, redis_process = start_redis(workdir)
    target = redis_target.RedisTarget.from_environment(url=url)
    stack = f"bench-{uuid.uuid4().hex[:6]}/main"
    published = bench_ruleset(stack)
    asyncio.run(_publish(target, published))
    populate(target, published, args.users)
    keys, signing = identity_keys(workdir)
    plain = workdir / "decide.lua"
    plain.write_text(WRK_SCRIPT.format(users=args.users))
    scripts = {name: identity_script(workdir, args.users, name, key) for name, key in signing.items()}
    on = {"TAILOR_IDENTITY_KEYS_DIR": str(keys)}
    modes: dict[str, tuple[dict[str, str], Path]] = {
        "off": ({}, plain),
        "optional, unsigned": ({**on, "TAILOR_IDENTITY_MODE": "optional"}, plain),
        "optional, HS256": ({**on, "TAILOR_IDENTITY_MODE": "optional"}, scripts["HS256"]),
        "required, HS256": ({**on, "TAILOR_IDENTITY_MODE": "required"}, scripts["HS256"]),
        "required, HS256, no cache": (
            {**on, "TAILOR_IDENTITY_MODE": "required", "TAILOR_IDENTITY_CACHE_SIZE": "0"},
            scripts["HS256"],
        ),
        "required, ES256, no cache": (
            {**on, "TAILOR_IDENTITY_MODE": "required", "TAILOR_IDENTITY_CACHE_SIZE": "0"},
            scripts["ES256"],
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    per_cpu: dict[str, list[float]] = {name: [] for name in modes}
    lines: list[list[str]] = [["run", "decisions/s", "per server CPU-s", "non-2xx", "load"]]
    try:
        for round_ in range(1, args.rounds + 1):
            for name, (env, script) in modes.items():
                port = ports.pick(None)
                api = start_api(target, stack, port, workdir / "api.log", args.app, extra_env=env)
                try:
                    saturate(port, api.pid, "/v1/decide", 3, script)  # warm-up: tokens cached, sessions made
                    result = saturate(port, api.pid, "/v1/decide", args.seconds, script)
                finally:
                    api.terminate()
                    api.wait(10)
                cpu_rate = result["rate"] / result["cpu"] if result["cpu"] else float("nan")
                rates[name].append(result["rate"])
                per_cpu[name].append(cpu_rate)
                lines.append([f"{name}, round {round_}", f"{result['rate']:,.0f}", f"{cpu_rate:,.0f}",
                              f"{result['errors']:.0f}", f"{os.getloadavg()[0]:.1f}"])  # fmt: skip
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)
    print(f"bench/decide.py --compare-identity — server on core {SERVER_CORE}, load from core {LOAD_CORE}, "
          f"{args.users:,} users (a token each), {args.seconds} s a run")  # fmt: skip
    _pipeline_table(lines)
    best = {name: max(values) for name, values in rates.items()}
    best_cpu = {name: max(values) for name, values in per_cpu.items()}
    for name in modes:
        print(f"{name:28s} / off, best round: decisions/s {best[name] / best['off']:.2f}, "
              f"per server CPU-s {best_cpu[name] / best_cpu['off']:.2f}")  # fmt: skip


# --- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    parser.add_argument("--users", type=int, default=10_000, help="distinct users (each with a profile)")
    parser.add_argument(
        "--rule-change-every", type=float, default=0.4, help="seconds between changes (0: none)"
    )
    parser.add_argument(
        "--load", type=float, default=0.7, help="open-loop rate as a fraction of saturation (target: 0.7)"
    )
    parser.add_argument(
        "--server-stacks", action="store_true", help="only compare uvicorn/granian x starlette/raw"
    )
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="serve this app factory with granian instead of `tailor api` (bench/candidates/ on the path), "
        "e.g. tailor_api.app:app_from_environment or starlette_app:app_from_environment",
    )
    parser.add_argument(
        "--compare-tls", action="store_true", help="only the cost of TLS to Redis: plain vs TLS, same run"
    )
    parser.add_argument(
        "--compare-rate-limits",
        action="store_true",
        help="only the cost of the rate limits on decide: off vs on, alternating rounds, same run",
    )
    parser.add_argument(
        "--compare-traits",
        action="store_true",
        help="only the cost of per-user traits on decide: without vs with, alternating rounds, same run",
    )
    parser.add_argument(
        "--compare-identity",
        action="store_true",
        help="only the cost of signed identity: off / optional / required (cached and not), same run",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="only decide on a Redis Cluster (3 primaries, 3 replicas) and on one Redis, alternating rounds",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="TREE",
        help="compare the server from TREE (a checkout of an earlier revision) with this tree's, saturation "
        "only, in alternating rounds",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="--compare-tls, --compare-rate-limits, --compare-identity, --redis-cluster, --baseline: "
        "saturation rounds per side",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench/decide.py needs wrk and taskset: make setup installs wrk; util-linux has taskset")
    with tempfile.TemporaryDirectory(prefix="tailor-bench-") as temporary:
        workdir = Path(temporary)
        if args.server_stacks:
            server_stacks(workdir, args.seconds)
            return 0
        if args.baseline:
            compare(workdir, args.baseline.resolve(), args)
            return 0
        if args.compare_tls:
            compare_tls(workdir, args)
            return 0
        if args.compare_rate_limits:
            compare_rate_limits(workdir, args)
            return 0
        if args.compare_identity:
            compare_identity(workdir, args)
            return 0
        if args.compare_traits:
            compare_traits(workdir, args)
            return 0
        if args.redis_cluster:
            compare_cluster(workdir, args)
            return 0
        url, redis_process = start_redis(workdir)
        target = redis_target.RedisTarget.from_environment(url=url)
        stack = f"bench-{uuid.uuid4().hex[:6]}/main"
        published = bench_ruleset(stack)
        asyncio.run(_publish(target, published))
        populate(target, published, args.users)
        port = ports.pick(None)
        api = start_api(target, stack, port, workdir / "api.log", args.app)
        try:
            script = workdir / "decide.lua"
            script.write_text(WRK_SCRIPT.format(users=args.users))
            saturate(port, api.pid, "/v1/decide", 3, script)  # warm-up: sessions remembered, caches hot
            hello = saturate(port, api.pid, CEILING_PATH, args.seconds, None)
            decide = saturate(port, api.pid, "/v1/decide", args.seconds, script)
            rate = args.load * decide["rate"]
            before = decide_histogram(port)
            opened, changes = uvloop.run(
                latency_phase(target, stack, port, rate, args.seconds, decide_targets(args.users),
                              args.rule_change_every)
            )  # fmt: skip
            after = decide_histogram(port)
            opened["server_p50"] = histogram_percentile(before, after, 0.5)
            opened["server_p99"] = histogram_percentile(before, after, 0.99)
            opened["load"] = args.load
            # Ceilings: the bare route at the same rate (what the generator and server stack add), and
            # at the same share of its own saturation (the server stack's own queueing at that load).
            same_rate, _ = uvloop.run(
                latency_phase(target, stack, port, rate, args.seconds, [CEILING_PATH], 0)
            )
            bare_rate = args.load * hello["rate"]
            same_load, _ = uvloop.run(
                latency_phase(target, stack, port, bare_rate, args.seconds, [CEILING_PATH], 0)
            )
        finally:
            stop(api, redis_process, url, stack)  # a shared Redis: leave nothing of this run behind
    if args.app:
        print(f"app: {args.app} (granian)")
    report(hello, decide, opened, same_rate, same_load, changes)
    return 0


async def _publish(target: redis_target.RedisTarget, published: ruleset.Ruleset) -> int:
    client = target.async_client()
    stored = await versions.publish(client, published)
    await client.aclose()
    return stored.version


def serve_side(
    target: redis_target.RedisTarget, name: str, workdir: Path, script: Path, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], int]:
    """One side of a same-run comparison: a fresh stack's ruleset published on `target`, its users
    populated, a `tailor api` started on it and warmed up (sessions, caches); the process and port."""
    stack = f"bench-{uuid.uuid4().hex[:6]}/main"
    published = bench_ruleset(stack)
    asyncio.run(_publish(target, published))
    populate(target, published, args.users)
    port = ports.pick(None)
    api = start_api(target, stack, port, workdir / f"api-{name}.log", args.app)
    saturate(port, api.pid, "/v1/decide", 3, script)
    return api, port


# --- decide on a Redis Cluster against one Redis --------------------------------------------------


def compare_cluster(workdir: Path, args: argparse.Namespace) -> None:
    """`tailor api` on one Redis and on a Redis Cluster (the same server otherwise), measured in turns."""
    always = ("appendonly yes", "appendfsync always")  # as every cluster node (redis_cluster.node_conf)
    single = secure_redis.start(workdir / "single-redis", tls=False, extra=always)
    cluster: redis_cluster.RedisCluster | None = None
    apis: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    script = workdir / "decide.lua"
    script.write_text(WRK_SCRIPT.format(users=args.users))
    results: Rounds = {"single": [], "cluster": []}
    redis_per: dict[str, list[float]] = {"single": [], "cluster": []}
    on_primaries: dict[str, list[float]] = {"single": [], "cluster": []}
    try:
        cluster = redis_cluster.start(workdir / "cluster")
        nodes, primaries = cluster.nodes, cluster.nodes[: redis_cluster.PRIMARIES]

        def single_cpu() -> tuple[float, float]:
            return single.cpu_seconds(), single.cpu_seconds()

        def cluster_cpu() -> tuple[float, float]:
            return sum(n.cpu_seconds() for n in nodes), sum(n.cpu_seconds() for n in primaries)

        # Each side's Redis CPU: all its nodes, and its primaries alone.
        sides = {
            "single": (single.target(client_pair=False), single_cpu),
            "cluster": (cluster.target(), cluster_cpu),
        }
        for name, (target, _) in sides.items():
            apis[name] = serve_side(target, name, workdir, script, args)
        print(f"bench/decide.py --redis-cluster: server on core {SERVER_CORE}, wrk -c64 on core "
              f"{LOAD_CORE}, {args.users:,} users, {args.seconds} s a run; Redis CPU: the one server / "
              "all six nodes")  # fmt: skip
        print(f"{'round':>5}  {'Redis':7} {'decide/s':>9} {'per CPU-s':>10} {'non-2xx':>8}  load   "
              "Redis µs/decision")  # fmt: skip
        for index in range(args.rounds):
            for name, (_, spent) in sides.items():
                api, port = apis[name]
                all_before, primaries_before = spent()
                run = saturate(port, api.pid, "/v1/decide", args.seconds, script)
                all_after, primaries_after = spent()
                decisions = run["rate"] * args.seconds
                redis_per[name].append((all_after - all_before) / decisions)
                on_primaries[name].append((primaries_after - primaries_before) / decisions)
                round_line(results, index, name, run, width=7, end=f"  {redis_per[name][-1] * 1e6:6.1f}"
                           f" ({on_primaries[name][-1] * 1e6:.1f} on primaries)")  # fmt: skip
    finally:
        for api, _ in apis.values():
            api.terminate()
            api.wait(10)
        single.stop()
        if cluster is not None:
            cluster.stop()
    middle = medians(results, width=7)
    redis_middle = {name: sorted(values)[len(values) // 2] for name, values in redis_per.items()}
    primaries_middle = sorted(on_primaries["cluster"])[len(on_primaries["cluster"]) // 2]
    one, many = middle["single"], middle["cluster"]
    print(f"Redis CPU per decision, medians: single {redis_middle['single'] * 1e6:.1f} µs, "
          f"cluster {redis_middle['cluster'] * 1e6:.1f} µs (all six nodes; "
          f"{primaries_middle * 1e6:.1f} on the three primaries)")  # fmt: skip
    redis_ratio = redis_middle["cluster"] / redis_middle["single"]
    print(f"cluster / single, medians: decide/s {many[0] / one[0]:.2f}, per API CPU-s "
          f"{many[1] / one[1]:.2f} (issue 15: >= 0.8), Redis CPU per decision {redis_ratio:.2f}x; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip


# --- the cost of TLS to Redis ----------------------------------------------------------------------


def compare_tls(workdir: Path, args: argparse.Namespace) -> None:
    """`tailor api` on a plain and on a TLS Redis (the same server otherwise), measured in turns."""
    servers = {
        "plain": secure_redis.start(workdir / "plain-redis", tls=False),
        "TLS": secure_redis.start(workdir / "tls-redis"),
    }
    apis: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    script = workdir / "decide.lua"
    script.write_text(WRK_SCRIPT.format(users=args.users))
    lines: list[list[str]] = [["run", "decisions/s", "per server CPU-s", "Redis CPU µs/decision", "load"]]
    rates: dict[str, list[float]] = {name: [] for name in servers}
    per_cpu: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for name, server in servers.items():
            # A CA bundle without a client certificate, as ElastiCache or Memorystore ask.
            apis[name] = serve_side(server.target(client_pair=False), name, workdir, script, args)
        for round_ in range(1, args.rounds + 1):
            for name, (api, port) in apis.items():
                redis_before = servers[name].cpu_seconds()
                result = saturate(port, api.pid, "/v1/decide", args.seconds, script)
                redis_per = (servers[name].cpu_seconds() - redis_before) / (result["rate"] * args.seconds)
                cpu_rate = result["rate"] / result["cpu"] if result["cpu"] else float("nan")
                rates[name].append(result["rate"])
                per_cpu[name].append(cpu_rate)
                lines.append([f"{name}, round {round_}", f"{result['rate']:,.0f}", f"{cpu_rate:,.0f}",
                              f"{redis_per * 1e6:.1f}", f"{os.getloadavg()[0]:.1f}"])  # fmt: skip
        rate = args.load * max(rates["plain"])
        tails = {}
        for name, (_, port) in apis.items():
            tails[name] = uvloop.run(open_loop(port, rate, args.seconds, decide_targets(args.users)))
            tails[name]["load"] = os.getloadavg()[0]
    finally:
        for api, _ in apis.values():
            api.terminate()
            api.wait(10)
        for server in servers.values():
            server.stop()
    best = {name: max(values) for name, values in rates.items()}
    best_cpu = {name: max(values) for name, values in per_cpu.items()}
    print(f"bench/decide.py --compare-tls — server on core {SERVER_CORE}, load from core {LOAD_CORE}, "
          f"{args.users:,} users, {args.seconds} s a run, TLS with a CA bundle (no client pair)")  # fmt: skip
    _pipeline_table(lines)
    print(f"TLS / plain, best round: decisions/s {best['TLS'] / best['plain']:.2f}, "
          f"per server CPU-s {best_cpu['TLS'] / best_cpu['plain']:.2f}")  # fmt: skip
    for name, tail in tails.items():
        print(f"open loop at {rate:,.0f}/s ({args.load:.0%} of plain): {name:5s} "
              f"p50 {tail['p50_ms']:.2f} ms, p99 {tail['p99_ms']:.2f} ms, non-200 {tail['errors']:.0f}, "
              f"load {tail['load']:.1f}")  # fmt: skip


def _pipeline_table(lines: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    for row in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def rows(
    hello: dict[str, float], decide: dict[str, float], opened: dict[str, float], same_rate: dict[str, float],
    same_load: dict[str, float], changes: list[float],
) -> Iterator[tuple[str, str, str, str, str]]:  # fmt: skip
    per_cpu = decide["rate"] / decide["cpu"] if decide["cpu"] else float("nan")
    yield (
        "saturation, bare route (ceiling)",
        f"{hello['rate']:,.0f}/s",
        "",
        "",
        f"server {hello['cpu']:.2f} cores",
    )
    yield ("saturation /v1/decide", f"{decide['rate']:,.0f}/s", f"{decide['rate'] / hello['rate']:.2f}",
           f">= {TARGET_PER_CORE:,}/s/core",
           f"{per_cpu:,.0f} per CPU-s; non-2xx {decide['errors']:.0f}")  # fmt: skip
    load = f"{opened['load']:.0%}"
    offered = f"{opened['offered']:,.0f} / {opened['achieved']:,.0f}/s"
    yield ("open loop offered / achieved", offered, "", load, f"non-200 {opened['errors']:.0f}")
    for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")):
        target = f"<= {TARGET_P99_MS:.0f} ms at 70%" if name == "p99" else ""
        yield (f"decide latency {name} at {load}", f"{opened[key]:.2f} ms", "", target, "")
    p99 = opened["p99_ms"]
    yield ("bare route p99, same rate (ceiling)", f"{same_rate['p99_ms']:.2f} ms",
           f"{p99 / same_rate['p99_ms']:.1f}", "", "the generator and server stack alone")  # fmt: skip
    yield (f"bare route p99 at {load} of its saturation", f"{same_load['p99_ms']:.2f} ms",
           f"{p99 / same_load['p99_ms']:.1f}", "",
           f"{same_load['offered']:,.0f}/s: the server stack's own queueing; "
           f"generator lag p99 {same_load['dispatch_lag_p99_ms']:.2f} ms")  # fmt: skip
    server = f"<= {opened['server_p50'] * 1000:g} / <= {opened['server_p99'] * 1000:g} ms"
    yield ("server-side decide p50 / p99", server, "", "", "histogram bucket bounds")
    yield ("generator dispatch lag p99", f"{opened['dispatch_lag_p99_ms']:.2f} ms", "", "", "included above")
    if not changes:
        return
    yield (
        "rule change -> served p50",
        f"{percentile(changes, 0.5) * 1000:.0f} ms",
        "",
        "",
        f"{len(changes)} changes",
    )
    yield ("rule change -> served p99", f"{percentile(changes, 0.99) * 1000:.0f} ms", "",
           f"<= {TARGET_RULE_CHANGE_P99_S * 1000:.0f} ms", f"under the {load} load")  # fmt: skip


def report(*results: object) -> None:
    table = list(rows(*results))  # type: ignore[arg-type]
    header = ("measure", "value", "ratio", "target", "note")
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(5)]
    load = os.getloadavg()[0]
    print(
        f"bench/decide.py — server on core {SERVER_CORE}, load from core {LOAD_CORE}; load average {load:.1f}"
    )
    for row in [header, *table]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
