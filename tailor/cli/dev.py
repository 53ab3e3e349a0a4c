"""`tailor dev up|down|status|env|build`: the local real stack (docs/architecture.md §10, §11).

Thin: parses arguments, calls ``tailor.devstack.Stack``, prints. Errors of the stack are
written as their message (which says what to do) with exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailor import devstack


def register(subparsers: Any) -> None:
    """Add `dev` and its verbs to the top-level parser."""
    dev = subparsers.add_parser("dev", help="run the local real stack (Kubernetes, Kafka, Redis)")
    dev.add_argument(
        "--name",
        default=devstack.DEFAULT_STACK_NAME,
        help="stack name; its state lives in $TAILOR_HOME/<name> (default: %(default)s)",
    )
    dev.add_argument(
        "--home",
        type=Path,
        default=None,
        help="parent of stack state dirs (default: $TAILOR_HOME or ~/.local/state/tailor)",
    )
    verbs = dev.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="build if needed, start and wait until healthy")
    up.add_argument(
        "--node",
        choices=devstack.NODE_KINDS,
        default=None,
        help="kwok: a fake node, pods Ready without containers (fast; the default); real: also a "
        "kubelet, containerd, kube-proxy and an image registry, so pods run (needs root). "
        "Default: what the running stack has, else kwok",
    )
    up.add_argument(
        "--redis",
        choices=devstack.REDIS_KINDS,
        default=None,
        help="single: one redis-server (the default); cluster: a Redis Cluster of six redis-server "
        "nodes (3 primaries, 3 replicas), TAILOR_REDIS_MODE=cluster. "
        "Default: what the running stack has, else single",
    )
    up.set_defaults(handler=_guarded(_up))
    down = verbs.add_parser("down", help="stop every process this stack started")
    down.add_argument("--purge", action="store_true", help="also delete the stack's data")
    down.set_defaults(handler=_guarded(_down))
    verbs.add_parser("status", help="what runs where").set_defaults(handler=_guarded(_status))
    env = verbs.add_parser("env", help="print export lines for eval (endpoints; helm and kubectl on PATH)")
    env.set_defaults(handler=_guarded(_env))
    verbs.add_parser("build", help="build and cache every component").set_defaults(handler=_guarded(_build))


def _say(message: str) -> None:
    print(f"tailor dev: {message}", file=sys.stderr, flush=True)


def _stack(args: argparse.Namespace) -> devstack.Stack:
    return devstack.Stack(args.name, args.home, report=_say)


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except devstack.DevstackError as error:
            print(f"tailor dev {args.verb}: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"tailor dev {args.verb}: interrupted", file=sys.stderr)
            return 130

    return run


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = _stack(args)
    stack.up(node=args.node, redis=args.redis)
    _print_status(stack)
    if stack.node == "real":
        _say(f"real node: push images to {stack.registry()}; pods reach the host at {devstack.NODE_ADDRESS}")
    _say(f'up in {time.monotonic() - started:.1f}s; use it with: eval "$(tailor dev env)"')
    return 0


def _down(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stopped = stack.down(purge=args.purge)
    _say(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    rows = stack.status()
    if not rows:
        _say(f"stack {args.name!r} has never been started (run `tailor dev up`)")
        return 3
    _print_status(stack)
    return 0 if stack.is_up() else 3


def _print_status(stack: devstack.Stack) -> None:
    rows = stack.status()
    width = max(len(row.name) for row in rows)
    print(f"stack {stack.name!r} in {stack.paths.root}")
    for row in rows:
        pid = f"pid {row.pid}" if row.pid else ""
        rss = f"{row.rss_kib / 1024:.0f} MiB" if row.rss_kib else ""
        line = f"  {row.name:<{width}}  {row.state:<8} {row.endpoint:<28} {pid:<11} {rss:>8}  {row.log}"
        print(line.rstrip())
    total = sum(row.rss_kib for row in rows)
    if total:
        print(f"  total resident memory: {total / 1024:.0f} MiB")


def _env(args: argparse.Namespace) -> int:
    stack = _stack(args)
    env = stack.env()
    if not env:
        _say(f"stack {args.name!r} is not up: run `tailor dev up` first")
        return 1
    sys.stdout.write(devstack.render_exports(env))
    if stack.node == "real":
        # Where images go and where pods reach Kafka and Redis (docs/install.md, "Trying it locally").
        pods = stack.pod_endpoints()
        extra = {
            "TAILOR_DEV_REGISTRY": stack.registry(),
            "TAILOR_DEV_POD_KAFKA_BOOTSTRAP": pods.get("TAILOR_KAFKA_BOOTSTRAP", ""),
            "TAILOR_DEV_POD_REDIS_URL": pods.get("TAILOR_REDIS_URL", ""),
        }
        sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in extra.items() if v))
    sys.stdout.write(_path_line(_tools_dir(stack)))
    return 0


def _tools_dir(stack: devstack.Stack) -> Path:
    """A directory with only `helm` and `kubectl` (links to the stack's own), for PATH: so that
    `helm install tailor .` works in the shell, without putting the rest of .venv/bin first."""
    tools = stack.paths.root / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    for name, target in (("helm", stack.helm), ("kubectl", stack.kubectl)):
        link = tools / name
        if link.is_symlink() and link.readlink() == target:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return tools


def _path_line(directory: Path) -> str:
    """Prepends `directory` to PATH once, however often the line is evaluated (POSIX shells)."""
    quoted = shlex.quote(str(directory))
    return f'case ":$PATH:" in *:{quoted}:*) ;; *) export PATH={quoted}:"$PATH" ;; esac\n'


def _build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _stack(args).build()
    _say(f"everything built and cached in {time.monotonic() - started:.1f}s")
    return 0
