"""Benchmark: decisions/s through GraphQL (POST /v1/graphql) against REST (GET /v1/decide), same run.

    .venv/bin/python bench/graphql.py [--seconds 10] [--users 10000] [--rounds 3]

One `tailor api` (decisions only, pinned to core 0, as bench/decide.py starts it) on bench/decide.py's
ruleset (8 rules, CEL, a rollout, a fallback) and users with real profiles; wrk (64 connections, core 1)
saturates REST and GraphQL in alternating rounds over the same users, one slot per request, the
GraphQL query asking every field REST returns (content typed: `... on HtmlContent { body }`). Each row:
decisions/s, decisions per CPU-second of the server, non-2xx, and the load average; then the medians and
GraphQL / REST (issue 17's target: >= 0.5). wrk counts only HTTP statuses, and GraphQL answers a
refused field with 200: a request is checked for `errors` before and after the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decide as bench_decide

from tailor.core import redis_target
from tailor.devstack import ports

QUERY = (
    'query($u: String!, $s: String) { decide(slots: ["hero"], user: $u, session: $s) { slot variant rule '
    "decisionId rulesetVersion content { type ... on HtmlContent { body } } } }"
)
# One body per request, its user varying as bench/decide.py's REST script varies it.
WRK_GRAPHQL = """
local users = {users}
local query = {query}
counter = 0
request = function()
  counter = counter + 1
  local u = counter % users
  local body = '{{"query": ' .. query .. ', "variables": {{"u": "u' .. u .. '", "s": "s' .. u .. '"}}}}'
  return wrk.format("POST", "/v1/graphql", {{["Content-Type"] = "application/json"}}, body)
end
"""


def lua_string(text: str) -> str:
    """`text` as a Lua literal whose value is `text` as a JSON string."""
    return "'" + orjson.dumps(text).decode().replace("\\", "\\\\").replace("'", "\\'") + "'"


def check(port: int) -> None:
    """A GraphQL decision comes back whole, without errors (wrk would count a refusal as a success)."""
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/graphql", timeout=5,
                        json={"query": QUERY, "variables": {"u": "u1", "s": "s1"}}).json()  # fmt: skip
    if answer.get("errors") or not answer.get("data", {}).get("decide"):
        sys.exit(f"bench/graphql.py: GraphQL did not decide: {answer}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    parser.add_argument("--users", type=int, default=10_000, help="distinct users (each with a profile)")
    parser.add_argument("--rounds", type=int, default=3, help="saturation rounds per side")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench/graphql.py needs wrk and taskset: make setup installs wrk; util-linux has taskset")
    with tempfile.TemporaryDirectory(prefix="tailor-bench-") as temporary:
        workdir = Path(temporary)
        url, redis_process = bench_decide.start_redis(workdir)
        target = redis_target.RedisTarget.from_environment(url=url)
        stack = f"bench-{uuid.uuid4().hex[:6]}/main"
        published = bench_decide.bench_ruleset(stack)
        asyncio.run(bench_decide._publish(target, published))
        bench_decide.populate(target, published, args.users)
        rest_script, graphql_script = workdir / "decide.lua", workdir / "graphql.lua"
        rest_script.write_text(bench_decide.WRK_SCRIPT.format(users=args.users))
        graphql_script.write_text(WRK_GRAPHQL.format(users=args.users, query=lua_string(QUERY)))
        port = ports.pick(None)
        api = bench_decide.start_api(target, stack, port, workdir / "api.log", None)
        results: bench_decide.Rounds = {"REST": [], "GraphQL": []}
        print(f"bench/graphql.py: server on core {bench_decide.SERVER_CORE}, wrk -c64 on core "
              f"{bench_decide.LOAD_CORE}, {args.users:,} users, {args.seconds} s a run")  # fmt: skip
        print(f"{'round':>5}  {'route':8} {'decide/s':>9} {'per CPU-s':>10} {'non-2xx':>8}  load")
        try:
            check(port)
            for path, script in (("/v1/decide", rest_script), ("/v1/graphql", graphql_script)):
                bench_decide.saturate(port, api.pid, path, 3, script)  # warm-up: sessions, caches
            for index in range(args.rounds):
                for name, path, script in (("REST", "/v1/decide", rest_script),
                                           ("GraphQL", "/v1/graphql", graphql_script)):  # fmt: skip
                    run = bench_decide.saturate(port, api.pid, path, args.seconds, script)
                    bench_decide.round_line(results, index, name, run, width=8)
            check(port)
        finally:
            bench_decide.stop(api, redis_process, url, stack)
    middle = bench_decide.medians(results, width=8)
    rest, graphql = middle["REST"], middle["GraphQL"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"GraphQL / REST, medians: decide/s {graphql[0] / rest[0]:.2f}, "
          f"per CPU-s {graphql[1] / rest[1]:.2f} (target >= 0.5); load {load}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
