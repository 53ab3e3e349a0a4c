"""Benchmark: an OFREP evaluation beside REST's decide, in the same run, on the same server.

    .venv/bin/python bench/ofrep.py [--requests 2000] [--seconds 5] [--rounds 2] [--users 2000]

One `tailor api` (pinned to core 0, as bench/decide.py starts it) on bench/decide.py's ruleset (8 rules
in one slot) over users with real profiles; this process and wrk on core 1. Two measurements:

1. round trip: one keep-alive connection sends, in turn, REST's GET /v1/decide, OFREP's POST
   /ofrep/v1/evaluate/flags/hero and the bulk POST /ofrep/v1/evaluate/flags (and a bare route, the
   ceiling: the router's 404), each for the next user; p50/p99 of each, interleaved so that the
   machine's noise falls on all alike;
2. saturation: wrk (64 connections) on each in alternating rounds; requests/s and per CPU-second of the
   server (the figure a busy machine changes least), and OFREP / REST.

The load average is printed beside every figure (`uptime`'s first number).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decide as bench_decide

from tailor.core import redis_target
from tailor.devstack import ports

KINDS = ("ceiling", "rest", "ofrep", "ofrep-bulk")


def load() -> float:
    return os.getloadavg()[0]


def request_for(kind: str, user: str) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, path, body, headers) of one request of `kind` for `user`."""
    body = orjson.dumps({"context": {"targetingKey": user, "session": "s1"}})
    json_headers = {"content-type": "application/json"}
    if kind == "ceiling":
        return "GET", bench_decide.CEILING_PATH, None, {}
    if kind == "rest":
        return "GET", f"/v1/decide?slot=hero&user={user}&session=s1", None, {}
    if kind == "ofrep":
        return "POST", "/ofrep/v1/evaluate/flags/hero", body, json_headers
    return "POST", "/ofrep/v1/evaluate/flags", body, json_headers


def round_trips(port: int, requests: int, users: int) -> dict[str, list[float]]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for index in range(requests * len(KINDS)):
        kind = KINDS[index % len(KINDS)]
        method, path, body, headers = request_for(kind, f"u{(index // len(KINDS)) % users}")
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        expected = 404 if kind == "ceiling" else 200
        if response.status != expected:
            sys.exit(f"{kind}: {response.status}, expected {expected}")
        times[kind].append(elapsed)
    connection.close()
    return times


# wrk scripts: each request for the next of `users` users, as a page's users are many.
_BODY = """'{"context":{"targetingKey":"' .. user .. '","session":"s1"}}'"""
_CALLS = {
    "rest": 'wrk.format("GET", "/v1/decide?slot=hero&session=s1&user=" .. user)',
    "ofrep": f'wrk.format("POST", "/ofrep/v1/evaluate/flags/hero", json, {_BODY})',
    "ofrep-bulk": f'wrk.format("POST", "/ofrep/v1/evaluate/flags", json, {_BODY})',
}


def wrk_script(workdir: Path, kind: str, users: int) -> Path:
    script = workdir / f"{kind}.lua"
    script.write_text(
        'counter = 0\njson = {["Content-Type"] = "application/json"}\n'
        f'request = function()\n  counter = counter + 1\n  local user = "u" .. (counter % {users})\n'
        f"  return {_CALLS[kind]}\nend\n"
    )
    return script


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def ms(values: list[float], q: float) -> str:
    return f"{bench_decide.percentile(values, q) * 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="round trips of each kind")
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(bench_decide.LOAD_CORE)})
    with tempfile.TemporaryDirectory(prefix="tailor-bench-ofrep-") as scratch:
        workdir = Path(scratch)
        url, redis_process = bench_decide.start_redis(workdir)
        target = redis_target.RedisTarget.from_environment(url=url)
        stack = f"bench-{uuid.uuid4().hex[:6]}/main"
        published = bench_decide.bench_ruleset(stack)
        asyncio.run(bench_decide._publish(target, published))
        bench_decide.populate(target, published, args.users)
        port = ports.pick(None)
        server = bench_decide.start_api(target, stack, port, workdir / "api.log", None)
        try:
            round_trips(port, 200, args.users)  # warm-up
            print(f"round trip, {args.requests} of each, interleaved on one connection (load {load():.1f}):")
            times = round_trips(port, args.requests, args.users)
            rest_p50 = bench_decide.percentile(times["rest"], 0.5)
            for kind in KINDS:
                ratio = bench_decide.percentile(times[kind], 0.5) / rest_p50
                print(f"  {kind:<11} p50 {ms(times[kind], 0.5)} ms  p99 {ms(times[kind], 0.99)} ms  "
                      f"p50 / REST {ratio:.2f}  (load {load():.1f})")  # fmt: skip
            print(f"saturation, wrk 64 connections, {args.seconds} s each, {args.rounds} rounds:")
            scripts = {kind: wrk_script(workdir, kind, args.users) for kind in KINDS[1:]}
            per_cpu: dict[str, list[float]] = {kind: [] for kind in scripts}
            for round_number in range(1, args.rounds + 1):
                for kind, script in scripts.items():
                    result = bench_decide.saturate(port, server.pid, "/", args.seconds, script)
                    if result["errors"]:
                        sys.exit(f"{kind}: {result['errors']:.0f} non-2xx answers")
                    per_cpu[kind].append(result["rate"] / max(result["cpu"], 1e-9))
                    rate, cpu = result["rate"], result["cpu"]
                    print(f"  round {round_number} {kind:<11} {rate:8.0f}/s  server {cpu:.2f} cores  "
                          f"{per_cpu[kind][-1]:8.0f} per CPU-s  (load {load():.1f})")  # fmt: skip
            rest = mean(per_cpu["rest"])
            for kind in ("ofrep", "ofrep-bulk"):
                pairs = zip(per_cpu[kind], per_cpu["rest"], strict=True)
                rounds = ", ".join(f"{a / b:.2f}" for a, b in pairs)
                print(f"  {kind} / REST per CPU-s: {mean(per_cpu[kind]) / rest:.2f} (rounds {rounds})")
        finally:
            server.terminate()
            server.wait(timeout=10)
            if redis_process is not None:
                redis_process.terminate()
                redis_process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
